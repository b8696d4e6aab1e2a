// The wallet service: balances protected by lockd fencing. Every request carries the fence of the
// lock "wallet/<account>" its sender holds; lockd::Fence admits it only if the fence is at least
// the largest seen for that lock, and the check and the change happen under one lock, so a
// worker paused past its lease (GC, SIGSTOP) cannot withdraw after a newer holder did. Reads are
// fenced too (design guarantee 2).
//
// A line protocol on 127.0.0.1:<port>, one request per connection:
//   BALANCE <account> <fence>            → OK <balance>        | REJECTED <why>
//   WITHDRAW <account> <amount> <fence>  → OK <new balance>    | REJECTED <why>
// Usage: wallet_service <port> [initial balance per account, default 100]
#include <arpa/inet.h>
#include <lockd/fence.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <sstream>
#include <string>

namespace {

std::mutex mu;  // guards balances; held across the fence check and the change
std::map<std::string, long> balances;
lockd::Fence fences;  // in a real service: stored with the balances, in one transaction
long initial_balance = 100;

std::string Handle(const std::string& line) {
  std::istringstream in(line);
  std::string op, account;
  in >> op >> account;
  long amount = 0;
  if (op == "WITHDRAW") in >> amount;
  unsigned long long fence = 0;
  in >> fence;
  if (!in || account.empty() || (op != "BALANCE" && op != "WITHDRAW"))
    return "REJECTED bad request";
  std::lock_guard lock(mu);
  if (!balances.count(account)) balances[account] = initial_balance;
  long& balance = balances[account];
  std::string answer;
  const auto admitted = fences.CheckAndApply("wallet/" + account, fence, [&] {
    if (op == "WITHDRAW") {
      if (amount > balance) {
        answer = "REJECTED insufficient funds";
        return;
      }
      balance -= amount;
    }
    answer = "OK " + std::to_string(balance);
  });
  if (!admitted.ok()) answer = "REJECTED " + admitted.message();
  return answer;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: wallet_service <port> [initial balance]\n");
    return 2;
  }
  if (argc > 2) initial_balance = std::atol(argv[2]);
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(std::atoi(argv[1])));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || listen(fd, 16) != 0) {
    std::perror("wallet_service: bind/listen");
    return 1;
  }
  std::printf("wallet service on 127.0.0.1:%s, every account starts at %ld\n", argv[1],
              initial_balance);
  std::fflush(stdout);
  for (;;) {
    const int c = accept(fd, nullptr, nullptr);
    if (c < 0) continue;
    std::string line;
    char ch;
    while (read(c, &ch, 1) == 1 && ch != '\n') line += ch;
    const std::string answer = Handle(line);
    std::printf("service: %-32s -> %s\n", line.c_str(), answer.c_str());
    std::fflush(stdout);
    const std::string out = answer + "\n";
    (void)!write(c, out.data(), out.size());
    close(c);
  }
}
