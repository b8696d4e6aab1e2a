#include "base/clock.h"

#include <time.h>

#include "base/check.h"

namespace lockd {

BootTime SystemClock::Now() const {
  timespec ts{};
  LOCKD_CHECK(clock_gettime(CLOCK_BOOTTIME, &ts) == 0);
  return {static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec};
}

const SystemClock& SystemClock::Instance() {
  static const SystemClock clock;
  return clock;
}

int64_t WallSeconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace lockd
