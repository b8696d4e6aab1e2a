#include "server/member_table.h"

#include <algorithm>
#include <set>

#include "base/codec.h"
#include "base/host_port.h"

namespace lockd::server {
namespace {
/// 1: the members. 2: then the removed member's incarnation.
constexpr uint8_t kTableVersion = 2;

struct DecodedTable {
  std::vector<MemberSpec> members;
  std::string removed_incarnation;
};

Result<DecodedTable> Decode(std::string_view data);
}  // namespace

Status ValidMemberAddr(const std::string& addr) {
  // ParseHostPort checks the host's characters and the port.
  if (auto hp = ParseHostPort(addr); !hp.ok()) return hp.status();
  return Status::Ok();
}

std::string EncodeMemberTable(const std::vector<MemberSpec>& members,
                              const std::string& removed_incarnation) {
  Writer w;
  w.U8(kTableVersion);
  w.Varint(members.size());
  for (const auto& m : members) {
    w.Varint(m.id);
    w.Bytes(m.peer_addr);
    w.Bytes(m.client_addr);
  }
  w.Bytes(removed_incarnation);
  return w.Take();
}

Result<std::vector<MemberSpec>> DecodeMemberTable(std::string_view data) {
  auto t = Decode(data);
  if (!t.ok()) return t.status();
  return std::move(t->members);
}

Result<std::string> DecodeRemovedIncarnation(std::string_view data) {
  auto t = Decode(data);
  if (!t.ok()) return t.status();
  return std::move(t->removed_incarnation);
}

namespace {

Result<DecodedTable> Decode(std::string_view data) {
  Reader r(data);
  uint8_t version = 0;
  if (!r.U8(&version)) return DataLoss("an empty member table");
  if (version > kTableVersion) {
    return FailedPrecondition("member table format " + std::to_string(version) +
                              " is newer than this lockd's " + std::to_string(kTableVersion) +
                              "; upgrade it");
  }
  uint64_t n = 0;
  // Each member takes at least three bytes: a larger count is damage, not an allocation.
  if (!r.Varint(&n) || n > r.remaining()) return DataLoss("a damaged member table");
  DecodedTable t;
  std::vector<MemberSpec>& members = t.members;
  std::set<uint64_t> ids;
  for (uint64_t i = 0; i < n; ++i) {
    MemberSpec m;
    if (!r.Varint(&m.id) || !r.Bytes(&m.peer_addr) || !r.Bytes(&m.client_addr)) {
      return DataLoss("a truncated member table");
    }
    if (m.id == 0 || !ids.insert(m.id).second) {
      return DataLoss("a member table with id " + std::to_string(m.id) + " twice or zero");
    }
    for (const std::string* addr : {&m.peer_addr, &m.client_addr}) {
      if (Status s = ValidMemberAddr(*addr); !s.ok()) {
        return InvalidArgument("a member table with a bad address for node " +
                               std::to_string(m.id) + ": " + s.message());
      }
    }
    members.push_back(std::move(m));
  }
  if (version >= 2 && !r.Bytes(&t.removed_incarnation)) {
    return DataLoss("a truncated member table");
  }
  if (!r.done()) return DataLoss("trailing bytes after a member table");
  return t;
}

}  // namespace

Result<std::vector<MemberSpec>> MemberTableAfter(const std::vector<MemberSpec>& current,
                                                 const raft::ConfState& target,
                                                 std::string_view context) {
  std::vector<MemberSpec> table = current;
  if (!context.empty()) {
    auto decoded = DecodeMemberTable(context);
    if (!decoded.ok()) return decoded.status();
    table = std::move(decoded).value();
  }
  const std::set<raft::NodeId> members = raft::Members(target);
  std::erase_if(table, [&](const MemberSpec& m) { return !members.count(raft::NodeId(m.id)); });
  std::sort(table.begin(), table.end(),
            [](const MemberSpec& a, const MemberSpec& b) { return a.id < b.id; });
  return table;
}

Status CheckNewMember(const std::vector<MemberSpec>& members, const MemberSpec& candidate) {
  for (const auto& m : members) {
    if (m.id == candidate.id) {
      return FailedPrecondition("node " + std::to_string(m.id) + " is already a member (peer " +
                                m.peer_addr + ", client " + m.client_addr + ")");
    }
    for (const std::string* addr : {&candidate.peer_addr, &candidate.client_addr}) {
      if (*addr == m.peer_addr || *addr == m.client_addr) {
        return FailedPrecondition("address " + *addr + " is already used by node " +
                                  std::to_string(m.id) + "; remove that node first");
      }
    }
  }
  if (candidate.peer_addr == candidate.client_addr) {
    return InvalidArgument("the peer and client addresses must differ");
  }
  return Status::Ok();
}

}  // namespace lockd::server
