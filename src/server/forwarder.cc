#include "server/forwarder.h"

#include <vector>

namespace lockd::server {

bool WasForwarded(const grpc::CallbackServerContext& ctx) {
  return ctx.client_metadata().count(kForwardedByHeader) > 0;
}

bool Forwarder::Prepare(grpc::ClientContext& ctx, std::chrono::system_clock::time_point received,
                        std::chrono::system_clock::time_point caller_deadline,
                        std::chrono::milliseconds max_age,
                        const std::function<void(grpc::Status)>& done) {
  const auto now = std::chrono::system_clock::now();
  const auto age = max_age.count() > 0 ? max_age : max_forward_age_;
  const auto deadline = std::min(caller_deadline, received + age);
  if (now >= deadline) {
    done(caller_deadline <= received + age
             ? grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "the caller's deadline passed")
             : grpc::Status(grpc::StatusCode::UNAVAILABLE,
                            "the request waited too long for a leader; retry"));
    return false;
  }
  ctx.set_deadline(deadline);
  ctx.AddMetadata(kForwardedByHeader, std::to_string(node_id_));
  return true;
}

grpc::Status Forwarder::StoppingStatus() {
  return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                      "this node is stopping; retry on another node with the same request id");
}

grpc::Status Forwarder::MapForwardStatus(
    const grpc::Status& s, std::chrono::system_clock::time_point caller_deadline,
    std::chrono::system_clock::time_point forward_deadline) const {
  if (s.error_code() == grpc::StatusCode::CANCELLED) {
    // Either this node cancelled it (Stop) or the leader's server did (it is stopping); in
    // neither case has the caller given up, and its call may not have run: retry elsewhere.
    return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                        "the forward to the leader was cancelled (a node is stopping); retry "
                        "with the same request id");
  }
  const auto now = std::chrono::system_clock::now();
  // The leader's own answer well before the forward's deadline is the leader's word.
  const bool leaders_own = now + std::chrono::milliseconds(100) < forward_deadline;
  if (s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED && now < caller_deadline &&
      !leaders_own) {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                        "the forward to the leader timed out; retry with the same request id");
  }
  return s;
}

Forwarder::~Forwarder() {
  std::unique_lock lock(mu_);
  idle_.wait(lock, [this] { return outstanding_ == 0; });
}

bool Forwarder::Started(std::shared_ptr<grpc::ClientContext> ctx) {
  std::lock_guard lock(mu_);
  if (stopping_) return false;
  ++outstanding_;
  grpc::ClientContext* key = ctx.get();
  in_flight_.emplace(key, std::move(ctx));
  return true;
}

void Forwarder::Finished(grpc::ClientContext* ctx) {
  std::lock_guard lock(mu_);
  in_flight_.erase(ctx);
}

void Forwarder::Idle() {
  std::lock_guard lock(mu_);
  if (--outstanding_ == 0) idle_.notify_all();
}

void Forwarder::Stop() {
  std::vector<std::shared_ptr<grpc::ClientContext>> calls;
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    for (const auto& [key, ctx] : in_flight_) calls.push_back(ctx);
  }
  // Outside mu_: a cancel may run the call's callback on this thread, which takes mu_. A
  // context registered before its call started is cancelled when the call starts.
  for (const auto& ctx : calls) ctx->TryCancel();
}

std::shared_ptr<grpc::Channel> Forwarder::ChannelFor(const std::string& addr) {
  std::lock_guard lock(mu_);
  auto& channel = channels_[addr];
  if (!channel) channel = grpc::CreateChannel(addr, credentials_);
  return channel;
}

}  // namespace lockd::server
