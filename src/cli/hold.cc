#include "cli/hold.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <stop_token>
#include <thread>

#include "cli/exit_codes.h"

namespace lockd::cli {

std::string LeaseLabel(const AcquireArgs& a) {
  if (!a.label.empty()) return a.label;
  char host[256] = "?";
  gethostname(host, sizeof host - 1);
  return "lockctl@" + std::string(host) + ":" + std::to_string(getpid());
}

int AcquireToHold(const CommandContext& c, const AcquireArgs& a, HeldLock& out) {
  client::ClientOptions o;
  o.endpoints = c.endpoints;
  o.call_timeout = c.timeout;
  o.tls_ca_file = c.tls_ca;
  o.tls_cert_file = c.tls_cert;
  o.tls_key_file = c.tls_key;
  o.auth_token = c.auth_token;
  auto cl = client::Client::Connect(o);
  if (!cl.ok()) {
    c.err << "lockctl: " << cl.status().message() << "\n";
    return kExitUsage;
  }
  out.client = std::move(*cl);
  auto lease = out.client->GrantLease(a.ttl, LeaseLabel(a));
  if (!lease.ok()) {
    c.err << "lockctl: cannot get a lease: ";
    return ReportError(c.err, lease.status());
  }
  out.lease = *lease;

  // Ctrl-C while the Acquire waits in the queue gives up the wait: the stop_token ends the call
  // and the library withdraws the Acquire (Cancel naming its request id).
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  const timespec poll{0, 200'000'000};
  std::stop_source give_up;
  client::LockOptions lo;
  lo.mode = a.shared ? client::Mode::kShared : client::Mode::kExclusive;
  lo.wait = a.wait;
  lo.stop = give_up.get_token();
  std::atomic<bool> acquire_done{false};
  std::atomic<int> interrupted{0};
  std::thread watcher([&] {
    while (!acquire_done.load()) {
      const int sig = sigtimedwait(&stop, nullptr, &poll);
      if (sig > 0) {
        interrupted = sig;
        give_up.request_stop();
        return;
      }
    }
  });
  auto lock = out.client->Acquire(a.name, out.lease, lo);
  acquire_done = true;
  watcher.join();
  if (interrupted.load() != 0) {
    if (lock.ok()) (void)lock->Release();
    c.err << "lockctl: interrupted; gave up waiting for " << a.name << "\n";
    (void)out.lease->Revoke();
    return 128 + interrupted.load();
  }
  if (!lock.ok()) {
    (void)out.lease->Revoke();
    return ReportError(c.err, lock.status());
  }
  if (!lock->acquired()) {
    (void)out.lease->Revoke();
    return kExitNotFound;
  }
  out.lock = std::move(*lock);
  return kExitOk;
}

}  // namespace lockd::cli
