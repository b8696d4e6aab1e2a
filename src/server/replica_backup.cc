// Replica: snapshots on demand, backups, and the restored cluster's first entry (issue 15). Split
// from replica.cc by responsibility; the same single-threaded loop runs all of it.
#include <spdlog/spdlog.h>

#include "base/thread_name.h"
#include "server/cluster_identity.h"
#include "server/replica.h"
#include "storage/node_storage.h"

namespace lockd::server {

void Replica::TakeSnapshot(SnapshotDone done) {
  if (snapshot_writing_) {
    done(Unavailable("a snapshot is being written right now; retry in a moment"));
    return;
  }
  // A snapshot of the state before the restored start would, loaded at a restart, pass for the
  // started cluster's (restored_start_pending_ is cleared by any snapshot).
  if (restored_start_pending_) {
    done(FailedPrecondition(
        "this restored member has not applied the entry that starts the restored cluster yet"));
    return;
  }
  auto meta = raft_->SnapshotMetaAt(raft::LogIndex(applied_));
  if (!meta.ok()) {
    done(meta.status());
    return;
  }
  if (Status s = storage_.CheckSnapshot(*meta); !s.ok()) {
    done(s);
    return;
  }
  const BootTime start = clock_.Now();
  auto payload = std::make_shared<const std::string>(state_.Snapshot());
  const double encode_ms = std::chrono::duration<double, std::milli>(clock_.Now() - start).count();
  JoinSnapshotWriter();  // the previous one finished (FinishSnapshot ran): only its thread is left
  snapshot_writer_ = std::thread(
      [this, meta = *meta, payload, start, encode_ms, done = std::move(done)]() mutable {
        NameThisThread("snap-write");
        Status written = storage_.WriteSnapshotFile(meta, *payload);
        // Always through the queue, never run here: with the node stopping, Stop() drains the queue
        // once the loop and this thread are gone.
        std::lock_guard lock(mu_);
        work_in_.push_back(
            [this, meta, payload, written, start, encode_ms, done = std::move(done)]() mutable {
              FinishSnapshot(meta, std::move(payload), written, start, encode_ms, std::move(done));
            });
        wake_.notify_one();
      });
  snapshot_writing_ = true;
}

void Replica::FinishSnapshot(const raft::SnapshotMeta& meta,
                             std::shared_ptr<const std::string> payload, const Status& written,
                             BootTime started, double encode_ms, SnapshotDone done) {
  snapshot_writing_ = false;
  if (stopping_) {  // the log is compacted to the file at the next start (NodeStorage::Open)
    const Status gone = Unavailable("this node is stopping; ask another node");
    done(gone);
    for (auto& [at, waiter] : snapshot_waiters_) waiter(gone);
    snapshot_waiters_.clear();
    return;
  }
  if (!written.ok()) {
    Fail(written);
    done(written);
    AnswerSnapshotWaiters();
    return;
  }
  if (Status s = storage_.CompactToSnapshot(meta); !s.ok()) {
    if (storage_.failed()) {
      Fail(s);
      done(s);
    } else {
      // A newer snapshot from the leader was installed meanwhile: it is the answer.
      spdlog::info("node {}: the snapshot at index {} was overtaken by the leader's at {}",
                   options_.node_id, meta.index.value(), snapshot_index_);
      done(SnapshotTaken{snapshot_index_, snapshot_bytes_});
    }
    AnswerSnapshotWaiters();
    return;
  }
  snapshot_index_ = meta.index.value();
  snapshot_bytes_ = payload->size();
  snapshot_meta_ = meta;
  snapshot_payload_ = payload;
  const auto took = clock_.Now() - started;
  spdlog::info(
      "node {}: snapshot at index {} ({} bytes; encoded on the loop in {:.0f} ms, written and "
      "compacted in {} ms in all); log compacted up to it",
      options_.node_id, meta.index.value(), payload->size(), encode_ms,
      std::chrono::duration_cast<std::chrono::milliseconds>(took).count());
  if (options_.on_snapshot) {
    options_.on_snapshot(payload->size(), std::chrono::duration<double>(took).count());
  }
  done(SnapshotTaken{meta.index.value(), payload->size()});
  AnswerSnapshotWaiters();
}

void Replica::AnswerSnapshotWaiters() {
  if (snapshot_waiters_.empty()) return;
  auto waiters = std::move(snapshot_waiters_);
  snapshot_waiters_.clear();
  const Status failed = fatal();
  auto later = std::make_shared<std::vector<SnapshotDone>>();
  for (auto& [at, done] : waiters) {
    if (!failed.ok()) {
      done(Unavailable("this node stopped applying: " + failed.ToString()));
    } else if (at <= snapshot_index_) {
      done(SnapshotTaken{snapshot_index_, snapshot_bytes_});
    } else {
      later->push_back(std::move(done));
    }
  }
  if (later->empty()) return;
  TakeSnapshot([later](Result<SnapshotTaken> taken) {
    for (auto& done : *later) done(taken);
  });
}

void Replica::JoinSnapshotWriter() {
  if (snapshot_writer_.joinable()) snapshot_writer_.join();
}

void Replica::SnapshotNow(std::function<void(Result<SnapshotTaken>)> done) {
  Enqueue([this, done = std::move(done)] {
    if (stopping_) {
      done(Unavailable("this node is stopping; ask another node"));
      return;
    }
    if (!fatal().ok()) {
      done(Unavailable("this node stopped applying: " + fatal().ToString()));
      return;
    }
    if (applied_ == 0) {
      done(FailedPrecondition("this node has applied nothing yet; there is nothing to snapshot"));
      return;
    }
    // Nothing applied since the newest snapshot: it is the answer (its size was kept when it
    // was taken, installed or loaded at start; nothing is read from disk on the loop).
    if (applied_ == snapshot_index_) {
      done(SnapshotTaken{snapshot_index_, snapshot_bytes_});
      return;
    }
    // One is being written: answered with it if it covers what was applied now, else with the
    // next one (AnswerSnapshotWaiters).
    if (snapshot_writing_) {
      spdlog::info("node {}: a Snapshot call waits for the snapshot being written",
                   options_.node_id);
      snapshot_waiters_.emplace_back(applied_, std::move(done));
      return;
    }
    TakeSnapshot([this, done = std::move(done), at = applied_](Result<SnapshotTaken> taken) {
      if (!taken.ok() && taken.status().code() != StatusCode::kUnavailable) {
        done(FailedPrecondition("no snapshot at index " + std::to_string(at) + ": " +
                                taken.status().message()));
        return;
      }
      done(std::move(taken));
    });
  });
}

void Replica::CaptureBackup(std::function<void(Result<storage::Backup>)> done) {
  Enqueue([this, done = std::move(done)] {
    if (stopping_) {
      done(Unavailable("this node is stopping; take the backup from another node"));
      return;
    }
    if (!fatal().ok()) {
      done(Unavailable("this node stopped applying: " + fatal().ToString()));
      return;
    }
    const std::string cluster_id = options_.identity ? options_.identity->cluster_id() : "";
    if (applied_ == 0 || (options_.identity && cluster_id.empty())) {
      done(Unavailable("this node has no decided cluster state to back up yet; retry"));
      return;
    }
    // Between adopting a restored cluster's id (from a peer) and applying the entry that starts
    // it, the state is the empty one from before the restore: its counters are not the cluster's.
    if (restored_start_pending_) {
      done(Unavailable(
          "this node has not yet applied the entry that starts the restored cluster; retry in a "
          "moment, or take the backup from another node"));
      return;
    }
    storage::Backup b;
    b.header.index = applied_;
    b.header.term = raft_->log().TermOr(raft::LogIndex(applied_), raft::Term()).value();
    if (auto meta = raft_->SnapshotMetaAt(raft::LogIndex(applied_)); meta.ok()) {
      b.header.term = meta->term.value();
    }
    b.header.cluster_id = cluster_id;
    b.header.node_id = options_.node_id;
    b.header.token_counter = state_.token_counter().value();
    b.header.lease_counter = state_.lease_counter().value();
    b.header.taken_unix_seconds = WallSeconds();
    b.state = state_.Snapshot();
    done(std::move(b));
  });
}

Result<raft::LogIndex> Replica::ProposeRestoredClusterId(const std::string& id) {
  const RestorePlan& plan = *options_.restore;
  auto start = RestoredState(plan, options_.limits, WallSeconds());
  if (!start.ok()) {
    // Retried every tick (the clock may be corrected); logged once per leadership, as an error,
    // and shown in Status and health until it is fixed: the restored cluster cannot start.
    restore_problem_ = "cannot start the cluster restored from backup " + plan.digest + ": " +
                       start.status().message();
    if (!restore_refusal_logged_) {
      spdlog::error("node {}: {}", options_.node_id, restore_problem_);
      restore_refusal_logged_ = true;
    }
    return start.status();
  }
  auto index = raft_->Propose(EncodeRestoredClusterIdEntry(id, start->Snapshot()));
  if (index.ok()) {
    restore_problem_.clear();
    spdlog::info(
        "node {}: proposing restored cluster id {} (from backup {} of cluster {} at index {}): "
        "token counter {} -> {}, lease-id counter {} -> {} ({} seconds counted since unix time "
        "{}, token floor {})",
        options_.node_id, id, plan.digest, plan.backup.cluster_id, plan.backup.index,
        plan.backup.token_counter, start->token_counter().value(), plan.backup.lease_counter,
        start->lease_counter().value(), SecondsCounted(plan, WallSeconds()),
        plan.counted_from_unix_seconds, plan.token_floor);
  }
  return index;
}

Status Replica::ApplyRestoredClusterId(const raft::Entry& entry) {
  auto r = DecodeRestoredClusterIdEntry(entry.data);
  const auto fail = [&](const Status& s) {
    return Status(s.code(), "cannot apply committed entry " + std::to_string(entry.index.value()) +
                                ": " + s.message());
  };
  if (!r.ok()) return fail(r.status());
  if (options_.identity) {
    auto decided = options_.identity->Decide(r->cluster_id);
    if (!decided.ok()) return decided.status();
    // A later proposal that lost (another leader's) changes nothing. On a replay after a
    // restart the id is already recorded and this entry is still the one that decided it.
    if (options_.identity->cluster_id() != r->cluster_id) return Status::Ok();
  }
  auto state = lock::LockStateMachine::Restore(r->state, options_.limits);
  if (!state.ok()) return fail(state.status());
  state_ = std::move(state).value();
  restored_start_pending_ = false;
  spdlog::info(
      "node {}: cluster id {} decided by entry {}: a cluster restored from a backup, starting "
      "with token counter {} and lease-id counter {}, no leases and no locks",
      options_.node_id, r->cluster_id, entry.index.value(), state_.token_counter().value(),
      state_.lease_counter().value());
  return Status::Ok();
}

}  // namespace lockd::server
