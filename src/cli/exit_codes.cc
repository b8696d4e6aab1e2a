#include "cli/exit_codes.h"

namespace lockd::cli {

ExitCode ExitCodeFor(client::StatusCode code) {
  using C = client::StatusCode;
  switch (code) {
    case C::kOk:
      return kExitOk;
    case C::kNotFound:
      return kExitNotFound;
    // The request was understood and answered "no": asking again unchanged will not help.
    case C::kInvalidArgument:
    case C::kFailedPrecondition:
    case C::kPermissionDenied:
    case C::kUnauthenticated:
    case C::kResourceExhausted:
    case C::kAlreadyExists:
    case C::kOutOfRange:
      return kExitRefused;
    // No answer (yet): asking again later may well work.
    case C::kUnavailable:
    case C::kDeadlineExceeded:
    case C::kAborted:
    case C::kCancelled:
      return kExitUnavailable;
    default:  // UNKNOWN, INTERNAL, DATA_LOSS, UNIMPLEMENTED
      return kExitFailed;
  }
}

int ReportError(std::ostream& err, const grpc::Status& s) {
  return ReportError(
      err, client::Status(static_cast<client::StatusCode>(s.error_code()), s.error_message()));
}

int ReportError(std::ostream& err, const client::Status& s) {
  err << "lockctl: " << client::StatusCodeName(s.code()) << ": " << s.message() << "\n";
  return ExitCodeFor(s.code());
}

const char* ExitCodeTable() {
  return "Exit codes (the same for every command):\n"
         "  0    done\n"
         "  1    not acquired, not found (unknown lease, nothing to release), or fewer\n"
         "       events than --count before the watch ended\n"
         "  2    bad arguments, or a confirmation needed (pass --yes when not on a terminal)\n"
         "  3    refused by the cluster: INVALID_ARGUMENT, FAILED_PRECONDITION,\n"
         "       PERMISSION_DENIED, UNAUTHENTICATED, RESOURCE_EXHAUSTED, ALREADY_EXISTS,\n"
         "       OUT_OF_RANGE\n"
         "  4    no answer: UNAVAILABLE, DEADLINE_EXCEEDED, ABORTED, CANCELLED (retry later)\n"
         "  5    internal error (INTERNAL, UNKNOWN, DATA_LOSS, UNIMPLEMENTED) or a local I/O\n"
         "       failure\n"
         "  6    acquire/run: the lock was lost while held (run stops its command first)\n"
         "  run: the command's own exit status (128+N if killed by signal N); 126 it cannot\n"
         "       be executed, 127 not found; codes 1-6 above when lockctl fails first\n"
         "  128+N  acquire/run interrupted by signal N while waiting for the lock\n";
}

}  // namespace lockd::cli
