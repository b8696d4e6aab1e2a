// lockbench: a load generator for a running lockd cluster (issue 18).
//
// Closed-loop clients on gRPC's callback API, spread over a chosen number of connections to the
// leader (found with ClusterService.Status; --spread sends to every member instead, to measure
// forwarding). Workloads:
//   uncontended  each client acquires and releases its own name under one long-lived lease
//   contended    N clients on K hot names, each Acquire waiting; handoffs/s and the time from a
//                release being sent to the next holder's grant
//   keepalive    L leases renewed over S KeepAlive streams, a window of renewals in flight each
//   failover     closed-loop lock+unlock through the client library (its retries and leader
//                discovery), every success's completion time kept: the longest gap between two
//                successes is what a leader kill -9 during the run cost (bench/compare.sh kills)
//   fill         the scale workload's load: --leases leases of --ttl-ms, then --locks locks held
//                under them (round robin), many Acquires in flight; then each server's resident
//                memory (bench/scale.sh restarts a node and times its catch-up)
//   floor        what the hardware allows: a gRPC round trip to the leader (ClusterService.Status,
//                answered from memory) and an append + fdatasync of 128 bytes in --sync-dir; the
//                floor of an uncontended lock+unlock is 2 x (rtt + max(sync, rtt + sync)): each of
//                the two writes is a round trip to the leader, and a commit needs the leader's sync
//                and a follower's round trip + sync, which overlap
// It prints a table row and a JSON line per workload: throughput, latency percentiles, errors by
// code, and the CPU seconds of this process and of each server pid given (from /proc).
#include <fcntl.h>
#include <grpcpp/alarm.h>
#include <grpcpp/grpcpp.h>
#include <sys/resource.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "lockd/client.h"
#include "lockd/v1/lockd.grpc.pb.h"

namespace lockbench {
namespace {

namespace pb = lockd::v1;
using Clock = std::chrono::steady_clock;
using std::chrono::duration;

double Seconds(Clock::duration d) {
  return duration<double>(d).count();
}

struct Config {
  std::vector<std::string> endpoints;
  std::string workload = "uncontended";
  int clients = 16;
  int connections = 4;
  double seconds = 10;
  int names = 1;        // contended: hot names
  int leases = 1000;    // keepalive
  int streams = 16;     // keepalive
  int window = 8;       // keepalive: renewals in flight per stream
  int64_t locks = 0;    // fill: locks held at the end
  int in_flight = 256;  // fill: Acquires in flight
  int batch = 1;        // keepalive: leases renewed per message
  uint64_t ttl_ms = 60'000;
  bool spread = false;
  std::vector<int> server_pids;
  std::string json_path;
  std::string label = "lockd";
  std::string sync_dir = "/var/tmp";
};

// --- CPU from /proc -------------------------------------------------------------------------

double ProcessCpuSeconds(int pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  const auto close = s.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream in(s.substr(close + 2));
  std::string field;
  double utime = 0, stime = 0;
  for (int k = 3; k <= 15 && in >> field; ++k) {  // fields 14 and 15: utime, stime (ticks)
    if (k == 14) utime = std::stod(field);
    if (k == 15) stime = std::stod(field);
  }
  return (utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

double SelfCpuSeconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  auto tv = [](const timeval& t) { return static_cast<double>(t.tv_sec) + t.tv_usec / 1e6; };
  return tv(ru.ru_utime) + tv(ru.ru_stime);
}

/// Resident memory of `pid` in MiB (VmRSS), 0 if it is gone.
double ResidentMiB(int pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;  // kB
  }
  return 0;
}

struct CpuSample {
  double self = 0;
  std::vector<double> servers;
  static CpuSample Take(const Config& c) {
    CpuSample s;
    s.self = SelfCpuSeconds();
    for (int pid : c.server_pids) s.servers.push_back(ProcessCpuSeconds(pid));
    return s;
  }
};

// --- Results ----------------------------------------------------------------------------------

/// Latencies in microseconds, one vector per client (no lock on the hot path), merged at the end.
struct Recorder {
  std::vector<std::vector<uint32_t>> per_client;
  std::mutex mu;
  std::map<std::string, uint64_t> errors;
  explicit Recorder(int clients) : per_client(static_cast<size_t>(clients)) {}
  void Error(const grpc::Status& s) {
    std::lock_guard g(mu);
    ++errors[std::to_string(s.error_code()) + " " + s.error_message().substr(0, 60)];
  }
  void Error(const std::string& what) {
    std::lock_guard g(mu);
    ++errors[what];
  }
};

struct Summary {
  std::string workload;
  uint64_t ops = 0;
  double seconds = 0;
  std::vector<uint32_t> lat;  // sorted, µs
  std::string extra;          // workload-specific JSON members, each ending with ", "
  std::map<std::string, uint64_t> errors;
  CpuSample cpu_before, cpu_after;
};

double Pct(const std::vector<uint32_t>& v, double p) {
  if (v.empty()) return 0;
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())));
  return v[i] / 1000.0;
}

