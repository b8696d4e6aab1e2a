// AcquireAsync on gRPC's callback API: each attempt is a callback-style unary call, the back-off
// between attempts a callback grpc::Alarm, so no thread waits while the Acquire waits in the queue.
#include <grpcpp/alarm.h>

#include <atomic>
#include <mutex>
#include <optional>
#include <vector>

#include "client/acquire.h"

namespace lockd::client {

namespace {

class AsyncAcquire : public std::enable_shared_from_this<AsyncAcquire> {
 public:
  AsyncAcquire(std::shared_ptr<ClientCore> core, AcquireCall c,
               std::function<void(Result<Lock>)> done)
      : core_(std::move(core)), call_(std::move(c)), done_(std::move(done)) {}

  void Start() {
    // The client's shutdown cancels this call and waits for its answer.
    async_id_ = core_->BeginAsync([weak = weak_from_this()] {
      if (auto self = weak.lock()) self->ShutDown();
    });
    if (async_id_ == 0) {
      Finish(grpc::Status(grpc::StatusCode::CANCELLED, kShutDown));
      return;
    }
    // The stop callback runs on the thread that requests the stop; it only cancels, the
    // outcome arrives through the attempt's or the alarm's callback.
    on_stop_.emplace(call_.options.stop, StopHandler{this});
    Send();
  }

 private:
  struct StopHandler {
    AsyncAcquire* self;
    void operator()() const { self->Stopped(); }
  };

  static constexpr const char* kShutDown = "the client shut down";

  void ShutDown() {
    shut_down_ = true;
    Stopped();
  }
  bool StopRequested() const { return shut_down_.load() || call_.options.stop.stop_requested(); }
  grpc::Status StoppedStatus() const {
    return grpc::Status(grpc::StatusCode::CANCELLED,
                        shut_down_.load() ? kShutDown : "the caller's stop_token was signalled");
  }

  void Stopped() {
    std::lock_guard lock(mu_);
    if (ctx_) ctx_->TryCancel();
    if (!alarms_.empty()) alarms_.back()->Cancel();
  }

  void Send() {
    if (StopRequested()) {
      Finish(StoppedStatus());
      return;
    }
    std::lock_guard lock(mu_);
    ++attempt_;
    call_.req.mutable_header()->set_attempt(static_cast<uint32_t>(attempt_));
    endpoint_ = core_->PickEndpoint();
    ctx_ = std::make_unique<grpc::ClientContext>();
    ctx_->set_deadline(
        GrpcDeadline(std::min(call_.deadline, std::chrono::steady_clock::now() +
                                                  AcquireAttemptTimeout(core_->options(), call_))));
    if (attempt_ == 1) call_.first_send = core_->Now();
    resp_.Clear();
    auto self = shared_from_this();
    core_->stub(endpoint_).async()->Acquire(ctx_.get(), &call_.req, &resp_, [self](grpc::Status s) {
      ClientCore::InGrpcCallback in_callback;
      self->Answered(s);
    });
    // A stop requested between the check above and the call's start would find no context to
    // cancel: look again now that the call is out.
    if (StopRequested()) ctx_->TryCancel();
  }

  void Answered(const grpc::Status& s) {
    core_->ObserveMetadata(*ctx_);
    if (StopRequested()) {
      Finish(StoppedStatus());
      return;
    }
    const auto now = std::chrono::steady_clock::now();
    const bool attempt_timed_out =
        s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED && now < call_.deadline;
    if (!RetryableCode(s.error_code()) && !attempt_timed_out) {
      Finish(s);
      return;
    }
    core_->EndpointFailed(endpoint_);
    if (attempt_ >= core_->options().max_attempts) {
      Finish(s);
      return;
    }
    const auto pause = core_->Backoff(attempt_);
    if (now + pause >= call_.deadline) {
      Finish(grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                          "deadline reached after " + std::to_string(attempt_) +
                              " attempts; last: " + s.error_message()));
      return;
    }
    std::lock_guard lock(mu_);
    alarms_.push_back(std::make_unique<grpc::Alarm>());
    // The alarm keeps its callback until it is destroyed, and alarms_ lives in this object: a
    // callback holding a shared_ptr to it would be a cycle. The reference rides in a member
    // instead, taken back when the callback runs (it always runs: fired, or cancelled).
    armed_self_ = shared_from_this();
    alarms_.back()->Set(GrpcDeadline(now + pause), [this](bool fired) {
      ClientCore::InGrpcCallback in_callback;
      std::shared_ptr<AsyncAcquire> self;
      {
        std::lock_guard lock(mu_);
        self = std::move(armed_self_);
      }
      if (fired) {
        self->Send();
      } else {
        self->Finish(self->StoppedStatus());
      }
    });
  }

  void Finish(const grpc::Status& s) {
    if (finished_.exchange(true)) return;
    // `done` runs on the client's callback thread: never on the caller's (Start may finish at
    // once), never on a gRPC thread that other calls' callbacks need.
    auto result = std::make_shared<Result<Lock>>(FinishAcquire(*core_, call_, s, resp_));
    // The reference to the client goes with `done`: were it the last one, the client (and its
    // channels) must not be destroyed here, on a gRPC thread. So does the attempt's context: it
    // holds a reference to its channel, which may be the last one; and the lease handle, whose
    // destructor may reach the client.
    ClientCore& c = *core_;
    std::shared_ptr<grpc::ClientContext> ctx;
    {
      std::lock_guard lock(mu_);
      ctx = std::move(ctx_);
    }
    c.Dispatch([done = std::move(done_), result, core = std::move(core_), ctx = std::move(ctx),
                lease = std::move(call_.lease)] { done(std::move(*result)); });
    // `c` is still alive: while this call is registered, the shutdown that waits for it holds
    // the client (~Client shuts down before it lets go), and nothing else can destroy it.
    if (async_id_ != 0) c.EndAsync(async_id_);
  }

  std::shared_ptr<ClientCore> core_;
  AcquireCall call_;
  std::function<void(Result<Lock>)> done_;
  pb::AcquireResponse resp_;
  std::atomic<bool> finished_{false};
  uint64_t async_id_ = 0;               ///< this call's registration with the client
  std::atomic<bool> shut_down_{false};  ///< the client's shutdown cancelled this call
  int attempt_ = 0;                     ///< only the attempt in flight touches these two
  size_t endpoint_ = 0;

  std::mutex mu_;  ///< guards ctx_ and alarms_ against the stop callback
  std::unique_ptr<grpc::ClientContext> ctx_;
  std::vector<std::unique_ptr<grpc::Alarm>> alarms_;  ///< at most max_attempts
  std::shared_ptr<AsyncAcquire> armed_self_;          ///< keeps this alive while an alarm waits
  std::optional<std::stop_callback<StopHandler>> on_stop_;  ///< last: deregistered first
};

}  // namespace

void StartAsyncAcquire(std::shared_ptr<ClientCore> core, AcquireCall c,
                       std::function<void(Result<Lock>)> done) {
  auto a = std::make_shared<AsyncAcquire>(std::move(core), std::move(c), std::move(done));
  a->Start();
}

}  // namespace lockd::client
