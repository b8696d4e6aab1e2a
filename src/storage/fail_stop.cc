#include "storage/fail_stop.h"

#include <spdlog/spdlog.h>

namespace lockd::storage {

Status FailStop::Check() const {
  std::lock_guard lock(mu_);
  return error_;
}

bool FailStop::failed() const {
  std::lock_guard lock(mu_);
  return !error_.ok();
}

Status FailStop::Trip(const std::string& what, const std::string& cause) {
  Status error;
  {
    std::lock_guard lock(mu_);
    if (!error_.ok()) return error_;
    error_ = Internal("fail-stop: " + what + " failed (" + cause +
                      "); this node acknowledges nothing more and must exit");
    error = error_;
  }
  spdlog::critical("{}", error.message());
  if (on_fatal_) on_fatal_(error);
  return error;
}

}  // namespace lockd::storage
