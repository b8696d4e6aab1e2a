// PeerTransport over real gRPC on loopback: ordered delivery, the Hello checks, reconnection after
// the receiver restarts, a Send() that never blocks on a dead peer, and member identity (a wiped
// peer is refused both ways; an undecided node takes the cluster id of a peer it accepted).
#include "server/peer_transport.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <future>
#include <map>
#include <mutex>
#include <optional>

#include "raft/wire.h"
#include "support/process.h"

namespace lockd::server {
namespace {

using namespace std::chrono_literals;

// spdlog builds its registry on first use inside the (uninstrumented) library: done here, before
// any transport thread logs, so TSan sees it happen before them (else a false data race).
const bool kLoggerBuilt = spdlog::default_logger() != nullptr;

PeerIdentity Identity(uint64_t id) {
  PeerIdentity p;
  p.node_id = id;
  return p;
}

/// A node's identity file in a temp dir of its own: a decided cluster id, bootstrap id "b0".
struct StoreDir {
  StoreDir(std::string cluster_id, std::string incarnation)
      : store(dir.path(), ClusterIdentity{std::move(cluster_id),
                                          "b0",
                                          std::move(incarnation),
                                          {{1, "x:1", "x:2"}, {2, "x:3", "x:4"}, {3, "x:5", "x:6"}},
                                          {},
                                          {},
                                          0,
                                          {},
                                          false,
                                          {}}) {}
  testing::TempDir dir;
  IdentityStore store;
};

/// Node `id`'s store in cluster `cluster`: the same one (one incarnation) for the whole run, so a
/// node restarted in a test is the same node to its peers.
IdentityStore& Store(uint64_t id, const std::string& cluster = "c1") {
  static std::mutex mu;
  static std::map<std::pair<uint64_t, std::string>, std::unique_ptr<StoreDir>> stores;
  std::lock_guard lock(mu);
  auto& slot = stores[{id, cluster}];
  if (!slot) slot = std::make_unique<StoreDir>(cluster, NewRandomId());
  return slot->store;
}

/// One node's receiving side: a transport whose handler records what arrives, served on a port.
class Receiver {
 public:
  Receiver(
      PeerIdentity self, int port,
      PeerTransport::MembershipCheck is_member = [](uint64_t, uint64_t) { return true; },
      IdentityStore* store = nullptr)
      : transport_(
            self, store ? *store : Store(self.node_id),
            [this](uint64_t from, std::vector<std::string> msgs) {
              if (const int ms = delay_ms_.load()) {
                std::this_thread::sleep_for(std::chrono::milliseconds(ms));
              }
              std::lock_guard lock(mu_);
              for (auto& m : msgs) received_.emplace_back(from, std::move(m));
            },
            std::move(is_member)) {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:" + std::to_string(port),
                             grpc::InsecureServerCredentials());
    builder.RegisterService(transport_.service());
    server_ = builder.BuildAndStart();
  }
  ~Receiver() {
    server_->Shutdown(std::chrono::system_clock::now() + 1s);
    transport_.Stop();
  }

  std::vector<std::pair<uint64_t, std::string>> received() {
    std::lock_guard lock(mu_);
    return received_;
  }
  size_t count() {
    std::lock_guard lock(mu_);
    return received_.size();
  }
  /// Each batch is handled this much later (a receiver whose Raft loop is busy).
  void SlowDown(int ms) { delay_ms_ = ms; }

