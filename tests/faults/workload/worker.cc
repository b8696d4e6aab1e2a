// The worker role of faults_worker (worker.h).
#include "faults/workload/worker.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <random>
#include <thread>

#include "faults/history/history.h"
#include "faults/workload/resource_client.h"
#include "lockd/client.h"

namespace lockd::faults {

namespace {

using namespace std::chrono_literals;
namespace lc = lockd::client;

BootNs Ns(lc::BootClock::time_point t) {
  return t.time_since_epoch().count();
}

LockMode ModeOf(lc::Mode m) {
  return m == lc::Mode::kShared ? LockMode::kShared : LockMode::kExclusive;
}

/// Errors after which the call surely did not take effect; anything else may have.
bool Definite(const lc::Status& s) {
  switch (s.code()) {
    case lc::StatusCode::kInvalidArgument:
    case lc::StatusCode::kNotFound:
    case lc::StatusCode::kFailedPrecondition:
    case lc::StatusCode::kResourceExhausted:
    case lc::StatusCode::kOutOfRange:
      return true;
    default:
      return false;
  }
}

/// Acquire's errors after which the grant surely was not applied. Not NOT_FOUND: the leader
/// answers it for a grant it did apply when the lease expired in the same pass (GrantAnswer, issue
/// 13), so an inspection may still see that holder until the expiry commits; such an Acquire is
/// indeterminate.
///
/// Nor the client library's own FAILED_PRECONDITION for a grant that arrived after the lease was
/// lost (client.cc: "the grant is being released"): the grant was applied, then released by the
/// library; recorded as a definite failure, a later inspection that saw it would read as a
/// linearizability violation (seen under a 2.4 s fsync stall).
bool AcquireDefinite(const lc::Status& s) {
  if (s.code() == lc::StatusCode::kFailedPrecondition &&
      s.message().find("the grant is being released") != std::string::npos) {
    return false;
  }
  return s.code() != lc::StatusCode::kNotFound && Definite(s);
}

class Worker {
 public:
  Worker(const WorkerOptions& o, std::unique_ptr<lc::Client> client)
      : o_(o), client_(std::move(client)), rng_(o.seed), out_(o.history), resource_(o.resource) {}

  int Run() {
    if (!out_.ok()) {
      std::fprintf(stderr, "faults_worker: cannot open %s\n", o_.history.c_str());
      return 2;
    }
    const auto deadline = std::chrono::steady_clock::now() + o_.duration;
    while (std::chrono::steady_clock::now() < deadline && !StopRequested(o_)) {
      if (!lease_ || !lease_->valid()) {
        lease_.reset();
        auto l = client_->GrantLease(o_.ttl, o_.process_id);
        if (!l.ok()) {
          std::this_thread::sleep_for(100ms);
          continue;
        }
        lease_ = *l;
      }
      const std::string& name = o_.locks[rng_() % o_.locks.size()];
      if (rng_() % 8 == 0) {
        Inspect(name);
      } else {
        Cycle(name);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(rng_() % 20));
    }
    lease_.reset();
    client_.reset();  // revokes what is left
    return 0;
  }

 private:
  Op Begin(OpKind kind, const std::string& name) {
    Op op;
    op.process = o_.process_id;
    op.id = ++next_id_;
    op.kind = kind;
    op.lock = name;
    op.invoke_ns = BootNow();
    return op;
  }
  void End(Op& op) {
    op.complete_ns = BootNow();
    out_.Write(ToJson(op));
  }

  void Inspect(const std::string& name) {
    Op op = Begin(OpKind::kInspect, name);
    auto info = client_->GetLock(name);
    if (info.ok()) {
      op.outcome = Outcome::kOk;
      for (const lc::HolderInfo& h : info->holders) {
        op.holders.push_back({h.lease_id, ModeOf(h.mode), h.token});
      }
    } else {
      op.outcome = Outcome::kInfo;
      op.error = info.status().ToString();
    }
    End(op);
  }

