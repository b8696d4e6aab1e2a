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

/// Missing, or an empty folder: a data dir restore may write. Anything else is refused.
Status CheckNewDataDir(const std::string& dir) {
  std::error_code ec;
  if (!fs::exists(dir, ec)) {
    if (!fs::is_directory(fs::path(dir).parent_path().empty() ? "." : fs::path(dir).parent_path(),
                          ec)) {
      return FailedPrecondition("the folder that would hold --data-dir " + dir + " does not exist");
    }
    return Status::Ok();
  }
  if (!fs::is_directory(dir, ec)) return FailedPrecondition(dir + " exists and is not a folder");
  if (!fs::is_empty(dir, ec)) {
    return FailedPrecondition("data dir " + dir +
                              " is not empty; restore writes only a new member's data dir (an "
                              "empty or missing folder), never over an existing one");
  }
  return Status::Ok();
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
  if (Status s = CheckNewDataDir(o.data_dir); !s.ok()) return s;

  ClusterIdentity identity;
  identity.members = *members;
  identity.bootstrap_id =
      RestoredBootstrapId(o.cluster_token, plan->digest, o.token_floor, identity.members);
  identity.incarnation = NewRandomId();

  // Built under a temporary name, then renamed into place (rename replaces an empty folder).
  const std::string tmp = o.data_dir + ".restoring";
  std::error_code ec;
  fs::remove_all(tmp, ec);
  if (!fs::create_directory(tmp, ec)) {
    return Internal("cannot create " + tmp + ": " + ec.message());
  }
  const auto undo = [&](Status s) {
    fs::remove_all(tmp, ec);
    return s;
  };
  if (Status s = SaveClusterIdentity(tmp, identity); !s.ok()) return undo(s);
  if (Status s = storage::WriteRestoreSeed(tmp, seed); !s.ok()) return undo(s);
  fs::rename(tmp, o.data_dir, ec);
  if (ec) return undo(Internal("cannot rename " + tmp + " to " + o.data_dir + ": " + ec.message()));
  {
    // The rename is durable once the parent folder is synced.
    const std::string parent = fs::path(o.data_dir).parent_path().empty()
                                   ? "."
                                   : fs::path(o.data_dir).parent_path().string();
    if (FILE* f = std::fopen(parent.c_str(), "r")) {
      fsync(fileno(f));
      std::fclose(f);
    }
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
