// The worker's side of faults_resource's line protocol (resource.cc): one TCP connection,
// reconnected after an error, every answer awaited with a bound.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace lockd::faults {

struct ResourceAnswer {
  enum class Kind { kOk, kRejected, kUnknown } kind = Kind::kUnknown;
  int64_t value = 0;  ///< kOk: the value read or written; kRejected: the largest fence
  std::string error;  ///< kUnknown: what went wrong (the request may or may not have been seen)
};

class ResourceClient {
 public:
  /// `address` is 127.0.0.1:port.
  explicit ResourceClient(std::string address) : address_(std::move(address)) {}
  ~ResourceClient();
  ResourceClient(const ResourceClient&) = delete;
  ResourceClient& operator=(const ResourceClient&) = delete;

  ResourceAnswer Read(const std::string& lock, uint64_t fence, const std::string& process,
                      uint64_t op);
  ResourceAnswer Write(const std::string& lock, uint64_t fence, int64_t value,
                       const std::string& process, uint64_t op);

 private:
  ResourceAnswer Call(const std::string& line);
  bool Connect(std::string* error);
  void Disconnect();

  std::string address_;
  int fd_ = -1;
  std::string buf_;
};

}  // namespace lockd::faults
