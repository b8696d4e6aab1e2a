#include "server/restore.h"

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <system_error>

#include "base/clock.h"
#include "server/cluster_identity.h"
#include "server/options.h"
#include "server/restore_seed.h"
#include "storage/backup_file.h"

namespace lockd::server {

namespace fs = std::filesystem;

namespace {

/// Names a data dir may hold and still count as new: a file system's own folder at a mount
/// point, and the identity file of a restore interrupted before its seed (the commit marker) was
/// written.
bool IgnorableEntry(const fs::path& dir, const fs::directory_entry& e) {
  const std::string name = e.path().filename().string();
  if (name == "lost+found") return true;
  if (name != "cluster" && name != std::string(storage::kRestoreSeedFile) + ".tmp") return false;
  if (name != "cluster") return true;  // a seed whose rename never happened
  auto id = LoadClusterIdentity(dir.string());
  return id.ok() && id->has_value() && !(*id)->restored_from.empty() &&
         !fs::exists(dir / storage::kRestoreSeedFile);
}

/// Missing (its parent must exist), or a folder holding nothing but IgnorableEntry names: a data
/// dir restore may write. Anything else is refused.
Result<bool> CheckNewDataDir(const fs::path& dir) {
  std::error_code ec;
  if (!fs::exists(dir, ec)) {
    const fs::path parent = dir.parent_path().empty() ? fs::path(".") : dir.parent_path();
    if (!fs::is_directory(parent, ec)) {
      return FailedPrecondition("the folder that would hold --data-dir " + dir.string() +
                                " does not exist");
    }
    return false;
  }
  if (!fs::is_directory(dir, ec)) {
    return FailedPrecondition(dir.string() + " exists and is not a folder");
  }
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (!IgnorableEntry(dir, e)) {
      return FailedPrecondition("data dir " + dir.string() +
                                " is not empty; restore writes only a new member's data dir (an "
                                "empty or missing folder), never over an existing one");
    }
  }
  if (ec) return FailedPrecondition("cannot list " + dir.string() + ": " + ec.message());
  return true;
}

void SyncFolder(const fs::path& dir) {
  if (FILE* f = std::fopen(dir.c_str(), "r")) {
    fsync(fileno(f));
    std::fclose(f);
  }
}

}  // namespace

