#include "server/cluster_identity.h"

#include <rocksdb/file_system.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "base/codec.h"
#include "storage/crc32c.h"
#include "storage/fs_util.h"

namespace lockd::server {

namespace {

constexpr int kVersion = 1;
constexpr const char* kFile = "/cluster";

std::string Hex(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

}  // namespace

std::string DeriveClusterId(const std::string& token, const std::vector<MemberSpec>& members) {
  std::vector<MemberSpec> sorted = members;
  std::sort(sorted.begin(), sorted.end(),
            [](const MemberSpec& a, const MemberSpec& b) { return a.id < b.id; });
  std::string key = "lockd-cluster-v1\n" + token + "\n";
  for (const auto& m : sorted) {
    key += std::to_string(m.id) + "=" + m.peer_addr + "/" + m.client_addr + "\n";
  }
  return Hex(Fnv1a64(key));
}

std::string EncodeClusterIdentity(const ClusterIdentity& id) {
  std::string body = "lockd-cluster " + std::to_string(kVersion) + "\n";
  body += "cluster-id " + id.cluster_id + "\n";
  for (const auto& m : id.members) {
    body += "member " + std::to_string(m.id) + " " + m.peer_addr + " " + m.client_addr + "\n";
  }
  return body + "crc32c " + std::to_string(storage::Crc32c(body)) + "\n";
}

Result<ClusterIdentity> DecodeClusterIdentity(const std::string& text) {
  const size_t crc_at = text.rfind("crc32c ");
  if (crc_at == std::string::npos) return DataLoss("cluster identity file has no checksum");
  const std::string body = text.substr(0, crc_at);
  const std::string crc_text = text.substr(crc_at + 7);
  if (std::to_string(storage::Crc32c(body)) + "\n" != crc_text) {
    return DataLoss("cluster identity file fails its checksum (damaged)");
  }
  std::istringstream in(body);
  std::string word;
  int version = 0;
  if (!(in >> word >> version) || word != "lockd-cluster") {
    return DataLoss("cluster identity file does not start with 'lockd-cluster'");
  }
  if (version > kVersion) {
    return FailedPrecondition("cluster identity format " + std::to_string(version) +
                              " is newer than this build's " + std::to_string(kVersion) +
                              "; upgrade lockd");
  }
  ClusterIdentity id;
  if (!(in >> word >> id.cluster_id) || word != "cluster-id" || id.cluster_id.empty()) {
    return DataLoss("cluster identity file has no cluster id");
  }
  while (in >> word) {
    if (word != "member") return DataLoss("cluster identity file: unexpected '" + word + "'");
    MemberSpec m;
    if (!(in >> m.id >> m.peer_addr >> m.client_addr) || m.id == 0) {
      return DataLoss("cluster identity file: a malformed member line");
    }
    id.members.push_back(std::move(m));
  }
  if (id.members.empty()) return DataLoss("cluster identity file names no member");
  return id;
}

Result<std::optional<ClusterIdentity>> LoadClusterIdentity(const std::string& data_dir) {
  std::ifstream f(data_dir + kFile, std::ios::binary);
  if (!f) return std::optional<ClusterIdentity>();
  std::stringstream ss;
  ss << f.rdbuf();
  auto id = DecodeClusterIdentity(ss.str());
  if (!id.ok()) {
    return Status(id.status().code(), data_dir + kFile + ": " + id.status().message());
  }
  return std::optional<ClusterIdentity>(std::move(id).value());
}

Status SaveClusterIdentity(const std::string& data_dir, const ClusterIdentity& identity) {
  auto* fs = rocksdb::FileSystem::Default().get();
  const std::string path = data_dir + kFile;
  const std::string tmp = path + ".tmp";
  if (Status s = storage::WriteFileDurably(fs, tmp, EncodeClusterIdentity(identity)); !s.ok()) {
    return s;
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    return Internal("cannot rename " + tmp + " to " + path);
  }
  return storage::SyncDir(fs, data_dir);
}

}  // namespace lockd::server
