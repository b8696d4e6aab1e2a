// `lockctl locks watch [NAME | --prefix P]`: the Watch stream of one lock or a prefix, as table
// lines or JSON lines, followed across node failures: each node serves watches from its own
// apply stream, so when one ends lockctl resumes on the next endpoint after the last position it
// printed (docs/api.md, Watch), and no event is lost or printed twice.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include "cli/commands.h"

namespace lockd::cli {

struct WatchArgs {
  std::string target;  ///< a lock name, or a prefix when `prefix`
  bool prefix = false;
  uint64_t count = 0;  ///< stop after this many events (0: no limit)
  /// Stop after this long (unset: until SIGINT or SIGTERM, which the caller must have blocked).
  std::optional<std::chrono::milliseconds> duration;
};

/// Prints events until stopped: kExitOk on --count events, a signal or the end of `duration`
/// (kExitNotFound if `count` events had not come by then, kExitUnavailable if no node was
/// serving the watch then); the mapped code when the cluster
/// refuses the watch (OUT_OF_RANGE: the history it would resume from is gone) or no endpoint
/// serves it for 30 s.
int RunLocksWatch(const CommandContext& c, const WatchArgs& a);

}  // namespace lockd::cli
