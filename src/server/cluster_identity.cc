#include "server/cluster_identity.h"

#include <fcntl.h>
#include <rocksdb/file_system.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <fstream>
#include <random>
#include <sstream>

#include "base/codec.h"
#include "storage/crc32c.h"
#include "storage/fs_util.h"

namespace lockd::server {

namespace {

constexpr int kVersion = 5;
constexpr const char* kFile = "/cluster";
constexpr const char* kUndecided = "-";  ///< the cluster id field while not decided

bool TableNames(const std::vector<MemberSpec>& members, uint64_t id) {
  return std::any_of(members.begin(), members.end(),
                     [id](const MemberSpec& m) { return m.id == id; });
}

/// The id entry: tag byte 0 (never a lock command's format version), then its own version.
constexpr char kIdEntryTag = '\0';
using std::string_view_literals::operator""sv;
constexpr std::string_view kIdEntryPrefix = "\0lockd-cluster-id 1 "sv;

std::string Hex(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

bool IsHexId(const std::string& s) {
  return !s.empty() && s.size() <= 64 &&
         std::all_of(s.begin(), s.end(), [](char c) { return std::isxdigit(c) != 0; });
}

/// A field of a whitespace-separated line: every byte other than a plain address character is
/// written %XX, so no text a peer or a client sent can split a line or add one. Addresses are
/// validated before they get here (ValidMemberAddr); this keeps the file sound regardless.
std::string EscapeField(const std::string& s) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (std::isalnum(u) || c == '.' || c == '-' || c == '_' || c == ':' || c == '[' || c == ']') {
      out += c;
    } else {
      out += '%';
      out += kHex[u >> 4];
      out += kHex[u & 15];
    }
  }
  return out.empty() ? "%" : out;  // "%" alone: the empty string, still one field
}

std::optional<std::string> UnescapeField(const std::string& s) {
  if (s == "%") return std::string();
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out += s[i];
      continue;
    }
    if (i + 2 >= s.size()) return std::nullopt;
    unsigned v = 0;
    for (size_t k = 1; k <= 2; ++k) {
      const char c = s[i + k];
      if (!std::isxdigit(static_cast<unsigned char>(c))) return std::nullopt;
      v = v * 16 +
          static_cast<unsigned>(std::isdigit(static_cast<unsigned char>(c))
                                    ? c - '0'
                                    : std::tolower(static_cast<unsigned char>(c)) - 'a' + 10);
    }
    out += static_cast<char>(v);
    i += 2;
  }
  return out;
}

}  // namespace

std::string DeriveBootstrapId(const std::string& token, const std::vector<MemberSpec>& members) {
  std::vector<MemberSpec> sorted = members;
  std::sort(sorted.begin(), sorted.end(),
            [](const MemberSpec& a, const MemberSpec& b) { return a.id < b.id; });
  // Unchanged since format 1, whose cluster ids were this value: an upgraded cluster's bootstrap
  // id and cluster id stay equal, and a wiped member of it still recognises its bootstrap.
  std::string key = "lockd-cluster-v1\n" + token + "\n";
  for (const auto& m : sorted) {
    key += std::to_string(m.id) + "=" + m.peer_addr + "/" + m.client_addr + "\n";
  }
  return Hex(Fnv1a64(key));
}

std::string NewRandomId() {
  std::random_device os;  // /dev/urandom on Linux
  std::string id;
  for (int i = 0; i < 2; ++i) id += Hex((uint64_t{os()} << 32) | os());
  return id;
}

std::string EncodeClusterIdentity(const ClusterIdentity& id) {
  std::string body = "lockd-cluster " + std::to_string(kVersion) + "\n";
  body += "cluster-id " + (id.cluster_id.empty() ? std::string(kUndecided) : id.cluster_id) + "\n";
  body += "bootstrap-id " + id.bootstrap_id + "\n";
  body += "incarnation " + id.incarnation + "\n";
  for (const auto& m : id.members) {
    body += "member " + std::to_string(m.id) + " " + EscapeField(m.peer_addr) + " " +
            EscapeField(m.client_addr) + "\n";
  }
  for (const auto& [peer, incarnation] : id.known_peers) {
    body += "known-peer " + std::to_string(peer) + " " + incarnation + "\n";
  }
  for (const auto& [peer, since] : id.known_peer_since) {
    body += "known-peer-since " + std::to_string(peer) + " " + std::to_string(since) + "\n";
  }
  body += "membership-index " + std::to_string(id.membership_index) + "\n";
  if (!id.restored_from.empty()) body += "restored-from " + id.restored_from + "\n";
  if (id.joining) body += "joining 1\n";
  for (const auto& r : id.removed) {
    body += "removed " + std::to_string(r.id) + " " + r.incarnation + "\n";
  }
  return body + "crc32c " + std::to_string(storage::Crc32c(body)) + "\n";
}

