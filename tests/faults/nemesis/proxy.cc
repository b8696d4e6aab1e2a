#include "faults/nemesis/proxy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <deque>
#include <random>

namespace lockd::faults {
namespace {

using Clock = std::chrono::steady_clock;

bool ParseAddr(const std::string& hp, sockaddr_in* out) {
  const auto colon = hp.rfind(':');
  if (colon == std::string::npos) return false;
  *out = {};
  out->sin_family = AF_INET;
  out->sin_port = htons(static_cast<uint16_t>(std::stoi(hp.substr(colon + 1))));
  return inet_pton(AF_INET, hp.substr(0, colon).c_str(), &out->sin_addr) == 1;
}

bool WriteAll(int fd, const char* p, size_t n) {
  while (n > 0) {
    const ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

}  // namespace

/// One proxied connection: the accepted socket and the one dialled to the target. Either pump
/// that ends shuts both down, so the other ends too.
struct PeerProxy::Link {
  int fds[2] = {-1, -1};      ///< [0] accepted from the dialling node, [1] to the target
  std::atomic<int> pumps{2};  ///< pumps still running; 0: both ended, the link can be reaped
  void Shut() {
    for (int fd : fds) shutdown(fd, SHUT_RDWR);
  }
  ~Link() {
    for (int fd : fds) {
      if (fd >= 0) close(fd);
    }
  }
};

PeerProxy::PeerProxy(std::string listen_ip, std::vector<std::string> targets)
    : listen_ip_(std::move(listen_ip)), targets_(std::move(targets)) {}

PeerProxy::~PeerProxy() {
  Stop();
}

std::string PeerProxy::Start() {
  for (size_t i = 0; i < targets_.size(); ++i) {
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    const int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in addr{};
    if (!ParseAddr(listen_ip_ + ":0", &addr) ||
        bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || listen(fd, 64) != 0) {
      close(fd);
      return "proxy: cannot listen on " + listen_ip_ + ": " + std::strerror(errno);
    }
    socklen_t len = sizeof addr;
    getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    listen_fds_.push_back(fd);
    ports_.push_back(ntohs(addr.sin_port));
  }
  std::lock_guard lock(mu_);
  for (size_t i = 0; i < targets_.size(); ++i) {
    threads_.emplace_back([this, i] { AcceptLoop(static_cast<int>(i)); });
  }
  return "";
}

void PeerProxy::Stop() {
  if (stop_.exchange(true)) return;
  std::vector<std::thread> accepts;
  {
    std::lock_guard lock(mu_);
    for (auto& p : links_) p.link->Shut();
    accepts.swap(threads_);
  }
  // The accept loops end first (they see stop_ and add no link after it, under mu_), then every
  // pump (they see stop_ too).
  for (auto& t : accepts) t.join();
  std::lock_guard lock(mu_);
  for (auto& p : links_) {
    for (auto& t : p.pumps) t.join();
  }
  for (int fd : listen_fds_) close(fd);
  links_.clear();
}

void PeerProxy::ReapLocked() {
  std::erase_if(links_, [](Piped& p) {
    if (p.link->pumps.load() != 0) return false;
    for (auto& t : p.pumps) t.join();  // both are past their loops: returns at once
    return true;
  });
}

size_t PeerProxy::live_links() {
  std::lock_guard lock(mu_);
  ReapLocked();
  return links_.size();
}

std::string PeerProxy::listen_addr(int i) const {
  return listen_ip_ + ":" + std::to_string(ports_.at(static_cast<size_t>(i)));
}

void PeerProxy::SetDelay(std::chrono::milliseconds delay, std::chrono::milliseconds jitter) {
  delay_ms_ = delay.count();
  jitter_ms_ = jitter.count();
}

void PeerProxy::AcceptLoop(int target) {
  const int lfd = listen_fds_[static_cast<size_t>(target)];
  while (!stop_) {
    {
      std::lock_guard lock(mu_);
      ReapLocked();
    }
    pollfd p{lfd, POLLIN, 0};
    if (poll(&p, 1, 50) <= 0) continue;
    const int in = accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
    if (in < 0) continue;
    const int out = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    if (!ParseAddr(targets_[static_cast<size_t>(target)], &addr) ||
        connect(out, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      // The target is down (killed, isolated): the dialling node sees a refused connection.
      close(out);
      close(in);
      continue;
    }
    const int one = 1;
    setsockopt(in, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(out, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    auto link = std::make_shared<Link>();
    link->fds[0] = in;
    link->fds[1] = out;
    ++connections_;
    std::lock_guard lock(mu_);
    if (stop_) {
      link->Shut();
      return;
    }
    Piped& piped = links_.emplace_back();
    piped.link = link;
    piped.pumps[0] = std::thread([this, link] { Pump(link, 0, 1); });
    piped.pumps[1] = std::thread([this, link] { Pump(link, 1, 0); });
  }
}

void PeerProxy::Pump(std::shared_ptr<Link> link, int from, int to) {
  struct Chunk {
    Clock::time_point due;
    std::string bytes;
  };
  std::deque<Chunk> held;
  std::mt19937_64 rng(std::random_device{}());
  Clock::time_point last_due{};
  bool open = true;
  std::string buf(64 * 1024, '\0');
  while (!stop_ && (open || !held.empty())) {
    int timeout_ms = 50;
    if (!held.empty()) {
      const auto wait =
          std::chrono::duration_cast<std::chrono::milliseconds>(held.front().due - Clock::now());
      timeout_ms = static_cast<int>(std::clamp<int64_t>(wait.count(), 0, 50));
    }
    if (open) {
      pollfd p{link->fds[from], POLLIN, 0};
      if (poll(&p, 1, timeout_ms) > 0) {
        const ssize_t n = recv(link->fds[from], buf.data(), buf.size(), 0);
        if (n <= 0) {
          open = false;
        } else {
          const int64_t jitter = jitter_ms_.load();
          const auto hold = std::chrono::milliseconds(
              delay_ms_.load() +
              (jitter > 0 ? static_cast<int64_t>(rng() % static_cast<uint64_t>(jitter + 1)) : 0));
          // Never ahead of the chunk before it: one stream's bytes keep their order.
          const auto due = std::max(Clock::now() + hold, last_due);
          last_due = due;
          held.push_back({due, buf.substr(0, static_cast<size_t>(n))});
        }
      }
    } else if (timeout_ms > 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(timeout_ms));
    }
    while (!held.empty() && held.front().due <= Clock::now()) {
      if (!WriteAll(link->fds[to], held.front().bytes.data(), held.front().bytes.size())) {
        held.clear();
        open = false;
        break;
      }
      bytes_ += held.front().bytes.size();
      held.pop_front();
    }
  }
  // This direction is done: pass the end on, and end the other direction once both are done.
  shutdown(link->fds[to], SHUT_WR);
  if (--link->pumps == 0 || stop_) link->Shut();
}

}  // namespace lockd::faults
