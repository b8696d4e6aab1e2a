// PeerTransport: moves encoded Raft messages between the members of a cluster over gRPC.
//
// Outbound, each peer gets one long-lived stream that this node opens; messages queue per peer and
// are sent in batches (one frame carries everything queued, up to a byte bound), and a broken
// stream is reopened with jittered exponential back-off. Raft tolerates loss, so a full queue drops
// rather than blocks: Send() never waits on the network. While a peer is unreachable (its stream
// broke, or a connection attempt failed) only the newest few messages wait for it (oldest dropped
// first): a vote request or TimeoutNow sent while a stream is still being set up arrives, but a
// backlog of old appends is neither held in memory nor replayed into a restarted peer; the leader
// resends what the peer actually lacks.
// Inbound, PeerService checks the first frame of every stream (cluster id, sender not a removed
// data dir, format version, and the timing constants the leader lease relies on) and hands each
// accepted batch to the handler; anything else is rejected, logged and the stream closed. The
// sender need not be in this node's member table (a leader added after what a catching-up node
// applied): it is dialed back at the address its Hello gives. Both ends pass on the removals they
// applied (Hello and its answer), so a lagging node refuses a removed data dir it has not seen
// removed yet, and admits a replacement under that id.
//
// Member identity (IdentityStore, docs/guarantees.md): the Hello carries the sender's data dir
// incarnation, bootstrap id and cluster id (empty while undecided), and the answer to it the
// receiver's incarnation and cluster id, so both ends check each other: a peer presenting another
// incarnation than the one first accepted for its id (its data dir was wiped or replaced) is
// refused both ways, loudly, and so neither votes nor acknowledges. Cluster ids must be equal
// once both are decided; before that the bootstrap ids must be, and a node without a cluster id
// adopts the one presented by a peer that accepted its Hello and whose answer it accepted.
//
// Snapshots travel on their own stream (InstallSnapshot), one transfer per peer at a time on a
// thread of its own, in chunks: a large snapshot never delays heartbeats, and an interrupted
// transfer resumes where it stopped (SnapshotAssembler). The receiver checks the Hello as on the
// message stream, and hands the whole, checked payload to the snapshot handler.
//
// Threads: two per peer (a sender that writes, a reader that watches the reply stream), one per
// snapshot being sent, plus gRPC's own for inbound streams. A removed peer's sender and reader
// live on for at most `retire_grace` to deliver what was queued, with a reaper thread that stops
// them (RemovePeer); an id added back meanwhile briefly has two outbound streams. The handler runs
// on gRPC threads and must only enqueue. The node runtime owns the transport; it is not copyable
// and Stop() (or the destructor) joins every thread.
#pragma once

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "base/status.h"
#include "lockd/peer/v1/peer.grpc.pb.h"
#include "server/cluster_identity.h"
#include "server/snapshot_assembler.h"

