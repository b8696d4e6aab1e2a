// A wallet worker: takes the lock "wallet/<account>", reads the balance and withdraws, sending
// its fence with both requests. Between its last "still held?" check and the withdrawal it
// "thinks" for --think-ms: a stand-in for a GC pause, and where the demo SIGSTOPs it.
// Endpoints come from $LOCKD_ENDPOINTS.
//
// Usage: wallet_worker <name> <service port> <account> <amount> [think ms, default 0]
#include <arpa/inet.h>
#include <lockd/client.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

namespace {

std::string Request(int port, const std::string& line) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    close(fd);
    return "ERROR cannot reach the wallet service";
  }
  const std::string out = line + "\n";
  (void)!write(fd, out.data(), out.size());
  std::string answer;
  char ch;
  while (read(fd, &ch, 1) == 1 && ch != '\n') answer += ch;
  close(fd);
  return answer;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace std::chrono_literals;
  if (argc < 5) {
    std::fprintf(stderr, "usage: wallet_worker <name> <port> <account> <amount> [think ms]\n");
    return 2;
  }
  const std::string me = argv[1], account = argv[3], amount = argv[4];
  const int port = std::atoi(argv[2]);
  const auto think = std::chrono::milliseconds(argc > 5 ? std::atol(argv[5]) : 0);

  auto client = lockd::client::Client::Connect({});
  if (!client.ok()) return 2;
  auto lease = (*client)->GrantLease(2s, "wallet-" + me);
  if (!lease.ok()) {
    std::printf("%s: no lease: %s\n", me.c_str(), lease.status().ToString().c_str());
    return 1;
  }
  lockd::client::LockOptions options;
  options.wait = 30s;
  auto lock = (*client)->Acquire("wallet/" + account, *lease, options);
  if (!lock.ok() || !lock->held()) {
    std::printf("%s: did not get the lock: %s\n", me.c_str(),
                lock.ok() ? "held by another worker" : lock.status().ToString().c_str());
    return 1;
  }
  lock->OnLost([me](const std::string& why) {
    std::printf("%s: LOST the lock: %s\n", me.c_str(), why.c_str());
    std::fflush(stdout);
  });
  const std::string fence = std::to_string(lock->fence());
  std::printf("%s: acquired wallet/%s, fence %s\n", me.c_str(), account.c_str(), fence.c_str());
  const std::string balance = Request(port, "BALANCE " + account + " " + fence);
  std::printf("%s: balance -> %s\n", me.c_str(), balance.c_str());
  if (lock->held()) {
    std::printf("%s: lock still held, withdrawing %s after thinking %lld ms\n", me.c_str(),
                amount.c_str(), static_cast<long long>(think.count()));
    std::fflush(stdout);
    std::this_thread::sleep_for(think);  // a GC pause would strike here, after the check
    const std::string done = Request(port, "WITHDRAW " + account + " " + amount + " " + fence);
    std::printf("%s: withdraw %s with fence %s -> %s\n", me.c_str(), amount.c_str(), fence.c_str(),
                done.c_str());
  }
  std::printf("%s: lock held at exit: %s\n", me.c_str(), lock->held() ? "yes" : "no");
  std::fflush(stdout);
  return 0;
}
