#include "cli/watch.h"

#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <mutex>
#include <thread>

#include "cli/exit_codes.h"
#include "cli/format.h"
#include "lockd/v1/lockd.grpc.pb.h"

namespace lockd::cli {

namespace pb = lockd::v1;
using Clock = std::chrono::steady_clock;

namespace {

/// How long lockctl keeps trying when no endpoint serves the watch.
constexpr std::chrono::seconds kGiveUpAfter{30};

bool IsAfter(const pb::WatchPosition& a, const pb::WatchPosition& b) {
  return a.index() > b.index() || (a.index() == b.index() && a.event() > b.event());
}

/// "912.2"; "912.all" for the anchor that counts the whole entry as seen.
std::string Position(const pb::WatchPosition& p) {
  return std::to_string(p.index()) + "." +
         (p.event() == UINT32_MAX ? std::string("all") : std::to_string(p.event()));
}

std::string EventLine(const pb::LockEvent& e) {
  char line[1024];
  std::snprintf(line, sizeof line, "%-14s %-9s %-24s %8llu  %-9s %10llu %10llu\n",
                Position(e.position()).c_str(), pb::LockEvent::Type_Name(e.type()).c_str(),
                e.name().c_str(), static_cast<unsigned long long>(e.lease_id()), ModeName(e.mode()),
                static_cast<unsigned long long>(e.token()),
                static_cast<unsigned long long>(e.fence()));
  return line;
}

/// Stops the watch from another thread: a signal, or the caller. Cancels the call in flight.
class Stopper {
 public:
  void Watch(grpc::ClientContext* ctx) {
    std::lock_guard lock(mu_);
    ctx_ = ctx;
    if (stopped_) ctx_->TryCancel();
  }
  void Unwatch() {
    std::lock_guard lock(mu_);
    ctx_ = nullptr;
  }
  void Stop() {
    std::lock_guard lock(mu_);
    stopped_ = true;
    if (ctx_) ctx_->TryCancel();
  }
  bool stopped() {
    std::lock_guard lock(mu_);
    return stopped_;
  }

 private:
  std::mutex mu_;  ///< guards both: the signal thread and the watch thread
  grpc::ClientContext* ctx_ = nullptr;
  bool stopped_ = false;
};

}  // namespace

int RunLocksWatch(const CommandContext& c, const WatchArgs& a) {
  const std::optional<Clock::time_point> deadline =
      a.duration ? std::optional(Clock::now() + *a.duration) : std::nullopt;
  Stopper stopper;
  std::atomic<bool> finished{false};
  std::thread signals([&] {
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    const timespec poll{0, 100'000'000};
    while (!finished.load()) {
      if (sigtimedwait(&stop, nullptr, &poll) > 0) {
        stopper.Stop();
        return;
      }
    }
  });

  if (!c.json) {
    char header[256];
    std::snprintf(header, sizeof header, "%-14s %-9s %-24s %8s  %-9s %10s %10s\n", "POSITION",
                  "TYPE", "NAME", "LEASE", "MODE", "TOKEN", "FENCE");
    c.out << header;
    c.out.flush();
  }
  std::optional<pb::WatchPosition> last;
  uint64_t seen = 0;
  size_t next = 0;
  auto serving_since = Clock::now();  // when a stream last delivered, or the start
  grpc::Status failing;               // why the last attempt failed; OK once a node answered
  int failures = 0;                   // in a row, for the back-off
  int code = kExitOk;
  while (true) {
    if (stopper.stopped()) break;
    if (deadline && Clock::now() >= *deadline) {
      // No node serving the watch at the end is "unavailable"; too few events from a cluster
      // that answered is "not found".
      if (!failing.ok()) {
        code = ReportError(c.err, failing);
      } else if (a.count && seen < a.count) {
        code = kExitNotFound;
      }
      break;
    }
    const std::string endpoint = c.endpoints[next % c.endpoints.size()];
    auto channel = c.Channel(endpoint);
    grpc::Status s;
    if (!last) {
      // Anchor at what this node has applied, so a failure before the first event loses
      // nothing either: a resume replays everything after it.
      auto cluster = pb::ClusterService::NewStub(channel);
      grpc::ClientContext sctx;
      sctx.set_deadline(std::chrono::system_clock::now() + c.timeout);
      pb::StatusResponse st;
      s = cluster->Status(&sctx, pb::StatusRequest(), &st);
      if (s.ok()) {
        failing = grpc::Status::OK;
        pb::WatchPosition p;
        p.set_cluster_id(st.cluster_id());
        p.set_index(st.applied_index());
        p.set_event(UINT32_MAX);  // every event of that entry is already history
        last = p;
      }
    }
    bool count_reached = false;
    if (s.ok()) {
      auto stub = pb::LockService::NewStub(channel);
      grpc::ClientContext ctx;
      if (deadline) {
        ctx.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::duration_cast<std::chrono::system_clock::duration>(
                             *deadline - Clock::now()));
      }
      pb::WatchRequest req;
      if (a.prefix) {
        req.set_prefix(a.target);
      } else {
        req.set_name(a.target);
      }
      *req.mutable_after() = *last;
      c.err << "lockctl: watching " << (a.prefix ? "prefix '" : "'") << a.target << "' on "
            << endpoint << " after " << Position(*last) << "\n";
      c.err.flush();
      stopper.Watch(&ctx);
      auto reader = stub->Watch(&ctx, req);
      pb::WatchResponse resp;
      while (!count_reached && reader->Read(&resp)) {
        serving_since = Clock::now();
        failing = grpc::Status::OK;
        failures = 0;
        for (const auto& e : resp.events()) {
          if (!IsAfter(e.position(), *last)) continue;  // never print one twice
          c.out << (c.json ? ToJson(e) : EventLine(e));
          *last = e.position();
          if (a.count && ++seen >= a.count) {
            count_reached = true;
            break;
          }
        }
        c.out.flush();
      }
      if (count_reached) ctx.TryCancel();
      s = reader->Finish();
      stopper.Unwatch();
    }
    if (count_reached) break;
    if (stopper.stopped() || (deadline && Clock::now() >= *deadline)) continue;
    if (!s.ok()) failing = s;
    const bool lagging_node =
        s.error_code() == grpc::StatusCode::OUT_OF_RANGE &&
        s.error_message().find("ahead of this node's applied index") != std::string::npos;
    const ExitCode mapped = ExitCodeFor(s.error_code());
    if (!s.ok() && !lagging_node && s.error_code() != grpc::StatusCode::RESOURCE_EXHAUSTED &&
        (mapped == kExitRefused || mapped == kExitNotFound)) {
      code = ReportError(c.err, s);  // asking again will not help: history gone, bad name
      break;
    }
    if (Clock::now() - serving_since > kGiveUpAfter) {
      c.err << "lockctl: no endpoint served the watch for " << kGiveUpAfter.count() << " s\n";
      code = ReportError(c.err, s);
      break;
    }
    ++next;
    c.err << "lockctl: watch on " << endpoint << " ended ("
          << (s.ok() ? std::string("stream closed") : s.error_message()) << "); resuming"
          << (last ? " after " + Position(*last) : std::string()) << " on "
          << c.endpoints[next % c.endpoints.size()] << "\n";
    // Fail over at once; back off (up to 1 s) only while no endpoint answers.
    std::this_thread::sleep_for(
        std::chrono::milliseconds(std::min(1000, 100 << std::min(failures++, 4))));
  }
  finished = true;
  signals.join();
  return code;
}

}  // namespace lockd::cli
