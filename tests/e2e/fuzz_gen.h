// Internal to the fuzz run (fuzz_world.cc, fuzz_requests.cc): the tuning constants, the random
// generator of field values, and World::Issue, the asynchronous call every unary request takes.
#pragma once

#include <optional>
#include <type_traits>

#include "e2e/fuzz_support.h"

namespace lockd::e2e::fuzz {

using Code = grpc::StatusCode;
using LockAsync = v1::LockService::StubInterface::async_interface;
using ClusterAsync = v1::ClusterService::StubInterface::async_interface;

constexpr size_t kRing = 512;         // how many leases, grants, ids the run remembers
constexpr uint64_t kLag = 256;        // a tracked client's watermark lags its seq by this much
constexpr uint64_t kReuseSpan = 192;  // reused ids are at most this far below the client's seq
constexpr int kTrackedClients = 8;
constexpr int kInFlight = 48;
constexpr size_t kMaxViolationsKept = 25;

inline std::string Truncated(std::string s, size_t n = 400) {
  if (s.size() > n) s = s.substr(0, n) + "…(" + std::to_string(s.size()) + " chars)";
  return s;
}

// ------------------------------------------------------------------------------------------------
// The generator
// ------------------------------------------------------------------------------------------------

struct World::Gen {
  World& w;
  std::mt19937_64 rng;
  int thread = 0;

  uint64_t U(uint64_t lo, uint64_t hi) {
    return std::uniform_int_distribution<uint64_t>(lo, hi)(rng);
  }
  bool P(double p) { return std::uniform_real_distribution<double>(0, 1)(rng) < p; }
  int Node() { return static_cast<int>(U(0, w.cluster_.size() - 1)); }

  /// Lengths around every limit: empty, short, the name limit (512), the label limit (128), the
  /// reason limit (1024), long, and now and then over --max-request-bytes.
  size_t Length() {
    const uint64_t r = U(0, 999);
    if (r < 100) return 0;
    if (r < 450) return U(1, 16);
    if (r < 700) return U(17, 100);
    if (r < 780) return U(508, 516);
    if (r < 840) return U(124, 132);
    if (r < 880) return U(1020, 1028);
    if (r < 996) return U(1000, 8000);
    return w.options_.max_request_bytes + U(1, 4096);
  }

  std::string Ascii(size_t n) {
    std::string s(n, ' ');
    for (auto& c : s) c = static_cast<char>(U(0x20, 0x7e));
    return s;
  }
  std::string Utf8(size_t n) {  // valid UTF-8 of about n bytes
    std::string s;
    while (s.size() < n) {
      uint32_t cp = static_cast<uint32_t>(U(0, 3) == 0 ? U(0x80, 0x7ff) : U(0x800, 0x10ffff));
      if (cp >= 0xd800 && cp <= 0xdfff) cp = 0x20ac;
      if (cp < 0x800) {
        s += static_cast<char>(0xc0 | (cp >> 6));
      } else if (cp < 0x10000) {
        s += static_cast<char>(0xe0 | (cp >> 12));
        s += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
      } else {
        s += static_cast<char>(0xf0 | (cp >> 18));
        s += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
        s += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
      }
      s += static_cast<char>(0x80 | (cp & 0x3f));
    }
    return s;
  }
  std::string Junk(size_t n) {
    std::string s(n, '\0');
    for (auto& c : s) c = static_cast<char>(U(0, 255));
    return s;
  }
  /// Random bytes for a `bytes` field: printable, valid UTF-8, junk, or with a NUL.
  std::string Bytes() {
    const size_t n = Length();
    switch (U(0, 9)) {
      case 0:
      case 1:
      case 2:
      case 3:
        return Ascii(n);
      case 4:
      case 5:
        return Utf8(n);
      case 6:
      case 7:
      case 8:
        return Junk(n);
      default: {
        std::string s = Ascii(n);
        if (!s.empty()) s[U(0, s.size() - 1)] = '\0';
        return s;
      }
    }
  }
  /// For a text field: ASCII, valid UTF-8 or any bytes (every text field of a request is
  /// `bytes` on the wire, so the handler, not the protobuf parser, refuses invalid UTF-8).
  std::string Text() {
    const int kind = static_cast<int>(U(0, 2));
    return kind == 0 ? Ascii(Length()) : kind == 1 ? Utf8(Length()) : Bytes();
  }

  std::string PoolName() { return "fz/" + std::to_string(U(0, 23)); }
  std::string Name() { return P(0.5) ? PoolName() : Bytes(); }

