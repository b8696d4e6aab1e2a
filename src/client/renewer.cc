#include "client/renewer.h"

#include <algorithm>
#include <random>
#include <utility>

#include "base/thread_name.h"

namespace lockd::client {

using namespace std::chrono_literals;

/// One KeepAlive call on gRPC's callback API. Writes are queued (one in flight at a time, as the
/// API requires); every answer and the initial metadata go to the Renewer with their arrival
/// time. A hold keeps the call from finishing (OnDone) while a write may still be started; it is
/// removed once the stream is closed or broken and no write is in flight, so no operation ever
/// starts after OnDone. The object keeps itself alive until OnDone, gRPC's last callback.
class Renewer::Stream final : public grpc::ClientBidiReactor<pb::RenewRequest, pb::RenewResponse> {
 public:
  Stream(Renewer& owner, size_t endpoint, uint64_t generation)
      : owner_(owner), endpoint_(endpoint), generation_(generation) {}

  void Start(const std::shared_ptr<Stream>& self, pb::LockService::Stub& stub) {
    self_ = self;
    last_progress_ = owner_.core_.Now();
    stub.async()->KeepAlive(&ctx_, this);
    AddHold();
    StartRead(&answer_);
    StartCall();
  }
  /// Renewals queued and not yet handed to gRPC, and when a write last completed (or the
  /// stream started): a full queue that makes no progress is a server that stopped reading.
  size_t Backlog() {
    std::lock_guard lock(mu_);
    return writes_.size();
  }
  TimePoint LastProgress() {
    std::lock_guard lock(mu_);
    return last_progress_;
  }
  /// Queues `req`; never blocks. Dropped once the stream is closed or broken. The caller keeps
  /// the queue within queue_limit_for_tests (only the renewal thread sends).
  void Send(pb::RenewRequest req) {
    const pb::RenewRequest* start = nullptr;
    {
      std::lock_guard lock(mu_);
      if (closed_) return;
      writes_.push_back(std::move(req));
      if (!writing_) {
        writing_ = true;
        start = &writes_.front();  // a deque's push_back keeps references to elements valid
        // The stuck rule measures how long this write takes, not how long the stream was idle.
        last_progress_ = owner_.core_.Now();
      }
    }
    // Outside mu_: gRPC may run OnWriteDone on this thread. The hold is still in place: it is
    // removed only when writing_ is false or by OnWriteDone, after this write.
    if (start) StartWrite(start);
  }
  /// Ends the call: no more writes, the hold goes (now or after the write in flight).
  void Close() {
    EndWrites();
    ctx_.TryCancel();
  }
  size_t endpoint() const { return endpoint_; }
  uint64_t generation() const { return generation_; }

  void OnReadInitialMetadataDone(bool ok) override {
    if (!ok) return;
    Arrival a;
    a.generation = generation_;
    a.metadata = true;
    const auto& md = ctx_.GetServerInitialMetadata();
    if (auto it = md.find("lockd-leader"); it != md.end()) {
      a.leader.assign(it->second.data(), it->second.size());
    }
    if (auto it = md.find("lockd-cluster"); it != md.end()) {
      a.cluster.assign(it->second.data(), it->second.size());
    }
    owner_.Deliver(std::move(a));
  }
  void OnReadDone(bool ok) override {
    if (!ok) {  // the call is ending (broken, or cancelled): OnDone follows once the hold goes
      EndWrites();
      return;
    }
    Arrival a;
    a.generation = generation_;
    a.at = owner_.core_.Now();
    a.answer = answer_;
    owner_.Deliver(std::move(a));
    StartRead(&answer_);
  }
  void OnWriteDone(bool ok) override {
    const pb::RenewRequest* next = nullptr;
    bool release = false, was_full = false;
    {
      std::lock_guard lock(mu_);
      was_full = writes_.size() >= queue_limit_for_tests.load();
      writes_.pop_front();
      last_progress_ = owner_.core_.Now();
      if (!ok) closed_ = true;  // a failed write: the call is broken
      if (!closed_ && !writes_.empty()) {
        next = &writes_.front();
      } else {
        writing_ = false;
        release = closed_ && !std::exchange(hold_released_, true);
      }
    }
    if (next) StartWrite(next);
    if (was_full) owner_.Kick();  // renewals waiting for room may go now
    if (release) RemoveHold();
  }
  void OnDone(const grpc::Status&) override {
    // The Renewer destroys the object later, on its own thread: the ClientContext may hold the
    // last reference to the channel, and a channel released on a gRPC callback thread can take
    // gRPC's shared callback completion queue down under itself (seen as an abort in
    // grpc_cq_internal_unref). The last use of this object and of owner_.
    owner_.StreamDone(generation_, std::move(self_));
  }

