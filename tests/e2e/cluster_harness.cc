#include "e2e/cluster_harness.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <deque>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>
#include <thread>

namespace lockd::e2e {

namespace {

std::string Addr(int port) {
  return "127.0.0.1:" + std::to_string(port);
}

const char* CodeName(grpc::StatusCode c) {
  switch (c) {
    case grpc::StatusCode::OK:
      return "OK";
    case grpc::StatusCode::CANCELLED:
      return "CANCELLED";
    case grpc::StatusCode::UNKNOWN:
      return "UNKNOWN";
    case grpc::StatusCode::INVALID_ARGUMENT:
      return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND:
      return "NOT_FOUND";
    case grpc::StatusCode::ALREADY_EXISTS:
      return "ALREADY_EXISTS";
    case grpc::StatusCode::PERMISSION_DENIED:
      return "PERMISSION_DENIED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::FAILED_PRECONDITION:
      return "FAILED_PRECONDITION";
    case grpc::StatusCode::ABORTED:
      return "ABORTED";
    case grpc::StatusCode::OUT_OF_RANGE:
      return "OUT_OF_RANGE";
    case grpc::StatusCode::UNIMPLEMENTED:
      return "UNIMPLEMENTED";
    case grpc::StatusCode::INTERNAL:
      return "INTERNAL";
    case grpc::StatusCode::UNAVAILABLE:
      return "UNAVAILABLE";
    case grpc::StatusCode::DATA_LOSS:
      return "DATA_LOSS";
    case grpc::StatusCode::UNAUTHENTICATED:
      return "UNAUTHENTICATED";
    default:
      return "?";
  }
}

std::string TestName() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  if (!info) return "no-test";
  return std::string(info->test_suite_name()) + "." + info->name();
}

}  // namespace

ResponseMeta MetaOf(const grpc::ClientContext& ctx) {
  ResponseMeta m;
  const auto& md = ctx.GetServerInitialMetadata();
  if (auto it = md.find("lockd-leader"); it != md.end()) {
    m.has_leader = true;
    m.leader = std::string(it->second.data(), it->second.size());
  }
  if (auto it = md.find("lockd-cluster"); it != md.end()) {
    m.has_cluster = true;
    m.cluster = std::string(it->second.data(), it->second.size());
  }
  return m;
}

std::string Describe(const grpc::Status& s) {
  return std::string(CodeName(s.error_code())) + ": " + s.error_message();
}

// ------------------------------------------------------------------------------------------
// Cluster
// ------------------------------------------------------------------------------------------

Cluster::Cluster(ClusterOptions options) : options_(std::move(options)) {
  dir_ = std::make_unique<testing::TempDir>();
  // Never reallocated: a test's load thread reads nodes while the test adds some.
  nodes_.reserve(kMaxNodes);
  nodes_.resize(options_.nodes);
  auto ports = testing::FreePorts(3 * options_.nodes);
  for (int i = 0; i < options_.nodes; ++i) {
    Node& n = nodes_[i];
    n.id = static_cast<uint64_t>(i) + 1;
    n.client_port = ports[3 * i];
    n.peer_port = ports[3 * i + 1];
    n.http_port = ports[3 * i + 2];
    std::filesystem::create_directories(data_dir(i));
    Connect(i);
  }
  if (options_.start) StartAll();
}

Cluster::~Cluster() {
  const auto t0 = Clock::now();
  if (::testing::Test::HasFailure()) SaveLogsOnFailure();
  for (int i = 0; i < size(); ++i) {
    if (nodes_[i].paused && nodes_[i].process) nodes_[i].process->Signal(SIGCONT);
  }
  // Close our connections first: a server shutting down waits for open connections.
  for (auto& n : nodes_) {
    n.lock.reset();
    n.cluster.reset();
    n.channel.reset();
  }
  retired_.clear();
  // Clean shutdown first (it is faster to look at a log that ends in "stopped"), then kill.
  for (auto& n : nodes_) {
    if (n.process && n.process->running()) n.process->Signal(SIGTERM);
  }
  for (auto& n : nodes_) {
    if (n.process && !n.process->Wait(10s)) n.process->Kill();
    n.process.reset();
  }
  if (std::getenv("LOCKD_E2E_VERBOSE")) {
    std::cerr << "[e2e] cluster stopped in "
              << std::chrono::duration_cast<Ms>(Clock::now() - t0).count() << " ms\n";
  }
}

