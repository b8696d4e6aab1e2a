// WatchHub: log order, one message per entry, filters, resume by position, and the
// OUT_OF_RANGE cases of the contract.
#include "server/watch_hub.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

namespace lockd::server {
namespace {

WatchEntry Entry(uint64_t index, std::vector<std::string> names) {
  WatchEntry e;
  e.index = index;
  uint32_t n = 0;
  for (auto& name : names) {
    WatchEvent ev;
    ev.number = ++n;
    ev.name = std::move(name);
    e.events.push_back(ev);
  }
  return e;
}

/// Subscribe, then replay to the end in small chunks, as the Watch reactor does.
Result<uint64_t> SubscribeAndReplay(WatchHub& hub, WatchFilter f, const WatchPosition* after,
                                    WatchHub::Sink sink) {
  auto id = hub.Subscribe(std::move(f), after, std::move(sink));
  if (!id.ok()) return id;
  for (;;) {
    auto live = hub.Replay(*id, 2);
    if (!live.ok()) return live.status();
    if (*live) return id;
  }
}

struct Collected {
  std::vector<WatchEntry> entries;
  WatchHub::Sink sink() {
    return [this](const WatchEntry& e) {
      entries.push_back(e);
      return true;
    };
  }
};

TEST(WatchHub, DeliversMatchingEventsOfOneEntryTogetherInLogOrder) {
  WatchHub hub("c1", 100);
  Collected got;
  ASSERT_TRUE(hub.Subscribe({"seat/", true}, nullptr, got.sink()).ok());
  hub.Publish(Entry(5, {"seat/1", "other", "seat/2"}));  // e.g. a release and its handoff
  hub.Publish(Entry(7, {"other"}));
  hub.Publish(Entry(9, {"seat/3"}));
  ASSERT_EQ(got.entries.size(), 2u);
  EXPECT_EQ(got.entries[0].index, 5u);
  ASSERT_EQ(got.entries[0].events.size(), 2u);
  EXPECT_EQ(got.entries[0].events[0].name, "seat/1");
  EXPECT_EQ(got.entries[0].events[1].number, 3u);
  EXPECT_EQ(got.entries[1].index, 9u);
}

TEST(WatchHub, AnExactNameDoesNotMatchItsExtensions) {
  WatchFilter f{"a", false};
  EXPECT_TRUE(f.Matches("a"));
  EXPECT_FALSE(f.Matches("ab"));
  EXPECT_TRUE((WatchFilter{"a", true}).Matches("ab"));
}

TEST(WatchHub, ResumesAfterThePositionItWasGivenWithinAnEntry) {
  WatchHub hub("c1", 100);
  hub.Publish(Entry(5, {"x", "x", "x"}));
  hub.Publish(Entry(6, {"x"}));
  Collected got;
  WatchPosition after{"c1", 5, 2};
  ASSERT_TRUE(SubscribeAndReplay(hub, {"x", false}, &after, got.sink()).ok());
  ASSERT_EQ(got.entries.size(), 2u);
  ASSERT_EQ(got.entries[0].events.size(), 1u);
  EXPECT_EQ(got.entries[0].events[0].number, 3u);
  EXPECT_EQ(got.entries[1].index, 6u);
  hub.Publish(Entry(8, {"x"}));
  EXPECT_EQ(got.entries.size(), 3u) << "then live";
}

TEST(WatchHub, APositionOfAnotherClusterOrBelowHistoryIsOutOfRange) {
  WatchHub hub("c1", 2);
  for (uint64_t i = 1; i <= 5; ++i) hub.Publish(Entry(i, {"x"}));
  Collected got;
  WatchPosition other{"c2", 5, 1};
  EXPECT_EQ(SubscribeAndReplay(hub, {"x", false}, &other, got.sink()).status().code(),
            StatusCode::kOutOfRange);
  WatchPosition old{"c1", 1, 1};  // entries 1..3 fell out of the 2-entry history
  EXPECT_EQ(SubscribeAndReplay(hub, {"x", false}, &old, got.sink()).status().code(),
            StatusCode::kOutOfRange);
  WatchPosition recent{"c1", 3, 1};  // entry 3 is gone, but this watcher saw all of it
  EXPECT_TRUE(SubscribeAndReplay(hub, {"x", false}, &recent, got.sink()).ok());
  EXPECT_EQ(got.entries.size(), 2u);  // 4 and 5
}

TEST(WatchHub, AForeignClusterIdIsQuotedBoundedAndPrintable) {
  // A 6 KB id echoed whole made a status message the client's metadata limit refused, failing
  // every call on its connection (found by the fuzz run).
  WatchHub hub("c1", 2);
  Collected got;
  WatchPosition huge{std::string(6000, '\xe9'), 5, 1};
  auto s = SubscribeAndReplay(hub, {"x", false}, &huge, got.sink()).status();
  EXPECT_EQ(s.code(), StatusCode::kOutOfRange);
  EXPECT_LT(s.message().size(), 300u) << s.message();
  EXPECT_NE(s.message().find("\\xe9"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("(6000 bytes)"), std::string::npos) << s.message();
}

TEST(WatchHub, APositionInsideTheDroppedFloorEntryIsOutOfRange) {
  WatchHub hub("c1", 1);
  hub.Publish(Entry(1, {"x", "x", "x"}));  // events 1..3 of one entry
  hub.Publish(Entry(2, {"x"}));            // entry 1 falls out
  Collected got;
  WatchPosition partial{"c1", 1, 2};  // saw events 1 and 2 of entry 1, not 3
  EXPECT_EQ(SubscribeAndReplay(hub, {"x", false}, &partial, got.sink()).status().code(),
            StatusCode::kOutOfRange);
  WatchPosition whole{"c1", 1, 3};
  EXPECT_TRUE(SubscribeAndReplay(hub, {"x", false}, &whole, got.sink()).ok());
  EXPECT_EQ(got.entries.size(), 1u);  // entry 2
}

TEST(WatchHub, ASnapshotInstallCutsHistory) {
  WatchHub hub("c1", 100);
  for (uint64_t i = 1; i <= 5; ++i) hub.Publish(Entry(i, {"x"}));
  hub.CutHistory(10);
  Collected got;
  WatchPosition p{"c1", 4, 1};
  EXPECT_EQ(SubscribeAndReplay(hub, {"x", false}, &p, got.sink()).status().code(),
            StatusCode::kOutOfRange);
  // What entry 10 held is not known after the cut, so no position inside it can resume.
  WatchPosition at{"c1", 10, 0};
  EXPECT_EQ(SubscribeAndReplay(hub, {"x", false}, &at, got.sink()).status().code(),
            StatusCode::kOutOfRange);
  hub.Publish(Entry(11, {"x"}));
  WatchPosition after_cut{"c1", 11, 0};
  EXPECT_TRUE(SubscribeAndReplay(hub, {"x", false}, &after_cut, got.sink()).ok());
  EXPECT_EQ(got.entries.size(), 1u);
}

TEST(WatchHub, ASinkThatRefusesIsDropped) {
  WatchHub hub("c1", 10);
  int calls = 0;
  ASSERT_TRUE(hub.Subscribe({"", true}, nullptr,
                            [&](const WatchEntry&) {
                              ++calls;
                              return false;
                            })
                  .ok());
  hub.Publish(Entry(1, {"x"}));
  hub.Publish(Entry(2, {"x"}));
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(hub.subscribers(), 0u);
}

TEST(WatchHub, ReplaysTheWholeKeptHistoryInBoundedChunksInOrderExactlyOnce) {
  WatchHub hub("c1", 10'000);
  for (uint64_t i = 1; i <= 10'000; ++i) hub.Publish(Entry(i, {i % 2 ? "a" : "b"}));
  Collected got;
  WatchPosition p{"c1", 1'000, 1};  // 9,000 entries back, 4,500 of them matching
  auto id = hub.Subscribe({"a", false}, &p, got.sink());
  ASSERT_TRUE(id.ok()) << id.status().ToString();
  EXPECT_TRUE(got.entries.empty()) << "Subscribe replays nothing under the hub's lock";
  size_t calls = 0;
  for (;;) {
    const size_t before = got.entries.size();
    auto live = hub.Replay(*id, 256);
    ASSERT_TRUE(live.ok()) << live.status().ToString();
    ASSERT_LE(got.entries.size() - before, 256u) << "one chunk at most per call";
    ++calls;
    if (*live) break;
  }
  EXPECT_GE(calls, 4'500u / 256);
  hub.Publish(Entry(10'001, {"a"}));
  ASSERT_EQ(got.entries.size(), 4'501u);
  for (size_t k = 0; k < got.entries.size(); ++k) {
    EXPECT_EQ(got.entries[k].index, 1'001 + 2 * k) << k;
  }
}

TEST(WatchHub, EntriesPublishedDuringAReplayArriveOnceAndInOrder) {
  WatchHub hub("c1", 1'000);
  for (uint64_t i = 1; i <= 100; ++i) hub.Publish(Entry(i, {"x"}));
  Collected got;
  WatchPosition p{"c1", 10, 1};
  auto id = hub.Subscribe({"x", false}, &p, got.sink());
  ASSERT_TRUE(id.ok());
  uint64_t next = 101;
  for (;;) {
    hub.Publish(Entry(next++, {"x"}));  // the apply loop keeps going between chunks
    auto live = hub.Replay(*id, 7, 5);
    ASSERT_TRUE(live.ok());
    if (*live) break;
  }
  for (int k = 0; k < 3; ++k) hub.Publish(Entry(next++, {"x"}));
  ASSERT_EQ(got.entries.size(), next - 11);
  for (size_t k = 0; k < got.entries.size(); ++k) EXPECT_EQ(got.entries[k].index, 11 + k);
}

TEST(WatchHub, AReplayOvertakenByTheTrimmedHistoryIsOutOfRange) {
  WatchHub hub("c1", 50);
  for (uint64_t i = 1; i <= 50; ++i) hub.Publish(Entry(i, {"x"}));
  Collected got;
  WatchPosition p{"c1", 5, 1};
  auto id = hub.Subscribe({"x", false}, &p, got.sink());
  ASSERT_TRUE(id.ok());
  ASSERT_FALSE(*hub.Replay(*id, 2));
  for (uint64_t i = 51; i <= 120; ++i) hub.Publish(Entry(i, {"x"}));  // the watcher stalls
  EXPECT_EQ(hub.Replay(*id, 2).status().code(), StatusCode::kOutOfRange);
  EXPECT_EQ(hub.subscribers(), 0u);
}

TEST(WatchHub, PublishRunsWhileAnotherThreadReplays) {
  WatchHub hub("c1", 20'000);
  for (uint64_t i = 1; i <= 10'000; ++i) hub.Publish(Entry(i, {"x"}));
  std::atomic<uint64_t> seen{0};
  std::atomic<uint64_t> last{0};
  std::atomic<bool> order_ok{true};
  WatchPosition p{"c1", 1, 1};
  auto id = hub.Subscribe({"x", false}, &p, [&](const WatchEntry& e) {
    if (e.index != last.load() + 1 && last.load() != 0) order_ok = false;
    last = e.index;
    ++seen;
    return true;
  });
  ASSERT_TRUE(id.ok());
  std::thread publisher([&] {
    for (uint64_t i = 10'001; i <= 12'000; ++i) hub.Publish(Entry(i, {"x"}));
  });
  for (;;) {
    auto live = hub.Replay(*id, 64);
    ASSERT_TRUE(live.ok());
    if (*live) break;
  }
  publisher.join();
  EXPECT_TRUE(order_ok.load());
  EXPECT_EQ(seen.load(), 11'999u);
  EXPECT_EQ(last.load(), 12'000u);
}

}  // namespace
}  // namespace lockd::server
