// The watcher and clean-up roles of faults_worker (worker.h).
//
// The watcher uses the raw API because it needs positions (the library's Watch starts from now).
// It starts after the position of the applied index a node reports (so every grant invoked after
// that answer must show up), resumes after the last position it saw on the next endpoint when a
// stream breaks or goes quiet (a paused node sends nothing), and only when every endpoint refuses
// the position as below its kept history does it record a gap and watch from now.
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <mutex>
#include <thread>

#include "faults/history/history.h"
#include "faults/workload/worker.h"
#include "lockd/client.h"
#include "lockd/v1/lockd.grpc.pb.h"

namespace lockd::faults {

namespace {

using namespace std::chrono_literals;
namespace v1 = ::lockd::v1;
namespace lc = lockd::client;

/// A stream with no message for this long is treated as hung (its node paused or cut off).
constexpr auto kQuiet = 3s;

class Watcher {
 public:
  explicit Watcher(const WorkerOptions& o) : o_(o), out_(o.history) {
    for (const std::string& e : o.endpoints) {
      auto channel = RawChannel(e);
      stubs_.push_back(v1::LockService::NewStub(channel));
      cluster_stubs_.push_back(v1::ClusterService::NewStub(channel));
    }
  }

  int Run() {
    if (!out_.ok()) return 2;
    deadline_ = std::chrono::steady_clock::now() + o_.duration;
    if (!Start()) {
      std::fprintf(stderr, "%s: no node gave a starting position\n", o_.process_id.c_str());
      return 1;
    }
    BootNs gap_from = 0;
    // What each endpoint answered on its last visit since the watch last moved on: a gap is
    // declared only when, over one full round, every endpoint either refused the position as
    // below its kept history or could not be reached, and at least one refused. A node that is
    // down (kill -9, partition, pause) must neither stall the watcher forever nor count as having
    // the history.
    std::vector<Answer> answers(stubs_.size(), Answer::kNone);
    while (!Over()) {
      const v1::WatchPosition before = after_;
      const size_t tried = node_;
      grpc::Status s = Stream(tried);
      node_ = (node_ + 1) % stubs_.size();
      const bool moved = after_.index() != before.index() || after_.event() != before.event();
      if (moved) {
        std::fill(answers.begin(), answers.end(), Answer::kNone);
        gap_from = 0;
      }
      const bool refused = s.error_code() == grpc::StatusCode::OUT_OF_RANGE &&
                           s.error_message().find("ahead") == std::string::npos;
      if (refused) {
        answers[tried] = Answer::kRefused;
        if (gap_from == 0) gap_from = last_event_ns_ ? last_event_ns_ : BootNow();
      } else if (!moved) {
        answers[tried] = Answer::kUnreachable;
      }
      if (GapDeclared(answers)) {
        // No reachable node keeps the history after our position: events were lost. Watch from
        // now. The marker carries our last position; the checkers order it after that event.
        std::fill(answers.begin(), answers.end(), Answer::kNone);
        Op gap = Mark("gap");
        gap.invoke_ns = gap_from ? gap_from : BootNow();
        gap.index = after_.index();
        gap.event_no = after_.event();
        has_after_ = false;
        gap_pending_ = gap;
        gap_from = 0;
        continue;
      }
      if (refused) continue;
      std::this_thread::sleep_for(100ms);
    }
    if (gap_pending_) {  // the last stream from now never delivered: the gap lasted to the end
      gap_pending_->complete_ns = BootNow();
      out_.Write(ToJson(*gap_pending_));
    }
    Op end = Mark("watch_end");
    end.complete_ns = end.invoke_ns;
    out_.Write(ToJson(end));
    return 0;
  }

 private:
  /// An endpoint's answer to the watcher's position on its last visit (Run).
  enum class Answer { kNone, kRefused, kUnreachable };

  static bool GapDeclared(const std::vector<Answer>& answers) {
    bool any_refused = false;
    for (Answer a : answers) {
      if (a == Answer::kNone) return false;
      any_refused |= a == Answer::kRefused;
    }
    return any_refused;
  }

  Op Mark(const std::string& event) {
    Op op;
    op.process = o_.process_id;
    op.id = ++next_id_;
    op.kind = OpKind::kReleaseSeen;
    op.event = event;
    op.invoke_ns = BootNow();
    return op;
  }

  /// The position after the applied index some node reports: the history starts there.
  bool Start() {
    while (!Over()) {
      for (size_t i = 0; i < cluster_stubs_.size(); ++i) {
        Op start = Mark("watch_start");
        grpc::ClientContext ctx;
        ctx.set_deadline(std::chrono::system_clock::now() + 2s);
        v1::StatusResponse st;
        if (!cluster_stubs_[i]->Status(&ctx, v1::StatusRequest(), &st).ok() ||
            st.cluster_id().empty()) {
          continue;
        }
        start.complete_ns = BootNow();
        after_.set_cluster_id(st.cluster_id());
        after_.set_index(st.applied_index());
        after_.set_event(UINT32_MAX);  // after every event of that entry
        has_after_ = true;
        node_ = i;
        out_.Write(ToJson(start));
        return true;
      }
      std::this_thread::sleep_for(200ms);
    }
    return false;
  }

