// The wire format of Raft messages between peers: a format version, then every field of Message.
// Decoding checks everything a peer could get wrong before the core sees it (design brief,
// guarantee 9): a newer format version is refused with both versions named, a truncated or
// trailing-garbage frame, an unknown message or entry type, and entries that are not contiguous
// from `index + 1` are errors, never a crash and never a partially understood message.
#pragma once

#include <string>
#include <string_view>

#include "base/status.h"
#include "raft/message.h"

namespace lockd::raft {

std::string EncodeMessage(const Message& m);
Result<Message> DecodeMessage(std::string_view bytes);

}  // namespace lockd::raft