Result<ClusterIdentity> DecodeClusterIdentity(const std::string& text) {
  const size_t crc_at = text.rfind("crc32c ");
  if (crc_at == std::string::npos) return DataLoss("cluster identity file has no checksum");
  const std::string body = text.substr(0, crc_at);
  const std::string crc_text = text.substr(crc_at + 7);
  if (std::to_string(storage::Crc32c(body)) + "\n" != crc_text) {
    return DataLoss("cluster identity file fails its checksum (damaged)");
  }
  std::istringstream in(body);
  std::string word;
  int version = 0;
  if (!(in >> word >> version) || word != "lockd-cluster") {
    return DataLoss("cluster identity file does not start with 'lockd-cluster'");
  }
  if (version > kVersion) {
    return FailedPrecondition("cluster identity format " + std::to_string(version) +
                              " is newer than this build's " + std::to_string(kVersion) +
                              "; upgrade lockd");
  }
  ClusterIdentity id;
  if (!(in >> word >> id.cluster_id) || word != "cluster-id" || id.cluster_id.empty()) {
    return DataLoss("cluster identity file has no cluster id");
  }
  if (version == 1) {
    id.bootstrap_id = id.cluster_id;  // format 1 derived its cluster id the bootstrap id's way
  } else {
    if (id.cluster_id == kUndecided) id.cluster_id.clear();
    if (!(in >> word >> id.bootstrap_id) || word != "bootstrap-id" || !IsHexId(id.bootstrap_id)) {
      return DataLoss("cluster identity file has no bootstrap id");
    }
    if (!(in >> word >> id.incarnation) || word != "incarnation" || !IsHexId(id.incarnation)) {
      return DataLoss("cluster identity file has no incarnation");
    }
  }
  while (in >> word) {
    if (word == "member") {
      MemberSpec m;
      std::string peer, client;
      if (!(in >> m.id >> peer >> client) || m.id == 0) {
        return DataLoss("cluster identity file: a malformed member line");
      }
      auto p = UnescapeField(peer);
      auto c = UnescapeField(client);
      if (!p || !c) return DataLoss("cluster identity file: a malformed member address");
      m.peer_addr = std::move(*p);
      m.client_addr = std::move(*c);
      id.members.push_back(std::move(m));
    } else if (word == "known-peer" && version >= 2) {
      uint64_t peer = 0;
      std::string incarnation;
      if (!(in >> peer >> incarnation) || peer == 0 || !IsHexId(incarnation)) {
        return DataLoss("cluster identity file: a malformed known-peer line");
      }
      id.known_peers[peer] = std::move(incarnation);
    } else if (word == "known-peer-since" && version >= 5) {
      uint64_t peer = 0, since = 0;
      if (!(in >> peer >> since) || peer == 0) {
        return DataLoss("cluster identity file: a malformed known-peer-since line");
      }
      id.known_peer_since[peer] = since;
    } else if (word == "membership-index" && version >= 3) {
      if (!(in >> id.membership_index)) {
        return DataLoss("cluster identity file: a malformed membership-index line");
      }
    } else if (word == "restored-from") {
      if (!(in >> id.restored_from) || id.restored_from.size() != 64 ||
          !IsHexId(id.restored_from)) {
        return DataLoss("cluster identity file: a malformed restored-from line");
      }
    } else if (word == "joining" && version >= 4) {
      int flag = 0;
      if (!(in >> flag) || (flag != 0 && flag != 1)) {
        return DataLoss("cluster identity file: a malformed joining line");
      }
      id.joining = flag == 1;
    } else if (word == "removed" && version >= 4) {
      RemovedMember r;
      if (!(in >> r.id >> r.incarnation) || r.id == 0 ||
          (r.incarnation != kUnknownIncarnation && !IsHexId(r.incarnation))) {
        return DataLoss("cluster identity file: a malformed removed line");
      }
      id.removed.push_back(std::move(r));
    } else {
      return DataLoss("cluster identity file: unexpected '" + word + "'");
    }
  }
  if (id.members.empty()) return DataLoss("cluster identity file names no member");
  return id;
}