void Cluster::Connect(int i) {
  Node& n = nodes_[i];
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 500);
  // The tests send oversized requests on purpose: the client must not refuse them first.
  args.SetMaxSendMessageSize(64 << 20);
  args.SetMaxReceiveMessageSize(64 << 20);
  // A channel of its own (no subchannel shared with another Cluster or an earlier start).
  args.SetString("lockd-e2e-channel",
                 std::to_string(i) + "#" + std::to_string(n.starts) + "@" + dir_->path());
  auto channel = grpc::CreateCustomChannel(
      Addr(n.client_port),
      options_.credentials ? options_.credentials : grpc::InsecureChannelCredentials(), args);
  auto lock = v1::LockService::NewStub(channel);
  auto cluster = v1::ClusterService::NewStub(channel);
  // Another thread (a test's load) may be calling through the old stubs right now: they are
  // swapped under stubs_mu_ and kept alive (found as a null stub read in the middle of a swap).
  std::lock_guard guard(stubs_mu_);
  if (n.lock) retired_.push_back({n.channel, std::move(n.lock), std::move(n.cluster)});
  n.channel = std::move(channel);
  n.lock = std::move(lock);
  n.cluster = std::move(cluster);
}

bool Cluster::WaitListening(int i, Ms timeout) {
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline && running(i)) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<uint16_t>(nodes_[i].client_port));
    const bool ok = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    close(fd);
    if (ok) return true;
    std::this_thread::sleep_for(10ms);
  }
  return false;
}

int Cluster::IndexOf(uint64_t node_id) const {
  // A replaced node's id may come back under a new index: the newest one is the live one.
  for (int i = size() - 1; i >= 0; --i) {
    if (nodes_[i].id == node_id) return i;
  }
  return -1;
}

int Cluster::IndexOfClientAddr(const std::string& addr) const {
  // A replacement reuses its predecessor's addresses: the newest node on them is the one.
  for (int i = size() - 1; i >= 0; --i) {
    if (client_addr(i) == addr) return i;
  }
  return -1;
}

std::string Cluster::client_addr(int i) const {
  return Addr(nodes_[i].client_port);
}
std::string Cluster::peer_addr(int i) const {
  return Addr(nodes_[i].peer_port);
}
std::string Cluster::http_addr(int i) const {
  return Addr(nodes_[i].http_port);
}
std::string Cluster::data_dir(int i) const {
  return dir_->path() + "/data" + std::to_string(id(i));
}
std::string Cluster::log_path(int i) const {
  return dir_->path() + "/node" + std::to_string(id(i)) + ".log";
}
const std::string& Cluster::dir() const {
  return dir_->path();
}

std::string Cluster::InitialCluster() const {
  std::string s;
  for (int i = 0; i < size(); ++i) {
    if (nodes_[i].joins) continue;
    if (!s.empty()) s += ",";
    s += std::to_string(id(i)) + "=" + peer_addr(i) + "/" + client_addr(i);
  }
  return s;
}

std::vector<std::string> Cluster::Argv(int i) const {
  const auto& o = options_;
  std::vector<std::string> argv = {
      LOCKD_BINARY,
      "--id",
      std::to_string(id(i)),
      "--client-addr",
      client_addr(i),
      "--peer-addr",
      peer_addr(i),
      "--http-addr",
      http_addr(i),
      "--data-dir",
      data_dir(i),
      "--cluster-token",
      "e2e-" + dir(),  // one cluster id per test cluster, as an operator should pick
      "--tick-ms",
      std::to_string(o.tick_ms),
      "--election-min-ms",
      std::to_string(o.election_min_ms),
      "--min-ttl-ms",
      std::to_string(o.min_ttl_ms),
      "--max-ttl-ms",
      std::to_string(o.max_ttl_ms),
      "--max-wait-ms",
      std::to_string(o.max_wait_ms),
      "--max-name-bytes",
      std::to_string(o.max_name_bytes),
      "--max-request-bytes",
      std::to_string(o.max_request_bytes),
      "--forward-timeout-ms",
      std::to_string(o.forward_timeout_ms),
      "--log-level",
      o.log_level,
  };
  if (nodes_[i].joins) {
    std::string join;
    for (int j = 0; j < size(); ++j) {
      if (j == i || client_addr(j) == client_addr(i)) continue;
      join += (join.empty() ? "" : ",") + client_addr(j);
    }
    argv.push_back("--join");
    argv.push_back(join);
  } else {
    argv.push_back("--initial-cluster");
    argv.push_back(InitialCluster());
  }
  // Without TLS the nodes must be told to serve plaintext (lockd requires one or the other).
  if (!o.credentials) argv.push_back("--plaintext");
  for (const auto& f : o.extra_flags) argv.push_back(f);
  if (o.node_flags) {
    for (auto& f : o.node_flags(nodes_[i].id)) argv.push_back(std::move(f));
  }
  return argv;
}

