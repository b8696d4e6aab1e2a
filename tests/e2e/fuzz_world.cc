// The fuzz run's request generator and driver: what it sends, and how each answer is judged.
#include <algorithm>
#include <sstream>

#include "e2e/fuzz_gen.h"

namespace lockd::e2e::fuzz {

namespace {

template <typename T>
void Push(std::deque<T>& ring, T v) {
  ring.push_back(std::move(v));
  if (ring.size() > kRing) ring.pop_front();
}

const char* CodeName(Code c) {
  static const char* names[] = {"OK",
                                "CANCELLED",
                                "UNKNOWN",
                                "INVALID_ARGUMENT",
                                "DEADLINE_EXCEEDED",
                                "NOT_FOUND",
                                "ALREADY_EXISTS",
                                "PERMISSION_DENIED",
                                "RESOURCE_EXHAUSTED",
                                "FAILED_PRECONDITION",
                                "ABORTED",
                                "OUT_OF_RANGE",
                                "UNIMPLEMENTED",
                                "INTERNAL",
                                "UNAVAILABLE",
                                "DATA_LOSS",
                                "UNAUTHENTICATED"};
  const int i = static_cast<int>(c);
  return i >= 0 && i < 17 ? names[i] : "?";
}

}  // namespace

const char* MethodName(Method m) {
  static const char* names[] = {"GrantLease", "Renew",      "KeepAlive",    "RevokeLease",
                                "Acquire",    "Cancel",     "Release",      "GetLock",
                                "ListLocks",  "ListLeases", "GetLease",     "Watch",
                                "Status",     "AddMember",  "RemoveMember", "TransferLeadership",
                                "Snapshot",   "Backup",     "ForceRelease"};
  return m < Method::kCount ? names[static_cast<int>(m)] : "?";
}

const std::set<Code>& AllowedCodes(Method m) {
  // Every call: its own deadline, and UNAVAILABLE (no leader, a forward cut short, stopping).
  // Every mutating call: INVALID_ARGUMENT (header), FAILED_PRECONDITION (below the watermark),
  // RESOURCE_EXHAUSTED (the configured limits; the exactly-once table's caps, issue 13 defect 1).
  using C = Code;
  static const std::map<Method, std::set<Code>> allowed = {
      {Method::kGrantLease,
       {C::OK, C::INVALID_ARGUMENT, C::FAILED_PRECONDITION, C::RESOURCE_EXHAUSTED, C::UNAVAILABLE,
        C::DEADLINE_EXCEEDED}},
      {Method::kRenew,
       {C::OK, C::INVALID_ARGUMENT, C::NOT_FOUND, C::UNAVAILABLE, C::DEADLINE_EXCEEDED}},
      {Method::kKeepAlive, {C::OK, C::UNAVAILABLE, C::DEADLINE_EXCEEDED}},
      {Method::kRevokeLease,
       {C::OK, C::INVALID_ARGUMENT, C::NOT_FOUND, C::FAILED_PRECONDITION, C::RESOURCE_EXHAUSTED,
        C::UNAVAILABLE, C::DEADLINE_EXCEEDED}},
      {Method::kAcquire,
       {C::OK, C::INVALID_ARGUMENT, C::NOT_FOUND, C::FAILED_PRECONDITION, C::RESOURCE_EXHAUSTED,
        C::UNAVAILABLE, C::DEADLINE_EXCEEDED}},
      {Method::kCancel,
       {C::OK, C::INVALID_ARGUMENT, C::NOT_FOUND, C::FAILED_PRECONDITION, C::RESOURCE_EXHAUSTED,
        C::UNAVAILABLE, C::DEADLINE_EXCEEDED}},
      {Method::kRelease,
       {C::OK, C::INVALID_ARGUMENT, C::NOT_FOUND, C::FAILED_PRECONDITION, C::RESOURCE_EXHAUSTED,
        C::UNAVAILABLE, C::DEADLINE_EXCEEDED}},
      {Method::kGetLock, {C::OK, C::INVALID_ARGUMENT, C::UNAVAILABLE, C::DEADLINE_EXCEEDED}},
      {Method::kListLocks, {C::OK, C::INVALID_ARGUMENT, C::UNAVAILABLE, C::DEADLINE_EXCEEDED}},
      {Method::kListLeases, {C::OK, C::INVALID_ARGUMENT, C::UNAVAILABLE, C::DEADLINE_EXCEEDED}},
      {Method::kGetLease,
       {C::OK, C::INVALID_ARGUMENT, C::NOT_FOUND, C::UNAVAILABLE, C::DEADLINE_EXCEEDED}},
      // A Watch ends by our deadline, or at once for a bad filter or position.
      {Method::kWatch,
       {C::INVALID_ARGUMENT, C::OUT_OF_RANGE, C::RESOURCE_EXHAUSTED, C::UNAVAILABLE,
        C::DEADLINE_EXCEEDED}},
      {Method::kStatus, {C::OK, C::UNAVAILABLE, C::DEADLINE_EXCEEDED}},
      // Random ids and addresses: mostly refused; one that parses adds a learner that never
      // catches up (DEADLINE_EXCEEDED), and a later RemoveMember may remove it again.
      {Method::kAddMember,
       {C::OK, C::INVALID_ARGUMENT, C::FAILED_PRECONDITION, C::UNAVAILABLE, C::DEADLINE_EXCEEDED}},
      {Method::kRemoveMember,
       {C::OK, C::INVALID_ARGUMENT, C::FAILED_PRECONDITION, C::UNAVAILABLE, C::DEADLINE_EXCEEDED}},
      {Method::kTransferLeadership,
       {C::OK, C::INVALID_ARGUMENT, C::FAILED_PRECONDITION, C::ABORTED, C::UNAVAILABLE,
        C::DEADLINE_EXCEEDED}},
      {Method::kSnapshot, {C::OK, C::FAILED_PRECONDITION, C::UNAVAILABLE, C::DEADLINE_EXCEEDED}},
      // At most 2 stream from one node at once: a third is RESOURCE_EXHAUSTED.
      {Method::kBackup, {C::OK, C::RESOURCE_EXHAUSTED, C::UNAVAILABLE, C::DEADLINE_EXCEEDED}},
      {Method::kForceRelease,
       {C::OK, C::INVALID_ARGUMENT, C::FAILED_PRECONDITION, C::RESOURCE_EXHAUSTED, C::UNAVAILABLE,
        C::DEADLINE_EXCEEDED}},
  };
  return allowed.at(m);
}

std::string Tally::Histogram() const {
  std::ostringstream os;
  std::map<Code, uint64_t> total;
  for (const auto& [m, codes] : codes) {
    os << "  " << MethodName(m) << ":";
    for (const auto& [c, n] : codes) {
      os << " " << CodeName(c) << "=" << n;
      total[c] += n;
    }
    os << "\n";
  }
  os << "  all:";
  for (const auto& [c, n] : total) os << " " << CodeName(c) << "=" << n;
  os << "\n  KeepAlive answers by code:";
  for (const auto& [c, n] : keepalive_answer_codes) os << " " << c << "=" << n;
  os << "\n  reused request ids checked: " << reuses_checked << "; oversize requests: " << oversize
     << "\n";
  return os.str();
}

// ------------------------------------------------------------------------------------------------
// World
// ------------------------------------------------------------------------------------------------

World::World(Cluster& cluster, std::string cluster_id, ClusterOptions options, uint64_t seed)
    : cluster_(cluster),
      cluster_id_(std::move(cluster_id)),
      options_(std::move(options)),
      seed_(seed),
      slots_(kInFlight) {
  std::mt19937_64 g(seed ^ 0x7f4a7c15);
  for (int i = 0; i < kTrackedClients; ++i) {
    auto c = std::make_unique<TrackedClient>();
    c->hi = g() | 1;  // never 0
    c->lo = g();
    tracked_.push_back(std::move(c));
  }
}

World::~World() {
  WaitForInFlight();
}

v1::RequestHeader World::TrackedHeader(Gen& g) {
  auto& c = *tracked_[g.U(0, tracked_.size() - 1)];
  const uint64_t seq = ++c.next_seq;
  v1::RequestHeader h;
  h.mutable_id()->set_client_hi(c.hi);
  h.mutable_id()->set_client_lo(c.lo);
  h.mutable_id()->set_seq(seq);
  h.set_attempt(1);
  h.set_watermark(seq > kLag ? seq - kLag : 1);
  return h;
}

void World::WaitForInFlight() {
  std::unique_lock l(mu_);
  idle_.wait_for(l, 60s, [&] { return in_flight_ == 0; });
}

Tally World::TallyNow() {
  std::lock_guard l(mu_);
  return tally_;
}

void World::NoteLease(uint64_t lease) {
  std::lock_guard l(mu_);
  Push(leases_, lease);
}
void World::NoteGrant(Grant g) {
  std::lock_guard l(mu_);
  Push(grants_, std::move(g));
}
void World::NoteRecorded(const v1::RequestHeader& h, Method m) {
  std::lock_guard l(mu_);
  Push(recorded_, RecordedId{h.id(), m, h.watermark()});
}
void World::NoteAcquireId(const v1::RequestId& id) {
  std::lock_guard l(mu_);
  Push(acquire_ids_, id);
}
void World::NotePageToken(bool locks, const std::string& token) {
  if (token.empty()) return;
  std::lock_guard l(mu_);
  Push(locks ? lock_tokens_ : lease_tokens_, token);
}

void World::Violation(const std::string& what) {
  std::lock_guard l(mu_);
  ++tally_.violation_count;
  if (tally_.violations.size() < kMaxViolationsKept) tally_.violations.push_back(what);
}

void World::Record(Method m, int node, const grpc::Status& s, const ResponseMeta& meta,
                   bool oversize, bool reused_id, const std::function<std::string()>& request) {
  const Code code = s.error_code();
  {
    std::lock_guard l(mu_);
    ++tally_.codes[m][code];
    if (oversize) ++tally_.oversize;
    if (reused_id) ++tally_.reuses_checked;
  }
  const std::string where = std::string(MethodName(m)) + " to node " + std::to_string(node + 1);
  bool allowed = AllowedCodes(m).count(code) > 0;
  // Over --max-request-bytes: RESOURCE_EXHAUSTED (or the field's own INVALID_ARGUMENT, where a
  // field's own limit is checked first).
  if (oversize && (code == Code::RESOURCE_EXHAUSTED || code == Code::INVALID_ARGUMENT)) {
    allowed = true;
  }
  if (!allowed) {
    Violation(where + " answered " + Describe(s) + ", which docs/api.md does not allow for " +
              MethodName(m) + "; request: " + request());
  }
  if (reused_id && code != Code::INVALID_ARGUMENT && code != Code::UNAVAILABLE &&
      code != Code::DEADLINE_EXCEEDED) {
    Violation(where + ": a request id already used for another call was answered " + Describe(s) +
              " instead of INVALID_ARGUMENT; request: " + request());
  }
  // An error a person can act on has a message (gRPC's own UNIMPLEMENTED for the methods lockd
  // does not implement has none).
  if (code != Code::OK && code != Code::DEADLINE_EXCEEDED && code != Code::CANCELLED &&
      !(code == Code::UNIMPLEMENTED && allowed) && s.error_message().empty()) {
    Violation(where + " answered " + Describe(s) + " without a message; request: " + request());
  }
  // Every answer a lockd handler gives carries the cluster id, oversize refusals included (the
  // handlers refuse them, issue 13 defect 11); a deadline or a broken connection has none.
  if (code != Code::DEADLINE_EXCEEDED && code != Code::UNAVAILABLE && code != Code::CANCELLED &&
      (!meta.has_cluster || meta.cluster != cluster_id_)) {
    Violation(where + " answered " + Describe(s) + " with lockd-cluster '" + meta.cluster +
              "' (present: " + (meta.has_cluster ? "yes" : "no") + "), not '" + cluster_id_ +
              "'; request: " + request());
  }
}

void World::Drive(int thread, uint64_t count, Clock::time_point until) {
  Gen g{*this, std::mt19937_64(seed_ + 0x9e3779b97f4a7c15ULL * (thread + 1)), thread};
  for (uint64_t i = 0; i < count && Clock::now() < until; ++i) {
    {
      std::lock_guard l(mu_);
      ++tally_.sent;
    }
    SendOne(g);
  }
}

}  // namespace lockd::e2e::fuzz