Result<std::optional<ClusterIdentity>> LoadClusterIdentity(const std::string& data_dir) {
  std::ifstream f(data_dir + kFile, std::ios::binary);
  if (!f) return std::optional<ClusterIdentity>();
  std::stringstream ss;
  ss << f.rdbuf();
  auto id = DecodeClusterIdentity(ss.str());
  if (!id.ok()) {
    return Status(id.status().code(), data_dir + kFile + ": " + id.status().message());
  }
  return std::optional<ClusterIdentity>(std::move(id).value());
}

Status SaveClusterIdentity(const std::string& data_dir, const ClusterIdentity& identity) {
  auto* fs = rocksdb::FileSystem::Default().get();
  const std::string path = data_dir + kFile;
  const std::string tmp = path + ".tmp";
  if (Status s = storage::WriteFileDurably(fs, tmp, EncodeClusterIdentity(identity)); !s.ok()) {
    return s;
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    return Internal("cannot rename " + tmp + " to " + path);
  }
  return storage::SyncDir(fs, data_dir);
}

// --- the cluster id's log entry ---------------------------------------------------------------

std::string EncodeClusterIdEntry(const std::string& cluster_id) {
  return std::string(kIdEntryPrefix) + cluster_id;
}

bool IsClusterIdEntry(std::string_view data) {
  return !data.empty() && data[0] == kIdEntryTag;
}

Result<std::string> DecodeClusterIdEntry(std::string_view data) {
  if (!data.starts_with(kIdEntryPrefix)) {
    return FailedPrecondition(
        "a cluster id entry of an unknown format (written by a newer lockd?); upgrade the node");
  }
  std::string id(data.substr(kIdEntryPrefix.size()));
  if (!IsHexId(id)) return InvalidArgument("a cluster id entry with a malformed id");
  return id;
}

// --- IdentityStore ----------------------------------------------------------------------------

IdentityStore::IdentityStore(std::string data_dir, ClusterIdentity recorded)
    : data_dir_(std::move(data_dir)),
      bootstrap_id_(recorded.bootstrap_id),
      incarnation_(recorded.incarnation),
      recorded_(std::move(recorded)) {
  // Older builds recorded peers outside the table durably: those are in memory from now on (the
  // file loses them at its next write), so they are never taken for a wiped member's.
  MoveOutsideRecords(recorded_, outside_peers_);
  while (outside_peers_.size() > kMaxOutsidePeers) {
    outside_peers_.erase(std::prev(outside_peers_.end()));
  }
}

void IdentityStore::MoveOutsideRecords(ClusterIdentity& id,
                                       std::map<uint64_t, OutsidePeer>& outside) {
  for (auto it = id.known_peers.begin(); it != id.known_peers.end();) {
    const uint64_t peer = it->first;
    if (TableNames(id.members, peer)) {
      ++it;
      continue;
    }
    auto since = id.known_peer_since.find(peer);
    outside.emplace(peer, OutsidePeer{std::move(it->second),
                                      since == id.known_peer_since.end() ? 0 : since->second});
    id.known_peer_since.erase(peer);
    it = id.known_peers.erase(it);
  }
}

void IdentityStore::SetDecidedListener(DecidedListener listener) {
  std::lock_guard lock(mu_);
  listener_ = std::move(listener);
}

std::string IdentityStore::cluster_id() const {
  std::lock_guard lock(mu_);
  return recorded_.cluster_id;
}

ClusterIdentity IdentityStore::Recorded() const {
  std::lock_guard lock(mu_);
  return recorded_;
}

Result<bool> IdentityStore::Decide(const std::string& cluster_id) {
  if (!IsHexId(cluster_id)) return InvalidArgument("malformed cluster id '" + cluster_id + "'");
  DecidedListener listener;
  {
    std::lock_guard lock(mu_);
    if (!recorded_.cluster_id.empty()) return false;
    ClusterIdentity next = recorded_;
    next.cluster_id = cluster_id;
    if (Status s = SaveClusterIdentity(data_dir_, next); !s.ok()) return s;
    recorded_ = std::move(next);
    listener = listener_;
  }
  if (listener) listener(cluster_id);
  return true;
}

