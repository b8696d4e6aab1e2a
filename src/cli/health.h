// `lockctl health`: asks each endpoint's grpc.health.v1 service whether it is serving.
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace lockd::cli {

struct HealthResult {
  std::string endpoint;
  std::string status;  ///< SERVING, NOT_SERVING, UNKNOWN, or UNREACHABLE
  std::string error;   ///< why it is UNREACHABLE
  std::chrono::microseconds latency{0};

  bool serving() const { return status == "SERVING"; }
};

/// `dial` makes each endpoint's channel (CommandContext::Channel: TLS and the bearer token).
std::vector<HealthResult> CheckHealth(
    const std::vector<std::string>& endpoints, std::chrono::milliseconds timeout,
    const std::function<std::shared_ptr<grpc::Channel>(const std::string&)>& dial);

/// A table for people, or one JSON array for scripts.
std::string FormatHealth(const std::vector<HealthResult>& results, bool json);

}  // namespace lockd::cli