int Cluster::AddJoiningNode(uint64_t id, int same_addresses_as, bool start) {
  Node n;
  n.id = id;
  n.joins = true;
  if (same_addresses_as >= 0) {
    const Node& old = nodes_[same_addresses_as];
    n.client_port = old.client_port;
    n.peer_port = old.peer_port;
    n.http_port = old.http_port;
  } else {
    auto ports = testing::FreePorts(3);
    n.client_port = ports[0];
    n.peer_port = ports[1];
    n.http_port = ports[2];
  }
  if (nodes_.size() >= kMaxNodes) {
    ADD_FAILURE() << "the harness holds at most " << kMaxNodes << " nodes";
    return -1;
  }
  nodes_.push_back(std::move(n));
  const int i = size() - 1;
  std::filesystem::create_directories(data_dir(i));
  Connect(i);
  if (start) Start(i);
  return i;
}

void Cluster::Start(int i) {
  Node& n = nodes_[i];
  if (n.process && n.process->running()) return;
  n.process.reset();
  n.paused = false;
  ++n.starts;
  {
    std::ofstream log(log_path(i), std::ios::app);
    log << "===== e2e harness: start #" << n.starts << " of node " << id(i) << " =====\n";
  }
  testing::SpawnOptions spawn;
  spawn.env = options_.env;
  n.process = std::make_unique<testing::Process>(Argv(i), log_path(i), spawn);
  // A channel that tried a port nobody listened on backs off for seconds: connect only once
  // the node listens, on a fresh channel.
  WaitListening(i, 10s);
  Connect(i);
}

void Cluster::StartAll() {
  for (int i = 0; i < size(); ++i) Start(i);
}

std::optional<int> Cluster::Stop(int i, Ms timeout) {
  Node& n = nodes_[i];
  if (!n.process) return std::nullopt;
  if (n.paused) Resume(i);
  n.process->Signal(SIGTERM);
  auto code = n.process->Wait(timeout);
  if (!code) n.process->Kill();
  return code;
}

bool Cluster::StopAll(Ms timeout) {
  for (int i = 0; i < size(); ++i) {
    if (nodes_[i].paused) Resume(i);
    if (nodes_[i].process && nodes_[i].process->running()) nodes_[i].process->Signal(SIGTERM);
  }
  bool all_zero = true;
  for (int i = 0; i < size(); ++i) {
    if (!nodes_[i].process) continue;
    auto code = nodes_[i].process->Wait(timeout);
    if (!code) {
      ADD_FAILURE() << "node " << id(i) << " did not exit within " << timeout.count()
                    << " ms of SIGTERM";
      nodes_[i].process->Kill();
      all_zero = false;
    } else if (*code != 0) {
      ADD_FAILURE() << "node " << id(i) << " exited with " << *code << " after SIGTERM";
      all_zero = false;
    }
  }
  return all_zero;
}

void Cluster::Kill(int i) {
  if (nodes_[i].process) nodes_[i].process->Kill();
  nodes_[i].paused = false;
}

void Cluster::Pause(int i) {
  if (nodes_[i].process && nodes_[i].process->running()) {
    nodes_[i].process->Signal(SIGSTOP);
    nodes_[i].paused = true;
  }
}

void Cluster::Resume(int i) {
  if (nodes_[i].process) nodes_[i].process->Signal(SIGCONT);
  nodes_[i].paused = false;
}

