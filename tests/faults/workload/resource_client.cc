#include "faults/workload/resource_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace lockd::faults {

namespace {
constexpr int kAnswerTimeoutMs = 3000;
}

ResourceClient::~ResourceClient() {
  Disconnect();
}

void ResourceClient::Disconnect() {
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
  buf_.clear();
}

bool ResourceClient::Connect(std::string* error) {
  const auto colon = address_.rfind(':');
  if (colon == std::string::npos) {
    *error = "resource address is not host:port: " + address_;
    return false;
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(std::stoi(address_.substr(colon + 1))));
  if (inet_pton(AF_INET, address_.substr(0, colon).c_str(), &addr.sin_addr) != 1) {
    *error = "resource host is not an IPv4 address: " + address_;
    return false;
  }
  fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    *error = std::string("connect: ") + std::strerror(errno);
    Disconnect();
    return false;
  }
  return true;
}

ResourceAnswer ResourceClient::Call(const std::string& line) {
  ResourceAnswer a;
  if (fd_ < 0 && !Connect(&a.error)) return a;
  const std::string req = line + "\n";
  if (send(fd_, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size())) {
    a.error = std::string("send: ") + std::strerror(errno);
    Disconnect();
    return a;
  }
  size_t nl;
  while ((nl = buf_.find('\n')) == std::string::npos) {
    pollfd p{fd_, POLLIN, 0};
    char chunk[512];
    ssize_t n = poll(&p, 1, kAnswerTimeoutMs) > 0 ? read(fd_, chunk, sizeof chunk) : -1;
    if (n <= 0) {
      // The request may have been decided: the connection is useless for matching answers now.
      a.error = "no answer from the resource";
      Disconnect();
      return a;
    }
    buf_.append(chunk, static_cast<size_t>(n));
  }
  const std::string answer = buf_.substr(0, nl);
  buf_.erase(0, nl + 1);
  long long v = 0;
  if (std::sscanf(answer.c_str(), "OK %lld", &v) == 1) {
    a.kind = ResourceAnswer::Kind::kOk;
  } else if (std::sscanf(answer.c_str(), "REJECTED %lld", &v) == 1) {
    a.kind = ResourceAnswer::Kind::kRejected;
  } else {
    a.error = "resource answered: " + answer;
  }
  a.value = v;
  return a;
}

ResourceAnswer ResourceClient::Read(const std::string& lock, uint64_t fence,
                                    const std::string& process, uint64_t op) {
  return Call("READ " + lock + " " + std::to_string(fence) + " " + process + " " +
              std::to_string(op));
}

ResourceAnswer ResourceClient::Write(const std::string& lock, uint64_t fence, int64_t value,
                                     const std::string& process, uint64_t op) {
  return Call("WRITE " + lock + " " + std::to_string(fence) + " " + std::to_string(value) + " " +
              process + " " + std::to_string(op));
}

}  // namespace lockd::faults
