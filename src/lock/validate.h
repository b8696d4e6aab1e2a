// Validation of client input against the configured limits. The server calls these before it
// proposes anything (bad input never reaches the log); the state machine calls them again at
// apply, so that a command from an older or misbehaving proposer changes nothing either.
#pragma once

#include <string_view>

#include "base/status.h"
#include "lock/types.h"

namespace lockd::lock {

/// A lock name: valid UTF-8, no NUL, 1..max_name_bytes bytes.
Status ValidateName(std::string_view name, const Limits& limits);
Status ValidateTtl(uint64_t ttl_ms, const Limits& limits);
Status ValidateLabel(std::string_view label, const Limits& limits);
Status ValidateWait(uint64_t wait_ms, const Limits& limits);
/// A request header: a client id, a sequence number > 0, an attempt > 0, watermark <= seq.
Status ValidateHeader(const RequestHeader& h);

/// Whether `s` is well-formed UTF-8 (no overlong forms, no surrogates, at most U+10FFFF).
bool IsValidUtf8(std::string_view s);

}  // namespace lockd::lock
