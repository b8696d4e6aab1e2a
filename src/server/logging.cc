#include "server/logging.h"

#include <spdlog/pattern_formatter.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <memory>
#include <string_view>

namespace lockd::server {
namespace {

std::atomic<uint64_t> g_term{0};

/// %& : the node's current term.
class TermFlag final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg&, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    const std::string t = std::to_string(g_term.load(std::memory_order_relaxed));
    dest.append(t.data(), t.data() + t.size());
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<TermFlag>();
  }
};

/// Appends `in` to `dest` escaped for a JSON string: quotes, backslashes and control characters
/// escaped, bytes that are not well-formed UTF-8 replaced by U+FFFD (a log pipeline must be able
/// to parse every line, whatever a peer's or gRPC's error text held).
void AppendJsonEscaped(std::string_view in, spdlog::memory_buf_t& dest) {
  auto append = [&dest](std::string_view s) { dest.append(s.data(), s.data() + s.size()); };
  size_t i = 0;
  while (i < in.size()) {
    const auto c = static_cast<unsigned char>(in[i]);
    if (c < 0x80) {
      switch (c) {
        case '"':
          append("\\\"");
          break;
        case '\\':
          append("\\\\");
          break;
        case '\n':
          append("\\n");
          break;
        case '\r':
          append("\\r");
          break;
        case '\t':
          append("\\t");
          break;
        default:
          if (c < 0x20) {
            static constexpr char kHex[] = "0123456789abcdef";
            const char esc[] = {'\\', 'u', '0', '0', kHex[c >> 4], kHex[c & 15]};
            dest.append(esc, esc + sizeof esc);
          } else {
            dest.push_back(static_cast<char>(c));
          }
      }
      ++i;
      continue;
    }
    // A multi-byte sequence: its length from the lead byte, then continuation bytes, no
    // overlong forms, no surrogates, nothing above U+10FFFF.
    size_t len = 0;
    uint32_t cp = 0;
    if (c >= 0xc2 && c <= 0xdf) {
      len = 2, cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
      len = 3, cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      len = 4, cp = c & 0x07;
    }
    bool ok = len > 0 && i + len <= in.size();
    for (size_t k = 1; ok && k < len; ++k) {
      const auto cc = static_cast<unsigned char>(in[i + k]);
      ok = (cc & 0xc0) == 0x80;
      cp = (cp << 6) | (cc & 0x3f);
    }
    ok = ok && !(len == 3 && cp < 0x800) && !(len == 4 && (cp < 0x10000 || cp > 0x10ffff)) &&
         !(cp >= 0xd800 && cp <= 0xdfff);
    if (ok) {
      append(in.substr(i, len));
      i += len;
    } else {
      append("\xef\xbf\xbd");  // U+FFFD
      ++i;
    }
  }
}

/// %@ : the message, escaped for a JSON string.
class JsonMessageFlag final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    AppendJsonEscaped(std::string_view(msg.payload.data(), msg.payload.size()), dest);
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<JsonMessageFlag>();
  }
};

}  // namespace

Status ValidateLogFormat(const std::string& format) {
  if (format == "text" || format == "json") return Status::Ok();
  return InvalidArgument("--log-format '" + format + "' is not one of text, json");
}

std::unique_ptr<spdlog::formatter> MakeLogFormatter(uint64_t node_id, const std::string& format) {
  const std::string node = std::to_string(node_id);
  const bool json = format == "json";
  auto f = std::make_unique<spdlog::pattern_formatter>(json ? spdlog::pattern_time_type::utc
                                                            : spdlog::pattern_time_type::local);
  f->add_flag<TermFlag>('&');
  f->add_flag<JsonMessageFlag>('@');
  f->set_pattern(json ? R"({"ts":"%Y-%m-%dT%H:%M:%S.%eZ","level":"%l","node":)" + node +
                            R"(,"term":%&,"msg":"%@"})"
                      : "[%Y-%m-%d %H:%M:%S.%e] [%l] [node " + node + " term %&] %v");
  return f;
}

void ConfigureLogging(uint64_t node_id, const std::string& format) {
  spdlog::set_formatter(MakeLogFormatter(node_id, format));
}

void SetLogTerm(uint64_t term) {
  g_term.store(term, std::memory_order_relaxed);
}

}  // namespace lockd::server
