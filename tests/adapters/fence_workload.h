// The adapter tests' shared pieces: a lockd cluster with the real client library in front of it,
// the GC-pause scenario's worker child process, and the concurrent counter workload.
//
// The workload: `workers` threads, each with its own Client (as separate processes would have),
// take the lock `name` in turn and increment a counter kept in the resource by a fenced read and
// a separate fenced write of read + 1, with random pauses. In a third of its turns a worker reads,
// releases, pauses, and then writes read + 1 and goes on with its old fence, as a holder paused
// past its lease between its read and its write does: half the time paused until the next holder
// has read (so its write must be refused), half the time for a random 0-20 ms (it may come before
// the next holder shows its fence, and then it is admitted: the lock has not been used since).
// Every accepted write is recorded as (value written, fence). If the fence does its job the
// accepted writes wrote 1, 2, ..., N exactly once each (no increment lost to a stale read) and, in
// value order, their fences never decrease (no write below an accepted fence landed).
#pragma once

#include <gtest/gtest.h>
#include <lockd/client.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "e2e/cluster_harness.h"

namespace lockd::adapters_test {

using namespace std::chrono_literals;

/// What a resource answers to one fenced access.
struct Access {
  enum class Outcome { kOk, kRejected, kFailed } outcome = Outcome::kFailed;
  long value = 0;      ///< the counter read, or written
  std::string detail;  ///< the error (code and message)
};

/// One worker's fenced accesses to the counter (its own connection).
class CounterAccess {
 public:
  virtual ~CounterAccess() = default;
  virtual Access Read(const std::string& name, uint64_t fence, const std::string& cluster) = 0;
  virtual Access Write(const std::string& name, uint64_t fence, const std::string& cluster,
                       long value) = 0;
};

struct WorkloadResult {
  int64_t accepted = 0, rejected_reads = 0, rejected_writes = 0, turns = 0, stale_turns = 0;
  std::vector<std::pair<long, uint64_t>> writes;  ///< (value, fence) of every accepted write
  std::vector<std::string> failures;              ///< anything but OK or the documented rejection
  int64_t operations() const { return 2 * accepted + rejected_reads + rejected_writes; }
};

/// A client library Client on every node of `cluster`.
inline std::unique_ptr<client::Client> ConnectClient(e2e::Cluster& cluster) {
  client::ClientOptions options;
  for (int i = 0; i < cluster.size(); ++i) options.endpoints.push_back(cluster.client_addr(i));
  auto c = client::Client::Connect(options);
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  return c.ok() ? std::move(*c) : nullptr;
}

/// Runs the workload until the workers made `target_ops` operations together, or for at most
/// `max_duration` (a loaded machine makes fewer), and returns what it saw.
inline WorkloadResult RunCounterWorkload(
    e2e::Cluster& cluster, const std::string& name, int workers, int64_t target_ops,
    std::chrono::milliseconds max_duration,
    const std::function<std::unique_ptr<CounterAccess>()>& connect) {
  WorkloadResult total;
  std::mutex mu;  // guards total
  const auto deadline = std::chrono::steady_clock::now() + max_duration;
  std::atomic<int64_t> all_ops{0};
  std::atomic<uint64_t> newest_read_fence{0};  // the largest fence a read was admitted with
  std::vector<std::thread> threads;
  for (int w = 0; w < workers; ++w) {
    threads.emplace_back([&, w] {
      WorkloadResult mine;
      std::mt19937 rng(static_cast<unsigned>(w * 7919 + 17));
      auto access = connect();
      auto client = ConnectClient(cluster);
      if (!access || !client) {
        mine.failures.push_back("worker " + std::to_string(w) + ": no connection");
      } else {
        auto lease = client->GrantLease(4s, "counter-" + std::to_string(w));
        if (!lease.ok()) mine.failures.push_back("lease: " + lease.status().ToString());
        const std::string cluster_id = client->cluster_id();
        // A fenced read of the counter; nullopt once the fence was refused (or on a failure).
        auto read = [&](uint64_t fence) -> std::optional<long> {
          ++all_ops;
          const Access r = access->Read(name, fence, cluster_id);
          if (r.outcome == Access::Outcome::kRejected) ++mine.rejected_reads;
          if (r.outcome == Access::Outcome::kFailed) mine.failures.push_back("read: " + r.detail);
          if (r.outcome != Access::Outcome::kOk) return std::nullopt;
          for (uint64_t seen = newest_read_fence.load();
               seen < fence && !newest_read_fence.compare_exchange_weak(seen, fence);) {
          }
          return r.value;
        };
        // A fenced write of `value`; false once the fence was refused (or on a failure).
        auto write = [&](uint64_t fence, long value) {
          ++all_ops;
          const Access w = access->Write(name, fence, cluster_id, value);
          if (w.outcome == Access::Outcome::kRejected) ++mine.rejected_writes;
          if (w.outcome == Access::Outcome::kFailed) mine.failures.push_back("write: " + w.detail);
          if (w.outcome != Access::Outcome::kOk) return false;
          ++mine.accepted;
          mine.writes.emplace_back(value, fence);
          return true;
        };
        auto increment = [&](uint64_t fence) {
          const auto value = read(fence);
          if (!value) return false;
          if (rng() % 8 == 0) std::this_thread::sleep_for(std::chrono::microseconds(rng() % 2000));
          return write(fence, *value + 1);
        };
        while (lease.ok() && std::chrono::steady_clock::now() < deadline &&
               all_ops.load() < target_ops && mine.failures.size() < 5) {
          client::LockOptions wait;
          wait.wait = 2s;  // short: the loop ends soon after the deadline
          auto lock = client->Acquire(name, *lease, wait);
          if (!lock.ok() || !lock->held()) continue;
          ++mine.turns;
          const uint64_t fence = lock->fence();
          const int n = 5 + static_cast<int>(rng() % 30);
          for (int i = 0; i < n && increment(fence); ++i) {
          }
          if (rng() % 3 != 0) {
            (void)lock->Release();
            continue;
          }
          // A holder paused past its lease between its read and its write: the lock moves on
          // (the release stands in for the expiry), and after the pause it writes what it read
          // plus one with its old fence, then goes on with that fence for a few increments.
          ++mine.stale_turns;
          const auto value = read(fence);
          (void)lock->Release();
          if (rng() % 2 == 0) {
            // Paused until the next holder has read (bounded: there may be none).
            testing::WaitFor([&] { return newest_read_fence.load() > fence; }, 2s);
          } else {
            std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 20));
          }
          if (value && write(fence, *value + 1)) {
            for (int i = 0; i < 3 && increment(fence); ++i) {
            }
          }
        }
      }
      std::lock_guard lock(mu);
      total.accepted += mine.accepted;
      total.rejected_reads += mine.rejected_reads;
      total.rejected_writes += mine.rejected_writes;
      total.turns += mine.turns;
      total.stale_turns += mine.stale_turns;
      total.writes.insert(total.writes.end(), mine.writes.begin(), mine.writes.end());
      total.failures.insert(total.failures.end(), mine.failures.begin(), mine.failures.end());
    });
  }
  for (auto& t : threads) t.join();
  return total;
}

