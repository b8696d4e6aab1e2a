#include "base/codec.h"

namespace lockd {

void Writer::Varint(uint64_t v) {
  while (v >= 0x80) {
    out_.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out_.push_back(static_cast<char>(v));
}

void Writer::Bytes(std::string_view s) {
  Varint(s.size());
  out_.append(s);
}

void Writer::Fixed64(uint64_t v) {
  for (int i = 0; i < 8; ++i) out_.push_back(static_cast<char>(v >> (8 * i)));
}

bool Reader::U8(uint8_t* v) {
  if (pos_ >= in_.size()) return false;
  *v = static_cast<uint8_t>(in_[pos_++]);
  return true;
}

bool Reader::Varint(uint64_t* v) {
  uint64_t result = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (pos_ >= in_.size()) return false;
    const uint8_t b = static_cast<uint8_t>(in_[pos_++]);
    // The tenth byte holds bit 63 alone: anything more is a value past 64 bits, not silently
    // truncated (found by the lock_snapshot fuzz target).
    if (shift == 63 && b > 1) return false;
    result |= uint64_t{b & 0x7fu} << shift;
    if (!(b & 0x80)) {
      *v = result;
      return true;
    }
  }
  return false;  // more than 10 bytes: malformed
}

bool Reader::Bytes(std::string* s) {
  uint64_t n = 0;
  if (!Varint(&n) || n > remaining()) return false;
  s->assign(in_.substr(pos_, n));
  pos_ += n;
  return true;
}

bool Reader::Fixed64(uint64_t* v) {
  if (remaining() < 8) return false;
  uint64_t r = 0;
  for (int i = 0; i < 8; ++i) r |= uint64_t{static_cast<uint8_t>(in_[pos_ + i])} << (8 * i);
  pos_ += 8;
  *v = r;
  return true;
}

uint64_t Fnv1a64(std::string_view data) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : data) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

}  // namespace lockd
