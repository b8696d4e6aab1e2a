// Time for the runtime. Durations are measured on CLOCK_BOOTTIME, which keeps counting through
// suspend (steady_clock does not), as the design brief requires for lease arithmetic. The Raft core
// and the lock state machine never read a clock; only the runtime and the client library do, and
// they do it through `Clock` so tests can substitute a manual one.
#pragma once

#include <chrono>
#include <cstdint>

namespace lockd {

/// A point on CLOCK_BOOTTIME, in nanoseconds since boot.
struct BootTime {
  int64_t nanos = 0;
  auto operator<=>(const BootTime&) const = default;
  BootTime operator+(std::chrono::nanoseconds d) const { return {nanos + d.count()}; }
  BootTime operator-(std::chrono::nanoseconds d) const { return {nanos - d.count()}; }
  std::chrono::nanoseconds operator-(BootTime o) const {
    return std::chrono::nanoseconds(nanos - o.nanos);
  }
};

/// The source of BootTime. One per process in production (`SystemClock`); tests use `ManualClock`.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual BootTime Now() const = 0;
};

/// CLOCK_BOOTTIME.
class SystemClock final : public Clock {
 public:
  BootTime Now() const override;
  static const SystemClock& Instance();
};

/// A clock that moves only when told to. Not thread-safe: for single-threaded tests.
class ManualClock final : public Clock {
 public:
  BootTime Now() const override { return now_; }
  void Advance(std::chrono::nanoseconds d) { now_ = now_ + d; }
  void Set(BootTime t) { now_ = t; }

 private:
  BootTime now_{1'000'000'000};
};

/// Wall-clock seconds since the Unix epoch: for display and the restore floor only.
int64_t WallSeconds();

}  // namespace lockd
