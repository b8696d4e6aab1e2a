// detail::Access: the library's way to build the public Lease and Lock handles and reach their
// cores, which the public header keeps private (its constructors are not part of the API).
#pragma once

#include <memory>

#include "client/lease_core.h"
#include "lockd/client.h"

namespace lockd::client::detail {

struct Access {
  static std::shared_ptr<Lease> MakeLease(std::shared_ptr<LeaseCore> core) {
    return std::shared_ptr<Lease>(new Lease(std::move(core)));
  }
  static Lock MakeLock(std::shared_ptr<LockCore> core) { return Lock(std::move(core)); }
  static const std::shared_ptr<LeaseCore>& Core(const Lease& lease) { return lease.core_; }
};

}  // namespace lockd::client::detail