 private:
  std::atomic<int> delay_ms_{0};
  std::mutex mu_;
  std::vector<std::pair<uint64_t, std::string>> received_;
  PeerTransport transport_;
  std::unique_ptr<grpc::Server> server_;
};

PeerTransport MakeSender(PeerIdentity self) {
  IdentityStore& store = Store(self.node_id);
  return PeerTransport(
      std::move(self), store, [](uint64_t, std::vector<std::string>) {},
      [](uint64_t, uint64_t) { return true; });
}

TEST(PeerTransport, DeliversEveryMessageInOrder) {
  const int port = testing::FreePorts(1)[0];
  Receiver b(Identity(2), port);
  PeerTransport a(
      Identity(1), Store(1), [](uint64_t, std::vector<std::string>) {},
      [](uint64_t, uint64_t) { return true; });
  a.SetPeer(2, "127.0.0.1:" + std::to_string(port));
  constexpr int kMessages = 2000;
  int queued = 0;
  for (int i = 0; i < kMessages; ++i) {
    // The queue bound is far above what the stream leaves unsent; retry the rare full queue.
    while (!a.Send(2, "m" + std::to_string(i))) std::this_thread::sleep_for(1ms);
    ++queued;
  }
  ASSERT_TRUE(testing::WaitFor([&] { return b.count() == kMessages; }, 30s)) << b.count();
  auto got = b.received();
  for (int i = 0; i < kMessages; ++i) {
    ASSERT_EQ(got[i].first, 1u);
    ASSERT_EQ(got[i].second, "m" + std::to_string(i));
  }
  // The sender counts a batch once its write returns, which may be after the receiver read it.
  EXPECT_TRUE(
      testing::WaitFor([&] { return a.Stats(2).sent == static_cast<uint64_t>(queued); }, 10s))
      << a.Stats(2).sent << " of " << queued;
  EXPECT_TRUE(a.Stats(2).connected);
}

TEST(PeerTransport, WhatWasQueuedForAPeerStillGoesOutWhenItIsRemoved) {
  // The leader queues the announcement that commits a member's removal, then applies the entry
  // and removes the peer in the same pass: the announcement must not die in the queue.
  const int port = testing::FreePorts(1)[0];
  Receiver b(Identity(2), port);
  PeerTransportOptions o;
  o.max_batch_bytes = 1;  // one message per frame
  o.retire_grace = 10s;   // far more than the slow receiver needs, even under TSan
  PeerTransport a(
      Identity(1), Store(1), [](uint64_t, std::vector<std::string>) {},
      [](uint64_t, uint64_t) { return true; }, o);
  a.SetPeer(2, "127.0.0.1:" + std::to_string(port));
  ASSERT_TRUE(a.Send(2, "first"));
  ASSERT_TRUE(testing::WaitFor([&] { return b.count() == 1; }, 10s)) << "the stream never came up";
  // The receiver handles each frame 30 ms late: the sender's writes return long before the last
  // frames are read, so a cancel after the last write would lose them.
  b.SlowDown(30);
  constexpr int kQueued = 50;
  for (int i = 0; i < kQueued; ++i) ASSERT_TRUE(a.Send(2, "m" + std::to_string(i)));
  const auto before = std::chrono::steady_clock::now();
  a.RemovePeer(2);
  EXPECT_LT(std::chrono::steady_clock::now() - before, 1000ms) << "RemovePeer waited for the drain";
  EXPECT_FALSE(a.Send(2, "after")) << "a removed peer takes nothing new";
  ASSERT_TRUE(testing::WaitFor([&] { return b.count() == kQueued + 1; }, 10s)) << b.count();
  auto got = b.received();
  for (int i = 0; i < kQueued; ++i) EXPECT_EQ(got[i + 1].second, "m" + std::to_string(i));
  b.SlowDown(0);
  // Removed twice, and removed while a retirement is still running: harmless.
  a.RemovePeer(2);
  a.SetPeer(2, "127.0.0.1:" + std::to_string(port));
  ASSERT_TRUE(a.Send(2, "again"));
  a.RemovePeer(2);
  ASSERT_TRUE(testing::WaitFor([&] { return b.count() == kQueued + 2; }, 10s)) << b.count();
  a.Stop();
}

TEST(PeerTransport, StopCutsARemovedPeerThatNeverAnswers) {
  // A peer that accepts TCP but never completes a handshake: the retirement's grace bounds it,
  // and Stop() does not wait for the grace either.
  // A listening socket nobody accepts on: TCP connects, the HTTP/2 handshake never answers.
  const int listener = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(listener, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(listener, 16), 0);
  socklen_t len = sizeof addr;
  ASSERT_EQ(::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  const int port = ntohs(addr.sin_port);
  PeerTransportOptions o;
  o.retire_grace = 60s;
  PeerTransport a(
      Identity(1), Store(1), [](uint64_t, std::vector<std::string>) {},
      [](uint64_t, uint64_t) { return true; }, o);
  a.SetPeer(2, "127.0.0.1:" + std::to_string(port));
  a.Send(2, "lost");
  a.RemovePeer(2);
  const auto before = std::chrono::steady_clock::now();
  a.Stop();
  EXPECT_LT(std::chrono::steady_clock::now() - before, 10s);
  ::close(listener);
}

TEST(PeerTransport, RefusesAnotherClusterANonMemberAndOtherTiming) {
  const int port = testing::FreePorts(1)[0];
  Receiver b(Identity(2), port, [](uint64_t from, uint64_t) { return from == 1 || from == 3; });
  const std::string addr = "127.0.0.1:" + std::to_string(port);

  PeerTransport other_cluster(Identity(1), Store(1, "c2"), {},
                              [](uint64_t, uint64_t) { return true; });
  other_cluster.SetPeer(2, addr);
  PeerTransport non_member(Identity(4), Store(4), {}, [](uint64_t, uint64_t) { return true; });
  non_member.SetPeer(2, addr);
  PeerIdentity slow = Identity(3);
  slow.election_min_ms = 2000;
  PeerTransport other_timing(slow, Store(3), {}, [](uint64_t, uint64_t) { return true; });
  other_timing.SetPeer(2, addr);

  for (auto* t : {&other_cluster, &non_member, &other_timing}) t->Send(2, "x");
  ASSERT_TRUE(testing::WaitFor(
      [&] {
        return !other_cluster.Stats(2).last_error.empty() &&
               !non_member.Stats(2).last_error.empty() && !other_timing.Stats(2).last_error.empty();
      },
      20s));
  EXPECT_NE(other_cluster.Stats(2).last_error.find("cluster id"), std::string::npos)
      << other_cluster.Stats(2).last_error;
  EXPECT_NE(non_member.Stats(2).last_error.find("not a member"), std::string::npos);
  EXPECT_NE(other_timing.Stats(2).last_error.find("timing differs"), std::string::npos);
  std::this_thread::sleep_for(200ms);
  EXPECT_EQ(b.count(), 0u) << "a refused stream must deliver nothing";
}

TEST(PeerTransport, ChecksHelloFieldsOneByOne) {
  PeerTransport t(Identity(2), Store(2), {}, [](uint64_t from, uint64_t) { return from == 1; });
  lockd::peer::v1::Hello h;
  h.set_cluster_id("c1");
  h.set_from(1);
  h.set_to(2);
  h.set_format_version(1);
  h.set_election_min_ms(1000);
  h.set_tick_ms(100);
  h.set_drift_ppm(10'000);
  EXPECT_EQ(t.CheckHello(h), "");
  auto bad = h;
  bad.set_to(3);
  EXPECT_NE(t.CheckHello(bad), "");
  bad = h;
  bad.set_from(2);
  EXPECT_NE(t.CheckHello(bad), "") << "a node does not talk to itself";
  bad = h;
  bad.set_format_version(2);
  EXPECT_NE(t.CheckHello(bad).find("newer"), std::string::npos);
  bad = h;
  bad.set_drift_ppm(20'000);
  EXPECT_NE(t.CheckHello(bad), "");
  bad = h;
  bad.set_limits("--max-name-bytes=64");
  EXPECT_NE(t.CheckHello(bad).find("limits or access control differ"), std::string::npos)
      << t.CheckHello(bad);
}

TEST(PeerTransport, ReconnectsAfterTheReceiverRestarts) {
  const int port = testing::FreePorts(1)[0];
  auto sender = MakeSender(Identity(1));
  sender.SetPeer(2, "127.0.0.1:" + std::to_string(port));
  {
    Receiver b(Identity(2), port);
    // The sender's first attempt may have found nobody listening: until a stream is accepted,
    // nothing queues for the peer, so keep sending until one arrives.
    ASSERT_TRUE(testing::WaitFor(
        [&] {
          sender.Send(2, "before");
          return b.count() > 0;
        },
        30s));
  }
  Receiver again(Identity(2), port);
  // Messages sent while the stream is down may be lost (Raft retransmits); keep sending until one
  // arrives over the new stream.
  ASSERT_TRUE(testing::WaitFor(
      [&] {
        sender.Send(2, "after");
        return again.count() > 0;
      },
      30s));
  EXPECT_EQ(again.received().front().second, "after");
  EXPECT_GE(sender.Stats(2).reconnects, 1u);
}

TEST(PeerTransport, OnlyTheNewestMessagesWaitForAnUnreachablePeer) {
  const int port = testing::FreePorts(1)[0];
  auto sender = MakeSender(Identity(1));
  sender.SetPeer(2, "127.0.0.1:" + std::to_string(port));  // nobody listens yet
  ASSERT_TRUE(testing::WaitFor([&] { return !sender.Stats(2).last_error.empty(); }, 20s));
  for (int i = 1; i <= 100; ++i) sender.Send(2, "m" + std::to_string(i));
  EXPECT_LE(sender.Stats(2).queued, PeerTransportOptions{}.max_queued_while_unreachable);
  Receiver b(Identity(2), port);
  ASSERT_TRUE(testing::WaitFor([&] { return b.count() > 0 && sender.Stats(2).queued == 0; }, 30s));
  std::this_thread::sleep_for(200ms);
  const auto got = b.received();
  EXPECT_EQ(got.back().second, "m100") << "the newest message arrives";
  for (const auto& [from, m] : got) {
    EXPECT_GT(std::stoi(m.substr(1)),
              100 - static_cast<int>(PeerTransportOptions{}.max_queued_while_unreachable))
        << m << ": an old message was kept for an unreachable peer";
  }
}

TEST(PeerTransport, SendNeverBlocksOnADeadPeerAndDropsPastTheBound) {
  PeerTransportOptions options;
  options.max_queued_messages = 10;
  PeerTransport a(
      Identity(1), Store(1), {}, [](uint64_t, uint64_t) { return true; }, options);
  a.SetPeer(2, "127.0.0.1:" + std::to_string(testing::FreePorts(1)[0]));  // nobody listens
  const auto start = std::chrono::steady_clock::now();
  int accepted = 0;
  for (int i = 0; i < 1000; ++i) accepted += a.Send(2, "x") ? 1 : 0;
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
  EXPECT_GE(accepted, 1);
  EXPECT_LE(a.Stats(2).queued, 10u);
  EXPECT_GE(a.Stats(2).dropped, 990u);
  EXPECT_FALSE(a.Send(9, "to nobody")) << "an unknown peer is a drop, not an error";
  // Once a connection attempt failed, only the newest few messages wait for the peer.
  ASSERT_TRUE(testing::WaitFor([&] { return !a.Stats(2).last_error.empty(); }, 20s));
  for (int i = 0; i < 100; ++i) EXPECT_TRUE(a.Send(2, "newest")) << "the newest is always kept";
  EXPECT_LE(a.Stats(2).queued, 10u);
  const auto stop_start = std::chrono::steady_clock::now();
  a.Stop();
  EXPECT_LT(std::chrono::steady_clock::now() - stop_start, 10s);
}

// --- snapshots ---------------------------------------------------------------------------------

std::string SnapshotMessage(uint64_t from, uint64_t to) {
  raft::Message m;
  m.type = raft::MessageType::kSnapshot;
  m.from = raft::NodeId(from);
  m.to = raft::NodeId(to);
  m.term = raft::Term(4);
  m.snapshot.index = raft::LogIndex(500);
  m.snapshot.term = raft::Term(3);
  m.snapshot.conf.voters = {raft::NodeId(1), raft::NodeId(2), raft::NodeId(3)};
  return raft::EncodeMessage(m);
}

/// A node that takes snapshots: records each one and answers with `outcome`.
class SnapshotTaker {
 public:
  SnapshotTaker(
      int port, Status outcome,
      PeerTransport::MembershipCheck is_member = [](uint64_t, uint64_t) { return true; },
      IdentityStore* store = nullptr)
      : transport_(Identity(2), store ? *store : Store(2), {}, std::move(is_member)) {
    transport_.SetSnapshotHandler([this, outcome](uint64_t from, std::string message,
                                                  std::string payload,
                                                  std::function<void(Status)> done) {
      {
        std::lock_guard lock(mu_);
        got_.push_back({from, std::move(message), std::move(payload)});
      }
      done(outcome);
    });
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:" + std::to_string(port),
                             grpc::InsecureServerCredentials());
    builder.SetMaxReceiveMessageSize(64 << 20);
    builder.RegisterService(transport_.service());
    server_ = builder.BuildAndStart();
  }
  ~SnapshotTaker() {
    server_->Shutdown(std::chrono::system_clock::now() + 1s);
    transport_.Stop();
  }
  struct Got {
    uint64_t from;
    std::string message, payload;
  };
  std::vector<Got> got() {
    std::lock_guard lock(mu_);
    return got_;
  }

 private:
  std::mutex mu_;
  std::vector<Got> got_;
  PeerTransport transport_;
  std::unique_ptr<grpc::Server> server_;
};

/// Sends one snapshot and waits for its done(ok).
std::optional<bool> SendOne(PeerTransport& t, uint64_t to, std::string payload) {
  std::promise<bool> done;
  auto f = done.get_future();
  t.SendSnapshot(to, SnapshotMessage(1, to), std::make_shared<const std::string>(payload),
                 [&done](bool ok) { done.set_value(ok); });
  if (f.wait_for(60s) != std::future_status::ready) return std::nullopt;
  return f.get();
}

TEST(PeerTransport, StreamsASnapshotInChunksToTheHandler) {
  const int port = testing::FreePorts(1)[0];
  SnapshotTaker b(port, Status::Ok());
  PeerTransportOptions options;
  options.snapshot_chunk_bytes = 64 << 10;
  PeerTransport a(
      Identity(1), Store(1), {}, [](uint64_t, uint64_t) { return true; }, options);
  a.SetPeer(2, "127.0.0.1:" + std::to_string(port));
  std::string payload(3'000'000, '\0');
  for (size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<char>(i * 31 + i / 7);
  EXPECT_EQ(SendOne(a, 2, payload), std::optional<bool>(true));
  auto got = b.got();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].from, 1u);
  EXPECT_EQ(got[0].message, SnapshotMessage(1, 2));
  EXPECT_TRUE(got[0].payload == payload) << "the payload changed on the way";
}

TEST(PeerTransport, ASnapshotTheReceiverCannotInstallIsReportedAsFailed) {
  const int port = testing::FreePorts(1)[0];
  SnapshotTaker b(port, Internal("disk full"));
  auto a = MakeSender(Identity(1));
  a.SetPeer(2, "127.0.0.1:" + std::to_string(port));
  EXPECT_EQ(SendOne(a, 2, "state"), std::optional<bool>(false));
  EXPECT_EQ(b.got().size(), 1u);
}

TEST(PeerTransport, ASnapshotFromANonMemberOrToAnUnknownPeerGoesNowhere) {
  const int port = testing::FreePorts(1)[0];
  SnapshotTaker b(port, Status::Ok(), [](uint64_t from, uint64_t) { return from == 3; });
  auto a = MakeSender(Identity(1));
  a.SetPeer(2, "127.0.0.1:" + std::to_string(port));
  EXPECT_EQ(SendOne(a, 2, "state"), std::optional<bool>(false));
  EXPECT_EQ(SendOne(a, 7, "state"), std::optional<bool>(false)) << "no such peer";
  EXPECT_TRUE(b.got().empty()) << "a refused sender's snapshot must not reach Raft";
}

TEST(PeerTransport, StopCancelsASnapshotInFlightAndReportsIt) {
  // Nobody listens: the transfer cannot finish; Stop must end it and report the failure.
  auto a = MakeSender(Identity(1));
  a.SetPeer(2, "127.0.0.1:" + std::to_string(testing::FreePorts(1)[0]));
  std::promise<bool> done;
  auto f = done.get_future();
  a.SendSnapshot(2, SnapshotMessage(1, 2), std::make_shared<const std::string>("s"),
                 [&done](bool ok) { done.set_value(ok); });
  a.Stop();
  ASSERT_EQ(f.wait_for(10s), std::future_status::ready);
  EXPECT_FALSE(f.get());
}

// --- member identity ---------------------------------------------------------------------------

lockd::peer::v1::Hello HelloFrom1(const std::string& incarnation) {
  lockd::peer::v1::Hello h;
  h.set_cluster_id("c1");
  h.set_bootstrap_id("b0");
  h.set_incarnation(incarnation);
  h.set_from(1);
  h.set_to(2);
  h.set_format_version(1);
  h.set_election_min_ms(1000);
  h.set_tick_ms(100);
  h.set_drift_ppm(10'000);
  return h;
}

TEST(PeerTransport, TrustsAPeersFirstIncarnationDurablyAndRefusesAnyOther) {
  StoreDir two("c1", NewRandomId());
  PeerTransport t(Identity(2), two.store, {}, [](uint64_t from, uint64_t) { return from == 1; });
  const std::string first = NewRandomId();
  EXPECT_EQ(t.CheckHello(HelloFrom1(first)), "");
  auto recorded = LoadClusterIdentity(two.dir.path());
  ASSERT_TRUE(recorded.ok() && recorded->has_value());
  EXPECT_EQ((*recorded)->known_peers.at(1), first) << "recorded before the Hello is accepted";
  EXPECT_EQ(t.CheckHello(HelloFrom1(first)), "") << "the same incarnation again";

  const std::string why = t.CheckHello(HelloFrom1(NewRandomId()));
  EXPECT_NE(why.find("node 1 presents data dir incarnation"), std::string::npos) << why;
  EXPECT_NE(why.find("knows node 1 as incarnation " + first), std::string::npos) << why;
  EXPECT_NE(why.find("remove it and add it back as a new member"), std::string::npos) << why;
  EXPECT_EQ(two.store.Recorded().known_peers.at(1), first) << "a refusal changes nothing";
}

// Found by review: admission followed the member table being applied, so a catching-up node
// turned away a leader added after the entry it had applied, and stayed stuck. A later review:
// admitting every id of the cluster let anyone talk Raft; an id outside the table is admitted
// only from a peer that applied a later membership.
TEST(PeerTransport, AdmitsAnIdOutsideTheTableOnlyFromALaterMembershipAndNeverARemovedDataDir) {
  StoreDir two("c1", NewRandomId());
  PeerTransport t(Identity(2), two.store, {},
                  [&](uint64_t from, uint64_t index) { return two.store.Admits(from, index); });
  const std::string inc5 = NewRandomId();
  auto h = HelloFrom1(inc5);
  h.set_from(5);  // not in this node's table
  const std::string stray = t.CheckHello(h);
  EXPECT_NE(stray.find("is not a member of this cluster"), std::string::npos) << stray;
  EXPECT_NE(stray.find("lockctl member add"), std::string::npos) << stray;
  EXPECT_FALSE(two.store.KnowsIncarnationOf(5)) << "a refused Hello records nothing";
  h.set_membership_index(3);  // it applied a membership this node has not: a later member
  EXPECT_EQ(t.CheckHello(h), "");
  EXPECT_TRUE(two.store.KnowsIncarnationOf(5));
  EXPECT_FALSE(two.store.Recorded().known_peers.contains(5)) << "in memory only";
  ASSERT_TRUE(two.store.SetMembers(two.store.members(), {{5, inc5}}, 10, true).ok());
  h.set_membership_index(11);
  EXPECT_NE(t.CheckHello(h).find("was removed"), std::string::npos) << t.CheckHello(h);
  // Its data dir wiped and started again with bootstrap flags: nothing applied, and its own
  // (bootstrap) table names it, so it gives its address.
  h.set_incarnation(NewRandomId());
  h.set_membership_index(0);
  h.set_peer_addr("x:9");
  const std::string wiped = t.CheckHello(h);
  EXPECT_NE(wiped.find("an id that was removed"), std::string::npos) << wiped;
  EXPECT_NE(wiped.find("--join"), std::string::npos) << wiped;
  // A replacement under the id, started with --join and not added yet: told to wait (no
  // address: its table does not name it).
  h.clear_peer_addr();
  const std::string waiting = t.CheckHello(h);
  EXPECT_NE(waiting.find("it waits to be added"), std::string::npos) << waiting;
  // Added back by an entry this node has not applied yet.
  h.set_membership_index(11);
  EXPECT_EQ(t.CheckHello(h), "");
}

// Third review: a lagging node that knew a removed member's data dir told a replacement under the
// same id (added after a removal it had not applied yet) that it was replaced, and the replacement
// took no part until restarted. A sender ahead of this node is refused for now, not marked.
TEST(PeerTransport, AReplacementAheadOfThisNodeIsNotToldItWasReplaced) {
  StoreDir two("c1", NewRandomId());
  PeerTransport t(Identity(2), two.store, {}, [](uint64_t, uint64_t) { return true; });
  const std::string old1 = NewRandomId();
  ASSERT_TRUE(two.store.CheckPeer(1, old1).ok());
  auto h = HelloFrom1(NewRandomId());
  EXPECT_NE(t.CheckHello(h), "") << "another incarnation under a known id";
  EXPECT_TRUE(t.RefusalMeansReplaced(h)) << "a wiped data dir (it applied nothing)";
  h.set_membership_index(12);
  EXPECT_NE(t.CheckHello(h), "");
  EXPECT_FALSE(t.RefusalMeansReplaced(h)) << "ahead: possibly a replacement; refused, not marked";
}

// Found by review: the removals a Hello reports were merged before its sender was admitted, so a
// refused Hello could rewrite (and fsync) the identity file and push out the genuine removals.
TEST(PeerTransport, ARefusedHelloChangesNothingNotEvenTheRemovedList) {
  StoreDir two("c1", NewRandomId());
  PeerTransport t(Identity(2), two.store, {},
                  [&](uint64_t from, uint64_t index) { return two.store.Admits(from, index); });
  const ClusterIdentity before = two.store.Recorded();
  auto h = HelloFrom1(NewRandomId());
  h.set_from(7);  // never added, and it applied no later membership
  for (uint64_t id = 100; id < 110; ++id) {
    auto* r = h.add_removed();
    r->set_id(id);
    r->set_incarnation(NewRandomId());
  }
  EXPECT_NE(t.CheckHello(h), "");
  EXPECT_EQ(two.store.Recorded(), before);
  EXPECT_FALSE(std::filesystem::exists(two.dir.path() + "/cluster")) << "nothing was written";
  EXPECT_FALSE(two.store.KnowsIncarnationOf(7));
}

TEST(PeerTransport, ARemovalThePeerReportsIsTakenBeforeItsIncarnationIsChecked) {
  // This node lags: it knows node 1 under its old data dir, removed since and replaced by a
  // new one (which may lead now). The replacement's Hello reports the removal.
  StoreDir two("c1", NewRandomId());
  const std::string old1 = NewRandomId();
  ASSERT_TRUE(two.store.CheckPeer(1, old1).ok());
  PeerTransport t(Identity(2), two.store, {}, [](uint64_t, uint64_t) { return true; });
  const std::string new1 = NewRandomId();
  auto h = HelloFrom1(new1);
  auto* r = h.add_removed();
  r->set_id(1);
  r->set_incarnation(old1);
  EXPECT_EQ(t.CheckHello(h), "");
  EXPECT_EQ(two.store.Recorded().known_peers.at(1), new1);
  EXPECT_TRUE(two.store.WasRemoved(1, old1));
  EXPECT_NE(t.CheckHello(HelloFrom1(old1)).find("was removed"), std::string::npos);
  // Without the report it is what it was: a wiped data dir, refused.
  StoreDir three("c1", NewRandomId());
  ASSERT_TRUE(three.store.CheckPeer(1, old1).ok());
  PeerTransport u(Identity(2), three.store, {}, [](uint64_t, uint64_t) { return true; });
  EXPECT_NE(u.CheckHello(HelloFrom1(new1)).find("presents data dir incarnation"),
            std::string::npos);
}

TEST(PeerTransport, ClusterIdsMustMatchOnceDecidedAndBootstrapIdsBefore) {
  StoreDir two("c1", NewRandomId());
  PeerTransport t(Identity(2), two.store, {}, [](uint64_t, uint64_t) { return true; });
  auto h = HelloFrom1(NewRandomId());
  h.set_cluster_id("c2");
  EXPECT_NE(t.CheckHello(h).find("is not this cluster's"), std::string::npos) << t.CheckHello(h);
  h.set_cluster_id("");  // an undecided peer of our bootstrap: a late starter
  EXPECT_EQ(t.CheckHello(h), "");
  h.set_bootstrap_id("b9");
  EXPECT_NE(t.CheckHello(h).find("bootstrap id"), std::string::npos) << t.CheckHello(h);
}

/// A transport with its own store, serving on `port`, counting what arrives.
struct Member {
  Member(uint64_t id, int port, std::string cluster_id, std::string incarnation)
      : files(std::move(cluster_id), std::move(incarnation)),
        receiver(
            Identity(id), port, [](uint64_t, uint64_t) { return true; }, &files.store) {}
  StoreDir files;
  Receiver receiver;
};

TEST(PeerTransport, AWipedPeerIsRefusedBothWaysAndLearnsWhy) {
  const auto ports = testing::FreePorts(2);
  const std::string addr1 = "127.0.0.1:" + std::to_string(ports[0]);
  const std::string addr2 = "127.0.0.1:" + std::to_string(ports[1]);
  Member two(2, ports[1], "c1", NewRandomId());
  {
    // Node 1 as it was: node 2 accepts it, and records its incarnation.
    StoreDir old_one("c1", NewRandomId());
    PeerTransport one(Identity(1), old_one.store, {}, [](uint64_t, uint64_t) { return true; });
    one.SetPeer(2, addr2);
    ASSERT_TRUE(testing::WaitFor(
        [&] {
          one.Send(2, "hello");
          return two.receiver.count() > 0;
        },
        20s));
  }
  // Node 1 again, its data dir wiped: a new incarnation and no cluster id.
  Member wiped(1, ports[0], "", NewRandomId());
  PeerTransport wiped_out(Identity(1), wiped.files.store, {},
                          [](uint64_t, uint64_t) { return true; });
  wiped_out.SetPeer(2, addr2);
  PeerTransport two_out(Identity(2), two.files.store, {}, [](uint64_t, uint64_t) { return true; });
  two_out.SetPeer(1, addr1);
  const size_t before = two.receiver.count();
  ASSERT_TRUE(testing::WaitFor(
      [&] {
        wiped_out.Send(2, "vote for me");
        two_out.Send(1, "append");
        return !wiped_out.Stats(2).last_error.empty() && !two_out.Stats(1).last_error.empty();
      },
      20s));
  // Its own stream: node 2 refuses its Hello, and says why.
  const std::string refused = wiped_out.Stats(2).last_error;
  EXPECT_NE(refused.find("refused us: node 1 presents data dir incarnation"), std::string::npos)
      << refused;
  EXPECT_NE(wiped.files.store.UndecidedReason().find("remove it and add it back"),
            std::string::npos)
      << wiped.files.store.UndecidedReason();
  // Node 2's stream to it: refused either by node 2 (the answer names the old incarnation) or,
  // once node 2's refusal reached the wiped node, by the wiped node itself (it takes no part).
  const std::string refusing = two_out.Stats(1).last_error;
  EXPECT_TRUE(refusing.find("we refuse peer 1: node 1 presents data dir incarnation") !=
                  std::string::npos ||
              refusing.find("refused us: this node takes no part") != std::string::npos)
      << refusing;
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(two.receiver.count(), before) << "the wiped node's messages must not arrive";
  EXPECT_EQ(wiped.receiver.count(), 0u) << "no message may reach the wiped node";
  EXPECT_FALSE(wiped.files.store.decided()) << "it takes no cluster id from a peer that refuses it";
}

// Found by review: trust on first use let a wiped member back in through a peer that never saw
// its old incarnation (one that lagged or was down), where an empty-log voter could help elect a
// leader without the acknowledged writes. Once any peer says "I know you under another
// incarnation", the node takes no part at all: even a peer that would accept it gets nothing.
TEST(PeerTransport, ANodeRefusedAsReplacedTakesNoPartEvenWithAPeerThatWouldAcceptIt) {
  const auto ports = testing::FreePorts(3);
  const auto addr = [&](int i) { return "127.0.0.1:" + std::to_string(ports[i]); };
  const std::string old_incarnation = NewRandomId();
  // Node 2 knew node 1's old incarnation; node 3 never saw node 1 at all.
  Member two(2, ports[1], "c1", NewRandomId());
  ASSERT_TRUE(two.files.store.CheckPeer(1, old_incarnation).ok());
  Member three(3, ports[2], "c1", NewRandomId());
  // Node 1, wiped: a new incarnation.
  Member wiped(1, ports[0], "", NewRandomId());
  PeerTransport wiped_out(Identity(1), wiped.files.store, {},
                          [](uint64_t, uint64_t) { return true; });
  wiped_out.SetPeer(2, addr(1));
  wiped_out.SetPeer(3, addr(2));
  ASSERT_TRUE(testing::WaitFor(
      [&] {
        wiped_out.Send(2, "vote for me");
        return wiped.files.store.replaced();
      },
      20s))
      << wiped_out.Stats(2).last_error;
  EXPECT_NE(wiped.files.store.replaced_reason().find("presents data dir incarnation"),
            std::string::npos)
      << wiped.files.store.replaced_reason();
  // Node 3 would accept it (it never saw the old incarnation), but nothing flows either way.
  PeerTransport three_out(Identity(3), three.files.store, {},
                          [](uint64_t, uint64_t) { return true; });
  three_out.SetPeer(1, addr(0));
  for (int i = 0; i < 20; ++i) {
    wiped_out.Send(3, "ack");
    three_out.Send(1, "request vote");
    std::this_thread::sleep_for(25ms);
  }
  EXPECT_EQ(three.receiver.count(), 0u) << "node 3 got messages from a replaced node";
  EXPECT_EQ(wiped.receiver.count(), 0u) << "a replaced node took messages from node 3";
  EXPECT_NE(three_out.Stats(1).last_error.find("takes no part"), std::string::npos)
      << three_out.Stats(1).last_error;
}

// Found by review (issue 18): a leader that commits its own removal queues that commit for the
// members that stay, then applies the removal and marks itself removed in the same pass. What it
// queued before the mark must still go out (in a two-voter cluster shrunk to one, the survivor
// learns of the commit from nobody else); nothing it queues after may.
TEST(PeerTransport, WhatANodeQueuedBeforeItWasMarkedRemovedStillGoesOut) {
  const int port = testing::FreePorts(1)[0];
  Member two(2, port, "c1", NewRandomId());
  StoreDir one("c1", NewRandomId());
  PeerTransportOptions o;
  o.max_batch_bytes = 1;  // one message per frame: most writes come after the mark
  PeerTransport a(
      Identity(1), one.store, [](uint64_t, std::vector<std::string>) {},
      [](uint64_t, uint64_t) { return true; }, o);
  a.SetPeer(2, "127.0.0.1:" + std::to_string(port));
  ASSERT_TRUE(a.Send(2, "first"));
  ASSERT_TRUE(testing::WaitFor([&] { return two.receiver.count() == 1; }, 10s))
      << "the stream never came up: " << a.Stats(2).last_error;
  // Frames of 256 KiB, each read 20 ms late: gRPC's flow control holds the sender's writes until
  // the receiver reads, so nearly all of them are still queued when the mark comes.
  two.receiver.SlowDown(20);
  constexpr int kQueued = 30;
  for (int i = 0; i < kQueued; ++i) {
    ASSERT_TRUE(a.Send(2, std::to_string(i) + std::string(256 << 10, 'x')));
  }
  one.store.MarkRemoved("removed by the test");
  EXPECT_FALSE(a.Send(2, "after")) << "a removed node queues nothing new";
  ASSERT_TRUE(testing::WaitFor([&] { return two.receiver.count() == kQueued + 1; }, 20s))
      << two.receiver.count() << " of " << kQueued + 1;
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(two.receiver.count(), static_cast<size_t>(kQueued + 1)) << "nothing after the mark";
  EXPECT_TRUE(
      testing::WaitFor([&] { return a.Stats(2).sent == static_cast<uint64_t>(kQueued + 1); }, 10s))
      << a.Stats(2).sent;
  a.Stop();
}

TEST(PeerTransport, ANodeWithoutAClusterIdTakesTheOneOfAPeerItAccepted) {
  const int port = testing::FreePorts(1)[0];
  Member two(2, port, "c7", NewRandomId());
  StoreDir late("", NewRandomId());  // a late starter: same bootstrap, nothing decided
  int decisions = 0;
  late.store.SetDecidedListener([&](const std::string& id) {
    EXPECT_EQ(id, "c7");
    ++decisions;
  });
  PeerTransport one(Identity(1), late.store, {}, [](uint64_t, uint64_t) { return true; });
  one.SetPeer(2, "127.0.0.1:" + std::to_string(port));
  ASSERT_TRUE(testing::WaitFor([&] { return late.store.decided(); }, 20s));
  EXPECT_EQ(late.store.cluster_id(), "c7");
  auto recorded = LoadClusterIdentity(late.dir.path());
  ASSERT_TRUE(recorded.ok() && recorded->has_value());
  EXPECT_EQ((*recorded)->cluster_id, "c7") << "recorded durably";
  one.Stop();
  EXPECT_EQ(decisions, 1);
}

TEST(PeerTransport, NoSnapshotGoesToAPeerUnderAnotherIncarnation) {
  const int port = testing::FreePorts(1)[0];
  StoreDir receiver("c1", NewRandomId());
  SnapshotTaker b(
      port, Status::Ok(), [](uint64_t, uint64_t) { return true; }, &receiver.store);
  StoreDir sender("c1", NewRandomId());
  // The sender knows node 2 by another incarnation than the one it presents now.
  ASSERT_TRUE(sender.store.CheckPeer(2, NewRandomId()).ok());
  PeerTransport a(Identity(1), sender.store, {}, [](uint64_t, uint64_t) { return true; });
  a.SetPeer(2, "127.0.0.1:" + std::to_string(port));
  EXPECT_EQ(SendOne(a, 2, "state"), std::optional<bool>(false));
  EXPECT_TRUE(b.got().empty()) << "the snapshot must not reach a replaced node";
}

}  // namespace
}  // namespace lockd::server