Status IdentityStore::CheckPeer(uint64_t peer, const std::string& incarnation,
                                uint64_t peer_membership_index) {
  if (!IsHexId(incarnation)) {
    return InvalidArgument("node " + std::to_string(peer) + " presents a malformed incarnation");
  }
  std::lock_guard lock(mu_);
  const bool in_table = TableNames(recorded_.members, peer);
  if (!in_table) {
    // Outside the table (a member added after the entry this node applied): it counts in no
    // quorum this node reckons, so a new data dir under that id replaces the record rather than
    // being refused, and nothing is written (a Hello must not be able to grow the file).
    if (auto o = outside_peers_.find(peer); o != outside_peers_.end()) {
      o->second = {incarnation, peer_membership_index};
      return Status::Ok();
    }
    if (outside_peers_.size() >= kMaxOutsidePeers) {
      return Status(StatusCode::kResourceExhausted,
                    "this node already tracks " + std::to_string(kMaxOutsidePeers) +
                        " peers outside its member table; node " + std::to_string(peer) +
                        " is refused until this node applies the membership that names it");
    }
    outside_peers_[peer] = {incarnation, peer_membership_index};
    return Status::Ok();
  }
  auto known = recorded_.known_peers.find(peer);
  if (known != recorded_.known_peers.end()) {
    if (known->second == incarnation) return Status::Ok();
    const std::string n = "node " + std::to_string(peer);
    return FailedPrecondition(
        n + " presents data dir incarnation " + incarnation + " but this cluster knows " + n +
        " as incarnation " + known->second +
        ": its data dir was wiped or replaced; a node that lost its data cannot rejoin on its "
        "own (it forgot its log and votes); replace it: remove it and add it back as a new "
        "member, as docs/operations.md \"Replace a member\" says (lockctl member remove " +
        std::to_string(peer) +
        ", then start a node with an empty data dir and --join, and "
        "lockctl member add it)");
  }
  ClusterIdentity next = recorded_;
  next.known_peers[peer] = incarnation;
  if (peer_membership_index > 0) next.known_peer_since[peer] = peer_membership_index;
  if (Status s = SaveClusterIdentity(data_dir_, next); !s.ok()) return s;
  recorded_ = std::move(next);
  return Status::Ok();
}

void IdentityStore::NotePeerRefusal(uint64_t peer, std::string why) {
  std::lock_guard lock(mu_);
  if (why.empty()) {
    refusals_.erase(peer);
  } else {
    refusals_[peer] = std::move(why);
  }
}

void IdentityStore::MarkReplaced(const std::string& why) {
  std::lock_guard lock(mu_);
  if (replaced_.empty()) replaced_ = why;
  replaced_flag_.store(true, std::memory_order_release);
}

std::string IdentityStore::replaced_reason() const {
  std::lock_guard lock(mu_);
  return replaced_;
}

bool IdentityStore::KnowsAnotherIncarnation(uint64_t peer, const std::string& incarnation) const {
  std::lock_guard lock(mu_);
  auto known = recorded_.known_peers.find(peer);
  return known != recorded_.known_peers.end() && known->second != incarnation;
}

bool IdentityStore::KnowsIncarnationOf(uint64_t peer) const {
  std::lock_guard lock(mu_);
  return recorded_.known_peers.contains(peer) || outside_peers_.contains(peer);
}

bool IdentityStore::Names(uint64_t id) const {
  std::lock_guard lock(mu_);
  return TableNames(recorded_.members, id);
}

Status IdentityStore::EndJoining() {
  SetJoining(false);
  std::lock_guard lock(mu_);
  if (!recorded_.joining) return Status::Ok();
  ClusterIdentity next = recorded_;
  next.joining = false;
  if (Status s = SaveClusterIdentity(data_dir_, next); !s.ok()) return s;
  recorded_ = std::move(next);
  return Status::Ok();
}

