// lockctl's exit codes: the one table scripts rely on (docs/cli.md, `lockctl --help`). Every
// command maps the cluster's answer through ExitCodeFor, so the same gRPC code always gives the
// same exit code whichever command met it.
#pragma once

#include <grpcpp/support/status.h>

#include <ostream>

#include "lockd/status.h"

namespace lockd::cli {

enum ExitCode : int {
  kExitOk = 0,
  kExitNotFound = 1,     ///< not acquired, unknown lease/lock, nothing to release, too few events
  kExitUsage = 2,        ///< bad arguments, a confirmation refused or impossible, a file in the way
  kExitRefused = 3,      ///< the cluster refused the request as asked (see ExitCodeFor)
  kExitUnavailable = 4,  ///< no answer in time: no leader, no quorum, unreachable, a deadline
  kExitFailed = 5,       ///< an internal error on either side, or a local I/O failure
  kExitLockLost = 6,     ///< `acquire` or `run` lost the lock while holding it
  kExitCannotExec = 126,  ///< `run`: the command exists but cannot be executed
  kExitNoCommand = 127,   ///< `run`: the command was not found
};

/// The exit code for a call that ended with `code` (kExitOk for OK).
ExitCode ExitCodeFor(client::StatusCode code);
inline ExitCode ExitCodeFor(grpc::StatusCode code) {
  return ExitCodeFor(static_cast<client::StatusCode>(code));
}

/// Prints "lockctl: CODE: message" on `err` and returns the exit code for it.
int ReportError(std::ostream& err, const grpc::Status& s);
int ReportError(std::ostream& err, const client::Status& s);

/// The table, for `lockctl --help`'s footer.
const char* ExitCodeTable();

}  // namespace lockd::cli
