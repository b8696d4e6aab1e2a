// Takes one lock and gives it back: the smallest program on the installed lockd::client.
// Endpoints come from $LOCKD_ENDPOINTS (e.g. 127.0.0.1:7401,127.0.0.1:7402).
#include <lockd/client.h>
#include <lockd/fence.h>

#include <chrono>
#include <cstdio>

int main(int argc, char** argv) {
  using namespace std::chrono_literals;
  const char* name = argc > 1 ? argv[1] : "hello/lock";
  auto client = lockd::client::Client::Connect({});
  if (!client.ok()) {
    std::fprintf(stderr, "connect: %s\n", client.status().ToString().c_str());
    return 2;
  }
  auto lease = (*client)->GrantLease(5s, "hello");
  if (!lease.ok()) {
    std::fprintf(stderr, "lease: %s\n", lease.status().ToString().c_str());
    return 1;
  }
  lockd::client::LockOptions options;
  options.wait = 2s;
  auto lock = (*client)->Acquire(name, *lease, options);
  if (!lock.ok() || !lock->held()) {
    std::fprintf(stderr, "lock: %s\n",
                 lock.ok() ? "held by someone else" : lock.status().ToString().c_str());
    return 1;
  }
  // The resource's side: a fence check (here in-process, normally in the service you protect).
  lockd::Fence fence;
  const auto admitted = fence.Check(name, lock->fence());
  std::printf("acquired %s token %llu fence %llu: %s\n", name,
              static_cast<unsigned long long>(lock->token()),
              static_cast<unsigned long long>(lock->fence()), admitted.ToString().c_str());
  const auto released = lock->Release();
  std::printf("released: %s\n", released.ToString().c_str());
  return released.ok() && admitted.ok() ? 0 : 1;
}