std::string IdentityStore::UndecidedReason() const {
  std::lock_guard lock(mu_);
  std::string reason = "cluster id not decided yet; retry";
  for (const auto& [peer, why] : refusals_) {
    reason += "; peer " + std::to_string(peer) + " refuses this node: " + why;
  }
  return reason;
}

// --- the member table ---------------------------------------------------------------------------

namespace {
constexpr const char* kRemovedMarkFile = "removed";
}  // namespace

std::vector<MemberSpec> IdentityStore::members() const {
  std::lock_guard lock(mu_);
  return recorded_.members;
}

bool IdentityStore::IsMember(uint64_t id) const {
  return joining() || Names(id);
}

bool IdentityStore::Admits(uint64_t id, uint64_t peer_membership_index) const {
  if (joining()) return true;
  std::lock_guard lock(mu_);
  if (TableNames(recorded_.members, id)) return true;
  // Ahead of this node: it knows a table this node has not reached. A member removed here (under
  // an unknown incarnation too) had not applied its removal, so it is never ahead: one that is,
  // under a removed id, is a replacement added since (review: refusing it left a lagging node
  // unable to follow a replacement that leads).
  return peer_membership_index > recorded_.membership_index;
}

bool IdentityStore::WasRemovedId(uint64_t id) const {
  std::lock_guard lock(mu_);
  return std::any_of(recorded_.removed.begin(), recorded_.removed.end(),
                     [id](const RemovedMember& r) { return r.id == id; });
}

std::string IdentityStore::ClientAddr(uint64_t id) const {
  std::lock_guard lock(mu_);
  for (const auto& m : recorded_.members) {
    if (m.id == id) return m.client_addr;
  }
  return {};
}

uint64_t IdentityStore::membership_index() const {
  std::lock_guard lock(mu_);
  return recorded_.membership_index;
}

namespace {

/// Adds `r` to `list` unless there already, keeping the newest kMaxRemovedMembers; forgets it
/// as a known peer when that is the incarnation known (a new node may take the id later).
void AddRemoved(ClusterIdentity& id, RemovedMember r) {
  if (auto known = id.known_peers.find(r.id);
      known != id.known_peers.end() && known->second == r.incarnation) {
    id.known_peers.erase(known);
    id.known_peer_since.erase(r.id);
  }
  if (std::find(id.removed.begin(), id.removed.end(), r) != id.removed.end()) return;
  id.removed.push_back(std::move(r));
  if (id.removed.size() > kMaxRemovedMembers) {
    id.removed.erase(
        id.removed.begin(),
        id.removed.begin() + static_cast<std::ptrdiff_t>(id.removed.size() - kMaxRemovedMembers));
  }
}

}  // namespace

Status IdentityStore::SetMembers(std::vector<MemberSpec> members,
                                 const std::vector<RemovedMember>& removed, uint64_t index,
                                 bool names_self) {
  std::lock_guard lock(mu_);
  ClusterIdentity next = recorded_;
  next.members = std::move(members);
  next.membership_index = std::max(next.membership_index, index);
  next.joining = next.joining && !names_self;
  std::map<uint64_t, OutsidePeer> outside = outside_peers_;
  for (RemovedMember r : removed) {
    // The removing leader knew no incarnation: the one this node knows is the one removed only if
    // it was accepted from a peer known to have applied a membership before this entry. One that
    // had applied it (or a later one) is a replacement added under the id since — met by a
    // lagging node — and naming it would expel that live member (found by review); so may be one
    // whose index is unknown (0: a joiner's Hello, an older build, a record from before format 5).
    // Those say "unknown": the index rule of Admits still keeps the removed member out.
    if (r.incarnation.empty()) {
      auto known = next.known_peers.find(r.id);
      auto since = next.known_peer_since.find(r.id);
      const bool before =
          since != next.known_peer_since.end() && since->second > 0 && since->second < index;
      r.incarnation = known != next.known_peers.end() && before ? known->second
                                                                : std::string(kUnknownIncarnation);
    }
    // The incarnation the leader names wins over ours: forget ours for the id either way.
    next.known_peers.erase(r.id);
    next.known_peer_since.erase(r.id);
    outside.erase(r.id);
    AddRemoved(next, std::move(r));
  }
  // Durable records for the table's peers only; the rest in memory.
  MoveOutsideRecords(next, outside);
  for (const MemberSpec& m : next.members) {
    if (auto o = outside.find(m.id); o != outside.end()) {
      if (next.known_peers.emplace(m.id, std::move(o->second.incarnation)).second &&
          o->second.membership_index > 0) {
        next.known_peer_since[m.id] = o->second.membership_index;
      }
      outside.erase(o);
    }
  }
  // Applied as far as the peer had when it was accepted, and the table does not name it: it left
  // (or claimed a table it did not have). A record without an index goes at the next table.
  std::erase_if(outside, [&next](const auto& o) {
    return o.second.membership_index <= next.membership_index;
  });
  while (outside.size() > kMaxOutsidePeers) outside.erase(std::prev(outside.end()));
  if (next != recorded_) {
    if (Status s = SaveClusterIdentity(data_dir_, next); !s.ok()) return s;
    recorded_ = std::move(next);
  }
  outside_peers_ = std::move(outside);
  return Status::Ok();
}

