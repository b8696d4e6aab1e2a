// The vocabulary of the Raft core, shared with storage (which persists it) and the node runtime
// (which ships it between peers). Plain values: no behaviour beyond comparison and size.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

#include "base/strong_int.h"

namespace lockd::raft {

using NodeId = StrongInt<struct NodeIdTag>;      ///< 0 means "none".
using Term = StrongInt<struct TermTag>;          ///< 0 is the term before any election.
using LogIndex = StrongInt<struct LogIndexTag>;  ///< 0 is the index before the first entry.

/// Version of the entry and message formats this build writes; a node refuses newer ones.
inline constexpr uint32_t kFormatVersion = 1;

enum class EntryType : uint8_t {
  kNormal = 0,      ///< An application command (opaque bytes) or, if empty, a leader's no-op.
  kConfChange = 1,  ///< A membership change; data is an encoded ConfChange.
};

struct Entry {
  Term term;
  LogIndex index;
  EntryType type = EntryType::kNormal;
  std::string data;

  bool operator==(const Entry&) const = default;
  /// Bytes counted against message and uncommitted-size limits.
  size_t ByteSize() const { return data.size() + 24; }
};

/// What must be durable before any message that depends on it leaves the node.
struct HardState {
  Term term;
  NodeId vote;
  LogIndex commit;

  bool operator==(const HardState&) const = default;
  bool empty() const { return term.zero() && vote.zero() && commit.zero(); }
};

/// The membership in force: voters (and, during a joint change, the outgoing voters) and learners.
struct ConfState {
  std::vector<NodeId> voters;
  std::vector<NodeId> voters_outgoing;  ///< Non-empty only in a joint configuration.
  std::vector<NodeId> learners;
  std::vector<NodeId> learners_next;  ///< Voters of the outgoing config that become learners.
  bool auto_leave = false;

  bool operator==(const ConfState&) const = default;
};

/// What a snapshot covers: everything up to and including (index, term), and the membership then.
struct SnapshotMeta {
  LogIndex index;
  Term term;
  ConfState conf;

  bool operator==(const SnapshotMeta&) const = default;
};

std::ostream& operator<<(std::ostream& os, const Entry& e);
std::ostream& operator<<(std::ostream& os, const HardState& hs);

}  // namespace lockd::raft
