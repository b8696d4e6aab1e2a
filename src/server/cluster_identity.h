// ClusterIdentity: which cluster a data dir belongs to, who its members are, and who this data
// dir is — written when the data dir is created and read back at every start (a restarted node
// takes its membership from its own storage, never from flags).
//
// Three ids, each with its own job (docs/guarantees.md, "Member identity"):
// - the incarnation: random 128 bits made when the data dir is created. A node whose data dir was
//   wiped comes back with a new one, so its peers can tell that it forgot its log and its votes.
// - the bootstrap id: derived from --cluster-token and the initial member list, so that members
//   started independently with the same flags recognise each other before the cluster id exists.
// - the cluster id: random 128 bits, decided by the first leader through the Raft log (the first
//   committed decision wins) and recorded here on every node; empty while not yet decided. A
//   cluster bootstrapped again from wiped data dirs with the same flags gets a new one.
// Each node also records, per peer, the incarnation it first accepted (trust on first use) and
// refuses that peer under any other one.
//
// The file `<data dir>/cluster` is text (format version, ids, members, known peers) with a
// CRC-32C, written to a temporary name, synced, renamed into place and the folder synced.
// Format 1 (before incarnations) is still read: its derived id stays the cluster id (and is the
// bootstrap id too), and the node makes and records an incarnation at its first start. Format 2
// (before membership changes) is read as membership index 0. Member addresses are written with
// every byte other than an address character as %XX, so no address can split or add a line.
// Format 4 adds the joining flag and the list of removed members (format 3 reads as neither).
// Format 5 adds, per known peer, the membership index it had applied when it was accepted.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "server/options.h"

namespace lockd::server {

/// A member the log removed: its id and the data dir incarnation it was removed under
/// (kUnknownIncarnation when the removing leader never heard from it). Peers are admitted by
/// cluster id and refused only when they are such a member (docs/guarantees.md, "Member identity").
struct RemovedMember {
  uint64_t id = 0;
  std::string incarnation;

  bool operator==(const RemovedMember&) const = default;
};
/// The incarnation of a member removed before anyone recorded its incarnation: its id is
/// refused until the member table names it again (a replacement added under it).
inline constexpr const char* kUnknownIncarnation = "-";
/// What bounds the removed list: one entry per removal an operator made (deduplicated); past
/// this many the oldest is forgotten. A member removed that long ago is still stopped by its own
/// data dir's removal mark, or refused as an unknown incarnation if its mark was lost.
inline constexpr size_t kMaxRemovedMembers = 1024;
/// How many peers outside the member table a node keeps an incarnation for (in memory only) and
/// dials at the address they gave: leaders and members added after the membership entry this
/// node applied. A node catching up meets a few; past this many a new one is refused.
inline constexpr size_t kMaxOutsidePeers = 16;

struct ClusterIdentity {
  std::string cluster_id;  ///< empty while not yet decided
  std::string bootstrap_id;
  std::string incarnation;  ///< empty only in a format-1 file, until the node records one
  std::vector<MemberSpec> members;
  /// The incarnation this node first accepted for each peer of its member table (peers outside
  /// it are kept in memory only: IdentityStore::CheckPeer).
  std::map<uint64_t, std::string> known_peers;
  /// For a known peer: the index of the last membership it had applied when it was accepted (its
  /// Hello or answer said; absent: 0, unknown). A removal entry that names no incarnation is taken
  /// to remove the known one only if that index is below the entry's: an incarnation that had
  /// applied the entry or a later one is a replacement added since, not the member removed.
  /// Format 5.
  std::map<uint64_t, uint64_t> known_peer_since;
  /// The log index of the last membership entry (or snapshot) whose table `members` records:
  /// a restart replays the entries up to it without acting on them again (format 3; 0 before).
  uint64_t membership_index = 0;
  /// A data dir `lockd restore` made: the backup's SHA-256 (hex); empty otherwise. While the
  /// cluster id is undecided such a data dir needs its restore seed to start.
  std::string restored_from = {};
  /// Started with --join and no membership applied yet: a restart joins again (it must not
  /// bootstrap nor refuse to start because its log has a term but no membership). Format 4.
  bool joining = false;
  /// Members removed from the cluster, oldest first, at most kMaxRemovedMembers. Format 4.
  std::vector<RemovedMember> removed;

