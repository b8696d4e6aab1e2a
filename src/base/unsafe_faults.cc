#include "base/unsafe_faults.h"

#include <array>
#include <string>
#include <utility>

namespace lockd::unsafe {
namespace {

constexpr std::array<std::pair<std::string_view, Fault>, 3> kNames = {{
    {"skip-new-leader-rule", Fault::kSkipNewLeaderRule},
    {"skip-token-increment", Fault::kSkipTokenIncrement},
    {"stall-rule-old-order", Fault::kStallRuleOldOrder},
}};

// Written only before threads start (see the header), so plain bools suffice.
std::array<bool, kNames.size()> enabled{};

}  // namespace

Status Enable(std::string_view name) {
  for (size_t i = 0; i < kNames.size(); ++i) {
    if (kNames[i].first == name) {
      enabled[i] = true;
      return Status::Ok();
    }
  }
  std::string known;
  for (const auto& [n, f] : kNames) known += (known.empty() ? "" : ", ") + std::string(n);
  return InvalidArgument("unknown --testing-unsafe-fault '" + std::string(name) +
                         "' (known: " + known + ")");
}

bool Enabled(Fault f) {
  for (size_t i = 0; i < kNames.size(); ++i) {
    if (kNames[i].second == f) return enabled[i];
  }
  return false;
}

}  // namespace lockd::unsafe