/// The workload's invariants against the counter's final value.
inline void CheckCounterWorkload(WorkloadResult r, long final_counter) {
  EXPECT_TRUE(r.failures.empty()) << r.failures.size() << " failures, first: " << r.failures[0];
  EXPECT_EQ(final_counter, r.accepted) << "the counter lost (or gained) increments";
  std::sort(r.writes.begin(), r.writes.end());
  for (size_t i = 0; i < r.writes.size(); ++i) {
    ASSERT_EQ(r.writes[i].first, static_cast<long>(i + 1))
        << "value " << r.writes[i].first << " written by an accepted write out of sequence "
        << "(a write based on a stale read landed)";
    if (i > 0) {
      ASSERT_GE(r.writes[i].second, r.writes[i - 1].second)
          << "write of value " << r.writes[i].first << " with fence " << r.writes[i].second
          << " landed after one with fence " << r.writes[i - 1].second;
    }
  }
  EXPECT_GT(r.turns, 10) << "too few lock turns to mean anything";
  EXPECT_GT(r.rejected_writes, 0) << "no stale write was ever refused";
  std::printf(
      "workload: %lld turns (%lld with a stale tail), %lld operations: %lld increments "
      "accepted, %lld reads and %lld writes refused as stale\n",
      static_cast<long long>(r.turns), static_cast<long long>(r.stale_turns),
      static_cast<long long>(r.operations()), static_cast<long long>(r.accepted),
      static_cast<long long>(r.rejected_reads), static_cast<long long>(r.rejected_writes));
}

/// The GC-pause scenario's paused worker: examples/fencing/fenced_worker as a child process.
/// Starts it, waits until it passed its last "still held" check, and SIGSTOPs it there.
class PausedWorker {
 public:
  PausedWorker(e2e::Cluster& cluster, const std::string& dir, std::vector<std::string> args) {
    std::string endpoints;
    for (int i = 0; i < cluster.size(); ++i) {
      endpoints += (i ? "," : "") + cluster.client_addr(i);
    }
    // In the child's environment only: setenv here would race getenv on live gRPC threads.
    testing::SpawnOptions spawn;
    spawn.env = {"LOCKD_ENDPOINTS=" + endpoints};
    spawn.death_signal = SIGKILL;
    args.insert(args.begin(), FENCED_WORKER);
    process_ = std::make_unique<testing::Process>(args, dir + "/worker-a.log", spawn);
    stopped_ = testing::WaitFor(
                   [&] {
                     return process_->ReadLog().find("withdrawing") != std::string::npos ||
                            !process_->running();
                   },
                   30s) &&
               process_->running();
    if (stopped_) process_->Signal(SIGSTOP);
  }
  ~PausedWorker() {
    if (stopped_) process_->Signal(SIGCONT);
  }
  bool stopped() const { return stopped_; }
  /// Resumes it and waits for its exit; its output.
  std::string ResumeAndFinish() {
    process_->Signal(SIGCONT);
    stopped_ = false;
    const auto code = process_->Wait(30s);
    EXPECT_EQ(code, std::optional<int>(0)) << process_->ReadLog();
    return process_->ReadLog();
  }
  std::string log() const { return process_->ReadLog(); }
  /// The fence it printed ("acquired ..., fence N"); 0 if none.
  uint64_t fence() const {
    const std::string out = process_->ReadLog();
    const auto at = out.find(", fence ");
    return at == std::string::npos ? 0 : std::stoull(out.substr(at + 8));
  }

 private:
  std::unique_ptr<testing::Process> process_;
  bool stopped_ = false;
};

}  // namespace lockd::adapters_test
