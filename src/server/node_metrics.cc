#include "server/node_metrics.h"

namespace lockd::server {

NodeMetrics::NodeMetrics()
    : up(registry_.AddGauge("lockd_up", "Whether this node is ready to serve (1) or not (0).")),
      is_leader(registry_.AddGauge("lockd_is_leader", "Whether this node leads (1) or not.")),
      term(registry_.AddGauge("lockd_raft_term", "The node's current Raft term.")),
      leader_changes(
          registry_.AddCounter("lockd_leader_changes_total",
                               "Times this node saw a new leader (elections, hand-overs).")),
      commit(registry_.AddGauge("lockd_raft_commit_index", "The node's commit index.")),
      cluster_commit(registry_.AddGauge(
          "lockd_raft_cluster_commit_index",
          "The cluster's commit index as this node knows it (on a follower, the leader's as its "
          "last entries carried it; a follower's own commit index never exceeds its log).")),
      applied(registry_.AddGauge("lockd_raft_applied_index", "The node's applied index.")),
      proposals_in_flight(registry_.AddGauge("lockd_proposals_in_flight",
                                             "Leader: commands proposed and not yet applied.")),
      leases(registry_.AddGauge("lockd_leases", "Live leases in the replicated state.")),
      locks(registry_.AddGauge("lockd_locks", "Locks held or waited for.")),
      holders(registry_.AddGauge(
          "lockd_held_grants", "Grants held, over every lock (a shared lock counts each holder).")),
      waiters(registry_.AddGauge("lockd_waiters", "Acquires waiting in a lock's queue.")),
      tokens(registry_.AddGauge("lockd_token_counter", "The last fencing token granted.")),
      members(registry_.AddGauge(
          "lockd_members", "Members (voters and learners) of the membership this node applied.")),
      learners(
          registry_.AddGauge("lockd_learners", "Learners (members not yet voting) among them.")),
      promotions(registry_.AddCounter("lockd_promotions_total",
                                      "Learners this node, as leader, promoted to voter.")),
      campaigns(registry_.AddCounter(
          "lockd_campaigns_total",
          "Elections (pre-vote or vote) this node started; a removed node starts none.")),
      try_locks_by_read(registry_.AddCounter(
          "lockd_try_locks_by_read_total",
          "Try-locks that failed and were answered after a ReadIndex round, with no log entry.")),
      keepalive_overflows(registry_.AddCounter(
          "lockd_keepalive_overflows_total",
          "KeepAlive streams ended RESOURCE_EXHAUSTED because their client did not read the "
          "answers.")),
      watch_overflows(registry_.AddCounter(
          "lockd_watch_overflows_total",
          "Watch streams ended RESOURCE_EXHAUSTED because their client fell too far behind.")),
      fsync_duration(registry_.AddHistogram(
          "lockd_fsync_duration_seconds",
          "Duration of each synced write of the Raft log (appends, compactions, installs).",
          LatencyBuckets())),
      snapshot_index(
          registry_.AddGauge("lockd_snapshot_index", "The index of the node's newest snapshot.")),
      snapshot_bytes(
          registry_.AddGauge("lockd_snapshot_bytes",
                             "Size of the newest snapshot this node took (its state encoding).")),
      snapshot_duration(registry_.AddHistogram(
          "lockd_snapshot_duration_seconds",
          "Time from the start of a snapshot's encoding (on the loop) to the log compacted to it "
          "(the file is written off the loop in between; the loop's own share is logged).",
          LatencyBuckets())),
      snapshots(registry_.AddCounter("lockd_snapshots_total",
                                     "Snapshots this node took (periodic or asked).")) {
  for (size_t o = 0; o < ServiceMetrics::kOutcomes; ++o) {
    const Labels outcome{{"outcome", ServiceMetrics::kOutcomeNames[o]}};
    service.acquire_duration[o] = &registry_.AddHistogram(
        "lockd_acquire_duration_seconds",
        "Try-locks (wait_ms 0) on the leader, from submission to the answer, by outcome.",
        LatencyBuckets(), outcome);
    service.acquire_wait[o] = &registry_.AddHistogram(
        "lockd_acquire_wait_seconds",
        "Acquires that asked to wait, on the leader, from submission to the final answer, by "
        "outcome.",
        WaitBuckets(), outcome);
  }
  const std::string renewals_help =
      "Lease renewals answered by this node as leader, by result (ok; refused: the lease is "
      "unknown or expired; unavailable: not the leader or not ready yet).";
  service.renewals_ok =
      &registry_.AddCounter("lockd_renewals_total", renewals_help, {{"result", "ok"}});
  service.renewals_refused =
      &registry_.AddCounter("lockd_renewals_total", renewals_help, {{"result", "refused"}});
  service.renewals_unavailable =
      &registry_.AddCounter("lockd_renewals_total", renewals_help, {{"result", "unavailable"}});
  service.forwarded = &registry_.AddCounter("lockd_forwarded_calls_total",
                                            "Client calls this node forwarded to the leader.");
  service.force_releases =
      &registry_.AddCounter("lockd_force_releases_total",
                            "Grants released by ForceRelease calls this node, as leader, applied.");

  const std::string denied_help =
      "Client calls refused by access control (docs/security.md): UNAUTHENTICATED (no identity), "
      "or PERMISSION_DENIED by the permission missing (a lease of another identity counts as "
      "lock).";
  access.unauthenticated = &registry_.AddCounter("lockd_access_denied_total", denied_help,
                                                 {{"code", "unauthenticated"}});
  for (Permission p : {Permission::kLock, Permission::kRead, Permission::kAdmin}) {
    access.denied[static_cast<size_t>(p)] =
        &registry_.AddCounter("lockd_access_denied_total", denied_help,
                              {{"code", "permission_denied"}, {"permission", PermissionName(p)}});
  }
  const std::string quota_help =
      "Client calls refused RESOURCE_EXHAUSTED by an identity's quota (rate: on this node; "
      "max_leases, max_locks: answered by this node as leader).";
  access.rate_limited =
      &registry_.AddCounter("lockd_quota_exceeded_total", quota_help, {{"quota", "rate"}});
  access.quota_leases =
      &registry_.AddCounter("lockd_quota_exceeded_total", quota_help, {{"quota", "max_leases"}});
  access.quota_locks =
      &registry_.AddCounter("lockd_quota_exceeded_total", quota_help, {{"quota", "max_locks"}});

  apply.grants =
      &registry_.AddCounter("lockd_grants_total", "Grants applied (from a try or a wait).");
  apply.releases = &registry_.AddCounter(
      "lockd_releases_total",
      "Grants ended by Release, RevokeLease, ForceRelease or a Cancel that withdrew a grant "
      "(applied).");
  apply.expiries = &registry_.AddCounter("lockd_expiries_total",
                                         "Grants ended because their lease expired (applied).");
  apply.waits =
      &registry_.AddCounter("lockd_waits_total", "Acquires that started waiting (applied).");
  apply.cancels = &registry_.AddCounter(
      "lockd_cancels_total",
      "Waits that ended ungranted: Cancel, wait timeout, lease gone (applied).");

  backup.bytes = &registry_.AddCounter("lockd_backup_bytes_total",
                                       "Bytes of backup files this node streamed.");
  backup.completed =
      &registry_.AddCounter("lockd_backups_total", "Backups this node streamed whole.");
  backup.failed = &registry_.AddCounter("lockd_backups_failed_total",
                                        "Backups that ended early (reader gone, node stopping).");
  backup.refused = &registry_.AddCounter("lockd_backups_refused_total",
                                         "Backups refused because too many ran at once.");
  backup.in_progress =
      &registry_.AddGauge("lockd_backups_in_progress", "Backups this node is streaming now.");
}

void NodeMetrics::Mirror(const ReplicaStatus& st, uint64_t promoted) {
  is_leader.Set(st.role == raft::Role::kLeader ? 1 : 0);
  term.Set(static_cast<double>(st.term));
  commit.Set(static_cast<double>(st.commit));
  cluster_commit.Set(static_cast<double>(st.cluster_commit));
  applied.Set(static_cast<double>(st.applied));
  proposals_in_flight.Set(static_cast<double>(st.proposals_in_flight));
  leases.Set(static_cast<double>(st.lease_count));
  locks.Set(static_cast<double>(st.lock_count));
  holders.Set(static_cast<double>(st.holder_count));
  waiters.Set(static_cast<double>(st.waiter_count));
  tokens.Set(static_cast<double>(st.token_counter));
  size_t learner_count = 0;
  for (const auto& m : st.members) learner_count += m.voter ? 0 : 1;
  members.Set(static_cast<double>(st.members.size()));
  learners.Set(static_cast<double>(learner_count));
  CatchUp(promotions, promoted);
  snapshot_index.Set(static_cast<double>(st.first_index > 0 ? st.first_index - 1 : 0));
  CatchUp(campaigns, st.campaigns);
  CatchUp(try_locks_by_read, st.try_locks_by_read);
}

void NodeMetrics::MirrorPeer(uint64_t id, const PeerStats& s, std::optional<uint64_t> lag) {
  auto it = peers_.find(id);
  if (it == peers_.end()) {
    const Labels peer{{"peer", std::to_string(id)}};
    Peer p;
    p.connected = &registry_.AddGauge("lockd_peer_connected",
                                      "Whether the stream to this peer is up (1) or not.", peer);
    p.queued_messages = &registry_.AddGauge(
        "lockd_peer_queue_messages", "Raft messages queued for this peer, not yet sent.", peer);
    p.queued_bytes = &registry_.AddGauge("lockd_peer_queue_bytes",
                                         "Bytes of Raft messages queued for this peer.", peer);
    p.match_lag = &registry_.AddGauge(
        "lockd_peer_lag_entries",
        "Leader only: entries of the leader's log this peer has not acknowledged (0 elsewhere).",
        peer);
    p.sent.counter = &registry_.AddCounter("lockd_peer_sent_messages_total",
                                           "Raft messages sent to this peer.", peer);
    p.dropped.counter = &registry_.AddCounter(
        "lockd_peer_send_failures_total",
        "Raft messages to this peer dropped unsent (queue full, peer unreachable); Raft resends "
        "what matters.",
        peer);
    p.reconnects.counter = &registry_.AddCounter(
        "lockd_peer_reconnects_total", "Streams to this peer opened again after a failure.", peer);
    it = peers_.emplace(id, p).first;
  }
  Peer& p = it->second;
  p.connected->Set(s.connected ? 1 : 0);
  p.queued_messages->Set(static_cast<double>(s.queued));
  p.queued_bytes->Set(static_cast<double>(s.queued_bytes));
  p.match_lag->Set(static_cast<double>(lag.value_or(0)));
  p.sent.Follow(s.sent);
  p.dropped.Follow(s.dropped);
  p.reconnects.Follow(s.reconnects);
}

void NodeMetrics::ForgetPeersExcept(const std::set<uint64_t>& members) {
  for (auto it = peers_.begin(); it != peers_.end();) {
    if (members.count(it->first)) {
      ++it;
      continue;
    }
    const Peer& p = it->second;
    registry_.Remove("lockd_peer_connected", p.connected);
    registry_.Remove("lockd_peer_queue_messages", p.queued_messages);
    registry_.Remove("lockd_peer_queue_bytes", p.queued_bytes);
    registry_.Remove("lockd_peer_lag_entries", p.match_lag);
    registry_.Remove("lockd_peer_sent_messages_total", p.sent.counter);
    registry_.Remove("lockd_peer_send_failures_total", p.dropped.counter);
    registry_.Remove("lockd_peer_reconnects_total", p.reconnects.counter);
    it = peers_.erase(it);
  }
}

}  // namespace lockd::server