void Cluster::Restart(int i) {
  auto code = Stop(i);
  EXPECT_EQ(code, std::optional<int>(0)) << "node " << id(i) << " did not exit 0 on SIGTERM";
  Start(i);
}

bool Cluster::running(int i) {
  return nodes_[i].process && nodes_[i].process->running();
}

bool Cluster::live(int i) {
  return running(i) && !nodes_[i].paused;
}

std::vector<int> Cluster::LiveNodes() {
  std::vector<int> out;
  for (int i = 0; i < size(); ++i) {
    if (live(i)) out.push_back(i);
  }
  return out;
}

grpc::Status Cluster::Status(int i, v1::StatusResponse* out, Ms timeout) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + timeout);
  if (!options_.bearer_token.empty()) {
    ctx.AddMetadata("authorization", "Bearer " + options_.bearer_token);
  }
  return nodes_[i].cluster->Status(&ctx, v1::StatusRequest(), out);
}

int Cluster::LeaderSeenBy(int i) {
  v1::StatusResponse s;
  if (!Status(i, &s, 1s).ok()) return -1;
  return IndexOf(s.leader_id());
}

int Cluster::WaitForLeader(Ms timeout) {
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    auto live_nodes = LiveNodes();
    uint64_t agreed = 0;
    bool ok = !live_nodes.empty();
    for (int i : live_nodes) {
      v1::StatusResponse s;
      const grpc::Status st = Status(i, &s, 1s);
      if (!st.ok() || s.leader_id() == 0) {
        ok = false;
        break;
      }
      if (agreed == 0) agreed = s.leader_id();
      if (s.leader_id() != agreed) {
        ok = false;
        break;
      }
    }
    if (ok) {
      const int leader = IndexOf(agreed);
      if (leader >= 0 && live(leader)) return leader;
    }
    std::this_thread::sleep_for(50ms);
  }
  return -1;
}

int Cluster::WaitForReady(Ms timeout) {
  const auto t0 = Clock::now();
  const auto deadline = t0 + timeout;
  for (;;) {
    const auto left = std::chrono::duration_cast<Ms>(deadline - Clock::now());
    if (left <= 0ms) return -1;
    const int leader = WaitForLeader(left);
    if (leader < 0) return -1;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 2s);
    if (!options_.bearer_token.empty()) {
      ctx.AddMetadata("authorization", "Bearer " + options_.bearer_token);
    }
    v1::ListLeasesRequest req;
    req.set_page_size(1);
    v1::ListLeasesResponse resp;
    const grpc::Status st = lock(leader).ListLeases(&ctx, req, &resp);
    if (st.ok()) {
      if (std::getenv("LOCKD_E2E_VERBOSE")) {
        std::cerr << "[e2e] ready (leader node " << id(leader) << ") in "
                  << std::chrono::duration_cast<Ms>(Clock::now() - t0).count() << " ms\n";
      }
      return leader;
    }
    if (std::getenv("LOCKD_E2E_VERBOSE")) {
      std::cerr << "[e2e] not ready yet after "
                << std::chrono::duration_cast<Ms>(Clock::now() - t0).count()
                << " ms: ListLeases on leader node " << id(leader) << ": " << Describe(st) << "\n";
    }
    std::this_thread::sleep_for(100ms);
  }
}

int Cluster::OtherLiveNode(int not_this) {
  for (int i : LiveNodes()) {
    if (i != not_this) return i;
  }
  return -1;
}

std::string Cluster::StatusSummary() {
  std::ostringstream os;
  for (int i = 0; i < size(); ++i) {
    os << "node " << id(i) << ": ";
    if (!running(i)) {
      os << "not running\n";
      continue;
    }
    if (paused(i)) {
      os << "paused\n";
      continue;
    }
    v1::StatusResponse s;
    auto st = Status(i, &s, 1s);
    if (!st.ok()) {
      os << Describe(st) << "\n";
      continue;
    }
    os << "leader=" << s.leader_id() << " term=" << s.term() << " commit=" << s.commit_index()
       << " applied=" << s.applied_index() << " tokens=" << s.token_counter()
       << " cluster=" << s.cluster_id() << "\n";
  }
  return os.str();
}

