// Planted bugs for the fault tests (issue 17): `lockd --testing-unsafe-fault=NAME` switches one
// on, so the fault suite can show that its checkers catch the violation it causes. NEVER for
// production: each one breaks a guarantee of DESIGN.md on purpose, and lockd logs a loud warning
// at start when any is set.
//
// Process-wide on purpose: set once by the daemon's main() before any thread starts, read-only
// afterwards, and read at the one guarded branch each fault owns (lease deadlines in
// src/server, the token counter in src/lock), so no option has to be threaded through every
// constructor between the flag and the branch.
#pragma once

#include <string_view>

#include "base/status.h"

namespace lockd::unsafe {

enum class Fault {
  /// A new leader expires leases from the moment it applies its first entry, without giving them
  /// a full TTL first (breaks guarantee 4's new-leader rule).
  kSkipNewLeaderRule,
  /// A grant reuses the last token instead of a larger one (breaks guarantee 2).
  kSkipTokenIncrement,
  /// After a stall, renewals are judged at the pass's start, before the stall rule raises
  /// deadlines (the order before issue 13 fixed it): renewals that arrived during the stall are
  /// refused for a deadline the stall let pass.
  kStallRuleOldOrder,
};

/// Switches on the fault `name`; INVALID_ARGUMENT naming the known ones otherwise.
Status Enable(std::string_view name);

/// Whether `f` is switched on (false unless a test asked for it).
bool Enabled(Fault f);

}  // namespace lockd::unsafe
