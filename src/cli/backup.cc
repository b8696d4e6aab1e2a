#include "cli/backup.h"

#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>

#include "cli/exit_codes.h"
#include "cli/json.h"
#include "lockd/status.h"
#include "lockd/v1/lockd.grpc.pb.h"
#include "storage/backup_file.h"

namespace lockd::cli {

namespace pb = lockd::v1;

namespace {

/// Writes `data` to `path` and fsyncs it; false (and says why) on any failure.
bool WriteSynced(const CommandContext& c, const std::string& path, const std::string& data) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    c.err << "lockctl: cannot create " << path << "\n";
    return false;
  }
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  const bool ok = done == data.size() && ::fsync(fd) == 0;
  ::close(fd);
  if (!ok) c.err << "lockctl: cannot write " << path << "\n";
  return ok;
}

}  // namespace

int RunSnapshot(const CommandContext& c) {
  grpc::Status last;
  for (const auto& e : c.endpoints) {
    auto stub = pb::ClusterService::NewStub(c.Channel(e));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + c.timeout);
    pb::SnapshotResponse resp;
    last = stub->Snapshot(&ctx, pb::SnapshotRequest(), &resp);
    if (last.ok()) {
      if (c.json) {
        c.out << "{\"endpoint\":" << JsonString(e) << ",\"index\":" << resp.index()
              << ",\"bytes\":" << resp.bytes() << "}\n";
      } else {
        c.out << "snapshot on " << e << " at index " << resp.index() << " (" << resp.bytes()
              << " bytes); its log is compacted up to it\n";
      }
      return 0;
    }
    if (last.error_code() != grpc::StatusCode::UNAVAILABLE) break;
  }
  return ReportError(c.err, last);
}

int RunBackup(const CommandContext& c, const std::string& path, bool overwrite, bool progress) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (path.empty()) {
    c.err << "lockctl: backup needs FILE (lockctl backup FILE)\n";
    return kExitUsage;
  }
  if (fs::exists(path, ec) && !overwrite) {
    c.err << "lockctl: " << path << " exists; choose another file or pass --overwrite\n";
    return kExitUsage;
  }
  // A whole backup takes longer than one call: at least five minutes unless --timeout-ms says
  // more.
  const auto deadline = std::max<std::chrono::milliseconds>(c.timeout, std::chrono::minutes(5));
  grpc::Status last;
  for (const auto& e : c.endpoints) {
    auto stub = pb::ClusterService::NewStub(c.Channel(e));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + deadline);
    auto reader = stub->Backup(&ctx, pb::BackupRequest());
    std::string file;
    std::string digest;
    uint64_t index = 0;
    bool last_seen = false;
    pb::BackupChunk chunk;
    // At most every 200 ms: a redraw per 64 KiB chunk would flood a slow terminal.
    auto shown = std::chrono::steady_clock::now() - std::chrono::seconds(1);
    bool drawn = false;
    auto draw = [&](bool force) {
      const auto now = std::chrono::steady_clock::now();
      if (!progress || (!force && now - shown < std::chrono::milliseconds(200))) return;
      shown = now;
      drawn = true;
      c.err << "\rbackup from " << e << ": " << file.size() / 1024 << " KiB received" << std::flush;
    };
    while (reader->Read(&chunk)) {
      if (chunk.offset() != file.size() || last_seen) {
        ctx.TryCancel();
        last = grpc::Status(grpc::StatusCode::DATA_LOSS,
                            "the node sent a chunk at offset " + std::to_string(chunk.offset()) +
                                " after " + std::to_string(file.size()) + " bytes");
        break;
      }
      if (chunk.offset() == 0) index = chunk.index();
      file += chunk.data();
      if (chunk.last()) {
        last_seen = true;
        digest = chunk.sha256();
      }
      draw(last_seen);
    }
    if (drawn) c.err << (last_seen ? ", verifying\n" : "\n") << std::flush;
    grpc::Status s = reader->Finish();
    if (last.error_code() == grpc::StatusCode::DATA_LOSS) break;
    last = s;
    if (!s.ok()) {
      if (s.error_code() == grpc::StatusCode::UNAVAILABLE) continue;
      break;
    }
    if (!last_seen) {
      last = grpc::Status(grpc::StatusCode::DATA_LOSS, "the stream ended without its last chunk");
      break;
    }
    auto decoded = storage::DecodeBackup(file);
    if (!decoded.ok()) {
      last = grpc::Status(grpc::StatusCode::DATA_LOSS,
                          "the backup received is not whole: " + decoded.status().message());
      break;
    }
    if (storage::BackupDigestHex(file) != digest) {
      last = grpc::Status(grpc::StatusCode::DATA_LOSS,
                          "the backup received does not match the SHA-256 the node sent");
      break;
    }
    const std::string tmp = path + ".partial";
    if (!WriteSynced(c, tmp, file)) return kExitFailed;
    fs::rename(tmp, path, ec);
    if (ec) {
      c.err << "lockctl: cannot rename " << tmp << " to " << path << ": " << ec.message() << "\n";
      return kExitFailed;
    }
    const std::string parent =
        fs::path(path).parent_path().empty() ? "." : fs::path(path).parent_path().string();
    if (const int dfd = ::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); dfd >= 0) {
      ::fsync(dfd);
      ::close(dfd);
    }
    const auto& h = decoded->header;
    if (c.json) {
      c.out << "{\"file\":" << JsonString(path) << ",\"endpoint\":" << JsonString(e)
            << ",\"cluster_id\":" << JsonString(h.cluster_id) << ",\"index\":" << index
            << ",\"term\":" << h.term << ",\"node_id\":" << h.node_id
            << ",\"token_counter\":" << h.token_counter << ",\"lease_counter\":" << h.lease_counter
            << ",\"taken_unix_seconds\":" << h.taken_unix_seconds << ",\"bytes\":" << file.size()
            << ",\"sha256\":" << JsonString(digest) << "}\n";
    } else {
      c.out << "backup of cluster " << h.cluster_id << " at index " << index << " (term " << h.term
            << ", from node " << h.node_id << ", token counter " << h.token_counter << ")\n"
            << "wrote " << file.size() << " bytes to " << path << ", sha256 " << digest << "\n";
    }
    return 0;
  }
  return ReportError(c.err, last);
}

}  // namespace lockd::cli
