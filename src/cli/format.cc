#include "cli/format.h"

#include <google/protobuf/util/json_util.h>

#include "cli/table.h"

namespace lockd::cli {

namespace pb = lockd::v1;

std::string ToJson(const google::protobuf::Message& m) {
  google::protobuf::util::JsonPrintOptions o;
  o.always_print_primitive_fields = true;
  o.always_print_enums_as_ints = false;
  o.preserve_proto_field_names = true;
  std::string out;
  (void)google::protobuf::util::MessageToJsonString(m, &out, o);
  return out + "\n";
}

const char* ModeName(pb::LockMode mode) {
  switch (mode) {
    case pb::EXCLUSIVE:
      return "exclusive";
    case pb::SHARED:
      return "shared";
    default:
      return "?";
  }
}

const char* RoleName(pb::Member::Role r) {
  switch (r) {
    case pb::Member::LEADER:
      return "leader";
    case pb::Member::FOLLOWER:
      return "follower";
    case pb::Member::CANDIDATE:
      return "candidate";
    case pb::Member::LEARNER:
      return "learner";
    default:
      return "?";
  }
}

namespace {

std::string Label(const std::string& l) {
  return l.empty() ? "-" : l;
}

}  // namespace

std::string FormatStatus(const pb::StatusResponse& s, bool json) {
  if (json) return ToJson(s);
  std::string out = "cluster " + s.cluster_id() + "  term " + std::to_string(s.term()) +
                    "  leader " + (s.leader_id() ? std::to_string(s.leader_id()) : "none") +
                    "  commit " + std::to_string(s.commit_index()) + "  applied " +
                    std::to_string(s.applied_index()) + "  tokens " +
                    std::to_string(s.token_counter()) + "  (answered by node " +
                    std::to_string(s.node_id()) + ")\n\n";
  Table t({"ID", "ROLE", "CLIENT", "PEER", "MATCH", "LAG", "REACHABLE", "RECORDED"});
  for (const auto& m : s.members()) {
    t.AddRow({std::to_string(m.id()), RoleName(m.role()), m.client_addr(), m.peer_addr(),
              std::to_string(m.match_index()), std::to_string(m.lag()),
              m.reachable() ? "yes" : "no", m.incarnation_recorded() ? "yes" : "no"});
  }
  return out + t.Render();
}

std::string FormatLock(const pb::LockInfo& lock, bool json) {
  if (json) return ToJson(lock);
  std::string out = "lock " + lock.name() + "\n";
  if (lock.holders().empty()) {
    out += "  free\n";
  } else {
    Table t({"  HOLDER LEASE", "LABEL", "MODE", "TOKEN", "FENCE", "HELD FOR", "LEASE LEFT"});
    for (const auto& h : lock.holders()) {
      t.AddRow({"  " + std::to_string(h.lease_id()), Label(h.lease_label()), ModeName(h.mode()),
                std::to_string(h.token()), std::to_string(h.fence()), HumanDuration(h.held_ms()),
                h.lease_remaining_ms() ? HumanDuration(h.lease_remaining_ms()) : "-"});
    }
    out += t.Render();
  }
  if (!lock.waiters().empty()) {
    Table w({"  #", "WAITER LEASE", "LABEL", "MODE", "WAITED", "WAIT LIMIT"});
    int i = 1;
    for (const auto& x : lock.waiters()) {
      w.AddRow({"  " + std::to_string(i++), std::to_string(x.lease_id()), Label(x.lease_label()),
                ModeName(x.mode()), HumanDuration(x.waited_ms()), HumanDuration(x.wait_ms())});
    }
    out += w.Render();
  }
  return out;
}

std::string FormatLocks(const pb::ListLocksResponse& page, bool json) {
  if (json) return ToJson(page);
  Table t({"NAME", "MODE", "HOLDERS", "WAITERS", "FENCE"});
  for (const auto& l : page.locks()) {
    const bool held = !l.holders().empty();
    t.AddRow({l.name(), held ? ModeName(l.holders(0).mode()) : "free",
              std::to_string(l.holders_size()), std::to_string(l.waiters_size()),
              held ? std::to_string(l.holders(0).fence()) : "-"});
  }
  std::string out = t.Render();
  if (!page.next_page_token().empty())
    out += "(more: --page-token " + page.next_page_token() + ")\n";
  return out;
}

std::string FormatLease(const pb::LeaseInfo& l, bool json) {
  if (json) return ToJson(l);
  std::string out = "lease " + std::to_string(l.lease_id()) + "  label " + Label(l.label()) +
                    "  ttl " + HumanDuration(l.ttl_ms()) + "  left " +
                    (l.remaining_ms() ? HumanDuration(l.remaining_ms()) : "-") + "\n";
  for (const auto& n : l.held()) out += "  holds   " + n + "\n";
  for (const auto& n : l.waiting()) out += "  waits   " + n + "\n";
  return out;
}

std::string FormatLeases(const pb::ListLeasesResponse& page, bool json) {
  if (json) return ToJson(page);
  Table t({"LEASE", "LABEL", "TTL", "LEFT", "HOLDS", "WAITS"});
  for (const auto& l : page.leases()) {
    t.AddRow({std::to_string(l.lease_id()), Label(l.label()), HumanDuration(l.ttl_ms()),
              l.remaining_ms() ? HumanDuration(l.remaining_ms()) : "-",
              std::to_string(l.held_size()), std::to_string(l.waiting_size())});
  }
  std::string out = t.Render();
  if (!page.next_page_token().empty())
    out += "(more: --page-token " + page.next_page_token() + ")\n";
  return out;
}

}  // namespace lockd::cli