void Report(const Config& c, const Summary& s) {
  const double ops_s = s.seconds > 0 ? static_cast<double>(s.ops) / s.seconds : 0;
  double server_cpu = 0;
  std::string per_server;
  for (size_t k = 0; k < s.cpu_after.servers.size(); ++k) {
    // A server killed during the run (failover) reads 0 after: its CPU is not known, not negative.
    const double d = std::max(0.0, s.cpu_after.servers[k] - s.cpu_before.servers[k]);
    server_cpu += d;
    per_server += (k ? "," : "") + std::to_string(d);
  }
  const double client_cpu = s.cpu_after.self - s.cpu_before.self;
  const double cpu_per_op_us = s.ops ? server_cpu / static_cast<double>(s.ops) * 1e6 : 0;
  uint64_t errors = 0;
  std::string errs;
  for (const auto& [what, n] : s.errors) {
    errors += n;
    std::string escaped;
    for (char ch : what) {
      if (ch == '"' || ch == '\\') escaped += '\\';
      if (static_cast<unsigned char>(ch) >= 0x20) escaped += ch;
    }
    errs += (errs.empty() ? "" : ",") + std::string("\"") + escaped + "\":" + std::to_string(n);
  }
  std::printf(
      "%-12s %-6s ops %8lu  %9.0f/s  p50 %7.3f  p90 %7.3f  p99 %7.3f  p99.9 %7.3f  max %8.3f ms"
      "  errors %lu  cpu client %.2fs servers %.2fs (%.0f us/op)\n",
      s.workload.c_str(), c.label.c_str(), static_cast<unsigned long>(s.ops), ops_s, Pct(s.lat, .5),
      Pct(s.lat, .9), Pct(s.lat, .99), Pct(s.lat, .999), s.lat.empty() ? 0 : s.lat.back() / 1000.0,
      static_cast<unsigned long>(errors), client_cpu, server_cpu, cpu_per_op_us);
  for (const auto& [what, n] : s.errors) {
    std::printf("    error x%lu: %s\n", static_cast<unsigned long>(n), what.c_str());
  }
  std::ostringstream j;
  j << "{\"system\":\"" << c.label << "\",\"workload\":\"" << s.workload
    << "\",\"clients\":" << c.clients << ",\"connections\":" << c.connections
    << ",\"seconds\":" << s.seconds << ",\"ops\":" << s.ops << ",\"ops_per_s\":" << ops_s
    << ",\"p50_ms\":" << Pct(s.lat, .5) << ",\"p90_ms\":" << Pct(s.lat, .9)
    << ",\"p99_ms\":" << Pct(s.lat, .99) << ",\"p999_ms\":" << Pct(s.lat, .999)
    << ",\"max_ms\":" << (s.lat.empty() ? 0 : s.lat.back() / 1000.0) << ", " << s.extra
    << "\"errors\":" << errors << ",\"error_kinds\":{" << errs
    << "},\"client_cpu_s\":" << client_cpu << ",\"server_cpu_s\":" << server_cpu
    << ",\"server_cpu_each_s\":[" << per_server << "],\"server_cpu_per_op_us\":" << cpu_per_op_us
    << "}";
  std::printf("%s\n", j.str().c_str());
  if (!c.json_path.empty()) {
    std::ofstream out(c.json_path, std::ios::app);
    out << j.str() << "\n";
  }
  std::fflush(stdout);
}

// --- Connections ------------------------------------------------------------------------------

std::vector<std::string> Split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  std::string part;
  while (std::getline(in, part, ',')) {
    if (!part.empty()) out.push_back(part);
  }
  return out;
}

std::shared_ptr<grpc::Channel> Dial(const std::string& target, int index) {
  grpc::ChannelArguments args;
  // Each channel its own TCP connection: gRPC would otherwise share one subchannel.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  args.SetInt("lockbench.connection", index);
  return grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
}

