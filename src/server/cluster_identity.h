// ClusterIdentity: which cluster a data dir belongs to and who its members are, written once when
// the cluster is bootstrapped and read back at every start (a restarted node takes its
// membership from its own storage, never from flags).
//
// The cluster id of a bootstrapped cluster is derived from --cluster-token and the initial member
// list, so that the members, started independently with the same flags, agree on it without
// talking; a restore (a new cluster from a backup) gets a random one. The file `<data dir>/cluster`
// is text (format version, cluster id, one line per member) with a CRC-32C, written to a temporary
// name, synced, renamed into place and the folder synced.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "base/status.h"
#include "server/options.h"

namespace lockd::server {

struct ClusterIdentity {
  std::string cluster_id;
  std::vector<MemberSpec> members;

  bool operator==(const ClusterIdentity&) const = default;
};

/// The id a cluster bootstrapped from `members` with `token` gets (16 hex digits).
std::string DeriveClusterId(const std::string& token, const std::vector<MemberSpec>& members);

/// The identity recorded in `data_dir`, nullopt when none is (a new node), or an error naming
/// the damage.
Result<std::optional<ClusterIdentity>> LoadClusterIdentity(const std::string& data_dir);
/// Records the identity durably.
Status SaveClusterIdentity(const std::string& data_dir, const ClusterIdentity& identity);

std::string EncodeClusterIdentity(const ClusterIdentity& identity);
Result<ClusterIdentity> DecodeClusterIdentity(const std::string& text);

}  // namespace lockd::server