v1::LockService::Stub& Cluster::lock(int i) {
  std::lock_guard guard(stubs_mu_);
  return *nodes_[i].lock;
}
v1::ClusterService::Stub& Cluster::cluster(int i) {
  std::lock_guard guard(stubs_mu_);
  return *nodes_[i].cluster;
}
std::shared_ptr<grpc::Channel> Cluster::channel(int i) {
  std::lock_guard guard(stubs_mu_);
  return nodes_[i].channel;
}

std::string Cluster::LogTail(int i, size_t lines) const {
  std::ifstream in(log_path(i));
  std::deque<std::string> tail;
  std::string line;
  while (std::getline(in, line)) {
    tail.push_back(line);
    if (tail.size() > lines) tail.pop_front();
  }
  std::string out;
  for (auto& l : tail) out += "    " + l + "\n";
  return out;
}

std::string Cluster::LogTails(size_t lines) const {
  std::string out;
  for (int i = 0; i < size(); ++i) {
    out += "  --- node " + std::to_string(id(i)) + " (" + log_path(i) + "), last " +
           std::to_string(lines) + " lines:\n" + LogTail(i, lines);
  }
  return out;
}

void Cluster::SaveLogsOnFailure() {
  const char* base = std::getenv("TMPDIR");
  std::string keep = std::string(base && *base ? base : "/tmp") + "/lockd-e2e-logs/" + TestName() +
                     "-" + std::to_string(getpid());
  std::error_code ec;
  std::filesystem::create_directories(keep, ec);
  for (int i = 0; i < size(); ++i) {
    std::filesystem::copy_file(log_path(i), keep + "/node" + std::to_string(id(i)) + ".log",
                               std::filesystem::copy_options::overwrite_existing, ec);
  }
  std::cerr << "[e2e] " << TestName() << " failed; node logs kept in " << keep << "\n"
            << LogTails(40) << std::flush;
}

// ------------------------------------------------------------------------------------------
// Client
// ------------------------------------------------------------------------------------------

Client::Client(Cluster& cluster) : cluster_(cluster) {
  std::random_device rd;
  std::mt19937_64 g((static_cast<uint64_t>(rd()) << 32) ^ rd() ^
                    static_cast<uint64_t>(Clock::now().time_since_epoch().count()));
  do {
    hi_ = g();
    lo_ = g();
  } while (hi_ == 0 && lo_ == 0);
  rotation_ = static_cast<int>(g() % 1024);
}

v1::RequestHeader Client::Begin() {
  std::lock_guard<std::mutex> l(mu_);
  const uint64_t seq = ++next_seq_;
  pending_.insert(seq);
  v1::RequestHeader h;
  h.mutable_id()->set_client_hi(hi_);
  h.mutable_id()->set_client_lo(lo_);
  h.mutable_id()->set_seq(seq);
  h.set_attempt(1);
  h.set_watermark(*pending_.begin());
  return h;
}

void Client::End(uint64_t seq) {
  std::lock_guard<std::mutex> l(mu_);
  pending_.erase(seq);
}

v1::RequestId Client::FreshId() {
  std::lock_guard<std::mutex> l(mu_);
  v1::RequestId id;
  id.set_client_hi(hi_);
  id.set_client_lo(lo_);
  id.set_seq(++next_seq_);
  // Not pending, but it must not fall below the watermark either: keep it pending until the
  // test is done with it (a Client lives for one test).
  pending_.insert(id.seq());
  return id;
}

int Client::NextNode() {
  return rotation_.fetch_add(1) % cluster_.size();
}

CallInfo Client::GrantLease(uint64_t ttl_ms, v1::GrantLeaseResponse* out, const std::string& label,
                            CallOptions o) {
  v1::GrantLeaseRequest req;
  req.set_ttl_ms(ttl_ms);
  req.set_label(label);
  return Call(&v1::LockService::Stub::GrantLease, req, out, o);
}

uint64_t Client::MustGrantLease(uint64_t ttl_ms, const std::string& label) {
  v1::GrantLeaseResponse r;
  auto info = GrantLease(ttl_ms, &r, label);
  EXPECT_TRUE(info.status.ok()) << "GrantLease(" << ttl_ms << "): " << Describe(info.status);
  EXPECT_NE(r.lease_id(), 0u);
  return r.lease_id();
}