  uint64_t Big() {
    static const uint64_t edges[] = {~uint64_t{0}, ~uint64_t{0} - 1, uint64_t{1} << 63,
                                     (uint64_t{1} << 63) - 1, uint64_t{1} << 32};
    return P(0.5) ? edges[U(0, 4)] : rng();
  }
  uint64_t KnownLease() {
    std::lock_guard l(w.mu_);
    return w.leases_.empty() ? 1 : w.leases_[U(0, w.leases_.size() - 1)];
  }
  uint64_t Lease() {
    const uint64_t r = U(0, 99);
    if (r < 45) return KnownLease();
    if (r < 55) return 0;
    if (r < 80) return U(1, 3000);
    return Big();
  }
  std::optional<Grant> KnownGrant() {
    std::lock_guard l(w.mu_);
    if (w.grants_.empty()) return std::nullopt;
    return w.grants_[U(0, w.grants_.size() - 1)];
  }
  v1::RequestId KnownAcquireId() {
    std::lock_guard l(w.mu_);
    if (w.acquire_ids_.empty()) return RandomId();
    return w.acquire_ids_[U(0, w.acquire_ids_.size() - 1)];
  }
  std::string KnownPageToken(bool locks) {
    std::lock_guard l(w.mu_);
    const auto& ring = locks ? w.lock_tokens_ : w.lease_tokens_;
    return ring.empty() ? "" : ring[U(0, ring.size() - 1)];
  }
  uint64_t Token() {
    const uint64_t r = U(0, 99);
    if (r < 30) {
      if (auto g = KnownGrant()) return g->token;
    }
    if (r < 45) return 0;
    if (r < 80) return U(1, 5000);
    return Big();
  }
  uint64_t Ttl() {
    static const uint64_t edges[] = {0, 1, 1999, 2000, 3'600'000, 3'600'001};
    const uint64_t r = U(0, 9);
    if (r < 4) return edges[U(0, 5)];
    if (r < 8) return U(2000, 60'000);
    return Big();
  }
  uint64_t Wait() {
    const uint64_t r = U(0, 99);
    if (r < 60) return 0;
    if (r < 85) return U(1, 100);
    if (r < 92) return w.options_.max_wait_ms + U(0, 1);
    return Big();
  }
  v1::LockMode Mode() {
    const uint64_t r = U(0, 9);
    if (r < 7) return static_cast<v1::LockMode>(U(0, 2));
    if (r < 9) return static_cast<v1::LockMode>(static_cast<int>(U(3, 12)) - (P(0.5) ? 15 : 0));
    return static_cast<v1::LockMode>(static_cast<int32_t>(static_cast<uint32_t>(rng())));
  }
  v1::RequestId RandomId() {
    v1::RequestId id;
    id.set_client_hi(P(0.15) ? 0 : rng());
    id.set_client_lo(P(0.15) ? 0 : rng());
    id.set_seq(P(0.15) ? 0 : (P(0.5) ? U(1, 100) : Big()));
    return id;
  }
  /// A header that is well-formed (a tracked client's) or random in every field (a random
  /// client's, never a tracked one's: a random watermark would push a tracked client's up).
  std::optional<v1::RequestHeader> Header(bool valid) {
    if (valid || P(0.35)) return w.TrackedHeader(*this);
    if (P(0.1)) return std::nullopt;
    v1::RequestHeader h;
    if (!P(0.1)) *h.mutable_id() = RandomId();
    h.set_attempt(P(0.2) ? 0 : static_cast<uint32_t>(P(0.7) ? U(1, 3) : rng()));
    const uint64_t seq = h.id().seq();
    const uint64_t r = U(0, 9);
    h.set_watermark(r < 3 ? 0 : r < 7 ? U(0, seq) : r < 9 ? seq + U(1, 10) : rng());
    return h;
  }
};

template <typename Async, typename Req, typename Resp>
void World::Issue(Method m, int node,
                  void (Async::*method)(grpc::ClientContext*, const Req*, Resp*,
                                        std::function<void(grpc::Status)>),
                  Req req, Ms deadline, bool reused_id,
                  std::function<void(const Req&, const Resp&)> on_ok) {
  struct Call {
    grpc::ClientContext ctx;
    Req req;
    Resp resp;
  };
  auto* call = new Call;
  call->req = std::move(req);
  call->ctx.set_deadline(std::chrono::system_clock::now() + deadline);
  const bool oversize = call->req.ByteSizeLong() > options_.max_request_bytes;
  slots_.acquire();
  {
    std::lock_guard l(mu_);
    ++in_flight_;
  }
  auto done = [this, m, node, call, oversize, reused_id, on_ok = std::move(on_ok)](grpc::Status s) {
    Record(m, node, s, MetaOf(call->ctx), oversize, reused_id,
           [call] { return Truncated(call->req.ShortDebugString()); });
    if (s.ok() && on_ok) on_ok(call->req, call->resp);
    delete call;
    slots_.release();
    std::lock_guard l(mu_);
    if (--in_flight_ == 0) idle_.notify_all();
  };
  Async* async = nullptr;
  if constexpr (std::is_same_v<Async, LockAsync>) {
    async = cluster_.lock(node).async();
  } else {
    async = cluster_.cluster(node).async();
  }
  (async->*method)(&call->ctx, &call->req, &call->resp, std::move(done));
}

}  // namespace lockd::e2e::fuzz
