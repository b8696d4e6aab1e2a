// The little JSON lockctl writes by hand (protobuf messages go through protobuf's own printer).
#pragma once

#include <string>
#include <string_view>

namespace lockd::cli {

/// `s` as a quoted JSON string.
std::string JsonString(std::string_view s);

}  // namespace lockd::cli
