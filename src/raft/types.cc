#include "raft/types.h"

#include <ostream>

namespace lockd::raft {

std::ostream& operator<<(std::ostream& os, const Entry& e) {
  return os << "{" << e.term << "/" << e.index << (e.type == EntryType::kConfChange ? " conf" : "")
            << " " << e.data.size() << "B}";
}

std::ostream& operator<<(std::ostream& os, const HardState& hs) {
  return os << "{term=" << hs.term << " vote=" << hs.vote << " commit=" << hs.commit << "}";
}

}  // namespace lockd::raft
