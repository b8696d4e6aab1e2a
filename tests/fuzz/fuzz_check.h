// Shared by every fuzz target: the property check and a small input reader.
//
// A failed property aborts with the target's message, so libFuzzer records the input as a crash
// (and the replay main, under GCC, fails the CTest test naming the corpus file). A fuzz target
// checks what must hold for every input: a decoder refuses with an error or yields a value that
// re-encodes and decodes to itself; nothing crashes, leaks or trips a sanitizer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#define FUZZ_CHECK(cond, what)                                                                  \
  do {                                                                                          \
    if (!(cond)) {                                                                              \
      std::fprintf(stderr, "%s:%d: fuzz property failed: %s (%s)\n", __FILE__, __LINE__, #cond, \
                   what);                                                                       \
      std::abort();                                                                             \
    }                                                                                           \
  } while (0)

namespace lockd::fuzz {

inline std::string_view AsView(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

/// Takes a script's fields off the front of the input; past the end every read gives zeros, so
/// every input is a complete script.
class ScriptReader {
 public:
  explicit ScriptReader(std::string_view in) : in_(in) {}
  bool done() const { return pos_ >= in_.size(); }
  uint8_t U8() { return done() ? 0 : static_cast<uint8_t>(in_[pos_++]); }
  uint64_t U64(int bytes) {
    uint64_t v = 0;
    for (int i = 0; i < bytes; ++i) v = (v << 8) | U8();
    return v;
  }
  /// Up to `max` bytes, the length taken from the input.
  std::string_view Bytes(size_t max) {
    size_t n = U8() % (max + 1);
    if (n > in_.size() - std::min(pos_, in_.size())) n = in_.size() - std::min(pos_, in_.size());
    std::string_view s = in_.substr(std::min(pos_, in_.size()), n);
    pos_ += n;
    return s;
  }

 private:
  std::string_view in_;
  size_t pos_ = 0;
};

}  // namespace lockd::fuzz