/// The leader's client address, asked of the members in turn for up to 15 s.
std::string FindLeader(const std::vector<std::string>& endpoints) {
  const auto until = Clock::now() + std::chrono::seconds(15);
  while (Clock::now() < until) {
    for (const auto& e : endpoints) {
      auto stub = pb::ClusterService::NewStub(Dial(e, -1));
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
      pb::StatusResponse st;
      if (!stub->Status(&ctx, pb::StatusRequest{}, &st).ok() || st.leader_id() == 0) continue;
      for (const auto& m : st.members()) {
        if (m.id() == st.leader_id()) return m.client_addr();
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return "";
}

/// One client identity: a random 128-bit id and a sequence, as the client library keeps.
struct Identity {
  uint64_t hi, lo, seq = 0;
  explicit Identity(std::mt19937_64& rng) : hi(rng() | 1), lo(rng()) {}
  void Next(pb::RequestHeader* h) {
    ++seq;
    h->mutable_id()->set_client_hi(hi);
    h->mutable_id()->set_client_lo(lo);
    h->mutable_id()->set_seq(seq);
    h->set_attempt(1);
    h->set_watermark(seq);  // one request in flight at a time
  }
};

/// Waits until every client has stopped.
class Done {
 public:
  explicit Done(int n) : left_(n) {}
  void One() {
    std::lock_guard g(mu_);
    if (--left_ == 0) cv_.notify_all();
  }
  void Wait() {
    std::unique_lock g(mu_);
    cv_.wait(g, [&] { return left_ == 0; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int left_;
};

class Cluster {
 public:
  explicit Cluster(const Config& c) {
    std::vector<std::string> targets;
    if (c.spread) {
      targets = c.endpoints;
    } else {
      const std::string leader = FindLeader(c.endpoints);
      if (leader.empty()) {
        std::fprintf(stderr, "lockbench: no leader found among %zu endpoints\n",
                     c.endpoints.size());
        std::exit(2);
      }
      targets = {leader};
    }
    target_ = targets.front();
    for (int k = 0; k < c.connections; ++k) {
      stubs_.push_back(pb::LockService::NewStub(Dial(targets[k % targets.size()], k)));
    }
  }
  pb::LockService::Stub& For(int client) { return *stubs_[client % stubs_.size()]; }
  const std::string& target() const { return target_; }

 private:
  std::string target_;
  std::vector<std::unique_ptr<pb::LockService::Stub>> stubs_;
};

uint64_t GrantLease(pb::LockService::Stub& stub, Identity& id, uint64_t ttl_ms) {
  // Retries keep the request id (attempt + 1): a grant whose answer was lost is answered again
  // rather than granted twice.
  pb::GrantLeaseRequest req;
  id.Next(req.mutable_header());
  req.set_ttl_ms(ttl_ms);
  req.set_label("lockbench");
  grpc::Status last;
  for (uint32_t attempt = 1; attempt <= 50; ++attempt) {
    req.mutable_header()->set_attempt(attempt);
    pb::GrantLeaseResponse resp;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    last = stub.GrantLease(&ctx, req, &resp);
    if (last.ok()) return resp.lease_id();
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  std::fprintf(stderr, "lockbench: could not grant a lease: %d %s\n",
               static_cast<int>(last.error_code()), last.error_message().c_str());
  std::exit(2);
}

// --- Workloads ----------------------------------------------------------------------------------

/// One closed-loop client: Acquire, then Release, again until the deadline. `wait_ms` 0 is a
/// try-lock (uncontended); otherwise the Acquire queues (contended).
class LockClient {
 public:
  struct Shared {
    Recorder* rec;
    Done* done;
    Clock::time_point deadline;
    uint64_t wait_ms;
    std::atomic<uint64_t> ops{0};
    // contended: per name, when its last release was sent (ns since the clock's epoch), and the
    // gaps from there to the next grant, µs.
    std::vector<std::atomic<int64_t>>* last_release_ns = nullptr;
    std::mutex gap_mu;
    std::vector<uint32_t> gaps;
  };

  LockClient(Shared& sh, pb::LockService::Stub& stub, int index, std::string name, int name_index,
             uint64_t lease, std::mt19937_64& rng)
      : sh_(sh),
        stub_(stub),
        index_(index),
        name_(std::move(name)),
        name_index_(name_index),
        lease_(lease),
        id_(rng) {}

  void Start() { Acquire(); }

 private:
  void Acquire() {
    if (Clock::now() >= sh_.deadline) {
      sh_.done->One();
      return;
    }
    started_ = Clock::now();
    ctx_ = std::make_unique<grpc::ClientContext>();
    areq_.Clear();
    id_.Next(areq_.mutable_header());
    areq_.set_name(name_);
    areq_.set_lease_id(lease_);
    areq_.set_mode(pb::EXCLUSIVE);
    areq_.set_wait_ms(sh_.wait_ms);
    stub_.async()->Acquire(ctx_.get(), &areq_, &aresp_, [this](grpc::Status s) {
      if (!s.ok() || !aresp_.acquired()) {
        if (!s.ok()) {
          sh_.rec->Error(s);
        } else {
          sh_.rec->Error("not acquired");
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
        Acquire();
        return;
      }
      granted_ = Clock::now();
      if (sh_.last_release_ns != nullptr) {
        const int64_t released = (*sh_.last_release_ns)[name_index_].load();
        const int64_t now = granted_.time_since_epoch().count();
        if (released > 0 && now > released) {
          std::lock_guard g(sh_.gap_mu);
          sh_.gaps.push_back(static_cast<uint32_t>((now - released) / 1000));
        }
      }
      Release(aresp_.token());
    });
  }

  void Release(uint64_t token) {
    ctx_ = std::make_unique<grpc::ClientContext>();
    rreq_.Clear();
    id_.Next(rreq_.mutable_header());
    rreq_.set_name(name_);
    rreq_.set_lease_id(lease_);
    rreq_.set_token(token);
    if (sh_.last_release_ns != nullptr) {
      (*sh_.last_release_ns)[name_index_].store(Clock::now().time_since_epoch().count());
    }
    stub_.async()->Release(ctx_.get(), &rreq_, &rresp_, [this, token](grpc::Status s) {
      if (!s.ok()) {
        sh_.rec->Error(s);
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
        Release(token);  // the same token: a retry of a release is harmless
        return;
      }
      const auto end = Clock::now();
      // Uncontended: lock+unlock; contended: the Acquire's wait.
      const auto measured = sh_.wait_ms == 0 ? end - started_ : granted_ - started_;
      sh_.rec->per_client[static_cast<size_t>(index_)].push_back(static_cast<uint32_t>(
          std::chrono::duration_cast<std::chrono::microseconds>(measured).count()));
      sh_.ops.fetch_add(1, std::memory_order_relaxed);
      Acquire();
    });
  }

  Shared& sh_;
  pb::LockService::Stub& stub_;
  const int index_;
  const std::string name_;
  const int name_index_;
  const uint64_t lease_;
  Identity id_;
  std::unique_ptr<grpc::ClientContext> ctx_;
  pb::AcquireRequest areq_;
  pb::AcquireResponse aresp_;
  pb::ReleaseRequest rreq_;
  pb::ReleaseResponse rresp_;
  Clock::time_point started_, granted_;
};

Summary RunLocks(const Config& c, Cluster& cluster, bool contended) {
  std::mt19937_64 rng(std::random_device{}());
  Recorder rec(c.clients);
  Done done(c.clients);
  LockClient::Shared sh;
  sh.rec = &rec;
  sh.done = &done;
  sh.wait_ms = contended ? 60'000 : 0;
  const int names = contended ? std::max(1, c.names) : c.clients;
  std::vector<std::atomic<int64_t>> last_release(static_cast<size_t>(names));
  if (contended) sh.last_release_ns = &last_release;
  const std::string run = std::to_string(rng() % 1'000'000);
  std::vector<std::unique_ptr<LockClient>> clients;
  for (int k = 0; k < c.clients; ++k) {
    Identity setup(rng);
    const uint64_t lease = GrantLease(cluster.For(k), setup, c.ttl_ms);
    const int name_index = k % names;
    const std::string name = "lockbench/" + run + "/" + std::to_string(name_index);
    clients.push_back(
        std::make_unique<LockClient>(sh, cluster.For(k), k, name, name_index, lease, rng));
  }
  Summary s;
  s.workload = contended ? "contended" + std::to_string(names) : "uncontended";
  s.cpu_before = CpuSample::Take(c);
  const auto start = Clock::now();
  sh.deadline = start + std::chrono::duration_cast<Clock::duration>(duration<double>(c.seconds));
  for (auto& cl : clients) cl->Start();
  done.Wait();
  s.seconds = Seconds(Clock::now() - start);
  s.cpu_after = CpuSample::Take(c);
  s.ops = sh.ops.load();
  for (auto& v : rec.per_client) s.lat.insert(s.lat.end(), v.begin(), v.end());
  std::sort(s.lat.begin(), s.lat.end());
  s.errors = rec.errors;
  if (contended) {
    std::sort(sh.gaps.begin(), sh.gaps.end());
    std::ostringstream e;
    e << "\"handoffs_per_s\":" << (s.seconds > 0 ? static_cast<double>(s.ops) / s.seconds : 0)
      << ",\"release_to_grant_p50_ms\":" << Pct(sh.gaps, .5)
      << ",\"release_to_grant_p99_ms\":" << Pct(sh.gaps, .99) << ", ";
    s.extra = e.str();
    std::printf("contended: release-to-next-grant p50 %.3f ms p99 %.3f ms (%zu handoffs)\n",
                Pct(sh.gaps, .5), Pct(sh.gaps, .99), sh.gaps.size());
  }
  return s;
}

/// One KeepAlive stream renewing its leases round robin, `window` renewals in flight.
class Renewer : public grpc::ClientBidiReactor<pb::RenewRequest, pb::RenewResponse> {
 public:
  Renewer(pb::LockService::Stub& stub, std::vector<uint64_t> leases, int window, int batch,
          Recorder& rec, int index, Clock::time_point deadline)
      : leases_(std::move(leases)),
        window_(window),
        batch_(std::max(1, batch)),
        rec_(rec),
        index_(index),
        deadline_(deadline),
        sent_at_(static_cast<size_t>(window) * 4 + 1) {
    stub.async()->KeepAlive(&ctx_, this);
    StartRead(&resp_);
    StartCall();
    std::lock_guard g(mu_);
    MaybeWrite();
  }

  void OnWriteDone(bool ok) override {
    std::lock_guard g(mu_);
    writing_ = false;
    if (!ok) return;
    MaybeWrite();
  }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // the stream ended; OnDone follows
    {
      std::lock_guard g(mu_);
      --in_flight_;
      // One latency sample per lease renewed: a batch's leases all waited as long.
      const auto at = sent_at_[resp_.seq() % sent_at_.size()];
      const auto took = static_cast<uint32_t>(
          std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - at).count());
      auto count = [&](const pb::RenewResponse& r) {
        if (r.code() == 0) {
          ++ok_;
          rec_.per_client[static_cast<size_t>(index_)].push_back(took);
        } else {
          rec_.Error("renewal refused: code " + std::to_string(r.code()) + " " +
                     r.message().substr(0, 60));
        }
      };
      count(resp_);
      for (const auto& m : resp_.more()) count(m);
      MaybeWrite();
    }
    StartRead(&resp_);
  }

  void OnDone(const grpc::Status& s) override {
    if (!s.ok() && s.error_code() != grpc::StatusCode::CANCELLED) rec_.Error(s);
    std::lock_guard g(mu_);
    finished_ = true;
    cv_.notify_all();
  }

  /// After the deadline: ends the stream once every renewal in flight is answered.
  uint64_t Finish() {
    std::unique_lock g(mu_);
    cv_.wait_for(g, std::chrono::seconds(10), [&] { return in_flight_ == 0 || finished_; });
    if (!finished_) ctx_.TryCancel();
    cv_.wait(g, [&] { return finished_; });
    return ok_;
  }

 private:
  void MaybeWrite() {  // mu_ held
    if (writing_ || in_flight_ >= window_ || Clock::now() >= deadline_ || leases_.empty()) {
      if (in_flight_ == 0) cv_.notify_all();
      return;
    }
    req_.Clear();
    req_.set_lease_id(leases_[next_++ % leases_.size()]);
    for (int k = 1; k < batch_; ++k) req_.add_more_lease_ids(leases_[next_++ % leases_.size()]);
    req_.set_seq(++seq_);
    sent_at_[seq_ % sent_at_.size()] = Clock::now();
    ++in_flight_;
    writing_ = true;
    StartWrite(&req_);
  }

  grpc::ClientContext ctx_;
  const std::vector<uint64_t> leases_;
  const int window_;
  const int batch_;
  Recorder& rec_;
  const int index_;
  const Clock::time_point deadline_;
  std::mutex mu_;
  std::condition_variable cv_;
  pb::RenewRequest req_;
  pb::RenewResponse resp_;
  std::vector<Clock::time_point> sent_at_;
  uint64_t seq_ = 0;
  size_t next_ = 0;
  int in_flight_ = 0;
  bool writing_ = false;
  bool finished_ = false;
  uint64_t ok_ = 0;
};

Summary RunKeepAlive(const Config& c, Cluster& cluster) {
  std::mt19937_64 rng(std::random_device{}());
  std::vector<std::vector<uint64_t>> per_stream(static_cast<size_t>(c.streams));
  {
    Identity id(rng);
    for (int k = 0; k < c.leases; ++k) {
      per_stream[static_cast<size_t>(k % c.streams)].push_back(
          GrantLease(cluster.For(k), id, c.ttl_ms));
    }
  }
  Recorder rec(c.streams);
  Summary s;
  s.workload = "keepalive";
  s.cpu_before = CpuSample::Take(c);
  const auto start = Clock::now();
  const auto deadline =
      start + std::chrono::duration_cast<Clock::duration>(duration<double>(c.seconds));
  std::vector<std::unique_ptr<Renewer>> streams;
  for (int k = 0; k < c.streams; ++k) {
    streams.push_back(std::make_unique<Renewer>(cluster.For(k), per_stream[static_cast<size_t>(k)],
                                                c.window, c.batch, rec, k, deadline));
  }
  std::this_thread::sleep_until(deadline);
  for (auto& st : streams) s.ops += st->Finish();
  s.seconds = Seconds(Clock::now() - start);
  s.cpu_after = CpuSample::Take(c);
  for (auto& v : rec.per_client) s.lat.insert(s.lat.end(), v.begin(), v.end());
  std::sort(s.lat.begin(), s.lat.end());
  s.errors = rec.errors;
  std::ostringstream e;
  e << "\"leases\":" << c.leases << ",\"streams\":" << c.streams << ",\"window\":" << c.window
    << ",\"batch\":" << c.batch << ", ";
  s.extra = e.str();
  return s;
}

// --- Failover: the client library's retries across a leader kill ---------------------------------

Summary RunFailover(const Config& c) {
  Recorder rec(c.clients);
  std::mutex succ_mu;
  std::vector<Clock::time_point> successes;
  std::atomic<uint64_t> ops{0};
  Summary s;
  s.workload = "failover";
  std::mt19937_64 rng(std::random_device{}());
  const std::string run = std::to_string(rng() % 1'000'000);
  s.cpu_before = CpuSample::Take(c);
  const auto start = Clock::now();
  const auto deadline =
      start + std::chrono::duration_cast<Clock::duration>(duration<double>(c.seconds));
  std::vector<std::thread> threads;
  for (int k = 0; k < c.clients; ++k) {
    threads.emplace_back([&, k] {
      lockd::client::ClientOptions o;
      o.endpoints = c.endpoints;
      o.log = [](const std::string&) {};
      auto client = lockd::client::Client::Connect(o);
      if (!client.ok()) {
        rec.Error("connect: " + client.status().ToString());
        return;
      }
      std::shared_ptr<lockd::client::Lease> lease;
      const std::string name = "lockbench/" + run + "/failover/" + std::to_string(k);
      std::vector<Clock::time_point> mine;
      while (Clock::now() < deadline) {
        if (!lease || !lease->valid()) {
          auto l = (*client)->GrantLease(std::chrono::milliseconds(c.ttl_ms), "lockbench");
          if (!l.ok()) {
            rec.Error("grant: " + std::string(lockd::client::StatusCodeName(l.status().code())));
            continue;
          }
          lease = l.value();
        }
        const auto t0 = Clock::now();
        auto lock = (*client)->Acquire(name, lease);
        if (!lock.ok() || !lock.value().acquired()) {
          rec.Error(lock.ok()
                        ? std::string("not acquired")
                        : "acquire: " +
                              std::string(lockd::client::StatusCodeName(lock.status().code())));
          continue;
        }
        auto released = lock.value().Release();
        if (!released.ok()) {
          rec.Error("release: " + std::string(lockd::client::StatusCodeName(released.code())));
          continue;
        }
        const auto t1 = Clock::now();
        rec.per_client[static_cast<size_t>(k)].push_back(static_cast<uint32_t>(
            std::chrono::duration_cast<std::chrono::microseconds>(t1 - t0).count()));
        mine.push_back(t1);
        ops.fetch_add(1, std::memory_order_relaxed);
      }
      std::lock_guard g(succ_mu);
      successes.insert(successes.end(), mine.begin(), mine.end());
    });
  }
  for (auto& t : threads) t.join();
  s.seconds = Seconds(Clock::now() - start);
  s.cpu_after = CpuSample::Take(c);
  s.ops = ops.load();
  for (auto& v : rec.per_client) s.lat.insert(s.lat.end(), v.begin(), v.end());
  std::sort(s.lat.begin(), s.lat.end());
  s.errors = rec.errors;
  // The longest time no client completed an operation: from the start, between successes, to
  // the end (a run that never recovered shows it).
  std::sort(successes.begin(), successes.end());
  Clock::duration max_gap{0};
  Clock::time_point prev = start, gap_from = start;
  for (const auto& t : successes) {
    if (t - prev > max_gap) max_gap = t - prev, gap_from = prev;
    prev = t;
  }
  const auto end = start + std::chrono::duration_cast<Clock::duration>(duration<double>(s.seconds));
  if (end - prev > max_gap) max_gap = end - prev, gap_from = prev;
  std::ostringstream e;
  e << "\"max_gap_ms\":" << Seconds(max_gap) * 1000
    << ",\"max_gap_from_s\":" << Seconds(gap_from - start) << ", ";
  s.extra = e.str();
  std::printf("failover: longest gap between successes %.0f ms, from %.2f s into the run\n",
              Seconds(max_gap) * 1000, Seconds(gap_from - start));
  return s;
}

// --- Fill: many leases and locks held, for the scale workload -----------------------------------

/// Keeps `in_flight` Acquires outstanding until `total` locks are held, name k under lease
/// k % leases. A refused or failed Acquire is retried (same name) after a pause.
class Filler {
 public:
  Filler(pb::LockService::Stub& stub, const std::vector<uint64_t>& leases, int64_t total,
         const std::string& prefix, Recorder& rec)
      : stub_(stub), leases_(leases), total_(total), prefix_(prefix), rec_(rec) {}

  void Run(int in_flight) {
    std::mt19937_64 rng(std::random_device{}());
    std::vector<std::unique_ptr<Slot>> slots;
    for (int k = 0; k < in_flight; ++k) slots.push_back(std::make_unique<Slot>(*this, rng));
    for (auto& sl : slots) sl->Next();
    std::unique_lock g(mu_);
    cv_.wait(g, [&] { return idle_ == in_flight; });
  }
  int64_t held() const { return held_.load(); }

 private:
  /// One Acquire in flight at a time. A retry keeps the request id (attempt + 1): an Acquire
  /// whose answer was lost (a deadline during an election) then gets its first outcome back
  /// instead of "not acquired" from its own grant. Pauses are alarms, never sleeps on gRPC's
  /// callback threads (a sleeping callback holds up every other slot's answers).
  struct Slot {
    Filler& f;
    Identity id;
    std::unique_ptr<grpc::ClientContext> ctx;
    grpc::Alarm pause;
    pb::AcquireRequest req;
    pb::AcquireResponse resp;
    int64_t index = -1;
    Slot(Filler& filler, std::mt19937_64& rng) : f(filler), id(rng) {}

    void Next() {
      if (index < 0) {
        index = f.next_.fetch_add(1);
        if (index >= f.total_) {
          std::lock_guard g(f.mu_);
          ++f.idle_;
          f.cv_.notify_all();
          return;
        }
        req.Clear();
        id.Next(req.mutable_header());
        req.set_name(f.prefix_ + std::to_string(index));
        req.set_lease_id(f.leases_[static_cast<size_t>(index) % f.leases_.size()]);
        req.set_mode(pb::EXCLUSIVE);
      } else {
        req.mutable_header()->set_attempt(req.header().attempt() + 1);
      }
      ctx = std::make_unique<grpc::ClientContext>();
      ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
      f.stub_.async()->Acquire(ctx.get(), &req, &resp, [this](grpc::Status s) {
        if (s.ok() && resp.acquired()) {
          f.held_.fetch_add(1);
          index = -1;
          Next();
          return;
        }
        if (s.ok()) {
          f.rec_.Error("not acquired");
          index = -1;  // someone else's name: skip it (nothing else uses the prefix)
        } else {
          f.rec_.Error(s);
        }
        pause.Set(std::chrono::system_clock::now() + std::chrono::milliseconds(50),
                  [this](bool) { Next(); });
      });
    }
  };

  pb::LockService::Stub& stub_;
  const std::vector<uint64_t>& leases_;
  const int64_t total_;
  const std::string prefix_;
  Recorder& rec_;
  std::atomic<int64_t> next_{0};
  std::atomic<int64_t> held_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  int idle_ = 0;
};

Summary RunFill(const Config& c, Cluster& cluster) {
  std::mt19937_64 rng(std::random_device{}());
  Recorder rec(1);
  Summary s;
  s.workload = "fill";
  s.cpu_before = CpuSample::Take(c);
  const auto start = Clock::now();
  // Leases first, granted many at a time over the connections.
  std::vector<uint64_t> leases(static_cast<size_t>(c.leases));
  {
    std::atomic<size_t> next{0};
    std::vector<std::thread> granters;
    for (int t = 0; t < std::min(c.connections * 8, 64); ++t) {
      granters.emplace_back([&, t] {
        std::mt19937_64 r(rng() + static_cast<uint64_t>(t));
        Identity id(r);
        for (size_t k; (k = next.fetch_add(1)) < leases.size();) {
          leases[k] = GrantLease(cluster.For(static_cast<int>(k)), id, c.ttl_ms);
        }
      });
    }
    for (auto& g : granters) g.join();
  }
  const double leases_s = Seconds(Clock::now() - start);
  std::printf("fill: %d leases granted in %.1f s\n", c.leases, leases_s);
  std::fflush(stdout);
  const auto locks_start = Clock::now();
  const std::string prefix = "lockbench/" + std::to_string(rng() % 1'000'000) + "/fill/";
  Filler filler(cluster.For(0), leases, c.locks, prefix, rec);
  filler.Run(std::max(1, c.in_flight));
  const double locks_s = Seconds(Clock::now() - locks_start);
  s.seconds = Seconds(Clock::now() - start);
  s.cpu_after = CpuSample::Take(c);
  s.ops = static_cast<uint64_t>(filler.held());
  s.errors = rec.errors;
  std::ostringstream e;
  e << "\"leases\":" << c.leases << ",\"locks\":" << filler.held() << ",\"leases_s\":" << leases_s
    << ",\"locks_s\":" << locks_s
    << ",\"locks_per_s\":" << (locks_s > 0 ? static_cast<double>(filler.held()) / locks_s : 0)
    << ",\"rss_mib\":[";
  std::printf("fill: %lld locks held in %.1f s; resident memory (MiB):",
              static_cast<long long>(filler.held()), locks_s);
  for (size_t k = 0; k < c.server_pids.size(); ++k) {
    const double rss = ResidentMiB(c.server_pids[k]);
    e << (k ? "," : "") << rss;
    std::printf(" %.0f", rss);
  }
  e << "], ";
  std::printf("\n");
  s.extra = e.str();
  return s;
}

void RunFloor(const Config& c, const Cluster& cluster) {
  auto stub = pb::ClusterService::NewStub(Dial(cluster.target(), -2));
  std::vector<uint32_t> rtt, sync;
  for (int k = 0; k < 2000; ++k) {
    grpc::ClientContext ctx;
    pb::StatusResponse st;
    const auto t0 = Clock::now();
    if (!stub->Status(&ctx, pb::StatusRequest{}, &st).ok()) continue;
    if (k >= 100) {  // after the warm-up
      rtt.push_back(static_cast<uint32_t>(
          std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t0).count()));
    }
  }
  const std::string path = c.sync_dir + "/lockbench-sync-" + std::to_string(getpid());
  const int fd = ::open(path.c_str(), O_CREAT | O_TRUNC | O_WRONLY, 0600);
  if (fd < 0) {
    std::fprintf(stderr, "lockbench: cannot create %s\n", path.c_str());
    std::exit(2);
  }
  const std::string record(128, 'r');
  for (int k = 0; k < 1000; ++k) {
    const auto t0 = Clock::now();
    if (::write(fd, record.data(), record.size()) != static_cast<ssize_t>(record.size()) ||
        ::fdatasync(fd) != 0) {
      std::fprintf(stderr, "lockbench: write/fdatasync failed in %s\n", c.sync_dir.c_str());
      std::exit(2);
    }
    sync.push_back(static_cast<uint32_t>(
        std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t0).count()));
  }
  ::close(fd);
  ::unlink(path.c_str());
  std::sort(rtt.begin(), rtt.end());
  std::sort(sync.begin(), sync.end());
  const double r = Pct(rtt, .5), y = Pct(sync, .5);
  const double floor = 2 * (r + std::max(y, r + y));
  std::printf(
      "floor        rtt p50 %.3f ms (p99 %.3f), append+fdatasync p50 %.3f ms (p99 %.3f) in %s;"
      " lock+unlock floor %.3f ms\n",
      r, Pct(rtt, .99), y, Pct(sync, .99), c.sync_dir.c_str(), floor);
  std::ostringstream j;
  j << "{\"system\":\"" << c.label << "\",\"workload\":\"floor\",\"rtt_p50_ms\":" << r
    << ",\"rtt_p99_ms\":" << Pct(rtt, .99) << ",\"sync_p50_ms\":" << y
    << ",\"sync_p99_ms\":" << Pct(sync, .99) << ",\"lock_unlock_floor_ms\":" << floor << "}";
  std::printf("%s\n", j.str().c_str());
  if (!c.json_path.empty()) std::ofstream(c.json_path, std::ios::app) << j.str() << "\n";
  std::fflush(stdout);
}

int Main(int argc, char** argv) {
  Config c;
  CLI::App app{"lockbench: load for a running lockd cluster (see docs/benchmarks.md)"};
  std::string endpoints = "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003", pids;
  app.add_option("--endpoints", endpoints, "client addresses, comma-separated")
      ->capture_default_str();
  app.add_option("--workload", c.workload,
                 "uncontended | contended | keepalive | floor | all (those four) | failover | fill")
      ->capture_default_str()
      ->check(CLI::IsMember(
          {"uncontended", "contended", "keepalive", "floor", "all", "failover", "fill"}));
  app.add_option("--clients", c.clients, "closed-loop clients")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  app.add_option("--connections", c.connections, "gRPC connections the clients share")
      ->capture_default_str()
      ->check(CLI::Range(1, 1024));
  app.add_option("--seconds", c.seconds, "measured time per workload")
      ->capture_default_str()
      ->check(CLI::Range(0.1, 3600.0));
  app.add_option("--names", c.names, "contended: hot names the clients share")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  app.add_option("--locks", c.locks, "fill: locks to hold")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{100'000'000}));
  app.add_option("--in-flight", c.in_flight, "fill: Acquires in flight")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  app.add_option("--leases", c.leases, "keepalive: leases renewed; fill: leases granted")
      ->capture_default_str()
      ->check(CLI::Range(1, 10000000));
  app.add_option("--streams", c.streams, "keepalive: KeepAlive streams")
      ->capture_default_str()
      ->check(CLI::Range(1, 10000));
  app.add_option("--window", c.window, "keepalive: renewals in flight per stream")
      ->capture_default_str()
      ->check(CLI::Range(1, 1024));
  app.add_option("--batch", c.batch, "keepalive: leases renewed per message (more_lease_ids)")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  app.add_option("--ttl-ms", c.ttl_ms, "lease TTL")->capture_default_str();
  app.add_flag("--spread", c.spread, "send to every member instead of the leader (forwarding)");
  app.add_option("--server-pids", pids, "server pids whose CPU time to report, comma-separated");
  app.add_option("--json", c.json_path, "append one JSON line per workload to this file");
  app.add_option("--sync-dir", c.sync_dir, "floor: a folder on the disk the nodes write to")
      ->capture_default_str();
  app.add_option("--label", c.label, "the system's name in the output")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  c.endpoints = Split(endpoints);
  if (c.endpoints.empty()) {
    std::fprintf(stderr, "lockbench: --endpoints is empty\n");
    return 2;
  }
  for (const auto& p : Split(pids)) c.server_pids.push_back(std::stoi(p));
  if (c.streams > c.leases) c.streams = c.leases;
  if (c.workload == "failover") {  // the client library finds the leader itself
    Report(c, RunFailover(c));
    return 0;
  }
  Cluster cluster(c);
  if (c.workload == "fill") {
    Report(c, RunFill(c, cluster));
    return 0;
  }
  const bool all = c.workload == "all";
  if (all || c.workload == "uncontended") Report(c, RunLocks(c, cluster, false));
  if (all || c.workload == "contended") Report(c, RunLocks(c, cluster, true));
  if (all || c.workload == "keepalive") Report(c, RunKeepAlive(c, cluster));
  if (all || c.workload == "floor") RunFloor(c, cluster);
  return 0;
}

}  // namespace
}  // namespace lockbench

int main(int argc, char** argv) {
  return lockbench::Main(argc, argv);
}