  grpc::Status Stream(size_t node) {
    grpc::ClientContext ctx;
    v1::WatchRequest req;
    req.set_prefix(o_.prefix);
    if (has_after_) *req.mutable_after() = after_;
    std::atomic<int64_t> last_msg{BootNow()};
    std::atomic<bool> done{false};
    std::thread monitor([&] {
      while (!done) {
        std::this_thread::sleep_for(100ms);
        const bool quiet = BootNow() - last_msg > std::chrono::nanoseconds(kQuiet).count();
        if (quiet || Over()) {
          ctx.TryCancel();
          return;
        }
      }
    });
    auto reader = stubs_[node]->Watch(&ctx, req);
    v1::WatchResponse resp;
    bool first = true;
    while (reader->Read(&resp)) {
      last_msg = BootNow();
      if (first && gap_pending_) {
        // The new stream from now is open: the gap ends here.
        gap_pending_->complete_ns = BootNow();
        out_.Write(ToJson(*gap_pending_));
        gap_pending_.reset();
      }
      first = false;
      for (const v1::LockEvent& e : resp.events()) Record(e);
    }
    done = true;
    monitor.join();
    return reader->Finish();
  }

  void Record(const v1::LockEvent& e) {
    after_ = e.position();
    has_after_ = true;
    last_event_ns_ = BootNow();
    Op op;
    switch (e.type()) {
      case v1::LockEvent::ACQUIRED:
        op.kind = OpKind::kGrantSeen;
        break;
      case v1::LockEvent::RELEASED:
        op.kind = OpKind::kReleaseSeen, op.event = "released";
        break;
      case v1::LockEvent::EXPIRED:
        op.kind = OpKind::kReleaseSeen, op.event = "expired";
        break;
      default:
        return;  // waits: not needed by the checkers
    }
    op.process = o_.process_id;
    op.id = ++next_id_;
    op.lock = e.name();
    op.mode = e.mode() == v1::SHARED ? LockMode::kShared : LockMode::kExclusive;
    op.lease = e.lease_id();
    op.token = e.token();
    op.fence = e.fence();
    op.index = e.position().index();
    op.event_no = e.position().event();
    op.invoke_ns = op.complete_ns = last_event_ns_;
    out_.Write(ToJson(op));
  }

  const WorkerOptions& o_;
  JsonLinesWriter out_;
  std::vector<std::unique_ptr<v1::LockService::Stub>> stubs_;
  std::vector<std::unique_ptr<v1::ClusterService::Stub>> cluster_stubs_;
  std::chrono::steady_clock::time_point deadline_;
  /// Past the deadline, or asked to stop (--stop-file).
  bool Over() const { return std::chrono::steady_clock::now() >= deadline_ || StopRequested(o_); }
  size_t node_ = 0;
  v1::WatchPosition after_;
  bool has_after_ = false;
  std::optional<Op> gap_pending_;
  BootNs last_event_ns_ = 0;
  uint64_t next_id_ = 0;
};

}  // namespace

std::shared_ptr<grpc::Channel> RawChannel(const std::string& endpoint) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  return grpc::CreateCustomChannel(endpoint, grpc::InsecureChannelCredentials(), args);
}

int RunWatcher(const WorkerOptions& o) {
  return Watcher(o).Run();
}

int RunCleanup(const WorkerOptions& o) {
  JsonLinesWriter out(o.history);
  lc::ClientOptions co;
  co.endpoints = o.endpoints;
  co.call_timeout = 2000ms;
  auto client = lc::Client::Connect(co);
  if (!out.ok() || !client.ok()) return 2;
  const auto deadline = std::chrono::steady_clock::now() + o.duration;
  std::vector<std::string> pending = o.locks;
  uint64_t id = 0;
  while (!pending.empty() && std::chrono::steady_clock::now() < deadline) {
    std::vector<std::string> still;
    for (const std::string& name : pending) {
      Op op;
      op.process = o.process_id;
      op.id = ++id;
      op.kind = OpKind::kInspect;
      op.lock = name;
      op.invoke_ns = BootNow();
      auto info = (*client)->GetLock(name);
      op.complete_ns = BootNow();
      if (info.ok()) {
        op.outcome = Outcome::kOk;
        for (const lc::HolderInfo& h : info->holders) {
          op.holders.push_back(
              {h.lease_id, h.mode == lc::Mode::kShared ? LockMode::kShared : LockMode::kExclusive,
               h.token});
        }
      } else {
        op.outcome = Outcome::kInfo;
        op.error = info.status().ToString();
      }
      out.Write(ToJson(op));
      if (!info.ok() || !op.holders.empty()) still.push_back(name);
    }
    pending = std::move(still);
    if (!pending.empty()) std::this_thread::sleep_for(200ms);
  }
  return pending.empty() ? 0 : 1;
}

}  // namespace lockd::faults