 private:
  void EndWrites() {
    bool release = false;
    {
      std::lock_guard lock(mu_);
      closed_ = true;
      release = !writing_ && !std::exchange(hold_released_, true);
    }
    if (release) RemoveHold();
  }

  Renewer& owner_;
  const size_t endpoint_;
  const uint64_t generation_;
  grpc::ClientContext ctx_;
  pb::RenewResponse answer_;  ///< only the read in flight touches it
  std::mutex mu_;             ///< guards writes_, writing_, closed_, hold_released_, last_progress_
  std::deque<pb::RenewRequest> writes_;
  TimePoint last_progress_{};
  bool writing_ = false;
  bool closed_ = false;
  bool hold_released_ = false;
  std::shared_ptr<Stream> self_;
};

Renewer::Renewer(ClientCore& core) : core_(core) {
  thread_ = std::thread([this] { Loop(); });
  thread_id_ = thread_.get_id();
}

Renewer::~Renewer() {
  Stop();
}

std::chrono::milliseconds Renewer::AnswerTimeout(std::chrono::milliseconds ttl) {
  if (const int64_t forced = answer_timeout_ms_for_tests.load(); forced > 0) {
    return std::chrono::milliseconds(forced);
  }
  return std::clamp<std::chrono::milliseconds>(ttl / 6, 250ms, 2000ms);
}

void Renewer::Add(std::shared_ptr<LeaseCore> lease, TimePoint anchor) {
  {
    std::lock_guard lock(mu_);
    const uint64_t id = lease->id();
    Drop(id);
    Entry& e = leases_[id];
    e.lease = std::move(lease);
    if (e.lease->renewed()) {
      ++renewed_leases_;
      // The grant counts as the first renewal, sent at the anchor: the next one is due a period
      // after it, not after the answer's arrival (a slow or retried grant at a short TTL would
      // otherwise be lost before its first renewal). Little validity left: renew at once.
      const TimePoint now = core_.Now();
      const auto period = std::chrono::nanoseconds(e.lease->ttl()) / core_.options().renew_divisor;
      TimePoint due = NextDue(anchor, e.lease->ttl());
      if (due <= now || e.lease->ValidUntil() - now < period) due = now;
      ScheduleRenewal(e, id, due);
    }
    ScheduleExpiry(e, id);
    kick_ = true;
  }
  cv_.notify_all();
}

void Renewer::Remove(uint64_t lease_id) {
  std::lock_guard lock(mu_);
  Drop(lease_id);
}

void Renewer::ScheduleRenewal(Entry& e, uint64_t id, TimePoint due) {
  if (e.next_due != TimePoint::max()) due_.erase({e.next_due, id});
  e.next_due = due;
  if (due != TimePoint::max()) due_.insert({due, id});
}

void Renewer::ScheduleExpiry(Entry& e, uint64_t id) {
  expiry_.erase({e.expiry_key, id});
  e.expiry_key = e.lease->ValidUntil();
  expiry_.insert({e.expiry_key, id});
}

void Renewer::Drop(uint64_t id) {
  auto it = leases_.find(id);
  if (it == leases_.end()) return;
  Entry& e = it->second;
  ScheduleRenewal(e, id, TimePoint::max());
  expiry_.erase({e.expiry_key, id});
  if (e.lease->renewed()) --renewed_leases_;
  leases_.erase(it);
}

void Renewer::Answered(std::map<uint64_t, Sent>::iterator it) {
  answer_by_.erase({it->second.answer_by, it->first});
  outstanding_.erase(it);
}

void Renewer::Stop() {
  {
    std::lock_guard lock(mu_);
    if (stop_) return;
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  // The thread closed its stream; every stream's OnDone calls back into this object.
  std::vector<std::shared_ptr<Stream>> finished;
  {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [this] { return live_streams_ == 0; });
    finished.swap(finished_);
  }
  finished.clear();  // here, before the Client lets go of its channels
}

TimePoint Renewer::NextDue(TimePoint from, std::chrono::milliseconds ttl) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  const auto period = std::chrono::nanoseconds(ttl) / core_.options().renew_divisor;
  // Jitter in [0.8, 1.0] of the period: never later than TTL/divisor, so the margin math holds.
  std::uniform_int_distribution<int64_t> d(
      static_cast<int64_t>(static_cast<double>(period.count()) * kJitterLow), period.count());
  return from + std::chrono::nanoseconds(d(rng));
}

