#include "cli/health.h"

#include <grpcpp/grpcpp.h>

#include <cstdio>

#include "cli/json.h"
#include "grpc/health/v1/health.grpc.pb.h"

namespace lockd::cli {

std::vector<HealthResult> CheckHealth(
    const std::vector<std::string>& endpoints, std::chrono::milliseconds timeout,
    const std::function<std::shared_ptr<grpc::Channel>(const std::string&)>& dial) {
  using grpc::health::v1::Health;
  using grpc::health::v1::HealthCheckRequest;
  using grpc::health::v1::HealthCheckResponse;
  std::vector<HealthResult> results;
  for (const auto& endpoint : endpoints) {
    HealthResult r;
    r.endpoint = endpoint;
    r.status = "UNREACHABLE";
    auto stub = Health::NewStub(dial(endpoint));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + timeout);
    HealthCheckRequest req;
    HealthCheckResponse resp;
    const auto start = std::chrono::steady_clock::now();
    grpc::Status s = stub->Check(&ctx, req, &resp);
    r.latency = std::chrono::duration_cast<std::chrono::microseconds>(
        std::chrono::steady_clock::now() - start);
    if (s.ok()) {
      r.status = HealthCheckResponse::ServingStatus_Name(resp.status());
    } else {
      r.error = s.error_message().empty() ? "gRPC code " + std::to_string(s.error_code())
                                          : s.error_message();
    }
    results.push_back(std::move(r));
  }
  return results;
}

std::string FormatHealth(const std::vector<HealthResult>& results, bool json) {
  std::string out;
  char line[512];
  if (json) {
    out = "[";
    for (size_t i = 0; i < results.size(); ++i) {
      const auto& r = results[i];
      out += (i ? "," : "") + std::string("{\"endpoint\":") + JsonString(r.endpoint) +
             ",\"status\":" + JsonString(r.status) +
             ",\"latency_us\":" + std::to_string(r.latency.count());
      if (!r.error.empty()) out += ",\"error\":" + JsonString(r.error);
      out += "}";
    }
    return out + "]\n";
  }
  std::snprintf(line, sizeof line, "%-24s %-12s %10s  %s\n", "ENDPOINT", "STATUS", "LATENCY",
                "ERROR");
  out += line;
  for (const auto& r : results) {
    std::snprintf(line, sizeof line, "%-24s %-12s %8.2fms  %s\n", r.endpoint.c_str(),
                  r.status.c_str(), r.latency.count() / 1000.0, r.error.c_str());
    out += line;
  }
  return out;
}

}  // namespace lockd::cli