  bool operator==(const ClusterIdentity&) const = default;
};

/// The bootstrap id of a cluster bootstrapped from `members` with `token` (16 hex digits). It is
/// what format-1 files used as their cluster id.
std::string DeriveBootstrapId(const std::string& token, const std::vector<MemberSpec>& members);
/// 128 random bits from the OS's generator, as 32 hex digits (a cluster id or an incarnation).
std::string NewRandomId();

/// The identity recorded in `data_dir`, nullopt when none is (a new node), or an error naming
/// the damage.
Result<std::optional<ClusterIdentity>> LoadClusterIdentity(const std::string& data_dir);
/// Records the identity durably.
Status SaveClusterIdentity(const std::string& data_dir, const ClusterIdentity& identity);

std::string EncodeClusterIdentity(const ClusterIdentity& identity);
Result<ClusterIdentity> DecodeClusterIdentity(const std::string& text);

// The Raft log entry that decides the cluster id: a normal entry whose first byte is 0, a
// command format version the lock state machine never writes and refuses (lock::Decode), so the
// replica intercepts it before the state machine and the two can never be mistaken for each other.
std::string EncodeClusterIdEntry(const std::string& cluster_id);
bool IsClusterIdEntry(std::string_view data);
/// The id an entry for which IsClusterIdEntry holds carries, or why it cannot be read.
Result<std::string> DecodeClusterIdEntry(std::string_view data);

/// The identity file of a running node, shared by the peer transport (Hello checks), the replica
/// (the cluster id's decision) and the node runtime. Every change is written durably before it
/// takes effect. Owned by Node; thread-safe.
class IdentityStore {
 public:
  /// Runs once, when the cluster id gets decided (on the deciding thread, store lock not held).
  using DecidedListener = std::function<void(const std::string& cluster_id)>;

  IdentityStore(std::string data_dir, ClusterIdentity recorded);

  /// Set before anything may decide (before the transport and the replica start).
  void SetDecidedListener(DecidedListener listener);

  std::string cluster_id() const;  ///< empty while not yet decided
  bool decided() const { return !cluster_id().empty(); }
  const std::string& bootstrap_id() const { return bootstrap_id_; }
  const std::string& incarnation() const { return incarnation_; }
  ClusterIdentity Recorded() const;

  /// Takes `cluster_id` as this cluster's if none is decided yet: recorded durably, then the
  /// listener runs. True when this call decided it; false when an id was decided already (the
  /// first decision wins; a later one is ignored).
  Result<bool> Decide(const std::string& cluster_id);

  /// Trust on first use: OK when `peer` presents the incarnation this node knows it by, or when
  /// it presents its first one (recorded durably before this returns). Another incarnation is
  /// FAILED_PRECONDITION with the message an operator needs (the member was wiped or replaced;
  /// how to replace it). A peer the member table does not name counts in no quorum this node
  /// reckons: its incarnation is kept in memory only (nothing any Hello says can grow the
  /// identity file), replaced by the next one it presents, at most kMaxOutsidePeers of them
  /// (RESOURCE_EXHAUSTED past that); SetMembers makes it durable once the table names it.
  /// `peer_membership_index`: the index of the membership the peer applied (its Hello; 0 when
  /// unknown): an outside record is forgotten once this node applied that far and its table
  /// still does not name the peer.
  Status CheckPeer(uint64_t peer, const std::string& incarnation,
                   uint64_t peer_membership_index = 0);

  /// Why `peer` refuses this node (empty: it accepts us again), for the answer clients get while
  /// the cluster id is not decided.
  void NotePeerRefusal(uint64_t peer, std::string why);
  /// UNAVAILABLE's message while the cluster id is not decided: says to retry, and names the
  /// peers that refuse this node and why.
  std::string UndecidedReason() const;

  /// A peer refused this node because it knows this node's id under another incarnation: this
  /// data dir replaced a member's (wiped, or a new disk). From then on the node takes no part in
  /// Raft — no new message out (what was queued before still goes out on a live stream: no vote,
  /// as a node refuses votes for E_min after it starts), none in, no snapshot — so a peer that
  /// never saw the old incarnation (it lagged, or was down) cannot win an election or commit
  /// with this node's help.
  void MarkReplaced(const std::string& why);
  /// Why this node takes no part (empty while it may).
  std::string replaced_reason() const;
  /// Whether it takes no part (cheap: read per batch of peer messages).
  bool replaced() const { return replaced_flag_.load(std::memory_order_acquire); }
  /// Whether `peer` is known here under an incarnation other than `incarnation`.
  bool KnowsAnotherIncarnation(uint64_t peer, const std::string& incarnation) const;
  /// Whether this node has an incarnation for `peer` (trust on first use, durable or in memory):
  /// false for a member that never talked to this node since it was added (for Status).
  bool KnowsIncarnationOf(uint64_t peer) const;

