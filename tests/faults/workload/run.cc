#include "faults/workload/run.h"

#include <signal.h>

#include <algorithm>
#include <fstream>
#include <iterator>
#include <thread>

namespace lockd::faults {

using namespace std::chrono_literals;
using Ms = std::chrono::milliseconds;

namespace {

std::string Contents(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

/// The last complete line of a file (reads at most its last KiB).
std::string LastLine(const std::string& path) {
  std::ifstream in(path, std::ios::ate);
  const std::streamoff size = in.tellg();
  if (size <= 0) return "";
  const std::streamoff from = std::max<std::streamoff>(0, size - 1024);
  std::string tail(static_cast<size_t>(size - from), '\0');
  in.seekg(from);
  in.read(tail.data(), static_cast<std::streamsize>(tail.size()));
  const size_t start = tail.rfind('\n', tail.size() >= 2 ? tail.size() - 2 : 0);
  return tail.substr(start == std::string::npos ? 0 : start + 1);
}

testing::SpawnOptions Tied() {
  testing::SpawnOptions o;
  o.death_signal = SIGKILL;  // a crashed driver takes its client processes with it
  return o;
}

}  // namespace

std::vector<std::string> WorkloadRun::Argv(const std::string& mode, const std::string& id,
                                           Ms duration, uint64_t seed) const {
  return {FAULTS_WORKER_BIN,
          "--mode",
          mode,
          "--endpoints",
          o_.endpoints,
          "--locks",
          std::to_string(o_.locks),
          "--resource",
          resource_addr_,
          "--history",
          History(id),
          "--process-id",
          id,
          "--seed",
          std::to_string(seed),
          "--duration-ms",
          std::to_string(duration.count()),
          "--ttl-ms",
          std::to_string(o_.ttl.count()),
          "--stop-file",
          o_.dir + "/" + (mode == "watcher" ? "stop-watcher" : "stop-workers"),
          "--hold-ms",
          std::to_string(o_.hold.count())};
}

std::unique_ptr<WorkloadRun> WorkloadRun::Start(WorkloadRunOptions options, std::string* error) {
  if (options.events_path.empty()) options.events_path = options.dir + "/faults.jsonl";
  std::unique_ptr<WorkloadRun> run(new WorkloadRun(std::move(options)));
  const WorkloadRunOptions& o = run->o_;
  std::ofstream(o.events_path, std::ios::app).flush();  // exists even when no fault ran

  const int port = testing::FreePorts(1)[0];
  run->resource_addr_ = "127.0.0.1:" + std::to_string(port);
  run->resource_ = std::make_unique<testing::Process>(
      std::vector<std::string>{FAULTS_RESOURCE_BIN, "--port", std::to_string(port), "--log",
                               o.dir + "/resource.jsonl", "--duration-ms",
                               std::to_string((o.workload + 180s).count())},
      o.dir + "/resource.out", Tied());
  // The watcher first: its history must start before the first grant.
  run->watcher_ = std::make_unique<testing::Process>(
      run->Argv("watcher", "watch", o.workload + 8s, o.seed), o.dir + "/watch.out", Tied());
  if (!testing::WaitFor(
          [&] { return Contents(run->History("watch")).find("watch_start") != std::string::npos; },
          30s)) {
    if (error) *error = "the watcher did not start watching: " + run->watcher_->ReadLog();
    return nullptr;
  }
  if (!testing::WaitFor(
          [&] { return run->resource_->ReadLog().find("listening") != std::string::npos; }, 10s)) {
    if (error) *error = "faults_resource did not start: " + run->resource_->ReadLog();
    return nullptr;
  }
  for (int w = 0; w < o.workers; ++w) {
    const std::string id = WorkerName(w);
    run->workers_.push_back(std::make_unique<testing::Process>(
        run->Argv("worker", id, o.workload, o.seed * 31 + static_cast<uint64_t>(w) + 1),
        o.dir + "/" + id + ".out", Tied()));
    run->paused_.push_back(false);
  }
  for (int k = 0; k < o.keepers; ++k) {
    const std::string id = "k" + std::to_string(k);
    // Out of step: keeper k starts k/keepers of a renewal interval later.
    auto argv = run->Argv("keeper", id, o.workload, o.seed);
    argv.push_back("--phase-ms");
    argv.push_back(std::to_string(o.ttl.count() / 3 * k / o.keepers));
    run->keepers_.push_back(
        std::make_unique<testing::Process>(argv, o.dir + "/" + id + ".out", Tied()));
  }
  return run;
}

WorkloadRun::~WorkloadRun() = default;  // each Process SIGKILLs and reaps its child

std::optional<Op> WorkloadRun::LastOp(int w) const {
  const std::string last = LastLine(History(WorkerName(w)));
  std::string error;
  auto obj = ParseJsonObject(last.substr(0, last.find_last_not_of('\n') + 1), &error);
  return obj ? OpFromJson(*obj, &error) : std::nullopt;
}

bool WorkloadRun::WaitUntilMidWork(int w, Ms within) {
  for (const auto until = std::chrono::steady_clock::now() + within;
       std::chrono::steady_clock::now() < until;) {
    const auto op = LastOp(w);
    if (op && op->kind == OpKind::kRead && op->mode == LockMode::kExclusive &&
        op->outcome == Outcome::kOk) {
      return true;
    }
    std::this_thread::sleep_for(1ms);  // the window is tens of ms
  }
  return false;
}

int WorkloadRun::WaitUntilAnyHolds(Ms within, Ms for_at_least) {
  for (const auto until = std::chrono::steady_clock::now() + within;
       std::chrono::steady_clock::now() < until;) {
    for (int w = 0; w < workers(); ++w) {
      const auto op = LastOp(w);
      if (op && op->kind == OpKind::kIncrement && op->outcome == Outcome::kOk &&
          BootNow() - op->complete_ns >= std::chrono::nanoseconds(for_at_least).count()) {
        return w;
      }
    }
    std::this_thread::sleep_for(5ms);
  }
  return -1;
}

void WorkloadRun::PauseWorker(int w) {
  workers_[static_cast<size_t>(w)]->Signal(SIGSTOP);
  paused_[static_cast<size_t>(w)] = true;
}

void WorkloadRun::ResumeWorker(int w) {
  workers_[static_cast<size_t>(w)]->Signal(SIGCONT);
  paused_[static_cast<size_t>(w)] = false;
}

bool WorkloadRun::Verdict::Passed(const std::string& checker) const {
  return check_output.find("[" + checker + "] PASS") != std::string::npos;
}

bool WorkloadRun::Verdict::Failed(const std::string& checker) const {
  return check_output.find("[" + checker + "] FAIL") != std::string::npos;
}

std::vector<std::string> WorkloadRun::Verdict::NotPassed(
    const std::vector<std::string>& checkers) const {
  std::vector<std::string> out;
  for (const std::string& c : checkers) {
    if (!Passed(c)) out.push_back(c);
  }
  return out;
}

void WorkloadRun::KeepRecords(const std::string& dest,
                              const std::vector<std::string>& extra) const {
  testing::RunCommand({"/bin/rm", "-rf", dest}, 60s);
  testing::RunCommand({"/bin/mkdir", "-p", dest}, 60s);
  // The run's own files (not the nodes' data dirs that may share its directory).
  std::vector<std::string> argv = {"/usr/bin/find", o_.dir, "-maxdepth", "1", "-type", "f", "-exec",
                                   "/bin/cp",       "{}",   dest + "/",  ";"};
  testing::RunCommand(argv, 120s);
  if (o_.events_path.rfind(o_.dir + "/", 0) != 0) {
    testing::RunCommand({"/bin/cp", o_.events_path, dest + "/"}, 60s);
  }
  for (const std::string& f : extra) testing::RunCommand({"/bin/cp", f, dest + "/"}, 60s);
}

WorkloadRun::Verdict WorkloadRun::Finish() {
  Verdict v;
  if (finished_) {
    v.problems.push_back("Finish() called twice");
    return v;
  }
  finished_ = true;
  for (int w = 0; w < workers(); ++w) {
    if (paused_[static_cast<size_t>(w)]) ResumeWorker(w);
  }
  // A client process must end by itself, with 0.
  auto ended = [&](const std::string& name, testing::Process& p, Ms within) {
    const auto code = p.Wait(within);
    if (code != std::optional<int>(0)) {
      v.problems.push_back(name + " exited " + (code ? std::to_string(*code) : "(still running)") +
                           ": " + p.ReadLog());
    }
  };
  std::ofstream(o_.dir + "/stop-workers").flush();
  for (int w = 0; w < workers(); ++w) ended(WorkerName(w), *workers_[static_cast<size_t>(w)], 60s);
  for (size_t k = 0; k < keepers_.size(); ++k) ended("k" + std::to_string(k), *keepers_[k], 30s);
  // At once, so the clean-up bound measures the cluster, not this driver's pace.
  testing::Process cleanup(Argv("cleanup", "cleanup", o_.cleanup_bound + 5s, o_.seed),
                           o_.dir + "/cleanup.out", Tied());
  ended("cleanup", cleanup, o_.cleanup_bound + 60s);
  // The watcher outlives the clean-up by a few seconds, so it sees the last releases and
  // expiries, and so every grant made before the last op has reached it (linearizability counts
  // a grant it did not see within --watch-tail-ms of a lock's last op as never made).
  std::this_thread::sleep_for(3s);
  std::ofstream(o_.dir + "/stop-watcher").flush();
  ended("watcher", *watcher_, 60s);
  resource_->Signal(SIGTERM);
  resource_->Wait(10s);

  std::string histories = History("watch") + "," + History("cleanup");
  for (int w = 0; w < workers(); ++w) histories += "," + History(WorkerName(w));
  for (size_t k = 0; k < keepers_.size(); ++k) histories += "," + History("k" + std::to_string(k));
  std::vector<std::string> argv = {FAULTS_CHECK_BIN,
                                   "--history",
                                   histories,
                                   "--resource-log",
                                   o_.dir + "/resource.jsonl",
                                   "--faults",
                                   o_.events_path,
                                   "--cleanup-bound-ms",
                                   std::to_string(o_.cleanup_bound.count()),
                                   "--min-grants-per-lock",
                                   std::to_string(o_.min_grants_per_lock),
                                   "--max-gaps",
                                   std::to_string(o_.max_gaps)};
  // lease-kept holds only where the keepers run (loopback, no network faults): checkers.h.
  if (!keepers_.empty()) argv.insert(argv.end(), {"--renewal-slack-ms", "1000"});
  auto check = testing::RunCommand(argv, 300s);
  v.check_exit = check.exit_code;
  v.check_output = std::move(check.output);
  return v;
}

}  // namespace lockd::faults
