// kill -9 at random moments: a child process runs the seeded storage workload (appends,
// truncations, snapshots with compaction, installed snapshots) on a data dir and acknowledges each
// durable op with a byte on a pipe; the parent SIGKILLs it after a random number of
// acknowledgements, half the time after a further random delay so the kill lands inside an op.
// The parent then drains the pipe (acknowledgements written before death count), takes the data
// dir's lock (the dead child's flock must be gone), recovers the storage, and checks it holds
// exactly the state after the last acknowledged op or after the one the kill interrupted: every
// acknowledged entry there, the log contiguous, the hard state agreeing with it. The next round
// continues on the same data dir with a new seed. LOCKD_CRASH_POINTS sets the rounds (default
// 200).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <random>
#include <thread>

#include "storage/data_dir.h"
#include "storage/node_storage.h"
#include "support/process.h"
#include "workload.h"

namespace lockd::storage {
namespace {

using testing::Model;

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

/// A child whose fd 3 is the write end of a pipe the parent reads acknowledgements from.
class AckingChild {
 public:
  AckingChild(const std::string& dir, uint64_t seed, const std::string& log_path) {
    int fds[2];
    LOCKD_CHECK(::pipe2(fds, O_CLOEXEC) == 0);
    const std::string seed_arg = std::to_string(seed);  // no allocation after fork
    pid_ = ::fork();
    LOCKD_CHECK(pid_ >= 0);
    if (pid_ == 0) {
      ::dup2(fds[1], 3);  // dup2 clears close-on-exec on the copy
      const int log = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      ::dup2(log, 1);
      ::dup2(log, 2);
      ::execl(STORAGE_CRASH_CHILD, STORAGE_CRASH_CHILD, dir.c_str(), seed_arg.c_str(), nullptr);
      ::_exit(127);
    }
    ::close(fds[1]);
    read_fd_ = fds[0];
  }
  ~AckingChild() {
    if (pid_ > 0) Kill();
    ::close(read_fd_);
  }
  AckingChild(const AckingChild&) = delete;
  AckingChild& operator=(const AckingChild&) = delete;

  /// Reads acknowledgements until there are `n` or the child closes the pipe (or 30 s pass).
  void WaitForAcks(size_t n) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (acks_ < n && !eof_ && std::chrono::steady_clock::now() < deadline) {
      pollfd p{read_fd_, POLLIN, 0};
      if (::poll(&p, 1, 100) > 0) Read();
    }
  }
  /// SIGKILL and reap; then every acknowledgement written before death is read.
  void Kill() {
    ::kill(pid_, SIGKILL);
    int st = 0;
    ::waitpid(pid_, &st, 0);
    pid_ = -1;
    while (!eof_) Read();
  }
  size_t acks() const { return acks_; }

 private:
  void Read() {
    char buf[4096];
    const ssize_t n = ::read(read_fd_, buf, sizeof buf);
    if (n > 0) acks_ += static_cast<size_t>(n);
    if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) eof_ = true;
  }

  pid_t pid_ = -1;
  int read_fd_ = -1;
  size_t acks_ = 0;
  bool eof_ = false;
};

TEST(Kill9, EveryAcknowledgedOpSurvivesAndNoneIsHalfApplied) {
  const char* env = std::getenv("LOCKD_CRASH_POINTS");
  const int rounds = env && *env ? std::atoi(env) : 200;
  lockd::testing::TempDir tmp;
  const std::string dir = tmp.path() + "/node";
  const std::string log = tmp.path() + "/children.log";
  std::mt19937_64 rng(20261124);
  Model model;  // the durable state the next child starts from
  size_t total_acks = 0, landed_unacked = 0;
  for (int round = 1; round <= rounds; ++round) {
    const uint64_t seed = rng();
    const size_t kill_after = 1 + rng() % 60;
    const bool delayed = rng() % 2;
    const auto delay = std::chrono::microseconds(rng() % 3000);
    size_t acks = 0;
    {
      AckingChild child(dir, seed, log);
      child.WaitForAcks(kill_after);
      if (delayed) std::this_thread::sleep_for(delay);
      child.Kill();
      acks = child.acks();
    }
    ASSERT_GT(acks, 0u) << "round " << round << ": the child acknowledged nothing:\n"
                        << ReadAll(log);
    total_acks += acks;
    // Replay the child's ops on the model: the acknowledged ones, then the one it may have been in.
    std::mt19937_64 replay(seed);
    Model acked = model;
    for (size_t i = 0; i < acks; ++i) acked = Apply(acked, NextOp(acked, replay));
    const testing::Op next = NextOp(acked, replay);
    const Model after_next = ApplyInFlight(acked, next);

    auto data_dir = DataDir::Open(dir);
    ASSERT_TRUE(data_dir.ok()) << "round " << round << ": " << data_dir.status().ToString();
    auto storage = NodeStorage::Open(**data_dir);
    ASSERT_TRUE(storage.ok()) << "round " << round << ": " << storage.status().ToString();
    auto got = Model::From(**storage);
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    const std::string diff = Model::Diff(acked, *got);
    if (!diff.empty()) {
      ASSERT_EQ(Model::Diff(after_next, *got), "")
          << "round " << round << " seed " << seed << ", " << acks
          << " acknowledged ops: neither the acknowledged state (" << diff
          << ") nor the state after '" << next.Describe() << "'";
      ++landed_unacked;
    }
    // The log is contiguous from the snapshot and the hard state agrees with it.
    const RaftStore& s = (*storage)->log();
    ASSERT_EQ(got->log.size(), s.LastIndex() - s.Snapshot().index);
    for (size_t k = 0; k < got->log.size(); ++k) ASSERT_EQ(got->log[k].index, s.FirstIndex() + k);
    ASSERT_LE(s.Initial().hard.commit, s.LastIndex());
    ASSERT_GE(s.Initial().hard.commit, s.Snapshot().index);
    model = *got;
  }
  std::printf(
      "kill -9: %d rounds, %zu acknowledged ops checked, %zu kills after an op was durable but "
      "before its acknowledgement; the log ends at %llu\n",
      rounds, total_acks, landed_unacked, static_cast<unsigned long long>(model.last().value()));
}

}  // namespace
}  // namespace lockd::storage
