#include "storage/inspect.h"

#include <filesystem>

#include "storage/data_dir.h"
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

}  // namespace

Result<DataDirReport> InspectDataDir(const std::string& path) {
  if (!fs::is_directory(path)) return NotFound(path + " is not a directory");
  DataDirReport r;
  r.path = path;
  const std::string raft_dir = path + "/raft";
  if (fs::exists(raft_dir)) {
    RaftStoreOptions o;
    o.read_only = true;
    auto store = RaftStore::Open(raft_dir, o);
    if (!store.ok()) return store.status();
    r.first_index = (*store)->FirstIndex();
    r.last_index = (*store)->LastIndex();
    r.hard_state = (*store)->Initial().hard;
    r.conf = (*store)->Initial().conf;
    r.log_snapshot = (*store)->Snapshot();
    r.raft_bytes = DirBytes(raft_dir);
  }
  SnapshotStore snaps(path + "/snapshots");
  auto latest = snaps.LoadLatest();
  if (!latest.ok()) return latest.status();
  if (*latest) {
    r.snapshot_file = (*latest)->path;
    r.snapshot_file_meta = (*latest)->meta;
  }
  r.snapshot_bytes = DirBytes(path + "/snapshots");
  return r;
}

std::string FormatReport(const DataDirReport& r) {
  auto n = [](auto v) { return std::to_string(v.value()); };
  std::string out;
  out += "data dir      " + r.path + "\n";
  out += "log           first " + n(r.first_index) + "  last " + n(r.last_index) + "  (" +
         std::to_string(r.raft_bytes) + " bytes)\n";
  out += "hard state    term " + n(r.hard_state.term) + "  vote " + n(r.hard_state.vote) +
         "  commit " + n(r.hard_state.commit) + "\n";
  out += "members       voters " + Ids(r.conf.voters) + "  learners " + Ids(r.conf.learners) + "\n";
  out += "log starts    after index " + n(r.log_snapshot.index) + " (term " +
         n(r.log_snapshot.term) + ")\n";
  out += "snapshot      " +
         (r.snapshot_file.empty() ? std::string("none")
                                  : r.snapshot_file + "  index " + n(r.snapshot_file_meta.index) +
                                        "  term " + n(r.snapshot_file_meta.term)) +
         "  (" + std::to_string(r.snapshot_bytes) + " bytes)\n";
  return out;
}

}  // namespace lockd::storage
