// `lockctl run NAME -- COMMAND...`: the flock(1) / `consul lock` habit for cron jobs. Holds the
// lock (through the client library, which renews its lease) while COMMAND runs, and stops
// COMMAND if the lock is lost, so two copies never run at once on purpose; the resource must
// still check LOCKD_FENCE, since a paused process can outlive its lease.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "cli/commands.h"

namespace lockd::cli {

struct RunArgs {
  AcquireArgs lock;
  /// Between SIGTERM to the command's process group and SIGKILL, once the lock is lost.
  std::chrono::milliseconds grace{5000};
  std::vector<std::string> command;  ///< argv; command[0] is looked up in $PATH
};

/// Acquires, then runs the command in a process group of its own with LOCKD_LOCK, LOCKD_LEASE,
/// LOCKD_TOKEN and LOCKD_FENCE in its environment, releases when it exits, and returns its exit
/// status (128 + N if signal N ended it). If the lock is lost first: SIGTERM to the group, SIGKILL
/// after `grace`, and kExitLockLost. SIGINT, SIGTERM and SIGHUP sent to lockctl are passed on to
/// the group. Before the command starts: the codes of AcquireToHold (1 not acquired, ...), 126 or
/// 127 if it cannot be started. The caller must have blocked SIGINT, SIGTERM, SIGHUP, SIGCHLD and
/// SIGUSR1 in every thread (lockctl's main does).
int RunUnderLock(const CommandContext& c, const RunArgs& a);

}  // namespace lockd::cli
