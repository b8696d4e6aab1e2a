// lockctl's commands that change what others hold or who leads: `locks release` (an operator's
// force-release), `leases revoke`, `leader transfer`. The first two ask for confirmation on a
// terminal unless --yes, and refuse (kExitUsage) without --yes when stdin is not a terminal, so a
// script never blocks on a question nobody sees.
#pragma once

#include <cstdint>
#include <istream>
#include <string>

#include "cli/commands.h"

namespace lockd::cli {

/// Where a confirmation comes from: `yes` (--yes), or a line read from `in` when `terminal`.
struct Confirmation {
  bool yes = false;
  bool terminal = false;
  std::istream* in = nullptr;
};

/// For a change to the cluster that scripts make as a matter of course (member add and remove,
/// leader transfer, snapshot): asks on a terminal ("Go ahead? [y/N]") unless --yes; off a
/// terminal it goes ahead, so scripts such as deploy/kubernetes/lockd-start.sh need no --yes.
/// kExitOk to go ahead; kExitUsage (printed why) when the answer is not yes.
int ConfirmOnTerminal(const CommandContext& c, const Confirmation& confirm,
                      const std::string& what);

/// ClusterService.ForceRelease of `name` (every holder, or only lease `lease_id`'s grant), with
/// `reason` recorded in the log. kExitNotFound when nobody (or not that lease) held it.
int RunLocksRelease(const CommandContext& c, const std::string& name, uint64_t lease_id,
                    const std::string& reason, const Confirmation& confirm);

/// RevokeLease of `lease_id`: its locks are released and its waits dropped at once.
int RunLeasesRevoke(const CommandContext& c, uint64_t lease_id, const Confirmation& confirm);

/// ClusterService.TransferLeadership to voter `to` (0: the most caught-up other voter).
int RunLeaderTransfer(const CommandContext& c, uint64_t to);

}  // namespace lockd::cli
