#include "storage/inspect.h"

#include <signal.h>

#include <cerrno>
#include <filesystem>
#include <fstream>

#include "storage/raft_store.h"
#include "storage/snapshot_store.h"

namespace lockd::storage {
namespace fs = std::filesystem;
namespace {

uint64_t DirBytes(const std::string& dir) {
  uint64_t n = 0;
  std::error_code ec;
  for (const auto& e : fs::recursive_directory_iterator(dir, ec)) {
    if (e.is_regular_file(ec)) n += e.file_size(ec);
  }
  return n;
}

std::string Ids(const std::vector<raft::NodeId>& ids) {
  std::string s;
  for (auto id : ids) s += (s.empty() ? "" : ",") + std::to_string(id.value());
  return s.empty() ? "-" : s;
}

/// The pid the last owner wrote into LOCK.lockd, and whether it still runs (a hint: the flock is
/// the real lock, and it is not taken here so a starting node is never turned away).
std::string Owner(const std::string& path) {
  std::ifstream in(path + "/LOCK.lockd");
  long pid = 0;
  if (!(in >> pid) || pid <= 0) return "none";
  const bool running = ::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM;
  return "pid " + std::to_string(pid) + (running ? " (running)" : " (not running)");
}

}  // namespace

Result<DataDirReport> InspectDataDir(const std::string& path) {
  std::error_code ec;
  if (!fs::is_directory(path, ec)) return NotFound(path + " is not a directory");
  DataDirReport r;
  r.path = path;
  r.owner = Owner(path);
  const std::string raft_dir = path + "/raft";
  const std::string snap_dir = path + "/snapshots";

  SnapshotStore snaps(snap_dir);
  auto latest = snaps.LoadLatest();
  if (!latest.ok()) return latest.status();
  if (*latest) {
    r.snapshot_file = (*latest)->path;
    r.snapshot_meta = (*latest)->meta;
    r.snapshot_payload_bytes = (*latest)->payload.size();
  }
  if (fs::exists(raft_dir + "/CURRENT", ec)) {
    RaftStoreOptions o;
    o.read_only = true;
    auto store = RaftStore::Open(raft_dir, o);
    if (!store.ok()) return store.status();
    const RaftStore& s = **store;
    r.first_index = s.FirstIndex();
    r.last_index = s.LastIndex();
    r.entries = s.Stats().entries;
    r.term_runs = s.Stats().term_runs;
    r.hard_state = s.Initial().hard;
    r.conf = s.Initial().conf;
    r.log_start = s.Snapshot();
    // The same cross-check as NodeStorage's recovery, without its repairs.
    if (r.snapshot_meta.index < r.log_start.index) {
      return DataLoss("the Raft log starts after index " +
                      std::to_string(r.log_start.index.value()) + " but the newest snapshot (" +
                      (r.snapshot_file.empty() ? std::string("none") : r.snapshot_file) +
                      ") covers less: the entries in between are lost");
    }
    if (r.snapshot_meta.index == r.log_start.index && r.snapshot_meta.term != r.log_start.term) {
      return DataLoss("snapshot " + r.snapshot_file + " disagrees with the Raft log's start");
    }
    if (r.snapshot_meta.index > r.log_start.index) {
      const auto t = s.TermAt(r.snapshot_meta.index);
      r.pending_repair =
          t.ok() && *t == r.snapshot_meta.term
              ? "the next start compacts the log up to the snapshot"
              : "the next start resets the log to the snapshot (interrupted install)";
    }
  } else if (!r.snapshot_file.empty()) {
    return DataLoss("snapshot " + r.snapshot_file + " exists but the Raft log in " + raft_dir +
                    " does not: the log, with the node's term and vote, is lost");
  }
  r.raft_bytes = DirBytes(raft_dir);
  r.snapshot_bytes = DirBytes(snap_dir);
  return r;
}

std::string FormatReport(const DataDirReport& r) {
  auto n = [](auto v) { return std::to_string(v.value()); };
  std::string out;
  out += "data dir      " + r.path + "  (owner " + r.owner + ")\n";
  out += "log           first " + n(r.first_index) + "  last " + n(r.last_index) + "  (" +
         std::to_string(r.entries) + " entries, " + std::to_string(r.term_runs) + " term runs, " +
         std::to_string(r.raft_bytes) + " bytes on disk)\n";
  out += "hard state    term " + n(r.hard_state.term) + "  vote " + n(r.hard_state.vote) +
         "  commit " + n(r.hard_state.commit) + "\n";
  out += "members       voters " + Ids(r.conf.voters) + "  learners " + Ids(r.conf.learners);
  if (!r.conf.voters_outgoing.empty()) out += "  outgoing " + Ids(r.conf.voters_outgoing);
  out += "\n";
  out +=
      "log starts    after index " + n(r.log_start.index) + " (term " + n(r.log_start.term) + ")\n";
  if (r.snapshot_file.empty()) {
    out += "snapshot      none\n";
  } else {
    out += "snapshot      index " + n(r.snapshot_meta.index) + "  term " + n(r.snapshot_meta.term) +
           "  payload " + std::to_string(r.snapshot_payload_bytes) + " bytes  " + r.snapshot_file +
           "\n";
  }
  out += "snapshot dir  " + std::to_string(r.snapshot_bytes) + " bytes\n";
  out += "status        " +
         (r.pending_repair.empty() ? std::string("verified") : r.pending_repair) + "\n";
  return out;
}

}  // namespace lockd::storage