CallInfo Client::Acquire(const std::string& name, uint64_t lease, v1::LockMode mode,
                         uint64_t wait_ms, v1::AcquireResponse* out, CallOptions o,
                         std::optional<v1::RequestHeader> header) {
  v1::AcquireRequest req;
  if (header) *req.mutable_header() = *header;
  req.set_name(name);
  req.set_lease_id(lease);
  req.set_mode(mode);
  req.set_wait_ms(wait_ms);
  return Call(&v1::LockService::Stub::Acquire, req, out, o);
}

CallInfo Client::Release(const std::string& name, uint64_t lease, uint64_t token, CallOptions o) {
  v1::ReleaseRequest req;
  req.set_name(name);
  req.set_lease_id(lease);
  req.set_token(token);
  v1::ReleaseResponse resp;
  return Call(&v1::LockService::Stub::Release, req, &resp, o);
}

CallInfo Client::Cancel(const std::string& name, uint64_t lease, const v1::RequestId& acquire_id,
                        v1::CancelResponse* out, CallOptions o) {
  v1::CancelRequest req;
  req.set_name(name);
  req.set_lease_id(lease);
  *req.mutable_acquire_id() = acquire_id;
  return Call(&v1::LockService::Stub::Cancel, req, out, o);
}

CallInfo Client::Revoke(uint64_t lease, v1::RevokeLeaseResponse* out, CallOptions o) {
  v1::RevokeLeaseRequest req;
  req.set_lease_id(lease);
  v1::RevokeLeaseResponse local;
  return Call(&v1::LockService::Stub::RevokeLease, req, out ? out : &local, o);
}

CallInfo Client::Renew(uint64_t lease, uint64_t seq, v1::RenewResponse* out, CallOptions o) {
  v1::RenewRequest req;
  req.set_lease_id(lease);
  req.set_seq(seq);
  return Call(&v1::LockService::Stub::Renew, req, out, o);
}

CallInfo Client::GetLock(const std::string& name, v1::GetLockResponse* out, CallOptions o) {
  v1::GetLockRequest req;
  req.set_name(name);
  return Call(&v1::LockService::Stub::GetLock, req, out, o);
}

CallInfo Client::GetLease(uint64_t lease, v1::GetLeaseResponse* out, CallOptions o) {
  v1::GetLeaseRequest req;
  req.set_lease_id(lease);
  return Call(&v1::LockService::Stub::GetLease, req, out, o);
}

CallInfo Client::ListAllLeases(std::vector<v1::LeaseInfo>* out, CallOptions o) {
  out->clear();
  std::string token;
  CallInfo info;
  for (int pages = 0; pages < 10'000; ++pages) {
    v1::ListLeasesRequest req;
    req.set_page_token(token);
    v1::ListLeasesResponse resp;
    info = Call(&v1::LockService::Stub::ListLeases, req, &resp, o);
    if (!info.status.ok()) return info;
    for (auto& l : resp.leases()) out->push_back(l);
    token = resp.next_page_token();
    if (token.empty()) break;
  }
  return info;
}

CallInfo Client::ListAllLocks(const std::string& prefix, std::vector<v1::LockInfo>* out,
                              CallOptions o) {
  out->clear();
  std::string token;
  CallInfo info;
  for (int pages = 0; pages < 10'000; ++pages) {
    v1::ListLocksRequest req;
    req.set_prefix(prefix);
    req.set_page_token(token);
    v1::ListLocksResponse resp;
    info = Call(&v1::LockService::Stub::ListLocks, req, &resp, o);
    if (!info.status.ok()) return info;
    for (auto& l : resp.locks()) out->push_back(l);
    token = resp.next_page_token();
    if (token.empty()) break;
  }
  return info;
}

v1::LockInfo Client::MustGetLock(const std::string& name) {
  v1::GetLockResponse r;
  auto info = GetLock(name, &r);
  EXPECT_TRUE(info.status.ok()) << "GetLock(" << name << "): " << Describe(info.status);
  return r.lock();
}

