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

/// %@ : the message, escaped for a JSON string (quotes, backslashes, control characters).
class JsonMessageFlag final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    const std::string_view in(msg.payload.data(), msg.payload.size());
    for (const char ch : in) {
      const auto c = static_cast<unsigned char>(ch);
      switch (c) {
        case '"':
          Append(dest, "\\\"");
          break;
        case '\\':
          Append(dest, "\\\\");
          break;
        case '\n':
          Append(dest, "\\n");
          break;
        case '\r':
          Append(dest, "\\r");
          break;
        case '\t':
          Append(dest, "\\t");
          break;
        default:
          if (c < 0x20) {
            static constexpr char kHex[] = "0123456789abcdef";
            const char esc[] = {'\\', 'u', '0', '0', kHex[c >> 4], kHex[c & 15]};
            dest.append(esc, esc + sizeof esc);
          } else {
            dest.push_back(ch);
          }
      }
    }
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<JsonMessageFlag>();
  }

 private:
  static void Append(spdlog::memory_buf_t& dest, std::string_view s) {
    dest.append(s.data(), s.data() + s.size());
  }
};

}  // namespace

Status ValidateLogFormat(const std::string& format) {
  if (format == "text" || format == "json") return Status::Ok();
  return InvalidArgument("--log-format '" + format + "' is not one of text, json");
}

void ConfigureLogging(uint64_t node_id, const std::string& format) {
  const std::string node = std::to_string(node_id);
  const bool json = format == "json";
  auto f = std::make_unique<spdlog::pattern_formatter>(json ? spdlog::pattern_time_type::utc
                                                            : spdlog::pattern_time_type::local);
  f->add_flag<TermFlag>('&');
  f->add_flag<JsonMessageFlag>('@');
  f->set_pattern(json ? R"({"ts":"%Y-%m-%dT%H:%M:%S.%eZ","level":"%l","node":)" + node +
                            R"(,"term":%&,"msg":"%@"})"
                      : "[%Y-%m-%d %H:%M:%S.%e] [%l] [node " + node + " term %&] %v");
  spdlog::set_formatter(std::move(f));
}

void SetLogTerm(uint64_t term) {
  g_term.store(term, std::memory_order_relaxed);
}

}  // namespace lockd::server