Status IdentityStore::NoteRemoved(const std::vector<RemovedMember>& removed) {
  std::lock_guard lock(mu_);
  ClusterIdentity next = recorded_;
  for (const RemovedMember& r : removed) {
    if (r.id == 0 || (r.incarnation != kUnknownIncarnation && !IsHexId(r.incarnation))) {
      return InvalidArgument("a malformed removed member (node " + std::to_string(r.id) + ")");
    }
    // An id removed under an unknown incarnation is settled by this node's own log: the peer
    // may know of a later addition under it that this node has not applied yet, or not.
    if (r.incarnation == kUnknownIncarnation) continue;
    if (auto o = outside_peers_.find(r.id);
        o != outside_peers_.end() && o->second.incarnation == r.incarnation) {
      outside_peers_.erase(o);
    }
    AddRemoved(next, r);
  }
  if (next == recorded_) return Status::Ok();
  if (Status s = SaveClusterIdentity(data_dir_, next); !s.ok()) return s;
  recorded_ = std::move(next);
  return Status::Ok();
}

std::vector<RemovedMember> IdentityStore::removed_members() const {
  std::lock_guard lock(mu_);
  return recorded_.removed;
}

void IdentityStore::NoteSnapshotMembers(uint64_t index, std::string encoded) {
  std::lock_guard lock(mu_);
  snapshot_members_ = {index, std::move(encoded)};
}

std::string IdentityStore::TakeSnapshotMembers(uint64_t index) {
  std::lock_guard lock(mu_);
  if (snapshot_members_.first != index) return {};
  std::string out = std::move(snapshot_members_.second);
  snapshot_members_ = {};
  return out;
}

bool IdentityStore::WasRemoved(uint64_t id, const std::string& incarnation) const {
  std::lock_guard lock(mu_);
  return std::find(recorded_.removed.begin(), recorded_.removed.end(),
                   RemovedMember{id, incarnation}) != recorded_.removed.end();
}

void IdentityStore::MarkRemoved(const std::string& why) {
  {
    std::lock_guard lock(mu_);
    if (!removed_.empty()) return;
    removed_ = why;
    if (replaced_.empty()) replaced_ = why;
  }
  replaced_flag_.store(true, std::memory_order_release);
  // Durable before anything else: the mark is what stops a restart from disturbing the cluster.
  const std::string path = data_dir_ + "/" + kRemovedMarkFile;
  const std::string text = why + "\n";
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  bool ok = fd >= 0 && ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) &&
            ::fsync(fd) == 0;
  if (fd >= 0) ok = ::close(fd) == 0 && ok;
  if (ok) {
    const int dir = ::open(data_dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    ok = dir >= 0 && ::fsync(dir) == 0;
    if (dir >= 0) ::close(dir);
  }
  if (!ok) {
    spdlog::error(
        "cannot write {}: a restart of this data dir will not know it was removed; "
        "do not restart it (docs/operations.md)",
        path);
  }
}

std::string IdentityStore::removed_reason() const {
  std::lock_guard lock(mu_);
  return removed_;
}

std::string IdentityStore::RemovedMark(const std::string& data_dir) {
  std::ifstream in(data_dir + "/" + kRemovedMarkFile);
  if (!in) return {};
  std::string why;
  std::getline(in, why);
  return why.empty() ? std::string("removed from the cluster") : why;
}

}  // namespace lockd::server
