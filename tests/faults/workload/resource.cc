// faults_resource: the protected resource of the fault workload (issue 17). Per lock name it
// keeps a counter and, through lockd::Fence, the largest fence it has seen; every request carries
// a fence, reads included, and one below the largest is refused. It does not check that a write
// is an increment: the workers' read-modify-write makes lost updates visible to the checkers
// instead of hiding them.
//
// Protocol (one TCP connection per worker on 127.0.0.1, one request per line):
//   READ <lock> <fence> <process> <op>            -> OK <value> | REJECTED <largest> | ERR <why>
//   WRITE <lock> <fence> <value> <process> <op>   -> OK <value> | REJECTED <largest> | ERR <why>
// Every answered request is appended to --log (JSON lines, CLOCK_BOOTTIME) under the same lock
// that decides it, so the log's order is the order of the decisions.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <map>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "faults/history/history.h"
#include "lockd/fence.h"

namespace lockd::faults {
namespace {

std::atomic<bool> g_stop{false};

/// The counters and fences, decided and logged under one lock.
class Resource {
 public:
  explicit Resource(const std::string& log_path) : log_(log_path) {}
  bool ok() const { return log_.ok(); }

  std::string Handle(const std::string& line) {
    std::istringstream in(line);
    std::string verb, lock, process;
    uint64_t fence = 0, op = 0;
    int64_t value = 0;
    in >> verb >> lock >> fence;
    const bool write = verb == "WRITE";
    if (write) in >> value;
    in >> process >> op;
    if ((verb != "READ" && !write) || lock.empty() || process.empty() || in.fail()) {
      return "ERR expected READ <lock> <fence> <process> <op> or WRITE <lock> <fence> <value> "
             "<process> <op>";
    }
    std::lock_guard guard(mu_);
    client::Status s = fences_.Check(lock, fence);
    if (s.code() == client::StatusCode::kInvalidArgument) return "ERR " + s.message();
    ResourceRecord r;
    r.t_ns = BootNow();
    r.lock = lock;
    r.write = write;
    r.fence = fence;
    r.accepted = s.ok();
    r.largest = fences_.Largest(lock);
    r.process = process;
    r.op = op;
    int64_t& counter = counters_[lock];
    if (r.accepted && write) counter = value;
    r.value = write ? value : counter;
    log_.Write(ToJson(r));
    return r.accepted ? "OK " + std::to_string(r.value) : "REJECTED " + std::to_string(r.largest);
  }

 private:
  std::mutex mu_;  ///< orders decisions and log lines together
  Fence fences_;
  std::map<std::string, int64_t> counters_;
  JsonLinesWriter log_;
};

void Serve(Resource& resource, int fd) {
  std::string buf;
  char chunk[4096];
  while (!g_stop) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 200) <= 0) continue;
    ssize_t n = read(fd, chunk, sizeof chunk);
    if (n <= 0) break;
    buf.append(chunk, static_cast<size_t>(n));
    if (buf.size() > 1 << 16) break;  // no line is that long: a confused peer
    size_t nl;
    while ((nl = buf.find('\n')) != std::string::npos) {
      std::string answer = resource.Handle(buf.substr(0, nl)) + "\n";
      buf.erase(0, nl + 1);
      if (write(fd, answer.data(), answer.size()) != static_cast<ssize_t>(answer.size())) {
        close(fd);
        return;
      }
    }
  }
  close(fd);
}

int Main(int argc, char** argv) {
  CLI::App app{"faults_resource: the fenced counter service of the fault workload"};
  int port = 0;
  std::string log_path;
  int64_t duration_ms = 600'000;
  app.add_option("--port", port, "TCP port on 127.0.0.1")->required()->check(CLI::Range(1, 65535));
  app.add_option("--log", log_path, "JSON-lines log of every request")->required();
  app.add_option("--duration-ms", duration_ms, "exit after this long (a bound, not a schedule)");
  CLI11_PARSE(app, argc, argv);

  Resource resource(log_path);
  if (!resource.ok()) {
    std::fprintf(stderr, "faults_resource: cannot open %s\n", log_path.c_str());
    return 2;
  }
  int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      listen(listener, 64) != 0) {
    std::perror("faults_resource: bind/listen");
    return 2;
  }
  signal(SIGTERM, [](int) { g_stop = true; });
  signal(SIGINT, [](int) { g_stop = true; });
  signal(SIGPIPE, SIG_IGN);
  std::printf("faults_resource listening on 127.0.0.1:%d\n", port);
  std::fflush(stdout);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(duration_ms);
  std::vector<std::thread> connections;
  while (!g_stop && std::chrono::steady_clock::now() < deadline) {
    pollfd p{listener, POLLIN, 0};
    if (poll(&p, 1, 200) <= 0) continue;
    int fd = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    if (connections.size() >= 256) {  // a bound: the workload opens a handful
      close(fd);
      continue;
    }
    connections.emplace_back([&resource, fd] { Serve(resource, fd); });
  }
  g_stop = true;
  for (auto& t : connections) t.join();
  close(listener);
  return 0;
}

}  // namespace
}  // namespace lockd::faults

int main(int argc, char** argv) {
  return lockd::faults::Main(argc, argv);
}
