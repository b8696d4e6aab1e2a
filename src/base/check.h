// LOCKD_CHECK: an invariant that holds in every build type. A violated invariant means the node's
// state can no longer be trusted, so it logs where and aborts rather than serve from it.
#pragma once

#include <cstdio>
#include <cstdlib>

#define LOCKD_CHECK(cond)                                                                 \
  do {                                                                                    \
    if (!(cond)) [[unlikely]] {                                                           \
      std::fprintf(stderr, "%s:%d: invariant violated: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                       \
    }                                                                                     \
  } while (0)

#define LOCKD_CHECK_MSG(cond, msg)                                                            \
  do {                                                                                        \
    if (!(cond)) [[unlikely]] {                                                               \
      std::fprintf(stderr, "%s:%d: invariant violated: %s (%s)\n", __FILE__, __LINE__, #cond, \
                   msg);                                                                      \
      std::abort();                                                                           \
    }                                                                                         \
  } while (0)
