#include "base/host_port.h"

#include <algorithm>
#include <cctype>
#include <charconv>

namespace lockd {

namespace {

constexpr size_t kMaxAddr = 255;  ///< a DNS name's limit (253) plus room for a port

bool HostnameChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '.' || c == '-' || c == '_';
}

bool Ipv6Char(char c) {
  return std::isxdigit(static_cast<unsigned char>(c)) != 0 || c == ':' || c == '.';
}

}  // namespace

Result<HostPort> ParseHostPort(const std::string& addr) {
  // The address is echoed in errors and logs and written into the identity file: a length bound
  // and plain characters only (no space, no line break, no control byte).
  if (addr.size() > kMaxAddr) {
    return InvalidArgument("an address of " + std::to_string(addr.size()) +
                           " characters; at most " + std::to_string(kMaxAddr));
  }
  if (!std::all_of(addr.begin(), addr.end(),
                   [](char c) { return HostnameChar(c) || c == ':' || c == '[' || c == ']'; })) {
    return InvalidArgument(
        "an address with a character other than letters, digits, '.', '-', '_', ':', '[' and "
        "']'; an address is host:port, [ipv6]:port");
  }
  const auto colon = addr.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == addr.size()) {
    return InvalidArgument("address '" + addr + "' is not of the form host:port");
  }
  HostPort hp;
  hp.host = addr.substr(0, colon);
  if (hp.host.front() == '[') {
    if (hp.host.back() != ']') return InvalidArgument("address '" + addr + "' has an unclosed '['");
    hp.host = hp.host.substr(1, hp.host.size() - 2);
    if (hp.host.empty() || !std::all_of(hp.host.begin(), hp.host.end(), Ipv6Char)) {
      return InvalidArgument("address '" + addr + "' has a bracketed host that is not IPv6");
    }
  } else if (!std::all_of(hp.host.begin(), hp.host.end(), HostnameChar)) {
    return InvalidArgument("address '" + addr +
                           "' has a host that is not a name or an IPv4 address (an IPv6 "
                           "address is written in brackets: [::1]:7401)");
  }
  const std::string port = addr.substr(colon + 1);
  unsigned value = 0;
  auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (ec != std::errc() || end != port.data() + port.size() || value == 0 || value > 65535) {
    return InvalidArgument("address '" + addr + "' has port '" + port +
                           "'; a port is a number in 1..65535");
  }
  hp.port = static_cast<uint16_t>(value);
  return hp;
}

}  // namespace lockd