std::shared_ptr<Renewer::Stream> Renewer::Open() {
  const size_t endpoint = core_.PickEndpoint();
  uint64_t generation;
  {
    std::lock_guard lock(mu_);
    generation = ++generation_;
    stream_broken_ = false;
    ++live_streams_;
  }
  auto s = std::make_shared<Stream>(*this, endpoint, generation);
  s->Start(s, core_.stub(endpoint));  // returns at once: the call starts in the background
  return s;
}

void Renewer::Deliver(Arrival a) {
  {
    std::lock_guard lock(mu_);
    arrivals_.push_back(std::move(a));
    kick_ = true;
  }
  cv_.notify_all();
}

void Renewer::StreamDone(uint64_t generation, std::shared_ptr<Stream> stream) {
  {
    std::lock_guard lock(mu_);
    if (generation == generation_) stream_broken_ = true;
    finished_.push_back(std::move(stream));
    --live_streams_;
    kick_ = true;
  }
  cv_.notify_all();
}

void Renewer::Kick() {
  {
    std::lock_guard lock(mu_);
    kick_ = true;
  }
  cv_.notify_all();
}

void Renewer::OnAnswer(const pb::RenewResponse& r, TimePoint arrived) {
  std::vector<uint64_t> ids;
  bool stopped_batching = false;
  {
    std::lock_guard lock(mu_);
    auto it = outstanding_.find(r.seq());
    if (it == outstanding_.end() || it->second.lease_ids.front() != r.lease_id()) return;
    ids = std::move(it->second.lease_ids);
    Answered(it);
    if (ids.size() > 1 && static_cast<size_t>(r.more_size()) != ids.size() - 1) {
      const int code = r.code();
      if (code == 0 || code == static_cast<int>(grpc::StatusCode::NOT_FOUND)) {
        // A server that predates batches answered lease_id alone (a current one never answers
        // a whole message OK or NOT_FOUND): one lease per message on this stream; the others
        // go out again at once.
        stopped_batching = std::exchange(batching_, false);
        const TimePoint now = core_.Now();
        for (size_t k = 1; k < ids.size(); ++k) {
          if (auto e = leases_.find(ids[k]); e != leases_.end() && e->second.lease->renewed()) {
            ScheduleRenewal(e->second, ids[k], now);
          }
        }
        ids.resize(1);
      } else {
        // The message was refused as a whole (the node is stopping or was removed; a message
        // too large): it judges no lease. The stream moves and renews them all there; a
        // message too large halves the batches from now on.
        if (code == static_cast<int>(grpc::StatusCode::RESOURCE_EXHAUSTED) ||
            code == static_cast<int>(grpc::StatusCode::INVALID_ARGUMENT)) {
          batch_limit_ = std::max<size_t>(1, batch_limit_ / 2);
        }
        failover_ = true;
        ids.clear();
      }
      kick_ = true;
    }
  }
  if (stopped_batching) {  // outside mu_: the log callback is the user's code
    core_.Log(
        "the server answered a batched renewal for its first lease only (a server that "
        "predates batches): renewing one lease per message on this stream");
  }
  if (ids.empty()) return;
  OnLeaseAnswer(ids.front(), r.seq(), r, arrived);
  for (size_t k = 1; k < ids.size(); ++k) {
    const pb::RenewResponse& m = r.more(static_cast<int>(k - 1));
    if (m.lease_id() == ids[k]) OnLeaseAnswer(ids[k], r.seq(), m, arrived);  // else not ours
  }
}

