#include "server/node.h"

#include <arpa/inet.h>
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <httplib.h>
#include <netinet/in.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <limits>
#include <optional>
#include <random>
#include <set>
#include <thread>

#include "base/thread_name.h"
#include "grpc/health/v1/health.pb.h"  // links the descriptor, so reflection can describe it
#include "raft/conf_change.h"
#include "raft/types.h"
#include "server/cluster_identity.h"
#include "server/cluster_metadata.h"
#include "server/forwarder.h"
#include "server/join.h"
#include "server/lock_service.h"
#include "server/peer_transport.h"
#include "server/replica.h"
#include "server/watch_hub.h"
#include "storage/backup_file.h"
#include "storage/data_dir.h"
#include "storage/node_storage.h"

namespace lockd::server {

namespace {

bool IsLoopback(const std::string& addr) {
  auto hp = ParseHostPort(addr);
  if (!hp.ok()) return false;
  std::string h = hp->host;
  if (h.size() > 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  if (h == "localhost") return true;
  in_addr v4{};
  in6_addr v6{};
  if (inet_pton(AF_INET, h.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  return inet_pton(AF_INET6, h.c_str(), &v6) == 1 && IN6_IS_ADDR_LOOPBACK(&v6);
}

/// Plaintext is for development: say so where it can be reached from elsewhere.
void WarnOfPlaintext(const NodeOptions& o) {
  for (const auto& [port, addr] :
       {std::pair<const char*, const std::string&>{"client", o.client_addr},
        {"peer", o.peer_addr}}) {
    if (IsLoopback(addr)) continue;
    spdlog::warn(
        "node {}: the {} port {} is not a loopback address and serves plaintext: anyone who "
        "can reach it can {}. Use TLS (--tls-cert, --tls-key, --peer-ca; docs/security.md)",
        o.node_id, port, addr,
        std::string(port) == "client"
            ? "force-release any lock, revoke any lease and remove members"
            : "pose as a member");
  }
}

PeerTransportOptions TransportOptionsOf(const NodeOptions& o,
                                        const std::shared_ptr<NodeSecurity>& security) {
  PeerTransportOptions t;
  t.max_snapshot_bytes = o.max_snapshot_bytes;
  t.credentials_to = [security](uint64_t id) { return security->ToPeer(id); };
  t.check_claim = [security](const grpc::ServerContext& ctx, uint64_t id) {
    return security->CheckPeerClaim(ctx, id);
  };
  return t;
}

lock::Limits LimitsOf(const NodeOptions& o) {
  lock::Limits l;
  l.max_name_bytes = o.max_name_bytes;
  l.max_label_bytes = o.max_label_bytes;
  l.min_ttl_ms = o.min_ttl_ms;
  l.max_ttl_ms = o.max_ttl_ms;
  l.max_wait_ms = o.max_wait_ms;
  l.max_locks = o.max_locks;
  l.max_leases = o.max_leases;
  l.max_waiters_per_lock = o.max_waiters_per_lock;
  l.max_leases_per_label = o.max_leases_per_label;
  l.outcome_retention_ms = o.outcome_retention_ms;
  l.max_outcomes_per_client = o.max_outcomes_per_client;
  l.max_outcomes = o.max_outcomes;
  return l;
}

/// gRPC's own receive limit on the client port: well above --max-request-bytes, so that the
/// handlers see an oversize request and refuse it with the response metadata (LockServiceImpl::
/// Refuse). Only a message above this one is refused by gRPC itself, without the metadata
/// (docs/api.md says so); it still bounds what one message can make the node buffer.
int ClientReceiveLimit(const NodeOptions& o) {
  const uint64_t limit = std::max<uint64_t>(4 * uint64_t{o.max_request_bytes}, 16u << 20);
  return static_cast<int>(std::min<uint64_t>(limit, std::numeric_limits<int>::max()));
}

/// The identity a data dir records, and what Start() must still write of it.
struct ResolvedIdentity {
  ClusterIdentity identity;
  bool joining = false;   ///< --join: learnt from the cluster, never bootstraps
  bool fresh = false;     ///< nothing was recorded: a new data dir
  bool upgraded = false;  ///< a format-1 file, now with an incarnation
};

/// The cluster this data dir belongs to: recorded when the data dir was created, read back ever
/// after. A new data dir gets a new incarnation and an undecided cluster id (the first leader
/// decides it through the log).
Result<ResolvedIdentity> ResolveIdentity(const NodeOptions& o, const storage::DataDir& dir,
                                         const NodeSecurity& security) {
  auto recorded = LoadClusterIdentity(dir.path());
  if (!recorded.ok()) return recorded.status();
  if (recorded->has_value()) {
    ResolvedIdentity r{std::move(**recorded)};
    const ClusterIdentity& id = r.identity;
    bool self = false;
    for (const auto& m : id.members) self = self || m.id == o.node_id;
    if (!o.join.empty()) {
      // A restart of a joining node: the data dir must be of the cluster it joins.
      auto cluster = AskCluster(SplitJoinAddrs(o.join), std::chrono::seconds(5),
                                security.ToMemberClientPort());
      if (cluster.ok() && !id.cluster_id.empty() && cluster->cluster_id != id.cluster_id) {
        return FailedPrecondition("data dir " + dir.path() + " belongs to cluster " +
                                  id.cluster_id + ", not to cluster " + cluster->cluster_id +
                                  " that --join names; give a new node an empty data dir");
      }
      if (!cluster.ok()) {
        spdlog::warn("--join: cannot check the cluster id ({}); going on with the recorded one",
                     cluster.status().message());
      }
      // The same checks as any restart below (r holds the recorded identity: it was moved
      // into r above, and a second move left the file to be rewritten empty).
      r.joining = true;
    }
    // Started with --join and stopped before it applied a membership: it joins again, with or
    // without --join (its table does not name it, and its log may already hold a term).
    if (id.joining) r.joining = true;
    // A joiner's table need not name it yet (it records the members it asked until the entry
    // that adds it applies).
    if (!self && !r.joining) {
      return FailedPrecondition("data dir " + dir.path() + " belongs to cluster " +
                                (id.cluster_id.empty() ? id.bootstrap_id : id.cluster_id) +
                                ", of which node " + std::to_string(o.node_id) +
                                " is not a member (wrong --id?)");
    }
    if (!o.initial_cluster.empty()) {
      auto flags = ParseInitialCluster(o.initial_cluster);
      if (flags.ok() && *flags != id.members) {
        spdlog::warn(
            "--initial-cluster differs from the membership recorded in {}; the recorded "
            "one is used (it only matters when a cluster is bootstrapped)",
            dir.path());
      }
    }
    if (r.identity.incarnation.empty()) {
      r.identity.incarnation = NewRandomId();
      r.upgraded = true;
    }
    return r;
  }
  ResolvedIdentity r;
  r.fresh = true;
  ClusterIdentity& id = r.identity;
  if (!o.join.empty()) {
    auto cluster =
        AskCluster(SplitJoinAddrs(o.join), std::chrono::seconds(30), security.ToMemberClientPort());
    if (!cluster.ok()) return cluster.status();
    for (const auto& m : cluster->members) {
      if (m.id == o.node_id) {
        return FailedPrecondition("node id " + std::to_string(o.node_id) +
                                  " is already a member of cluster " + cluster->cluster_id +
                                  " (peer " + m.peer_addr +
                                  "); pick another --id, or remove that member first "
                                  "(docs/operations.md, \"Replace a member\")");
      }
    }
    r.joining = true;
    id.joining = true;
    id.cluster_id = cluster->cluster_id;
    id.members = cluster->members;
    id.bootstrap_id =
        DeriveBootstrapId("join", {MemberSpec{o.node_id, o.peer_addr, o.client_addr}});
    id.incarnation = NewRandomId();
    return r;
  }
  if (o.initial_cluster.empty()) {
    id.members.push_back(MemberSpec{o.node_id, o.peer_addr, o.client_addr});
  } else {
    auto members = ParseInitialCluster(o.initial_cluster);
    if (!members.ok()) return members.status();
    id.members = *members;
  }
  id.bootstrap_id = DeriveBootstrapId(o.cluster_token, id.members);
  id.incarnation = NewRandomId();
  return r;
}

}  // namespace

Node::Node(NodeOptions options) : options_(std::move(options)) {}

Node::~Node() {
  Shutdown();
}

std::string Node::cluster_id() const {
  return identity_ ? identity_->cluster_id() : std::string();
}

Status Node::Start() {
  if (Status s = Validate(options_); !s.ok()) return s;

  auto dir = storage::DataDir::Open(options_.data_dir);
  if (!dir.ok()) return dir.status();
  data_dir_ = std::move(dir).value();
  if (const std::string removed = IdentityStore::RemovedMark(data_dir_->path()); !removed.empty()) {
    return FailedPrecondition(
        "data dir " + data_dir_->path() + ": " + removed +
        "; a removed member must not come back with its old data (it would disturb the "
        "cluster). To bring this machine back, give it an empty data dir and add it as a new "
        "member: docs/operations.md, \"Replace a member\"");
  }
  auto security = NodeSecurity::Load(options_);
  if (!security.ok()) return security.status();
  security_ = std::move(security).value();
  if (security_->plaintext()) WarnOfPlaintext(options_);
  if (!options_.access_file.empty()) {
    auto access = AccessControl::Load(
        options_.access_file, security_,
        [this](uint64_t id) { return identity_ && identity_->Names(id); }, metrics_.access);
    if (!access.ok()) return access.status();
    access_ = std::move(access).value();
  }
  auto resolved = ResolveIdentity(options_, *data_dir_, *security_);
  if (!resolved.ok()) return resolved.status();
  const ClusterIdentity* identity = &resolved->identity;

  // Recovery: the log, hard state and the newest snapshot are verified before anything is
  // served; damage stops the node with an error naming it. A write that fails later stops the
  // process: a node that cannot persist must not acknowledge anything.
  storage::NodeStorageOptions so;
  so.on_fatal = [](const lockd::Status& s) {
    spdlog::critical("storage failed, exiting (restart recovers from what is durable): {}",
                     s.ToString());
    spdlog::default_logger()->flush();
    _exit(70);
  };
  so.on_synced_write = [this](double seconds) { metrics_.fsync_duration.Observe(seconds); };
  auto store = storage::NodeStorage::Open(*data_dir_, so);
  if (!store.ok()) return store.status();
  storage_ = std::move(store).value();
  const auto initial = storage_->log().Initial();
  // A joiner that applied no membership yet joins again at a restart, even though its log may
  // hold the leader's term and entries, even older membership entries (the flag is cleared by
  // the first membership it applies whose table names it). A format-3 joiner has no flag: only
  // an untouched log tells.
  const bool untouched = storage_->log().LastIndex().value() == 0 && initial.hard.empty();
  // Not a joiner any more once the Raft membership it recovers names it (a crash between a
  // snapshot's install and the recording of its table leaves the flag behind).
  const auto& snap = storage_->recovered_snapshot();
  const raft::NodeId me(options_.node_id);
  const bool conf_names_self = raft::Members(initial.conf).count(me) > 0 ||
                               (snap.has_value() && raft::Members(snap->meta.conf).count(me) > 0);
  const bool joining = resolved->joining && !conf_names_self &&
                       (identity->joining || (initial.conf.voters.empty() && untouched));
  if (joining) {
    // Never bootstraps: the leader's log (or snapshot) brings the membership once it adds us.
    if (Status s = SaveClusterIdentity(data_dir_->path(), *identity); !s.ok()) return s;
    spdlog::info(
        "node {}: joining cluster {} ({} members known); waiting to be added (lockctl member "
        "add {} --peer {} --client {}); data dir incarnation {}",
        options_.node_id, identity->cluster_id, identity->members.size(), options_.node_id,
        options_.peer_addr, options_.client_addr, identity->incarnation);
  } else if (initial.conf.voters.empty()) {
    if (!initial.hard.empty() || storage_->log().LastIndex().value() > 0) {
      return DataLoss("data dir " + options_.data_dir +
                      " has a Raft log but no membership; it cannot be recovered as is");
    }
    // An identity file that already took part in a cluster (an id decided, a peer accepted) over
    // an empty Raft store: the log and votes were lost while the small file survived (a replaced
    // volume, a "reset" database). Bootstrapping again would bring back a voter that forgot what
    // it acknowledged. Only a file written just before a crash in this very step may go on.
    if (!resolved->fresh && (!identity->cluster_id.empty() || !identity->known_peers.empty())) {
      return DataLoss("data dir " + options_.data_dir + " belongs to cluster " +
                      (identity->cluster_id.empty() ? "(undecided)" : identity->cluster_id) +
                      " but its Raft log is empty: its log and votes were lost. A node that "
                      "lost its data cannot rejoin on its own; replace it (remove it, then add "
                      "it back as a new member with an empty data dir), or restore the whole "
                      "data dir");
    }
    // A new node of a new cluster: record who the members are before anything else is durable.
    if (Status s = SaveClusterIdentity(data_dir_->path(), *identity); !s.ok()) return s;
    raft::ConfState conf;
    for (const auto& m : identity->members) conf.voters.push_back(raft::NodeId(m.id));
    if (Status s = storage_->log().SetConfState(conf); !s.ok()) return s;
    spdlog::info(
        "node {}: bootstrapped a cluster of {} members (bootstrap id {}; the first leader decides "
        "the cluster id); data dir incarnation {}",
        options_.node_id, identity->members.size(), identity->bootstrap_id, identity->incarnation);
  } else if (resolved->fresh) {
    return DataLoss("data dir " + options_.data_dir +
                    " has a Raft log but no identity file (cluster): it cannot be told apart from "
                    "a wiped member; restore the file, or replace the member");
  } else if (resolved->upgraded) {
    if (Status s = SaveClusterIdentity(data_dir_->path(), *identity); !s.ok()) return s;
    spdlog::info("node {}: identity file upgraded from format 1: data dir incarnation {}",
                 options_.node_id, identity->incarnation);
  }
  identity_ = std::make_unique<IdentityStore>(data_dir_->path(), *identity);
  identity_->SetJoining(joining);
  if (identity->joining && !joining) {
    if (Status s = identity_->EndJoining(); !s.ok()) return s;
  }
  const std::string cluster_id = identity_->cluster_id();
  spdlog::info("node {}: data dir {}: cluster {}, log [{}, {}], term {}, commit {}",
               options_.node_id, options_.data_dir,
               cluster_id.empty() ? std::string("(not decided yet)") : cluster_id,
               storage_->log().FirstIndex().value(), storage_->log().LastIndex().value(),
               initial.hard.term.value(), initial.hard.commit.value());

  watch_ = std::make_unique<WatchHub>(cluster_id, options_.watch_history);
  metadata_ = std::make_unique<ClusterMetadata>();
  metadata_->Set("", cluster_id);
  metadata_->SetUndecidedReason([this] {
    // A leader that cannot start a restored cluster says why on every call (Status included).
    std::string reason = identity_->UndecidedReason();
    if (replica_) {
      if (std::string p = replica_->status().restore_problem; !p.empty()) reason += "; " + p;
    }
    return reason;
  });
  identity_->SetDecidedListener([this](const std::string& id) {
    watch_->SetClusterId(id);
    metadata_->Set("", id);
    // Decided: the log carries the restored start from now on, never the seed again.
    if (Status s = storage::RemoveRestoreSeed(data_dir_->path()); !s.ok()) {
      spdlog::warn("node {}: {} (it is never read again)", options_.node_id, s.ToString());
    }
  });
  PeerIdentity self;
  self.node_id = options_.node_id;
  self.format_version = raft::kFormatVersion;
  self.election_min_ms = options_.election_min_ms;
  self.tick_ms = options_.tick_ms;
  self.drift_ppm = static_cast<uint32_t>(options_.drift * 1'000'000 + 0.5);
  // Whether access control is on travels with the limits: members must agree on it, so that a
  // member started without --access-file (a rolling change, a hand restart) cannot lead the
  // others and propose commands for nobody (docs/security.md, "Where it is enforced"). The
  // string is unchanged without it, as older builds send.
  self.limits = lock::ToString(LimitsOf(options_)) +
                (options_.access_file.empty() ? "" : " --access-file=(set)");
  transport_ = std::make_unique<PeerTransport>(
      self, *identity_,
      [this](uint64_t from, std::vector<std::string> messages) {
        replica_->DeliverPeerMessages(from, std::move(messages));
      },
      [this](uint64_t from, uint64_t membership_index) {
        return identity_->Admits(from, membership_index);
      },
      [&] {
        PeerTransportOptions t = TransportOptionsOf(options_, security_);
        // A broken stream to the leader: elect a new one at the minimum timeout (failover).
        t.on_peer_lost = [this](uint64_t id) {
          if (replica_) replica_->PeerUnreachable(id);
        };
        return t;
      }());
  transport_->SetSnapshotHandler([this](uint64_t from, std::string message, std::string payload,
                                        std::function<void(Status)> done) {
    replica_->DeliverSnapshot(from, std::move(message), std::move(payload), std::move(done));
  });

  ReplicaOptions ro;
  ro.node_id = options_.node_id;
  ro.identity = identity_.get();
  ro.members = identity->members;
  ro.timing.tick = std::chrono::milliseconds(options_.tick_ms);
  ro.timing.election_min = std::chrono::milliseconds(options_.election_min_ms);
  ro.timing.drift = options_.drift;
  ro.forward_timeout = std::chrono::milliseconds(options_.forward_timeout_ms);
  ro.limits = LimitsOf(options_);
  ro.seed = std::random_device{}() ^ (options_.node_id << 32);
  ro.snapshot_entries = options_.snapshot_entries;
  ro.commit_flush_delay = std::chrono::microseconds(options_.commit_flush_us);
  ro.joining = joining;
  ro.max_promotion_lag = options_.max_promotion_lag;
  ro.apply_metrics = metrics_.apply;
  ro.on_snapshot = [this](uint64_t bytes, double seconds) {
    metrics_.snapshot_bytes.Set(static_cast<double>(bytes));
    metrics_.snapshot_duration.Observe(seconds);
    metrics_.snapshots.Increment();
  };
  // A member `lockd restore` made: until the cluster id is decided, its leader proposes the id
  // with the restored starting state. Once decided, the seed is inert and never read again (a
  // damaged unused seed must not stop a healthy member).
  Result<std::optional<storage::RestoreSeed>> seed = std::optional<storage::RestoreSeed>();
  if (identity_->cluster_id().empty()) {
    seed = storage::LoadRestoreSeed(data_dir_->path());
  } else if (Status s = storage::RemoveRestoreSeed(data_dir_->path()); !s.ok()) {
    spdlog::warn("node {}: {} (it is never read again)", options_.node_id, s.ToString());
  }
  if (!seed.ok()) return seed.status();
  const std::string& restored_from = identity->restored_from;
  if (identity_->cluster_id().empty() && !restored_from.empty() && !seed->has_value()) {
    // Without the seed this member would lead the restored cluster from counter 0.
    return FailedPrecondition(
        "data dir " + options_.data_dir + " was made by `lockd restore` from backup " +
        restored_from + " and the cluster id is not decided yet, but its " +
        storage::kRestoreSeedFile +
        " file is missing: it cannot start the restored cluster; make the data dir again with "
        "`lockd restore` (into an empty folder)");
  }
  if (seed->has_value()) {
    auto plan = PlanFromSeed(**seed);
    if (!plan.ok()) return plan.status();
    if (!restored_from.empty() && plan->digest != restored_from) {
      return FailedPrecondition("data dir " + options_.data_dir + ": its " +
                                storage::kRestoreSeedFile + " holds backup " + plan->digest +
                                ", not backup " + restored_from + " it was restored from");
    }
    spdlog::info(
        "node {}: restored from backup {} (cluster {}, index {}, token counter {}); the first "
        "leader decides the new cluster id and raises the counters",
        options_.node_id, plan->digest, plan->backup.cluster_id, plan->backup.index,
        plan->backup.token_counter);
    ro.restore = std::move(plan).value();
  }
  ro.restored = ro.restore.has_value() || !restored_from.empty();
  replica_ =
      std::make_unique<Replica>(ro, *storage_, *transport_, *watch_, SystemClock::Instance());
  if (Status s = replica_->Start(); !s.ok()) return s;

  {
    grpc::ServerBuilder builder;
    int bound = 0;
    builder.AddListeningPort(options_.peer_addr, security_->PeerPortCredentials(), &bound);
    // gRPC sets SO_REUSEPORT by default: a second lockd on the same address would start and
    // take a share of the connections. Refused instead, with the error below.
    builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
    builder.RegisterService(transport_->service());
    builder.SetMaxReceiveMessageSize(64 << 20);
    peer_server_ = builder.BuildAndStart();
    if (!peer_server_ || bound == 0) {
      peer_server_.reset();
      Shutdown();
      return Unavailable("cannot listen on --peer-addr " + options_.peer_addr +
                         " (in use, or not an address of this machine)");
    }
  }
  for (const auto& m : identity->members) {
    if (m.id != options_.node_id) transport_->SetPeer(m.id, m.peer_addr);
  }

  metadata_->SetLeaderSource([this] { return identity_->ClientAddr(replica_->leader_id()); });
  forwarder_ = std::make_unique<Forwarder>(options_.node_id,
                                           std::chrono::milliseconds(options_.forward_timeout_ms),
                                           security_->ToMemberClientPort());
  ServiceContext sc{*replica_,
                    *forwarder_,
                    *watch_,
                    SystemClock::Instance(),
                    LimitsOf(options_),
                    [this] { return identity_->cluster_id(); },
                    identity_.get(),
                    std::chrono::milliseconds(options_.forward_timeout_ms),
                    static_cast<uint32_t>(options_.max_page_size),
                    options_.max_request_bytes,
                    &metrics_.keepalive_overflows,
                    &metrics_.watch_overflows,
                    &metrics_.service,
                    access_.get()};
  lock_service_ = std::make_unique<LockServiceImpl>(std::move(sc));
  cluster_service_ = std::make_unique<ClusterServiceImpl>(*lock_service_, metrics_.backup);
  cluster_service_->set_backup_stall_timeout(
      std::chrono::milliseconds(options_.backup_stall_timeout_ms));
  cluster_service_->set_member_add_timeout(
      std::chrono::milliseconds(options_.member_add_timeout_ms));

  // Touch the health descriptor so the linker keeps it for reflection.
  (void)grpc::health::v1::HealthCheckResponse::descriptor();
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int bound_port = 0;
  builder.AddListeningPort(options_.client_addr, security_->ClientPortCredentials(), &bound_port);
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);  // as on the peer port
  builder.RegisterService(lock_service_.get());
  builder.RegisterService(cluster_service_.get());
  builder.SetMaxReceiveMessageSize(ClientReceiveLimit(options_));
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> interceptors;
  interceptors.push_back(metadata_->Factory());
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  grpc_server_ = builder.BuildAndStart();
  if (!grpc_server_ || bound_port == 0) {
    grpc_server_.reset();
    Shutdown();
    return Unavailable("cannot listen on --client-addr " + options_.client_addr +
                       " (in use, or not an address of this machine)");
  }
  grpc_server_->GetHealthCheckService()->SetServingStatus(false);
  spdlog::info("node {}: client gRPC on {}, peers on {}", options_.node_id, options_.client_addr,
               options_.peer_addr);

  if (Status s = StartHttp(); !s.ok()) {
    Shutdown();
    return s;
  }
  stop_watcher_ = false;
  watcher_ = std::thread([this] {
    NameThisThread("leader-watch");
    WatchLeadership();
  });
  return Status::Ok();
}

void Node::WatchLeadership() {
  uint64_t last_leader = 0, last_known_leader = 0;
  bool last_serving = false;
  std::unique_lock lock(watcher_mu_);
  while (!stop_watcher_) {
    const ReplicaStatus st = replica_->status();
    if (st.leader_id != last_leader) {
      if (st.leader_id != 0) {
        spdlog::info("node {}: leader is {}", options_.node_id, st.leader_id);
        // A leader that comes back after a moment of "no leader known" is not a change.
        if (st.leader_id != last_known_leader) metrics_.LeaderChanged();
        last_known_leader = st.leader_id;
      }
      last_leader = st.leader_id;
    }
    std::string why = NotReadyReason(st);
    const bool serving = why.empty();
    {
      std::lock_guard reason_lock(not_ready_mu_);
      not_ready_reason_ = std::move(why);
    }
    if (serving != last_serving) {
      grpc_server_->GetHealthCheckService()->SetServingStatus(serving);
      last_serving = serving;
    }
    serving_ = serving;
    metrics_.Mirror(st, replica_->promotions());
    std::set<uint64_t> peers;
    for (const auto& m : st.members) {
      if (m.id == options_.node_id) continue;
      peers.insert(m.id);
      std::optional<uint64_t> lag;
      if (st.role == raft::Role::kLeader)
        lag = st.last_index > m.match ? st.last_index - m.match : 0;
      metrics_.MirrorPeer(m.id, transport_->Stats(m.id), lag);
    }
    metrics_.ForgetPeersExcept(peers);
    watcher_cv_.wait_for(lock, std::chrono::milliseconds(20));
  }
}

std::string Node::NotReadyReason(const ReplicaStatus& st) const {
  if (stopping_.load()) return "the node is stopping";
  if (auto removed = identity_->removed_reason(); !removed.empty()) return "removed: " + removed;
  // The one reason an operator cannot learn from the log alone: a restore that cannot start.
  if (!st.restore_problem.empty()) return st.restore_problem;
  if (Status fatal = replica_->fatal(); !fatal.ok()) {
    return "stopped on an error: " + fatal.ToString();
  }
  // Before the leader check: every lockd.v1 call is refused until the id is decided, whoever
  // leads (a follower of a restored cluster whose leader cannot start it knows a leader). After
  // the restore problem, which says why the id is not decided where it is known.
  if (!identity_->decided()) return identity_->UndecidedReason();
  if (st.leader_id == 0) return "no leader known (election in progress, or no quorum)";
  if (st.cluster_commit > st.applied + options_.health_max_apply_lag) {
    return "applied index " + std::to_string(st.applied) + " is " +
           std::to_string(st.cluster_commit - st.applied) + " entries behind commit (more than " +
           "--health-max-apply-lag " + std::to_string(options_.health_max_apply_lag) + ")";
  }
  return {};
}

Status Node::StartHttp() {
  auto hp = ParseHostPort(options_.http_addr);
  if (!hp.ok()) return hp.status();
  http_server_ = std::make_unique<httplib::Server>();
  // Liveness: the process answers (a node waiting for a quorum is alive; restarting it would
  // not help).
  // A replica stopped on a fatal error (a failed snapshot install or apply) is not alive: the
  // supervisor (systemd, Kubernetes) restarts the process, which recovers from what is durable.
  http_server_->Get("/healthz", [this](const httplib::Request&, httplib::Response& res) {
    if (Status fatal = replica_->fatal(); !fatal.ok()) {
      res.status = 503;
      res.set_content("FAILED: " + fatal.ToString() + "\n", "text/plain");
      return;
    }
    res.set_content("OK\n", "text/plain");
  });
  // Readiness: what grpc.health.v1 reports, with the reason when not ready.
  http_server_->Get("/readyz", [this](const httplib::Request&, httplib::Response& res) {
    if (serving_.load()) {
      res.set_content("READY\n", "text/plain");
      return;
    }
    std::string why;
    {
      std::lock_guard lock(not_ready_mu_);
      why = not_ready_reason_;
    }
    res.status = 503;
    res.set_content("NOT_READY: " + (why.empty() ? std::string("starting") : why) + "\n",
                    "text/plain");
  });
  http_server_->Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    metrics_.up.Set(serving_.load() ? 1 : 0);
    res.set_content(metrics_.Render(), "text/plain; version=0.0.4");
  });
  // cpp-httplib sets SO_REUSEPORT by default: a second lockd on the same --http-addr would
  // answer part of the probes and scrapes. SO_REUSEADDR only (a restart right after a kill).
  http_server_->set_socket_options([](socket_t sock) {
    const int yes = 1;
    (void)::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  if (!http_server_->bind_to_port(hp->host, hp->port)) {
    http_server_.reset();
    return Unavailable("cannot listen on --http-addr " + options_.http_addr);
  }
  http_thread_ = std::thread([server = http_server_.get()] {
    NameThisThread("http");
    server->listen_after_bind();
  });
  spdlog::info("node {}: HTTP on {}", options_.node_id, options_.http_addr);
  return Status::Ok();
}

namespace {
/// How long a stopping node refuses new calls with UNAVAILABLE before its server shuts down.
constexpr std::chrono::milliseconds kStopDrain{300};
}  // namespace

Status Node::ReloadCertificates() {
  if (!security_) return FailedPrecondition("the node has not started");
  return security_->Reload();
}

Status Node::ReloadAccessPolicy() {
  if (!access_) return FailedPrecondition("this node runs without --access-file");
  if (Status s = access_->Reload(); !s.ok()) return s;
  // Open streams were authorized under the old policy: they are judged again under the new one.
  if (lock_service_) lock_service_->RecheckStreams();
  return Status::Ok();
}

void Node::Shutdown() {
  stopping_ = true;
  serving_ = false;
  if (watcher_.joinable()) {
    {
      std::lock_guard lock(watcher_mu_);
      stop_watcher_ = true;
    }
    watcher_cv_.notify_all();
    watcher_.join();
  }
  if (grpc_server_) grpc_server_->GetHealthCheckService()->SetServingStatus(false);
  // A leader hands over first, so the cluster does not wait out an election timeout.
  if (replica_) replica_->TransferAway(std::chrono::milliseconds(2000));
  if (lock_service_) lock_service_->Shutdown();
  if (replica_) replica_->Stop();
  if (grpc_server_) {
    // Keep answering "stopping" (UNAVAILABLE, LockServiceImpl::Refuse) for a moment before the
    // server itself shuts down: gRPC cancels a call that arrives while its server shuts down, so
    // a client that sends in that instant sees CANCELLED; one that sends during the drain is told
    // to go elsewhere (a stopped leader's unary renewals were answered CANCELLED without it).
    std::this_thread::sleep_for(kStopDrain);
    grpc_server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
    grpc_server_->Wait();
    grpc_server_.reset();
  }
  if (transport_) transport_->Stop();
  if (peer_server_) {
    peer_server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
    peer_server_->Wait();
    peer_server_.reset();
  }
  if (http_server_) {
    http_server_->stop();
    if (http_thread_.joinable()) http_thread_.join();
    http_server_.reset();
  }
  cluster_service_.reset();
  lock_service_.reset();
  forwarder_.reset();
  replica_.reset();
  transport_.reset();
  watch_.reset();
  metadata_.reset();
  identity_.reset();
  storage_.reset();
  data_dir_.reset();
}

}  // namespace lockd::server