Result<RestoreReport> RestoreDataDir(const RestoreOptions& o) {
  if (o.node_id == 0) return InvalidArgument("--id must be > 0");
  if (o.data_dir.empty()) return InvalidArgument("--data-dir is required");
  auto members = ParseInitialCluster(o.initial_cluster);
  if (!members.ok()) return members.status();
  bool self = false;
  for (const auto& m : *members) self = self || m.id == o.node_id;
  if (!self) {
    return InvalidArgument("--id " + std::to_string(o.node_id) +
                           " is not one of the members --initial-cluster names");
  }
  // The file and what it carries, before anything is written.
  storage::RestoreSeed seed;
  seed.token_floor = o.token_floor;
  seed.restored_unix_seconds = WallSeconds();
  {
    std::ifstream in(o.backup_path, std::ios::binary);
    if (!in) return NotFound("cannot read backup file " + o.backup_path);
    seed.backup.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  auto plan = PlanFromSeed(seed);
  if (!plan.ok())
    return Status(plan.status().code(), o.backup_path + ": " + plan.status().message());
  auto start = RestoredState(*plan, lock::Limits{}, seed.restored_unix_seconds);
  if (!start.ok()) {
    return Status(start.status().code(),
                  o.backup_path + ": cannot start a cluster from it: " + start.status().message());
  }
  // "dir/" and "dir" are one folder (a trailing slash must not put the build inside it).
  fs::path dir = fs::path(o.data_dir).lexically_normal();
  if (!dir.has_filename() && dir.has_parent_path()) dir = dir.parent_path();
  auto exists = CheckNewDataDir(dir);
  if (!exists.ok()) return exists.status();

  ClusterIdentity identity;
  identity.members = *members;
  identity.bootstrap_id =
      RestoredBootstrapId(o.cluster_token, plan->digest, o.token_floor, identity.members);
  identity.incarnation = NewRandomId();
  identity.restored_from = plan->digest;

  // The seed is written last: it is the commit marker. A data dir whose identity says "restored"
  // but has no seed is an interrupted restore (the node refuses to start it; restore may write
  // over it). Only what this run created is ever removed.
  std::error_code ec;
  if (*exists) {
    // An existing empty folder (it may be a mount point, which cannot be renamed over): built
    // in place.
    const auto undo = [&](Status s) {
      fs::remove(dir / "cluster", ec);
      return s;
    };
    if (Status s = SaveClusterIdentity(dir.string(), identity); !s.ok()) return undo(s);
    if (Status s = storage::WriteRestoreSeed(dir.string(), seed); !s.ok()) return undo(s);
  } else {
    // A missing folder: built under a name of this run's own, then renamed into place, so a
    // crash leaves no folder under the data dir's name.
    const fs::path tmp = dir.string() + ".restoring-" + NewRandomId().substr(0, 8);
    if (!fs::create_directory(tmp, ec)) {
      return Internal("cannot create " + tmp.string() + ": " +
                      (ec ? ec.message() : "it exists already"));
    }
    const auto undo = [&](Status s) {
      fs::remove_all(tmp, ec);  // created by this run just above
      return s;
    };
    if (Status s = SaveClusterIdentity(tmp.string(), identity); !s.ok()) return undo(s);
    if (Status s = storage::WriteRestoreSeed(tmp.string(), seed); !s.ok()) return undo(s);
    fs::rename(tmp, dir, ec);
    if (ec) {
      return undo(
          Internal("cannot rename " + tmp.string() + " to " + dir.string() + ": " + ec.message()));
    }
    // The rename is durable once the parent folder is synced.
    SyncFolder(dir.parent_path().empty() ? fs::path(".") : dir.parent_path());
  }

  RestoreReport r;
  r.digest = plan->digest;
  r.old_cluster_id = plan->backup.cluster_id;
  r.index = plan->backup.index;
  r.taken_unix_seconds = plan->backup.taken_unix_seconds;
  r.old_token_counter = plan->backup.token_counter;
  r.old_lease_counter = plan->backup.lease_counter;
  r.token_counter_now = start->token_counter().value();
  r.lease_counter_now = start->lease_counter().value();
  r.seconds_counted = SecondsCounted(*plan, seed.restored_unix_seconds);
  r.token_floor = o.token_floor;
  return r;
}

std::string RestoredBootstrapId(const std::string& cluster_token, const std::string& digest,
                                uint64_t token_floor, const std::vector<MemberSpec>& members) {
  return DeriveBootstrapId(
      cluster_token + "\nrestored-from " + digest + "\ntoken-floor " + std::to_string(token_floor),
      members);
}

std::string FormatRestoreReport(const RestoreOptions& o, const RestoreReport& r) {
  std::string out;
  out += "restored data dir " + o.data_dir + " for node " + std::to_string(o.node_id) + "\n";
  out += "  backup sha256:  " + r.digest + "\n";
  out += "  from cluster:   " + r.old_cluster_id + " at index " + std::to_string(r.index) +
         " (taken at unix time " + std::to_string(r.taken_unix_seconds) + ")\n";
  out += "  seconds counted: " + std::to_string(r.seconds_counted) +
         " since the backup (on this machine's clock), token floor " +
         std::to_string(r.token_floor) + "\n";
  out += "  token counter:  " + std::to_string(r.old_token_counter) + " in the backup, about " +
         std::to_string(r.token_counter_now) + " in the new cluster\n";
  out += "  lease counter:  " + std::to_string(r.old_lease_counter) + " in the backup, about " +
         std::to_string(r.lease_counter_now) + " in the new cluster\n";
  out +=
      "start the node with this --data-dir; once a majority of the restored members runs, the "
      "first leader decides the new cluster id\n";
  return out;
}

}  // namespace lockd::server
