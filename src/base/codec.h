// A small binary codec for log entries, commands and snapshots: varints and length-prefixed bytes.
// Reading is bounds-checked; a malformed or truncated input is an error value, never a crash.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "base/status.h"

namespace lockd {

class Writer {
 public:
  void U8(uint8_t v) { out_.push_back(static_cast<char>(v)); }
  void Varint(uint64_t v);
  void Bytes(std::string_view s);
  void Fixed64(uint64_t v);
  std::string Take() { return std::move(out_); }
  const std::string& data() const { return out_; }

 private:
  std::string out_;
};

class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}
  bool U8(uint8_t* v);
  bool Varint(uint64_t* v);
  bool Bytes(std::string* s);
  bool Fixed64(uint64_t* v);
  bool done() const { return pos_ == in_.size(); }
  size_t remaining() const { return in_.size() - pos_; }

 private:
  std::string_view in_;
  size_t pos_ = 0;
};

/// FNV-1a, 64-bit: the digest of a command's method and arguments.
uint64_t Fnv1a64(std::string_view data);

}  // namespace lockd
