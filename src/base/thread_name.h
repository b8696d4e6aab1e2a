// Names the calling thread, for `top -H`, perf and /proc/<pid>/task/*/comm: an operator (or a
// profile) can tell the replica loop from a peer's sender. Linux keeps the first 15 characters.
#pragma once

#include <pthread.h>

#include <string>

namespace lockd {

inline void NameThisThread(const std::string& name) {
  pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());
}

}  // namespace lockd
