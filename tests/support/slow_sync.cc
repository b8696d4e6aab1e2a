// A slow disk for tests: an LD_PRELOAD shim that delays fsync and fdatasync in the process it is
// loaded into. It does nothing unless LOCKD_SLOW_SYNC_DIR is set; then, before each sync, it reads
// the file `$LOCKD_SLOW_SYNC_DIR/<pid>` and sleeps that many milliseconds (no file, or a bad
// number: no delay). A test preloads it into every node it starts and writes the file of the one
// node whose disk should be slow, when it should be, so the cluster can form at full speed first.
//
// Build as a shared library and run a child with LD_PRELOAD=<path of the .so>. Used by the faults
// label (a leader whose disk syncs take 0.8 x TTL).
#include <dlfcn.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

namespace {

void DelayIfAsked() {
  static const char* dir = std::getenv("LOCKD_SLOW_SYNC_DIR");
  if (dir == nullptr || *dir == '\0') return;
  const int saved = errno;
  const std::string path = std::string(dir) + "/" + std::to_string(getpid());
  long ms = 0;
  if (std::FILE* f = std::fopen(path.c_str(), "r")) {
    if (std::fscanf(f, "%ld", &ms) != 1 || ms < 0 || ms > 600'000) ms = 0;
    std::fclose(f);
  }
  errno = saved;
  if (ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(ms));
}

template <typename Fn>
Fn Next(const char* name) {
  return reinterpret_cast<Fn>(dlsym(RTLD_NEXT, name));
}

}  // namespace

extern "C" int fdatasync(int fd) {
  static auto real = Next<int (*)(int)>("fdatasync");
  DelayIfAsked();
  return real(fd);
}

extern "C" int fsync(int fd) {
  static auto real = Next<int (*)(int)>("fsync");
  DelayIfAsked();
  return real(fd);
}