void Renewer::OnLeaseAnswer(uint64_t id, uint64_t seq, const pb::RenewResponse& r,
                            TimePoint arrived) {
  std::shared_ptr<LeaseCore> lease;
  {
    std::lock_guard lock(mu_);
    auto e = leases_.find(id);
    if (e == leases_.end()) return;
    lease = e->second.lease;
    if (r.code() == 0) {
      failovers_in_a_row_ = 0;
    } else if (r.code() != static_cast<int>(grpc::StatusCode::NOT_FOUND)) {
      // This node cannot renew now (no leader, a new leader not ready): go elsewhere at once.
      failover_ = true;
    }
  }
  if (r.code() == static_cast<int>(grpc::StatusCode::NOT_FOUND)) {
    lease->Lose("the cluster no longer knows lease " + std::to_string(lease->id()) + ": " +
                r.message());
    core_.ForgetLease(lease->id());
    return;
  }
  if (r.code() != 0) return;
  std::optional<std::vector<uint64_t>> judged = HeldTokensOf(r);
  // Judged at its arrival: an answer that came in time counts even if applied a little later.
  const auto answer = lease->Acknowledged(seq, arrived, judged);
  if (answer != LeaseCore::Answer::kApplied) return;
  {
    std::lock_guard lock(mu_);  // valid_until moved: so does the loss check
    if (auto e = leases_.find(lease->id()); e != leases_.end()) ScheduleExpiry(e->second, e->first);
  }
  if (!judged) {
    ProbeHoldings(lease);
    return;
  }
  // A grant no Lock owns and no Release is giving back stays held until the lease dies unless
  // this client releases it (ClientCore::ReleaseUnowned decides which ones, off this thread).
  for (uint64_t token : lease->Unowned(*judged)) {
    if (!core_.ReleasePending(lease->id(), token)) {
      core_.ReleaseUnowned(lease);
      break;
    }
  }
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
                                std::chrono::steady_clock::now() + timeout, timeout);
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

void Renewer::SendDue(TimePoint now) {
  const size_t room = queue_limit_for_tests.load();
  size_t backlog = stream_->Backlog();  // only shrinks meanwhile (this thread alone sends)
  const size_t most =
      batching_ ? std::max<size_t>(1, std::min(batch_limit_, batch_limit_for_tests.load())) : 1;
  while (!due_.empty() && due_.begin()->first <= now && backlog < room) {
    // The renewal due, and every lease due within the window after it (at most a quarter of
    // its renewal period, so a lease is never renewed twice in a row by one pass).
    const auto period = std::chrono::duration_cast<std::chrono::nanoseconds>(
                            leases_.at(due_.begin()->second).lease->ttl()) /
                        core_.options().renew_divisor;
    const TimePoint until = now + std::min<std::chrono::nanoseconds>(kBatchWindow, period / 4);
    pb::RenewRequest req;
    req.set_seq(core_.NextRenewSeq());
    std::vector<uint64_t> taken;  // first, since renewing one reschedules it (a short TTL: soon)
    for (auto it = due_.begin(); it != due_.end() && it->first <= until && taken.size() < most;
         ++it) {
      taken.push_back(it->second);
    }
    std::vector<uint64_t> ids;
    TimePoint answer_by = TimePoint::max();
    for (const uint64_t id : taken) {
      Entry& e = leases_.at(id);
      // No renewal goes out once the loss is decided (by any thread); the lease leaves at its
      // valid_until (expiry_).
      if (!e.lease->RenewalSent(req.seq(), now)) {
        ScheduleRenewal(e, id, TimePoint::max());
        continue;
      }
      ScheduleRenewal(e, id, NextDue(now, e.lease->ttl()));
      answer_by = std::min(answer_by, now + AnswerTimeout(e.lease->ttl()));
      if (ids.empty()) {
        req.set_lease_id(id);
      } else {
        req.add_more_lease_ids(id);
      }
      ids.push_back(id);
    }
    if (ids.empty()) continue;  // every lease taken was lost meanwhile
    if (ids.size() > 1) batched_messages_total.fetch_add(1);
    outstanding_[req.seq()] = {std::move(ids), now, answer_by, stream_->generation()};
    answer_by_.insert({answer_by, req.seq()});
    stream_->Send(std::move(req));
    ++backlog;
  }
}