namespace lockd::server {

/// What this node says about itself in every Hello, and what it requires of every peer's Hello,
/// beyond the ids its IdentityStore keeps.
struct PeerIdentity {
  uint64_t node_id = 0;
  uint32_t format_version = 1;
  uint64_t election_min_ms = 1000;
  uint64_t tick_ms = 100;
  uint32_t drift_ppm = 10'000;
  /// lock::ToString(Limits), and whether access control is on: must be equal on every member.
  std::string limits;
};

struct PeerTransportOptions {
  size_t max_queued_messages = 4096;   ///< per peer; beyond it Send() drops
  size_t max_queued_bytes = 64 << 20;  ///< per peer; beyond it Send() drops
  /// While the peer is unreachable: the newest this many messages / bytes are kept.
  size_t max_queued_while_unreachable = 64;
  size_t max_queued_bytes_while_unreachable = 1 << 20;
  size_t max_batch_bytes = 1 << 20;  ///< one frame's payload
  int backoff_initial_ms = 50;
  int backoff_max_ms = 2000;
  size_t snapshot_chunk_bytes = 1 << 20;
  uint64_t max_snapshot_bytes = uint64_t{1} << 32;  ///< larger incoming snapshots are refused
  /// A snapshot transfer (sending, and the receiver's install) that takes longer fails; the
  /// core retries it.
  std::chrono::milliseconds snapshot_timeout{300'000};
  /// A removed peer's stream stays open this long at most to deliver what was queued for it
  /// (RemovePeer).
  std::chrono::milliseconds retire_grace{1000};
  /// The credentials to dial member `id` with (unset: plaintext).
  std::function<std::shared_ptr<grpc::ChannelCredentials>(uint64_t id)> credentials_to;
  /// Whether the caller of an inbound call may claim to be member `id`: empty if so, else why
  /// not (unset: every claim is taken). With TLS: its certificate must name `id`.
  std::function<std::string(const grpc::ServerContext& ctx, uint64_t id)> check_claim;
  /// Called (on the peer's sender thread) when an accepted stream to peer `id` broke, not when
  /// this node stops or retires the peer: its process may have died (Raft::PeerUnreachable).
  std::function<void(uint64_t id)> on_peer_lost;
};

/// Counters for one outbound peer, for Status and metrics.
struct PeerStats {
  bool connected = false;
  uint64_t sent = 0;
  uint64_t dropped = 0;
  size_t queued = 0;        ///< messages waiting now
  size_t queued_bytes = 0;  ///< their bytes
  uint64_t reconnects = 0;
  std::string last_error;
};

class PeerTransport {
 public:
  /// Called with each accepted batch, in the order the sender queued it.
  using Handler = std::function<void(uint64_t from, std::vector<std::string> messages)>;
  /// Whether a node id may talk to us, given the index of the last membership entry it applied
  /// (IdentityStore::Admits).
  using MembershipCheck = std::function<bool(uint64_t from, uint64_t membership_index)>;
  /// A whole snapshot from `from`: its encoded kSnapshot message and its checked payload. The
  /// handler must call `done` once, with the outcome of handing it to Raft (from any thread).
  using SnapshotHandler = std::function<void(
      uint64_t from, std::string message, std::string payload, std::function<void(Status)> done)>;

  /// `identity` outlives the transport.
  PeerTransport(PeerIdentity self, IdentityStore& identity, Handler handler,
                MembershipCheck is_member, PeerTransportOptions options = {});
  ~PeerTransport();
  PeerTransport(const PeerTransport&) = delete;
  PeerTransport& operator=(const PeerTransport&) = delete;

  /// The inbound service, to register on the peer-port server before it starts.
  grpc::Service* service();

  /// Starts (or re-targets) the outbound stream to `id`.
  void SetPeer(uint64_t id, const std::string& peer_addr);
  /// The member table of the membership applied at `index` took effect: streams opened to peers
  /// it does not name, dialed at the address their Hello gave because they knew a later table
  /// (LearnPeerAddr), end once this node has applied as far as they had.
  void ForgetLearnedPeers(const std::vector<MemberSpec>& table, uint64_t index);
  /// Stops sending to `id` (it left the configuration). What was already queued for it still
  /// goes out on the live stream, for at most `retire_grace`, without blocking the caller.
  void RemovePeer(uint64_t id);

  /// Queues one encoded message for `to`. False when it was dropped (unknown peer, full queue,
  /// this node marked removed or replaced; what it queued before the mark still goes out).
  bool Send(uint64_t to, std::string encoded);

  /// Where received snapshots go; set before the peer server starts. Without one, every incoming
  /// snapshot is refused.
  void SetSnapshotHandler(SnapshotHandler handler);
  /// Streams the snapshot `payload` (named by the encoded kSnapshot `message`) to `to` on a thread
  /// of its own; `done(ok)` runs once, on that thread, when the receiver confirmed the install or
  /// the transfer failed. A transfer still running to `to` is cancelled first (its done(false)).
  void SendSnapshot(uint64_t to, std::string message, std::shared_ptr<const std::string> payload,
                    std::function<void(bool ok)> done);

