// faults_worker's three roles (issue 17). Each records what it did as ops (faults/history) on
// CLOCK_BOOTTIME, finds the cluster only through the endpoint list, and stops by its deadline.
//
// - worker: through the client library, repeatedly acquires one of the hot locks (EXCLUSIVE or
//   SHARED, a try or a short wait); an EXCLUSIVE holder does a fenced read-modify-write increment
//   at faults_resource, a SHARED one a fenced read; then releases. Now and then it inspects.
// - watcher: one Watch of the locks' prefix over the raw API, resumed by position on the next
//   endpoint across failovers; grant_seen / release_seen ops, with gaps when history was lost.
// - cleanup: after the workload, inspects every lock until all are free (or the bound passes).
// - keeper: one lease renewed over the raw unary Renew every TTL/3 on schedule, each renewal
//   recorded (keeper.cc; the lease-kept checker).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace grpc {
class Channel;
}

namespace lockd::faults {

struct WorkerOptions {
  std::vector<std::string> endpoints;  ///< host:port of the nodes' client addresses
  std::vector<std::string> locks;      ///< the hot locks
  std::string prefix;                  ///< the watcher watches every lock with this prefix
  std::string resource;                ///< 127.0.0.1:port of faults_resource
  std::string history;                 ///< JSON-lines file the ops are appended to
  std::string process_id;              ///< names this process in the history (and its leases)
  uint64_t seed = 1;
  std::chrono::milliseconds duration{10'000};
  std::chrono::milliseconds ttl{3'000};
  /// When this file exists the process stops as at its deadline ("": only the deadline).
  std::string stop_file;
  /// keeper: waits this long before its first grant (keepers renew out of step).
  std::chrono::milliseconds phase{0};
  /// worker: one cycle in eight holds its lock longer after the work: this long, or (0) a random
  /// time up to a TTL.
  std::chrono::milliseconds hold{0};
};

/// An insecure channel for the raw API (watcher, keeper) that reconnects within a second: gRPC's
/// default backoff grows to 120 s, so a node down for a while, or a slot empty at the start that a
/// replacement fills later, would stay unreachable long after it is back.
std::shared_ptr<grpc::Channel> RawChannel(const std::string& endpoint);

/// Whether o.stop_file exists.
bool StopRequested(const WorkerOptions& o);

int RunWorker(const WorkerOptions& o);
int RunWatcher(const WorkerOptions& o);
int RunCleanup(const WorkerOptions& o);
int RunKeeper(const WorkerOptions& o);

}  // namespace lockd::faults
