// Strong integer types for ids and indices.
//
// `StrongInt<Tag>` wraps a uint64_t so that a Term cannot be passed where a LogIndex is expected,
// and a LeaseId cannot be confused with a FencingToken. Arithmetic is limited to what the domain
// needs: ordering, stepping by a count, and the distance between two values of the same type.
#pragma once

#include <compare>
#include <cstdint>
#include <functional>
#include <ostream>

namespace lockd {

template <typename Tag>
class StrongInt {
 public:
  constexpr StrongInt() = default;
  constexpr explicit StrongInt(uint64_t v) : value_(v) {}

  constexpr uint64_t value() const { return value_; }
  constexpr bool zero() const { return value_ == 0; }

  constexpr auto operator<=>(const StrongInt&) const = default;

  constexpr StrongInt next() const { return StrongInt(value_ + 1); }
  constexpr StrongInt prev() const { return StrongInt(value_ - 1); }
  constexpr StrongInt operator+(uint64_t n) const { return StrongInt(value_ + n); }
  constexpr StrongInt operator-(uint64_t n) const { return StrongInt(value_ - n); }
  /// Distance between two values; the caller guarantees `*this >= other`.
  constexpr uint64_t operator-(StrongInt other) const { return value_ - other.value_; }
  constexpr StrongInt& operator++() {
    ++value_;
    return *this;
  }

  friend std::ostream& operator<<(std::ostream& os, StrongInt v) { return os << v.value_; }

 private:
  uint64_t value_ = 0;
};

}  // namespace lockd

template <typename Tag>
struct std::hash<lockd::StrongInt<Tag>> {
  size_t operator()(lockd::StrongInt<Tag> v) const noexcept {
    return std::hash<uint64_t>{}(v.value());
  }
};