  PeerStats Stats(uint64_t id) const;
  /// Stops every outbound stream and joins their threads; inbound streams end with the server.
  void Stop();

  /// Why a Hello is refused, or empty when it is acceptable. An acceptable Hello's sender gets
  /// its incarnation recorded if it is its first. Public for tests.
  std::string CheckHello(const lockd::peer::v1::Hello& hello) const;
  /// Whether the caller of `ctx` may claim to be `from` (PeerTransportOptions::check_claim).
  /// Checked before the Hello, which has effects (removals merged, peers noted).
  std::string CheckClaim(const grpc::ServerContext& ctx, uint64_t from) const;
  /// Whether a refused Hello's sender is told it was replaced (takes no part from then on): this
  /// node knows its id under another incarnation, and it is not ahead of this node. Public for
  /// tests.
  bool RefusalMeansReplaced(const lockd::peer::v1::Hello& hello) const;

 private:
  std::shared_ptr<grpc::ChannelCredentials> CredentialsTo(uint64_t id) const;

  class Outbound;
  class InboundService;
  class SnapshotSend;

  lockd::peer::v1::Hello MakeHello(uint64_t to) const;
  /// Why a peer presenting `cluster_id` and `bootstrap_id` belongs to another cluster, or empty.
  std::string CheckCluster(const std::string& cluster_id, const std::string& bootstrap_id) const;
  /// Checks `peer`'s incarnation (trust on first use) and, with `adopt`, takes its cluster id if
  /// this node has none: why it is refused, or empty. Only the opener adopts, once both ends
  /// accepted each other (a receiver does not yet know whether the opener will accept it).
  std::string AcceptPeer(uint64_t peer, const std::string& cluster_id,
                         const std::string& incarnation, bool adopt,
                         uint64_t peer_membership_index = 0) const;
  /// Whether a refusal of `from`'s Hello for `why` is logged: the same one again only after 30 s
  /// (a refused peer retries every few seconds).
  bool RefusalWorthLogging(uint64_t from, const std::string& why) const;
  /// Takes the removals a peer of this cluster reports (IdentityStore::NoteRemoved): why they
  /// cannot be taken (malformed, too many), or empty.
  std::string MergeRemoved(
      const google::protobuf::RepeatedPtrField<lockd::peer::v1::RemovedPeer>& removed) const;
  /// An accepted peer that this node has no stream to (its table does not name it yet: this
  /// node is catching up) is dialed at the address its Hello gave, `membership_index` the index
  /// of the membership it had applied; at most kMaxOutsidePeers such streams.
  void LearnPeerAddr(uint64_t id, const std::string& peer_addr, uint64_t membership_index);

  const PeerIdentity self_;
  IdentityStore& identity_;
  const Handler handler_;
  const MembershipCheck is_member_;
  const PeerTransportOptions options_;
  std::unique_ptr<InboundService> inbound_;

  mutable std::mutex mu_;  ///< guards outbound_ (the map; each Outbound has its own lock)
  std::map<uint64_t, std::unique_ptr<Outbound>> outbound_;
  std::map<uint64_t, std::unique_ptr<SnapshotSend>> snapshot_sends_;
  /// Outbound streams LearnPeerAddr opened: id -> the membership index the peer's Hello gave.
  std::map<uint64_t, uint64_t> learned_;
  mutable std::mutex refusals_mu_;  ///< guards refusals_logged_
  mutable std::map<uint64_t, std::pair<std::string, std::chrono::steady_clock::time_point>>
      refusals_logged_;
  /// Removed peers' outbounds still delivering what was queued, each with the thread that stops
  /// it when done or at the grace deadline; pruned at the next RemovePeer, all cut by Stop().
  struct Retiree {
    std::shared_ptr<Outbound> outbound;
    std::shared_ptr<std::atomic<bool>> done;
    std::thread reaper;
  };
  std::vector<Retiree> retiring_;
  SnapshotHandler snapshot_handler_;
  std::unique_ptr<SnapshotAssembler> assembler_;
  bool stopped_ = false;
};

}  // namespace lockd::server
