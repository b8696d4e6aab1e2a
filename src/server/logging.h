// The daemon's log lines: every line names the node and its current Raft term, as text or as one
// JSON object per line (--log-format json) for log pipelines.
//
//   text: [2026-12-06 08:08:37.898] [info] [node 3 term 2] leader is 1
//   json: {"ts":"2026-12-06T08:08:37.898Z","level":"info","node":3,"term":2,"msg":"leader is 1"}
//
// Text timestamps are local time, JSON ones UTC. The term is the one the node's replica last
// published (SetLogTerm, as it handles each batch of Raft output), 0 before the first.
#pragma once

#include <spdlog/formatter.h>

#include <cstdint>
#include <memory>
#include <string>

#include "base/status.h"

namespace lockd::server {

/// "text" or "json"; anything else is INVALID_ARGUMENT naming the choices.
Status ValidateLogFormat(const std::string& format);
/// The formatter of that format (tests install it on a logger of their own).
std::unique_ptr<spdlog::formatter> MakeLogFormatter(uint64_t node_id, const std::string& format);
/// Installs the format on spdlog's default logger (the daemon calls it once, at start).
void ConfigureLogging(uint64_t node_id, const std::string& format);
/// The term every following line shows.
void SetLogTerm(uint64_t term);

}  // namespace lockd::server
