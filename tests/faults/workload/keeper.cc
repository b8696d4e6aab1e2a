// The keeper role of faults_worker (worker.h): one lease kept alive over the raw unary Renew, one
// renewal every TTL/3 on schedule whether or not the previous one was answered (a stalled leader
// must see renewals arrive during its stall), each recorded as a `renew` op with its send and
// answer times. CheckLeaseKept (checkers.h) reads them: a renewal refused NOT_FOUND although it
// was sent well before the deadline the lease's earlier acknowledged renewals guarantee means the
// cluster dropped a lease its client kept alive (the stall rule's old ordering does that).
//
// The raw API, not the client library: the library stops renewing once its own valid_until
// passes, and under a stall that always comes before the cluster's refusal, so the refusal the
// checker looks for would never be sent.
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <cstdio>
#include <memory>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "faults/history/history.h"
#include "faults/workload/worker.h"
#include "lockd/v1/lockd.grpc.pb.h"

namespace lockd::faults {

namespace {

using namespace std::chrono_literals;
namespace v1 = ::lockd::v1;

class Keeper {
 public:
  explicit Keeper(const WorkerOptions& o) : o_(o), out_(o.history) {
    for (const std::string& e : o.endpoints) {
      stubs_.push_back(v1::LockService::NewStub(RawChannel(e)));
    }
  }

  int Run() {
    if (!out_.ok()) return 2;
    const auto deadline = std::chrono::steady_clock::now() + o_.duration;
    auto over = [&] { return std::chrono::steady_clock::now() >= deadline || StopRequested(o_); };
    // Keepers started together would renew in step and count as one trial: each starts at its
    // own phase of the renewal interval.
    std::this_thread::sleep_for(o_.phase);
    uint64_t lease = 0;
    while (lease == 0 && !over()) {
      lease = Grant();
      if (lease == 0) std::this_thread::sleep_for(200ms);
    }
    if (lease == 0) {
      std::fprintf(stderr, "%s: no lease granted\n", o_.process_id.c_str());
      return 1;
    }
    struct Inflight {
      std::thread thread;
      std::shared_ptr<std::atomic<bool>> done;
    };
    std::vector<Inflight> inflight;
    const auto interval = Ttl() / 3;
    for (auto next = std::chrono::steady_clock::now() + interval; !over(); next += interval) {
      std::this_thread::sleep_until(next);
      if (refused_.load() == lease) {  // this lease was refused: a fresh one keeps the run checking
        if (uint64_t l = Grant(); l != 0) {
          Revoke(lease);
          lease = l;
        }
      }
      auto done = std::make_shared<std::atomic<bool>>(false);
      inflight.push_back({std::thread([this, lease, done] {
                            Renew(lease);
                            *done = true;
                          }),
                          done});
      // Renewals answered long ago are joined as we go (bounded threads).
      for (auto it = inflight.begin(); it != inflight.end();) {
        if (*it->done) {
          it->thread.join();
          it = inflight.erase(it);
        } else {
          ++it;
        }
      }
    }
    for (auto& f : inflight) f.thread.join();
    Revoke(lease);
    return 0;
  }

 private:
  Op Begin(uint64_t lease) {
    Op op;
    op.process = o_.process_id;
    op.kind = OpKind::kRenew;
    op.lease = lease;
    op.value = Ttl().count();
    op.invoke_ns = BootNow();
    return op;
  }
  void Finish(Op& op, const grpc::Status& s) {
    op.complete_ns = BootNow();
    if (s.ok()) {
      op.outcome = Outcome::kOk;
    } else {
      // NOT_FOUND is the cluster's definite answer that the lease is gone; anything else (a
      // deadline, UNAVAILABLE during an election) may or may not have renewed it.
      op.outcome = s.error_code() == grpc::StatusCode::NOT_FOUND ? Outcome::kFail : Outcome::kInfo;
      op.error = std::to_string(s.error_code()) + ": " + s.error_message();
      if (s.error_code() != grpc::StatusCode::NOT_FOUND) Rotate();
    }
    std::lock_guard lock(mu_);
    op.id = ++next_id_;
    out_.Write(ToJson(op));
  }
  v1::LockService::Stub& Stub() { return *stubs_[node_.load() % stubs_.size()]; }
  void Rotate() { node_.fetch_add(1); }
  /// A mutating call's request id: this process's random client id and the next sequence number.
  void Header(v1::RequestHeader* h) {
    h->mutable_id()->set_client_hi(client_hi_);
    h->mutable_id()->set_client_lo(client_lo_);
    h->mutable_id()->set_seq(++seq_);
    h->set_attempt(1);
  }

  uint64_t Grant() {
    Op op = Begin(0);
    op.event = "grant";
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 3 * o_.ttl);
    v1::GrantLeaseRequest req;
    Header(req.mutable_header());
    req.set_ttl_ms(static_cast<uint64_t>(o_.ttl.count()));
    req.set_label(o_.process_id);
    v1::GrantLeaseResponse resp;
    const grpc::Status s = Stub().GrantLease(&ctx, req, &resp);
    op.lease = s.ok() ? resp.lease_id() : 0;
    if (s.ok()) {
      // The TTL granted (the server may clamp the one asked for) is what the deadlines count.
      ttl_ms_ = static_cast<int64_t>(resp.ttl_ms());
      op.value = ttl_ms_;
    }
    Finish(op, s);
    return op.lease;
  }
  void Renew(uint64_t lease) {
    Op op = Begin(lease);
    grpc::ClientContext ctx;
    // Longer than any stall a test makes (0.8 x TTL per sync, a few in a row): a renewal that
    // waits out a stall is still answered, and so judged.
    ctx.set_deadline(std::chrono::system_clock::now() + 3 * Ttl());
    v1::RenewRequest req;
    req.set_lease_id(lease);
    v1::RenewResponse resp;
    const grpc::Status s = Stub().Renew(&ctx, req, &resp);
    if (s.error_code() == grpc::StatusCode::NOT_FOUND) refused_ = lease;
    Finish(op, s);
  }
  void Revoke(uint64_t lease) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 2s);
    v1::RevokeLeaseRequest req;
    Header(req.mutable_header());
    req.set_lease_id(lease);
    v1::RevokeLeaseResponse resp;
    Stub().RevokeLease(&ctx, req, &resp);
  }

  const WorkerOptions& o_;
  std::vector<std::unique_ptr<v1::LockService::Stub>> stubs_;
  std::atomic<size_t> node_{0};
  /// The lease a renewal was last refused for (a late refusal of an older one changes nothing).
  std::atomic<uint64_t> refused_{0};
  std::chrono::milliseconds Ttl() const { return std::chrono::milliseconds(ttl_ms_.load()); }
  /// The TTL granted (set by Grant; read by the renewal threads).
  std::atomic<int64_t> ttl_ms_{o_.ttl.count()};
  std::mutex mu_;  ///< one line at a time, and the op ids
  JsonLinesWriter out_;
  uint64_t next_id_ = 0;
  const uint64_t client_hi_ = std::random_device{}() | uint64_t{std::random_device{}()} << 32;
  const uint64_t client_lo_ = std::random_device{}() | uint64_t{std::random_device{}()} << 32;
  uint64_t seq_ = 0;  ///< the Run thread's grants and revocations only
};

}  // namespace

int RunKeeper(const WorkerOptions& o) {
  return Keeper(o).Run();
}

}  // namespace lockd::faults
