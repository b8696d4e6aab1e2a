#include "cli/endpoints.h"

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

}  // namespace lockd::cli
