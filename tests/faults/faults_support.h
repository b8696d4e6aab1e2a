// Helpers shared by the netns fault tests: the root check, a client of the library connected to
// a NetnsCluster's endpoints, and one timed write.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "faults/netns/netns_cluster.h"
#include "lockd/client.h"

namespace lockd::faults {

/// GTEST_SKIPs (never a silent pass) when namespaces cannot be made here.
#define LOCKD_REQUIRE_NETNS()                                       \
  do {                                                              \
    if (std::string why = NetnsUnavailableReason(); !why.empty()) { \
      GTEST_SKIP() << "skipped: " << why;                           \
    }                                                               \
  } while (0)

inline std::vector<std::string> SplitEndpoints(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string e; std::getline(in, e, ',');) out.push_back(e);
  return out;
}

/// A library client for `endpoints` (comma-separated), with short call timeouts so a fault
/// shows as an error within seconds.
inline std::unique_ptr<client::Client> ConnectTo(const std::string& endpoints,
                                                 Ms call_timeout = std::chrono::seconds(3),
                                                 int attempts = 8) {
  client::ClientOptions o;
  o.endpoints = SplitEndpoints(endpoints);
  o.call_timeout = call_timeout;
  o.max_attempts = attempts;
  o.log = [](const std::string&) {};
  auto c = client::Client::Connect(o);
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  return c.ok() ? std::move(*c) : nullptr;
}

/// One committed write: a lease granted and revoked (two log entries). OK or the error.
inline client::Status CommitOnce(client::Client& c, const std::string& label = "probe") {
  auto lease = c.GrantLease(std::chrono::seconds(5), label);
  if (!lease.ok()) return lease.status();
  return (*lease)->Revoke();
}

/// Repeats CommitOnce until it succeeds or `timeout`; the time it took, or nullopt.
inline std::optional<Ms> CommitWithin(client::Client& c, Ms timeout) {
  const auto start = std::chrono::steady_clock::now();
  while (std::chrono::steady_clock::now() - start < timeout) {
    if (CommitOnce(c).ok()) {
      return std::chrono::duration_cast<Ms>(std::chrono::steady_clock::now() - start);
    }
  }
  return std::nullopt;
}

}  // namespace lockd::faults
