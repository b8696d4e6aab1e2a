#include "base/host_port.h"

#include <charconv>

namespace lockd {

Result<HostPort> ParseHostPort(const std::string& addr) {
  const auto colon = addr.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == addr.size()) {
    return InvalidArgument("address '" + addr + "' is not of the form host:port");
  }
  HostPort hp;
  hp.host = addr.substr(0, colon);
  if (hp.host.front() == '[') {
    if (hp.host.back() != ']') return InvalidArgument("address '" + addr + "' has an unclosed '['");
    hp.host = hp.host.substr(1, hp.host.size() - 2);
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