  // --- the member table (member_table.h): decided by the log, recorded here ---
  std::vector<MemberSpec> members() const;
  /// Whether `id` is in the member table, or this node is joining (it has applied no
  /// membership yet and knows only the members it asked when it started).
  bool IsMember(uint64_t id) const;
  /// Whether the member table names `id` (joining or not).
  bool Names(uint64_t id) const;
  /// Whether a peer presenting `id` (and this cluster's id) may talk to this node, given the
  /// index of the last membership entry the peer applied (its Hello says): a member of the
  /// table, anyone while this node is joining, or — only if the peer applied a later membership
  /// entry than this node (it knows a table that names it: a leader added after the entry this
  /// node applied) — an id not removed before its incarnation was known. An id outside the table
  /// that knows no later one was removed or was never added (a wiped data dir started with
  /// bootstrap flags, a joiner not added yet, a stray process): refused. A removed incarnation is
  /// refused by WasRemoved; a member removed under an unknown incarnation never applied its
  /// removal, so it is never ahead either.
  bool Admits(uint64_t id, uint64_t peer_membership_index) const;
  /// Whether `id` was removed under any incarnation (for the refusal's message).
  bool WasRemovedId(uint64_t id) const;
  /// The client address of member `id`, empty when it is not a member.
  std::string ClientAddr(uint64_t id) const;
  /// Records the table the membership entry (or snapshot) at `index` led to; `removed` left the
  /// cluster under the incarnation given (empty: the one this node knows, else unknown). Their
  /// incarnations are forgotten as known peers (a new node may join under the same id later)
  /// and recorded as removed. Peers the table names take their in-memory incarnation into the
  /// file; recorded peers it does not name move to memory. `names_self`: the table names this
  /// node, which clears the joining flag (an older entry met while catching up does not).
  Status SetMembers(std::vector<MemberSpec> members, const std::vector<RemovedMember>& removed,
                    uint64_t index, bool names_self);
  /// Merges removals a peer of this cluster applied (from its Hello): learnt before this node
  /// applies them itself, so a catching-up node admits a replacement under a removed id.
  Status NoteRemoved(const std::vector<RemovedMember>& removed);
  /// The removed list (for the Hello).
  std::vector<RemovedMember> removed_members() const;
  /// The index SetMembers last recorded (ClusterIdentity::membership_index).
  uint64_t membership_index() const;
  /// The member table (encoded) that came with the leader's snapshot at `index`, for the
  /// replica to take when it installs that snapshot.
  void NoteSnapshotMembers(uint64_t index, std::string encoded);
  /// The table noted for `index` (empty when none), forgetting it.
  std::string TakeSnapshotMembers(uint64_t index);
  /// Whether `id` under `incarnation` was removed (the persisted removed list, also across
  /// restarts); a new data dir under the same id is not the removed member.
  bool WasRemoved(uint64_t id, const std::string& incarnation) const;
  void SetJoining(bool joining) { joining_.store(joining, std::memory_order_release); }
  /// The Raft membership names this node although no member table naming it was recorded (a
  /// snapshot that came without a readable table): it is no joiner any more, durably.
  Status EndJoining();
  bool joining() const { return joining_.load(std::memory_order_acquire); }

  /// This node was removed from the cluster: the data dir is marked (a restart refuses to
  /// start) and, as for a replaced node, it takes no part in Raft from now on.
  void MarkRemoved(const std::string& why);
  /// Why this node was removed (empty while it is a member).
  std::string removed_reason() const;
  /// The removal mark of a data dir (empty when it has none).
  static std::string RemovedMark(const std::string& data_dir);

 private:
  const std::string data_dir_;
  const std::string bootstrap_id_;
  const std::string incarnation_;

  mutable std::mutex mu_;  ///< guards what follows; held across the file write (rare: once per
                           ///< peer and once per cluster), so two changes never race on disk
  ClusterIdentity recorded_;
  DecidedListener listener_;
  std::map<uint64_t, std::string> refusals_;
  /// Peers outside the member table (CheckPeer), at most kMaxOutsidePeers: the incarnation
  /// accepted and the membership index the peer had applied then.
  struct OutsidePeer {
    std::string incarnation;
    uint64_t membership_index = 0;
  };
  std::map<uint64_t, OutsidePeer> outside_peers_;
  /// Moves `id`'s durable records of peers its table does not name into `outside` (the caller
  /// bounds it).
  static void MoveOutsideRecords(ClusterIdentity& id, std::map<uint64_t, OutsidePeer>& outside);
  std::string replaced_;  ///< MarkReplaced's reason
  std::string removed_;   ///< MarkRemoved's reason
  std::atomic<bool> joining_{false};
  std::pair<uint64_t, std::string> snapshot_members_;  ///< (index, encoded table)
  std::atomic<bool> replaced_flag_{false};
};

}  // namespace lockd::server