// ------------------------------------------------------------------------------------------
// Acquires in the background
// ------------------------------------------------------------------------------------------

AcquireResult PendingAcquire::Get(Ms timeout) {
  if (result.wait_for(timeout) != std::future_status::ready) {
    ADD_FAILURE() << "the waiting Acquire seq " << header.id().seq() << " did not return within "
                  << timeout.count() << " ms";
    return {};
  }
  return result.get();
}

bool PendingAcquire::Done() {
  return result.wait_for(0ms) == std::future_status::ready;
}

PendingAcquire StartAcquire(Client& c, const std::string& name, uint64_t lease, v1::LockMode mode,
                            uint64_t wait_ms, CallOptions o,
                            std::optional<v1::RequestHeader> header) {
  PendingAcquire p;
  p.header = header ? *header : c.Begin();
  auto h = p.header;
  p.result = std::async(std::launch::async, [&c, name, lease, mode, wait_ms, o, h] {
    AcquireResult r;
    r.info = c.Acquire(name, lease, mode, wait_ms, &r.resp, o, h);
    c.End(h.id().seq());
    return r;
  });
  return p;
}

bool WaitForWaiters(Client& c, const std::string& name, int n, Ms timeout) {
  return testing::WaitFor(
      [&] {
        v1::GetLockResponse r;
        return c.GetLock(name, &r).status.ok() && r.lock().waiters_size() >= n;
      },
      timeout);
}

// ------------------------------------------------------------------------------------------
// Watch
// ------------------------------------------------------------------------------------------

std::vector<v1::WatchResponse> ReadWatch(Cluster& c, int node, const v1::WatchRequest& req,
                                         size_t n, Ms timeout, grpc::Status* status) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + timeout);
  auto reader = c.lock(node).Watch(&ctx, req);
  std::vector<v1::WatchResponse> out;
  size_t events = 0;
  v1::WatchResponse r;
  while (events < n && reader->Read(&r)) {
    events += r.events_size();
    out.push_back(r);
  }
  if (events >= n) ctx.TryCancel();
  auto s = reader->Finish();
  if (status) *status = s;
  return out;
}

WatchStream::WatchStream(Cluster& c, int node, v1::WatchRequest req, Ms timeout) {
  ctx_.set_deadline(std::chrono::system_clock::now() + timeout);
  reader_ = c.lock(node).Watch(&ctx_, req);
  thread_ = std::thread([this] {
    v1::WatchResponse r;
    while (reader_->Read(&r)) {
      std::lock_guard<std::mutex> l(mu_);
      responses_.push_back(r);
    }
    auto s = reader_->Finish();
    std::lock_guard<std::mutex> l(mu_);
    status_ = s;
    done_ = true;
  });
}

WatchStream::~WatchStream() {
  Finish();
}

std::vector<v1::LockEvent> WatchStream::WaitEvents(size_t n, Ms timeout) {
  std::vector<v1::LockEvent> out;
  testing::WaitFor(
      [&] {
        std::lock_guard<std::mutex> l(mu_);
        out = Events(responses_);
        return out.size() >= n || done_;
      },
      timeout);
  return out;
}

std::vector<v1::WatchResponse> WatchStream::Responses() {
  std::lock_guard<std::mutex> l(mu_);
  return responses_;
}

grpc::Status WatchStream::Finish() {
  if (thread_.joinable()) {
    ctx_.TryCancel();
    thread_.join();
  }
  std::lock_guard<std::mutex> l(mu_);
  return status_;
}

std::vector<v1::LockEvent> Events(const std::vector<v1::WatchResponse>& rs) {
  std::vector<v1::LockEvent> out;
  for (const auto& r : rs) {
    for (const auto& e : r.events()) out.push_back(e);
  }
  return out;
}

bool PositionLess(const v1::WatchPosition& a, const v1::WatchPosition& b) {
  if (a.index() != b.index()) return a.index() < b.index();
  return a.event() < b.event();
}

std::string ToString(const v1::LockEvent& e) {
  std::ostringstream os;
  os << v1::LockEvent::Type_Name(e.type()) << " " << e.name() << " lease=" << e.lease_id()
     << " mode=" << v1::LockMode_Name(e.mode()) << " token=" << e.token() << " fence=" << e.fence()
     << " @" << e.position().index() << "." << e.position().event();
  return os.str();
}

