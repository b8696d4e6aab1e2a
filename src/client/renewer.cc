#include "client/renewer.h"

#include <algorithm>
#include <random>

namespace lockd::client {

using namespace std::chrono_literals;

struct Renewer::Stream {
  grpc::ClientContext ctx;
  std::unique_ptr<grpc::ClientReaderWriter<pb::RenewRequest, pb::RenewResponse>> rw;
  size_t endpoint = 0;
  uint64_t generation = 0;
  std::atomic<bool> broken{false};
  std::thread reader;
};

Renewer::Renewer(ClientCore& core) : core_(core) {
  thread_ = std::thread([this] { Loop(); });
}

Renewer::~Renewer() {
  Stop();
}

std::chrono::milliseconds Renewer::AnswerTimeout(std::chrono::milliseconds ttl) {
  return std::clamp<std::chrono::milliseconds>(ttl / 6, 250ms, 2000ms);
}

void Renewer::Add(std::shared_ptr<LeaseCore> lease) {
  {
    std::lock_guard lock(mu_);
    const uint64_t id = lease->id();
    // The grant itself counts as the first renewal: the next one is due a period later.
    Entry e{std::move(lease), {}};
    e.next_due = NextDue(core_.Now(), e.lease->ttl());
    leases_[id] = std::move(e);
    kick_ = true;
  }
  cv_.notify_all();
}

void Renewer::Remove(uint64_t lease_id) {
  std::lock_guard lock(mu_);
  leases_.erase(lease_id);
}

void Renewer::Stop() {
  {
    std::lock_guard lock(mu_);
    if (stop_) return;
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

TimePoint Renewer::NextDue(TimePoint now, std::chrono::milliseconds ttl) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  const auto period = std::chrono::nanoseconds(ttl) / core_.options().renew_divisor;
  // Jitter in [0.8, 1.0] of the period: never later than TTL/divisor, so the margin math holds.
  std::uniform_int_distribution<int64_t> d(period.count() * 8 / 10, period.count());
  return now + std::chrono::nanoseconds(d(rng));
}

std::shared_ptr<Renewer::Stream> Renewer::Open() {
  auto s = std::make_shared<Stream>();
  s->endpoint = core_.PickEndpoint();
  {
    std::lock_guard lock(mu_);
    s->generation = ++generation_;
  }
  // Corked: the constructor returns without waiting for the connection; the first renewal
  // carries the call's start.
  s->ctx.set_initial_metadata_corked(true);
  s->rw = core_.stub(s->endpoint).KeepAlive(&s->ctx);
  s->reader = std::thread([this, s] { ReadLoop(s); });
  return s;
}

void Renewer::Close(std::shared_ptr<Stream> s) {
  if (!s) return;
  s->ctx.TryCancel();
  if (s->reader.joinable()) s->reader.join();
  (void)s->rw->Finish();
}

void Renewer::ReadLoop(std::shared_ptr<Stream> s) {
  pb::RenewResponse r;
  bool first = true;
  while (s->rw->Read(&r)) {
    if (first) {
      core_.ObserveMetadata(s->ctx);  // may lose every lease (cluster id change)
      first = false;
    }
    OnAnswer(r);
  }
  s->broken = true;
  Kick();
}

void Renewer::Kick() {
  {
    std::lock_guard lock(mu_);
    kick_ = true;
  }
  cv_.notify_all();
}

void Renewer::OnAnswer(const pb::RenewResponse& r) {
  std::shared_ptr<LeaseCore> lease;
  {
    std::lock_guard lock(mu_);
    auto it = outstanding_.find(r.seq());
    if (it == outstanding_.end() || it->second.lease_id != r.lease_id()) return;  // not ours
    outstanding_.erase(it);
    auto e = leases_.find(r.lease_id());
    if (e == leases_.end()) return;
    lease = e->second.lease;
    if (r.code() == 0) {
      failovers_in_a_row_ = 0;
    } else if (r.code() != static_cast<int>(grpc::StatusCode::NOT_FOUND)) {
      // This node cannot renew now (no leader, a new leader not ready): go elsewhere at once.
      failover_ = true;
      kick_ = true;
    }
  }
  if (r.code() == static_cast<int>(grpc::StatusCode::NOT_FOUND)) {
    lease->Lose("the cluster no longer knows lease " + std::to_string(lease->id()) + ": " +
                r.message());
    return;
  }
  if (r.code() != 0) {
    cv_.notify_all();
    return;
  }
  std::optional<std::vector<uint64_t>> judged = HeldTokensOf(r);
  const auto answer = lease->Acknowledged(r.seq(), core_.Now(), judged);
  if (answer == LeaseCore::Answer::kApplied && !judged) ProbeHoldings(lease);
}

void Renewer::ProbeHoldings(const std::shared_ptr<LeaseCore>& lease) {
  auto locks = lease->Locks();
  if (locks.empty()) return;
  {
    std::lock_guard lock(mu_);
    if (!probing_.insert(lease->id()).second) return;
  }
  const bool queued = core_.Enqueue([this, lease, locks = std::move(locks)] {
    pb::GetLeaseRequest req;
    req.set_lease_id(lease->id());
    pb::GetLeaseResponse resp;
    const auto& o = core_.options();
    const auto timeout = std::min<std::chrono::milliseconds>(o.call_timeout, lease->ttl() / 3);
    grpc::Status s = core_.Call(&pb::LockService::Stub::GetLease, req, &resp,
                                std::chrono::system_clock::now() + timeout, timeout);
    // NOT_FOUND is the renewals' business (they lose the lease); other errors prove nothing.
    if (s.ok()) {
      lease->JudgeHeldNames(locks, {resp.lease().held().begin(), resp.lease().held().end()});
    }
    std::lock_guard lock(mu_);
    probing_.erase(lease->id());
  });
  if (!queued) {
    std::lock_guard lock(mu_);
    probing_.erase(lease->id());
  }
}

void Renewer::Loop() {
  std::unique_lock lock(mu_);
  while (!stop_) {
    // Losses first, outside the lock: lost callbacks run user code.
    std::vector<std::shared_ptr<LeaseCore>> all;
    for (auto& [_, e] : leases_) all.push_back(e.lease);
    lock.unlock();
    std::vector<uint64_t> lost;
    const TimePoint now = core_.Now();
    for (auto& l : all) {
      if (l->DecideLoss(now)) lost.push_back(l->id());
    }
    for (uint64_t id : lost) core_.ForgetLease(id);
    lock.lock();
    for (uint64_t id : lost) leases_.erase(id);

    // Does the stream have to move?
    bool move = false;
    if (stream_ && (stream_->broken.load() || failover_)) move = true;
    for (auto& [_, s] : outstanding_) {
      if (stream_ && s.stream == stream_->generation && now >= s.answer_by) move = true;
    }
    const bool want_stream = !leases_.empty();
    if (move) {
      // Only after every endpoint failed in a row does the stream wait before moving again,
      // and then briefly: the renewals must go out within the leases' validity.
      const auto pause =
          failovers_in_a_row_ >= static_cast<int>(core_.endpoint_count())
              ? std::min<std::chrono::milliseconds>(core_.Backoff(failovers_in_a_row_), 250ms)
              : 0ms;
      if (now < last_failover_ + pause) move = false;
    }
    if (move || (want_stream && !stream_)) {
      auto old = std::move(stream_);
      const bool was_failover = move;
      if (was_failover) {
        ++failovers_in_a_row_;
        last_failover_ = now;
        failover_ = false;
        // The old stream's renewals will never be answered: forget them; renew everything now.
        outstanding_.clear();
        for (auto& [_, e] : leases_) e.next_due = now;
      }
      lock.unlock();
      if (old) {
        if (was_failover) core_.EndpointFailed(old->endpoint);
        Close(old);
      }
      auto fresh = Open();
      lock.lock();
      stream_ = std::move(fresh);
      continue;
    }

    // Send what is due.
    std::vector<pb::RenewRequest> batch;
    if (stream_) {
      for (auto& [id, e] : leases_) {
        if (now < e.next_due) continue;
        pb::RenewRequest req;
        req.set_lease_id(id);
        req.set_seq(core_.NextRenewSeq());
        e.lease->RenewalSent(req.seq(), now);
        outstanding_[req.seq()] = {id, now, now + AnswerTimeout(e.lease->ttl()),
                                   stream_->generation};
        e.next_due = NextDue(now, e.lease->ttl());
        batch.push_back(std::move(req));
      }
    }
    if (!batch.empty()) {
      lock.unlock();
      for (const auto& req : batch) {
        if (!stream_->rw->Write(req)) {
          stream_->broken = true;
          break;
        }
      }
      lock.lock();
      continue;
    }

    // Sleep until the next thing to do: a renewal due, an answer overdue, a lease's valid_until.
    TimePoint wake = now + 200ms;
    for (auto& [_, e] : leases_) {
      wake = std::min(wake, e.next_due);
      wake = std::min(wake, e.lease->ValidUntil());
    }
    for (auto& [_, s] : outstanding_) wake = std::min(wake, s.answer_by);
    if (!want_stream && stream_) {
      // No lease left: close the stream so an idle client holds no call open.
      auto old = std::move(stream_);
      lock.unlock();
      Close(old);
      lock.lock();
      continue;
    }
    const auto sleep = std::clamp<std::chrono::nanoseconds>(wake - now, 1ms, 200ms);
    cv_.wait_for(lock, sleep, [&] { return stop_ || kick_; });
    kick_ = false;
  }
  auto last = std::move(stream_);
  lock.unlock();
  Close(last);
}

}  // namespace lockd::client