  void Cycle(const std::string& name) {
    lc::LockOptions lo;
    lo.mode = rng_() % 10 < 3 ? lc::Mode::kShared : lc::Mode::kExclusive;
    lo.wait = std::chrono::milliseconds(rng_() % 2 ? 0 : rng_() % 500);
    Op a = Begin(OpKind::kAcquire, name);
    a.mode = ModeOf(lo.mode);
    a.lease = lease_->id();
    auto r = client_->Acquire(name, lease_, lo);
    if (!r.ok()) {
      a.outcome = AcquireDefinite(r.status()) ? Outcome::kFail : Outcome::kInfo;
      a.error = r.status().ToString();
      End(a);
      return;
    }
    lc::Lock lock = std::move(*r);
    if (!lock.acquired()) {
      a.outcome = Outcome::kFail;
      for (uint64_t l : lock.holder_leases()) a.holders.push_back({l, LockMode::kExclusive, 0});
      End(a);
      return;
    }
    a.outcome = Outcome::kOk;
    a.mode = ModeOf(lock.mode());
    a.token = lock.token();
    a.fence = lock.fence();
    a.valid_until_ns = Ns(lock.valid_until());
    End(a);

    // Like a careful client, check the lock before using the resource, then do the work: a
    // think time between the read and the write, with no second check, is where a pause (GC,
    // SIGSTOP) lands and the holder's write arrives after its lease ended. Only the fence can
    // refuse it then, which is what the fencing and no-lost-update checkers look at.
    if (lock.held()) {
      Op rd = Begin(OpKind::kRead, name);
      FillGrant(rd, lock);
      ResourceAnswer ans = resource_.Read(name, lock.fence(), o_.process_id, rd.id);
      Record(rd, ans);
      End(rd);
      if (lock.mode() == lc::Mode::kExclusive && rd.outcome == Outcome::kOk) {
        std::this_thread::sleep_for(std::chrono::milliseconds(rng_() % 60));
        Op inc = Begin(OpKind::kIncrement, name);
        FillGrant(inc, lock);
        inc.value = rd.value + 1;
        ResourceAnswer w = resource_.Write(name, lock.fence(), inc.value, o_.process_id, inc.id);
        Record(inc, w);
        End(inc);
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(rng_() % 10));
    // One cycle in eight holds the lock longer (work done under it, the library renewing
    // meanwhile: --hold-ms, or up to a TTL), so faults land while locks are held: a failover must
    // keep a holder's lease (the new-leader rule; a failover takes longer than the short holds).
    // The other seven leave the worker free to contend for locks others hold.
    if (rng_() % 8 == 0) {
      std::this_thread::sleep_for(
          o_.hold.count() > 0
              ? o_.hold
              : std::chrono::milliseconds(
                    rng_() % static_cast<uint64_t>(std::max<int64_t>(1, o_.ttl.count()))));
    }

    Op rel = Begin(OpKind::kRelease, name);
    FillGrant(rel, lock);
    rel.valid_until_ns = Ns(lock.valid_until());
    const bool held = lock.held();
    lc::Status s = lock.Release();
    if (!held) {
      // Lost before the release (its lease ran out): the library may answer from what it knows.
      rel.outcome = Outcome::kInfo;
      rel.error = "lost before the release: " + lock.lost_reason();
    } else if (s.ok()) {
      rel.outcome = Outcome::kOk;
    } else {
      rel.outcome = Definite(s) ? Outcome::kFail : Outcome::kInfo;
      rel.error = s.ToString();
    }
    End(rel);
  }

  static void FillGrant(Op& op, const lc::Lock& lock) {
    op.mode = ModeOf(lock.mode());
    op.token = lock.token();
    op.fence = lock.fence();
    op.lease = lock.lease_id();
  }

  static void Record(Op& op, const ResourceAnswer& ans) {
    switch (ans.kind) {
      case ResourceAnswer::Kind::kOk:
        op.outcome = Outcome::kOk;
        op.value = ans.value;
        break;
      case ResourceAnswer::Kind::kRejected:
        op.outcome = Outcome::kFail;
        op.error = "rejected: the resource has seen fence " + std::to_string(ans.value);
        break;
      case ResourceAnswer::Kind::kUnknown:
        op.outcome = Outcome::kInfo;
        op.error = ans.error;
        break;
    }
  }

  const WorkerOptions& o_;
  std::unique_ptr<lc::Client> client_;
  std::mt19937_64 rng_;
  JsonLinesWriter out_;
  ResourceClient resource_;
  std::shared_ptr<lc::Lease> lease_;
  uint64_t next_id_ = 0;
};

}  // namespace

bool StopRequested(const WorkerOptions& o) {
  return !o.stop_file.empty() && access(o.stop_file.c_str(), F_OK) == 0;
}

int RunWorker(const WorkerOptions& o) {
  lc::ClientOptions co;
  co.endpoints = o.endpoints;
  co.call_timeout = 3000ms;
  co.log = [&o](const std::string& line) {
    std::fprintf(stderr, "%s: %s\n", o.process_id.c_str(), line.c_str());
  };
  auto client = lc::Client::Connect(co);
  if (!client.ok()) {
    std::fprintf(stderr, "faults_worker: %s\n", client.status().ToString().c_str());
    return 2;
  }
  return Worker(o, std::move(*client)).Run();
}

}  // namespace lockd::faults