std::string ToString(const v1::LockInfo& l) {
  std::ostringstream os;
  os << "'" << l.name() << "' holders:[";
  for (const auto& h : l.holders()) {
    os << " lease=" << h.lease_id() << "/" << v1::LockMode_Name(h.mode()) << "/t" << h.token()
       << "/f" << h.fence();
  }
  os << " ] waiters:[";
  for (const auto& w : l.waiters()) {
    os << " lease=" << w.lease_id() << "/" << v1::LockMode_Name(w.mode());
  }
  os << " ]";
  return os.str();
}

// ------------------------------------------------------------------------------------------
// Periodic, Renewer
// ------------------------------------------------------------------------------------------

Periodic::Periodic(Ms period, std::function<void()> fn) {
  thread_ = std::thread([this, period, fn = std::move(fn)] {
    while (!stop_) {
      fn();
      const auto until = Clock::now() + period;
      while (!stop_ && Clock::now() < until) std::this_thread::sleep_for(10ms);
    }
  });
}

Periodic::~Periodic() {
  Stop();
}

void Periodic::Stop() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

Renewer::Renewer(Client& client, std::vector<uint64_t> leases, Ms period, Ms attempt)
    : client_(client), period_(period), attempt_(attempt), leases_(std::move(leases)) {
  const auto now = Clock::now();
  for (auto l : leases_) last_ack_[l] = now;
  thread_ = std::thread([this] { Loop(); });
}

Renewer::~Renewer() {
  Stop();
}

void Renewer::Add(uint64_t lease) {
  std::lock_guard<std::mutex> l(mu_);
  leases_.push_back(lease);
  last_ack_[lease] = Clock::now();
}

void Renewer::Remove(uint64_t lease) {
  std::lock_guard<std::mutex> l(mu_);
  std::erase(leases_, lease);
  last_ack_.erase(lease);
}

void Renewer::Stop() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

std::vector<std::string> Renewer::Failures() {
  std::lock_guard<std::mutex> l(mu_);
  return failures_;
}

Ms Renewer::LongestGap() {
  std::lock_guard<std::mutex> l(mu_);
  Ms gap = longest_gap_;
  const auto now = Clock::now();
  for (const auto& [_, t] : last_ack_) {
    gap = std::max(gap, std::chrono::duration_cast<Ms>(now - t));
  }
  return gap;
}

void Renewer::Loop() {
  while (!stop_) {
    std::vector<uint64_t> leases;
    {
      std::lock_guard<std::mutex> l(mu_);
      leases = leases_;
    }
    for (uint64_t lease : leases) {
      if (stop_) break;
      CallOptions o;
      o.attempt = attempt_;
      o.deadline = period_ + attempt_ * 3;
      o.node = node_;
      v1::RenewResponse r;
      const uint64_t seq = ++seq_;
      auto info = client_.Renew(lease, seq, &r, o);
      std::lock_guard<std::mutex> l(mu_);
      if (!last_ack_.count(lease)) continue;  // removed meanwhile
      const auto code = info.status.error_code();
      if (info.status.ok()) {
        node_ = info.node;
        if (r.seq() != seq || r.lease_id() != lease) {
          failures_.push_back("renewal of lease " + std::to_string(lease) + " seq " +
                              std::to_string(seq) + " answered with lease " +
                              std::to_string(r.lease_id()) + " seq " + std::to_string(r.seq()));
        }
        const auto now = Clock::now();
        longest_gap_ =
            std::max(longest_gap_, std::chrono::duration_cast<Ms>(now - last_ack_[lease]));
        last_ack_[lease] = now;
        ++acknowledged_;
      } else if (code != grpc::StatusCode::UNAVAILABLE &&
                 code != grpc::StatusCode::DEADLINE_EXCEEDED) {
        failures_.push_back("renewal of lease " + std::to_string(lease) + " (node " +
                            std::to_string(info.node + 1) + "): " + Describe(info.status));
      }
    }
    const auto until = Clock::now() + period_;
    while (!stop_ && Clock::now() < until) std::this_thread::sleep_for(10ms);
  }
}

}  // namespace lockd::e2e
