// NodeOptions: everything a lockd node is configured with, from flags or the TOML file, and the
// validation that turns a bad setting into a clear error at start rather than a surprise later.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "base/host_port.h"
#include "base/status.h"

namespace lockd::server {

struct NodeOptions {
  uint64_t node_id = 1;
  std::string client_addr = "127.0.0.1:7401";  ///< LockService, ClusterService, health, reflection
  std::string peer_addr = "127.0.0.1:7501";    ///< Raft traffic between members
  std::string http_addr = "127.0.0.1:7601";    ///< /metrics, /healthz, /readyz
  std::string data_dir = "./lockd-data";
  std::string log_level = "info";
  std::string log_format = "text";  ///< text or json (server/logging.h)

  /// The members of a new cluster ("id=peer/client,..."); used only when the data dir is empty.
  /// Empty: a one-node cluster of this node alone.
  std::string initial_cluster;
  /// Mixed into the cluster id of a new cluster, so two clusters bootstrapped from the same
  /// member list still get different ids.
  std::string cluster_token = "lockd";
  /// Join a running cluster instead of bootstrapping one: client addresses ("host:port,...") of
  /// some of its members, asked for the cluster id and member table. The node then waits to be
  /// added (ClusterService.AddMember) and learns everything else from the leader's log.
  std::string join;

  // Transport security (server/tls.h, docs/security.md). TLS when any file is given: then
  // --tls-cert, --tls-key and --peer-ca are all required.
  std::string tls_cert;       ///< this member's certificate (chain), PEM; names it (MemberUri)
  std::string tls_key;        ///< its private key, PEM, unencrypted
  std::string tls_client_ca;  ///< set: clients must present a certificate this CA signed
  std::string peer_ca;        ///< the cluster CA: signs every member's certificate
  /// Serve both ports in plaintext, said explicitly (development only).
  bool plaintext = false;
  /// The access policy (server/access_policy.h): identities, roles, quotas. Empty: no access
  /// control (anyone who reaches the client port may do anything).
  std::string access_file;

  // Membership changes.
  /// AddMember promotes a learner to voter once its log is within this many entries of the
  /// leader's.
  uint64_t max_promotion_lag = 1000;
  /// How long AddMember waits for the new learner to catch up before it answers
  /// DEADLINE_EXCEEDED (the node stays a learner; adding it again promotes it).
  uint64_t member_add_timeout_ms = 60'000;
  /// A leader sends a commit index alone (an empty append) this long after it went unsent; the
  /// next append or heartbeat usually carries it sooner (0: at once). ReplicaOptions.
  uint64_t commit_flush_us = 2000;

  // Timing. Every member must use the same values (peers check them when they connect).
  uint64_t tick_ms = 100;           ///< T_tick: heartbeat interval and the core's tick
  uint64_t election_min_ms = 1000;  ///< E_min; election timeouts are random in [E_min, 2·E_min)
  double drift = 0.01;              ///< ρ, the assumed bound on clock-rate drift
  uint64_t forward_timeout_ms = 10'000;  ///< F_fwd

  // Limits (design brief, guarantee 9).
  uint64_t min_ttl_ms = 2'000;
  uint64_t max_ttl_ms = 3'600'000;
  uint64_t max_wait_ms = 3'600'000;
  uint64_t max_name_bytes = 512;
  uint64_t max_label_bytes = 128;
  uint64_t max_locks = 1'000'000;
  uint64_t max_leases = 100'000;
  uint64_t max_waiters_per_lock = 10'000;
  uint64_t max_leases_per_label = 100'000;
  /// W: an exactly-once record is retired once this old, whatever the watermark (>= F_fwd).
  uint64_t outcome_retention_ms = 300'000;
  uint64_t max_outcomes_per_client = 100'000;  ///< exactly-once records of one client
  uint64_t max_outcomes = 1'000'000;           ///< exactly-once records, plus one per client
  uint64_t max_request_bytes = 64 * 1024;      ///< larger client messages are RESOURCE_EXHAUSTED
  uint64_t max_page_size = 1000;

  uint64_t watch_history = 10'000;  ///< entries with events kept for resuming watches
  /// Health is SERVING only while the applied index is within this many entries of the commit.
  uint64_t health_max_apply_lag = 1000;
  // Snapshots.
  /// A snapshot is taken, and the log compacted to it, every this many applied entries (0: never).
  uint64_t snapshot_entries = 10'000;
  /// Largest snapshot this node accepts from a leader.
  uint64_t max_snapshot_bytes = uint64_t{4} << 30;
  /// A Backup stream whose client has not taken one chunk for this long is ended (its slot freed).
  uint64_t backup_stall_timeout_ms = 60'000;
};

/// One member of the initial cluster, as `--initial-cluster` names it.
struct MemberSpec {
  uint64_t id = 0;
  std::string peer_addr;    ///< where the other members reach its PeerService
  std::string client_addr;  ///< what `lockd-leader` tells clients when it leads

  bool operator==(const MemberSpec&) const = default;
};

/// Parses "1=10.0.0.1:7501/10.0.0.1:7401,2=..." (id=peer/client, comma-separated): ids unique and
/// positive, every address host:port, no address used twice.
Result<std::vector<MemberSpec>> ParseInitialCluster(const std::string& spec);

/// The addresses --join names (comma-separated, empty parts skipped).
std::vector<std::string> SplitJoinAddrs(const std::string& join);

/// Checks every field; the message names the setting and what a valid value looks like.
Status Validate(const NodeOptions& options);
/// Whether the options ask for TLS (any certificate file given).
bool UsesTls(const NodeOptions& options);

}  // namespace lockd::server
