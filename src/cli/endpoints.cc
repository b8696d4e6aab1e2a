#include "cli/endpoints.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <sstream>

#include "base/host_port.h"

namespace lockd::cli {

Result<std::vector<std::string>> ResolveEndpoints(const std::string& flag_value) {
  std::string spec = flag_value;
  if (spec.empty()) {
    const char* env = std::getenv("LOCKD_ENDPOINTS");
    spec = (env && *env) ? env : kDefaultEndpoints;
  }
  std::vector<std::string> out;
  std::stringstream in(spec);
  std::string item;
  while (std::getline(in, item, ',')) {
    if (item.empty()) continue;
    if (auto hp = ParseHostPort(item); !hp.ok()) {
      return InvalidArgument("endpoint: " + hp.status().message());
    }
    out.push_back(item);
  }
  if (out.empty()) return InvalidArgument("no endpoints given ('" + spec + "')");
  return out;
}

bool IsLoopback(const std::string& endpoint) {
  auto hp = ParseHostPort(endpoint);
  if (!hp.ok()) return false;
  std::string host = hp->host;
  std::transform(host.begin(), host.end(), host.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (host == "localhost") return true;
  in_addr v4{};
  if (inet_pton(AF_INET, host.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6{};
  if (inet_pton(AF_INET6, host.c_str(), &v6) == 1) {
    return IN6_IS_ADDR_LOOPBACK(&v6) || (IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127);
  }
  return false;
}

}  // namespace lockd::cli