void Renewer::Loop() {
  NameThisThread(kThreadName);
  std::unique_lock lock(mu_);
  while (!stop_) {
    // Answers first, in arrival order, each judged at its arrival time; then the losses due.
    // Both outside the lock: lost callbacks run user code.
    std::deque<Arrival> arrivals;
    arrivals.swap(arrivals_);
    std::vector<std::shared_ptr<Stream>> finished;  // destroyed below, outside the lock
    finished.swap(finished_);
    const uint64_t current = generation_;
    std::vector<std::shared_ptr<LeaseCore>>
        expiring;  // valid_until passed, unless an answer moves it
    const TimePoint then = core_.Now();
    for (auto it = expiry_.begin(); it != expiry_.end() && it->first <= then; ++it) {
      expiring.push_back(leases_.at(it->second).lease);
    }
    lock.unlock();
    // Headers before answers: a stream's initial metadata and its first answer can reach
    // Deliver from two gRPC threads in either order, and a restored cluster's NOT_FOUND must be
    // judged knowing that the cluster id changed (every lease is lost for that reason).
    for (auto& a : arrivals) {
      if (a.metadata) {
        core_.ObserveHeaders(a.leader, a.cluster);  // may lose every lease (cluster id change)
      }
    }
    for (auto& a : arrivals) {
      if (!a.metadata && a.generation == current) OnAnswer(a.answer, a.at);
    }
    std::vector<uint64_t> lost;
    const TimePoint now = core_.Now();
    for (auto& l : expiring) {
      if (l->DecideLoss(now)) lost.push_back(l->id());
    }
    for (uint64_t id : lost) core_.ForgetLease(id);  // drops it here too (Remove)
    finished.clear();
    lock.lock();
    for (auto& l : expiring) {  // kept: checked again at its (later) valid_until
      if (auto e = leases_.find(l->id()); e != leases_.end()) ScheduleExpiry(e->second, e->first);
    }
    expiring.clear();
    // Answers that came in meanwhile first: an answer already here is not overdue.
    if (!arrivals_.empty()) continue;

    // Does the stream have to move? Renewals of an earlier stream are never answered: forget.
    while (!answer_by_.empty()) {
      auto s = outstanding_.find(answer_by_.begin()->second);
      if (s == outstanding_.end()) {
        answer_by_.erase(answer_by_.begin());
      } else if (!stream_ || s->second.stream != stream_->generation()) {
        Answered(s);
      } else {
        break;
      }
    }
    bool move = false;
    if (stream_ && stream_->Backlog() >= queue_limit_for_tests.load() &&
        now - stream_->LastProgress() >= kStuckAfter) {
      // The server stopped reading (backpressure that never lets go): go elsewhere rather than
      // queue without bound; the renewals waiting go out on the next stream. Judged first: a
      // late wake-up may find a renewal overdue as well, and this is the cause.
      move = true;
      stuck_streams_total.fetch_add(1);
    }
    move = move || (stream_ && (stream_broken_ || failover_ ||
                                (!answer_by_.empty() && now >= answer_by_.begin()->first)));
    const bool want_stream = renewed_leases_ > 0;
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
      if (move) {
        ++failovers_in_a_row_;
        last_failover_ = now;
        failover_ = false;
        batching_ = true;  // the next server may answer batches (an old one costs one round)
        // The old stream's renewals will never be answered: forget them; renew everything now
        // (O(n), once per failover, like the renewals it sends).
        outstanding_.clear();
        answer_by_.clear();
        for (auto& [id, e] : leases_) {
          if (e.lease->renewed()) ScheduleRenewal(e, id, now);
        }
      }
      lock.unlock();
      if (old) {
        if (move) core_.EndpointFailed(old->endpoint());
        old->Close();  // its OnDone comes later, on a gRPC thread; nothing waits for it here
      }
      auto fresh = Open();
      lock.lock();
      stream_ = std::move(fresh);
      continue;
    }
    if (!want_stream && stream_) {
      // No renewed lease left: close the stream so an idle client holds no call open.
      stream_->Close();
      stream_.reset();
    }

    // Send what is due: queued on the stream, never waited for.
    if (stream_) SendDue(now);

    // Sleep until the next thing to do: a renewal due, an answer overdue, a lease's valid_until.
    TimePoint wake = now + 200ms;
    // Renewals waiting for room in a full queue wake the thread as it drains (Stream::Kick), and
    // at the latest when the queue would count as stuck.
    const bool waiting_for_room = stream_ && !due_.empty() && due_.begin()->first <= now;
    if (waiting_for_room) {
      wake = std::min(wake, std::max(now, stream_->LastProgress() + kStuckAfter));
    } else if (!due_.empty()) {
      wake = std::min(wake, due_.begin()->first);
    }
    if (!expiry_.empty()) wake = std::min(wake, expiry_.begin()->first);
    if (!answer_by_.empty()) wake = std::min(wake, answer_by_.begin()->first);
    const auto sleep = std::clamp<std::chrono::nanoseconds>(wake - now, 1ms, 200ms);
    cv_.wait_for(lock, sleep, [&] { return stop_ || kick_; });
    kick_ = false;
  }
  if (stream_) stream_->Close();
  stream_.reset();
}

}  // namespace lockd::client
