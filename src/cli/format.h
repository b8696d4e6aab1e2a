// How lockctl shows the cluster's answers: a table for people, or JSON for scripts (protobuf's
// canonical JSON mapping, field names as in the .proto, every field present; 64-bit integers are
// strings, as that mapping says).
#pragma once

#include <google/protobuf/message.h>

#include <string>

#include "lockd/v1/lockd.pb.h"

namespace lockd::cli {

std::string ToJson(const google::protobuf::Message& m);

std::string FormatStatus(const lockd::v1::StatusResponse& s, bool json);
std::string FormatLock(const lockd::v1::LockInfo& lock, bool json);
std::string FormatLocks(const lockd::v1::ListLocksResponse& page, bool json);
std::string FormatLease(const lockd::v1::LeaseInfo& lease, bool json);
std::string FormatLeases(const lockd::v1::ListLeasesResponse& page, bool json);

const char* ModeName(lockd::v1::LockMode mode);
/// "leader", "follower", "candidate", "learner".
const char* RoleName(lockd::v1::Member::Role role);

}  // namespace lockd::cli
