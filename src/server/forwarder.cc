#include "server/forwarder.h"

namespace lockd::server {

bool WasForwarded(const grpc::CallbackServerContext& ctx) {
  return ctx.client_metadata().count(kForwardedByHeader) > 0;
}

bool Forwarder::Prepare(grpc::ClientContext& ctx, std::chrono::system_clock::time_point received,
                        std::chrono::system_clock::time_point caller_deadline,
                        const std::function<void(grpc::Status)>& done) {
  const auto now = std::chrono::system_clock::now();
  const auto deadline = std::min(caller_deadline, received + max_forward_age_);
  if (now >= deadline) {
    done(caller_deadline <= received + max_forward_age_
             ? grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "the caller's deadline passed")
             : grpc::Status(grpc::StatusCode::UNAVAILABLE,
                            "the request waited too long for a leader; retry"));
    return false;
  }
  ctx.set_deadline(deadline);
  ctx.AddMetadata(kForwardedByHeader, std::to_string(node_id_));
  return true;
}

grpc::Status Forwarder::MapForwardStatus(const grpc::Status& s,
                                         std::chrono::system_clock::time_point caller_deadline) {
  if (s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED &&
      std::chrono::system_clock::now() < caller_deadline) {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                        "the forward to the leader timed out; retry with the same request id");
  }
  return s;
}

Forwarder::~Forwarder() {
  std::unique_lock lock(mu_);
  idle_.wait(lock, [this] { return outstanding_ == 0; });
}

void Forwarder::Started() {
  std::lock_guard lock(mu_);
  ++outstanding_;
}

void Forwarder::Finished() {
  std::lock_guard lock(mu_);
  if (--outstanding_ == 0) idle_.notify_all();
}

std::shared_ptr<grpc::Channel> Forwarder::ChannelFor(const std::string& addr) {
  std::lock_guard lock(mu_);
  auto& channel = channels_[addr];
  if (!channel) channel = grpc::CreateChannel(addr, grpc::InsecureChannelCredentials());
  return channel;
}

}  // namespace lockd::server
