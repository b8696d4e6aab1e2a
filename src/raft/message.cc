#include "raft/message.h"

#include <string>

namespace lockd::raft {

const char* TypeName(MessageType t) {
  static constexpr const char* kNames[] = {
      "?",   "PreVote", "PreVoteResp", "Vote",          "VoteResp",
      "App", "AppResp", "Heartbeat",   "HeartbeatResp", "TimeoutNow"};
  const auto i = static_cast<uint8_t>(t);
  return i <= kMaxMessageType ? kNames[i] : "?";
}

Status ValidateMessage(const Message& m) {
  if (m.version > kFormatVersion) {
    return FailedPrecondition("message format " + std::to_string(m.version) +
                              " is newer than this build's " + std::to_string(kFormatVersion));
  }
  const auto type = static_cast<uint8_t>(m.type);
  if (type == 0 || type > kMaxMessageType) {
    return InvalidArgument("unknown message type " + std::to_string(type));
  }
  if (m.from.zero() || m.to.zero() || m.from == m.to) {
    return InvalidArgument("message from " + std::to_string(m.from.value()) + " to " +
                           std::to_string(m.to.value()));
  }
  if (m.type != MessageType::kApp) {
    if (!m.entries.empty()) return InvalidArgument(std::string(TypeName(m.type)) + " with entries");
    return Status::Ok();
  }
  LogIndex expect = m.index.next();
  Term last = m.log_term;
  if (last > m.term) return InvalidArgument("append whose previous entry is of a later term");
  for (const Entry& e : m.entries) {
    if (e.index != expect) {
      return InvalidArgument("append entries not contiguous at " + std::to_string(e.index.value()));
    }
    if (e.term < last || e.term > m.term) {
      return InvalidArgument("append entry " + std::to_string(e.index.value()) + " has term " +
                             std::to_string(e.term.value()) + " out of order");
    }
    if (static_cast<uint8_t>(e.type) > static_cast<uint8_t>(EntryType::kConfChange)) {
      return InvalidArgument("append entry of unknown type");
    }
    last = e.term;
    expect = expect.next();
  }
  return Status::Ok();
}

}  // namespace lockd::raft
