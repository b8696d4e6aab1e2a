// WatchHub: log order, one message per entry, filters, resume by position, and the
// OUT_OF_RANGE cases of the contract.
#include "server/watch_hub.h"

#include <gtest/gtest.h>

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
  ASSERT_TRUE(hub.Subscribe({"x", false}, &after, got.sink()).ok());
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
  EXPECT_EQ(hub.Subscribe({"x", false}, &other, got.sink()).status().code(),
            StatusCode::kOutOfRange);
  WatchPosition old{"c1", 1, 1};  // entries 1..3 fell out of the 2-entry history
  EXPECT_EQ(hub.Subscribe({"x", false}, &old, got.sink()).status().code(), StatusCode::kOutOfRange);
  WatchPosition recent{"c1", 3, 1};  // entry 3 is gone, but this watcher saw all of it
  EXPECT_TRUE(hub.Subscribe({"x", false}, &recent, got.sink()).ok());
  EXPECT_EQ(got.entries.size(), 2u);  // 4 and 5
}

TEST(WatchHub, APositionInsideTheDroppedFloorEntryIsOutOfRange) {
  WatchHub hub("c1", 1);
  hub.Publish(Entry(1, {"x", "x", "x"}));  // events 1..3 of one entry
  hub.Publish(Entry(2, {"x"}));            // entry 1 falls out
  Collected got;
  WatchPosition partial{"c1", 1, 2};  // saw events 1 and 2 of entry 1, not 3
  EXPECT_EQ(hub.Subscribe({"x", false}, &partial, got.sink()).status().code(),
            StatusCode::kOutOfRange);
  WatchPosition whole{"c1", 1, 3};
  EXPECT_TRUE(hub.Subscribe({"x", false}, &whole, got.sink()).ok());
  EXPECT_EQ(got.entries.size(), 1u);  // entry 2
}

TEST(WatchHub, ASnapshotInstallCutsHistory) {
  WatchHub hub("c1", 100);
  for (uint64_t i = 1; i <= 5; ++i) hub.Publish(Entry(i, {"x"}));
  hub.CutHistory(10);
  Collected got;
  WatchPosition p{"c1", 4, 1};
  EXPECT_EQ(hub.Subscribe({"x", false}, &p, got.sink()).status().code(), StatusCode::kOutOfRange);
  // What entry 10 held is not known after the cut, so no position inside it can resume.
  WatchPosition at{"c1", 10, 0};
  EXPECT_EQ(hub.Subscribe({"x", false}, &at, got.sink()).status().code(), StatusCode::kOutOfRange);
  hub.Publish(Entry(11, {"x"}));
  WatchPosition after_cut{"c1", 11, 0};
  EXPECT_TRUE(hub.Subscribe({"x", false}, &after_cut, got.sink()).ok());
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

}  // namespace
}  // namespace lockd::server
