// lockctl snapshot and lockctl backup (docs/operations.md, "Backup and restore"). Exit codes as
// in exit_codes.h.
#pragma once

#include <string>

#include "cli/commands.h"

namespace lockd::cli {

/// Asks the first endpoint that answers to compact its log now; prints the snapshot's index and
/// size. Each node compacts its own log: give one endpoint to choose the node.
int RunSnapshot(const CommandContext& c);

/// Streams a backup from the first endpoint that answers into `path`: written to a temporary
/// name, checked whole (format, SHA-256, the digest the node sent), fsynced and renamed into
/// place, so `path` is either a complete verified backup or not there. An existing `path` is
/// refused unless `overwrite`. `progress`: a line on `c.err` rewritten as bytes arrive (for a
/// terminal), ended before the result is printed.
int RunBackup(const CommandContext& c, const std::string& path, bool overwrite,
              bool progress = false);

}  // namespace lockd::cli
