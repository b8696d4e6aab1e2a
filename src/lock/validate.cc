#include "lock/validate.h"

#include <string>

namespace lockd::lock {

bool IsValidUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = s[i];
    int extra = 0;
    uint32_t cp = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      extra = 1;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      extra = 2;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      extra = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + extra >= s.size()) return false;
    for (int k = 1; k <= extra; ++k) {
      const unsigned char cc = s[i + k];
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    static constexpr uint32_t kMin[] = {0, 0x80, 0x800, 0x10000};
    if (cp < kMin[extra] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += extra + 1;
  }
  return true;
}

Status ValidateName(std::string_view name, const Limits& limits) {
  if (name.empty()) return InvalidArgument("lock name is empty");
  if (name.size() > limits.max_name_bytes) {
    return InvalidArgument("lock name is " + std::to_string(name.size()) + " bytes; the limit is " +
                           std::to_string(limits.max_name_bytes));
  }
  if (name.find('\0') != std::string_view::npos) {
    return InvalidArgument("lock name contains a NUL byte");
  }
  if (!IsValidUtf8(name)) return InvalidArgument("lock name is not valid UTF-8");
  return Status::Ok();
}

Status ValidateTtl(uint64_t ttl_ms, const Limits& limits) {
  if (ttl_ms < limits.min_ttl_ms || ttl_ms > limits.max_ttl_ms) {
    return InvalidArgument("ttl_ms " + std::to_string(ttl_ms) + " is outside the allowed range " +
                           std::to_string(limits.min_ttl_ms) + ".." +
                           std::to_string(limits.max_ttl_ms) + " ms");
  }
  return Status::Ok();
}

Status ValidateLabel(std::string_view label, const Limits& limits) {
  if (label.size() > limits.max_label_bytes) {
    return InvalidArgument("lease label is " + std::to_string(label.size()) +
                           " bytes; the limit is " + std::to_string(limits.max_label_bytes));
  }
  if (!IsValidUtf8(label)) return InvalidArgument("lease label is not valid UTF-8");
  return Status::Ok();
}

Status ValidateWait(uint64_t wait_ms, const Limits& limits) {
  if (wait_ms > limits.max_wait_ms) {
    return InvalidArgument("wait_ms " + std::to_string(wait_ms) + " is above the limit of " +
                           std::to_string(limits.max_wait_ms) + " ms");
  }
  return Status::Ok();
}

Status ValidateHeader(const RequestHeader& h) {
  if (h.id.client.zero()) return InvalidArgument("request id has no client id");
  if (h.id.seq == 0) return InvalidArgument("request id sequence number must be > 0");
  if (h.attempt == 0) return InvalidArgument("attempt must be > 0");
  if (h.watermark > h.id.seq) {
    return InvalidArgument("watermark " + std::to_string(h.watermark) +
                           " is above the request's own sequence number " +
                           std::to_string(h.id.seq) + " (the request itself is pending)");
  }
  return Status::Ok();
}

}  // namespace lockd::lock
