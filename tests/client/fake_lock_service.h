// A scripted in-process LockService for the client library's tests: its answers are set by the
// test (renewals OK / NOT_FOUND / UNAVAILABLE / silent, Acquires that fail, hang or come late),
// and it records what it received (headers, the authorization metadata, Cancels, releases,
// revokes, renewals).
#pragma once

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "lockd/client.h"
#include "lockd/v1/lockd.grpc.pb.h"
#include "support/process.h"

namespace lockd::client {

namespace pb = lockd::v1;
using namespace std::chrono_literals;

/// A LockService whose answers the test scripts; it records what it received.
class FakeLockService final : public pb::LockService::Service {
 public:
  /// kStopReading: a KeepAlive stream opened in this mode reads nothing (a server whose reads
  /// never catch up), until the client ends the call.
  enum class RenewMode { kOk, kNotFound, kUnavailable, kSilent, kStopReading };

  std::mutex mu;
  std::string cluster_id = "cluster-a";
  std::string leader;  ///< lockd-leader to announce
  RenewMode renew_mode = RenewMode::kOk;
  bool report_holdings = true;    ///< held_tokens in renewal answers
  bool answer_batches = true;     ///< false: a server that predates batches (answers lease_id only)
  bool list_lease_tokens = true;  ///< GetLease lists held_tokens (false: a server before them)
  bool deny_get_lock = false;     ///< GetLock is PERMISSION_DENIED (an identity without `read`)
  std::set<uint64_t> unknown_leases;  ///< renewals of these answer NOT_FOUND (in kOk mode)
  int renewal_messages = 0;           ///< KeepAlive messages read (a batch counts once)
  size_t largest_batch = 0;  ///< the most leases one message named (since the last refused one)
  int fail_acquires_unavailable = 0;
  int fail_cancels_unavailable = 0;  ///< so many Cancels answer UNAVAILABLE first (an election)
  int fail_cancels_exhausted = 0;    ///< so many Cancels answer RESOURCE_EXHAUSTED first (a rate)
  int fail_releases_exhausted = 0;   ///< so many Releases answer RESOURCE_EXHAUSTED first
  int fail_revokes_exhausted = 0;    ///< so many RevokeLeases answer RESOURCE_EXHAUSTED first
  int refuse_renewal_messages = 0;   ///< so many KeepAlive messages refused whole (code 14)
  grpc::StatusCode acquire_error = grpc::StatusCode::OK;
  bool acquire_hangs = false;  ///< an Acquire waits until its caller gives up
  std::chrono::milliseconds acquire_delay{0};
  bool commit_before_delay = false;  ///< the grant is held (and renewals list it) during the delay
  std::chrono::milliseconds grant_delay{0};
  int grant_hangs = 0;  ///< so many GrantLease attempts hang until their caller gives up
  std::vector<BootClock::time_point> grant_received;
  std::vector<pb::RequestHeader> acquire_headers;
  std::vector<pb::CancelRequest> cancels;
  std::vector<uint64_t> released_tokens;
  std::vector<std::string> released_names;
  std::vector<uint64_t> revoked;
  std::map<uint64_t, std::set<uint64_t>> held;  ///< lease → tokens
  std::map<uint64_t, std::string> token_names;
  /// Each call's method and its `authorization` header ("" when it had none), as they came.
  std::vector<std::pair<std::string, std::string>> authorization;
  int get_leases = 0;
  int watches = 0;
  int keepalive_streams = 0;
  int renewals = 0;
  BootClock::time_point first_renewal{};
  uint64_t next_lease = 100;
  uint64_t next_token = 1;

  grpc::Status GrantLease(grpc::ServerContext* ctx, const pb::GrantLeaseRequest* req,
                          pb::GrantLeaseResponse* resp) override {
    Tag(ctx, "GrantLease");
    bool hang = false;
    {
      std::lock_guard lock(mu);
      grant_received.push_back(BootClock::now());
      if (grant_hangs > 0) {
        --grant_hangs;
        hang = true;
      }
    }
    if (hang) {  // a dropped attempt: the caller's attempt timeout ends it
      for (int i = 0; i < 1000 && !ctx->IsCancelled(); ++i) std::this_thread::sleep_for(10ms);
      return grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "dropped");
    }
    std::this_thread::sleep_for(grant_delay);
    std::lock_guard lock(mu);
    resp->set_lease_id(next_lease++);
    resp->set_ttl_ms(req->ttl_ms());
    return grpc::Status::OK;
  }

  grpc::Status KeepAlive(
      grpc::ServerContext* ctx,
      grpc::ServerReaderWriter<pb::RenewResponse, pb::RenewRequest>* stream) override {
    Tag(ctx, "KeepAlive");
    bool stop_reading;
    {
      std::lock_guard lock(mu);
      ++keepalive_streams;
      stop_reading = renew_mode == RenewMode::kStopReading;
    }
    if (stop_reading) {
      for (int i = 0; i < 3000 && !ctx->IsCancelled(); ++i) std::this_thread::sleep_for(10ms);
      return grpc::Status(grpc::StatusCode::CANCELLED, "the client left");
    }
    pb::RenewRequest req;
    while (stream->Read(&req)) {
      pb::RenewResponse resp;
      resp.set_seq(req.seq());
      {
        std::lock_guard lock(mu);
        if (renew_mode == RenewMode::kSilent) continue;
        if (refuse_renewal_messages > 0) {  // a current server stopping: no `more`
          --refuse_renewal_messages;
          largest_batch = 0;  // what follows the refusal, counted from it (no race with a test)
          resp.set_lease_id(req.lease_id());
          resp.set_code(static_cast<int>(grpc::StatusCode::UNAVAILABLE));
          resp.set_message("this node is stopping");
        }
      }
      if (resp.code() != 0) {
        if (!stream->Write(resp)) break;
        continue;
      }
      {
        std::lock_guard lock(mu);
        if (renew_mode == RenewMode::kSilent) continue;
        ++renewal_messages;
        largest_batch = std::max(largest_batch, 1 + static_cast<size_t>(req.more_lease_ids_size()));
        RenewOneLocked(req.lease_id(), resp);
        if (answer_batches) {
          for (uint64_t id : req.more_lease_ids()) RenewOneLocked(id, *resp.add_more());
        }
      }
      if (!stream->Write(resp)) break;
    }
    return grpc::Status::OK;
  }

  /// One lease's answer, as the renew mode says (mu held).
  void RenewOneLocked(uint64_t lease, pb::RenewResponse& resp) {
    resp.set_lease_id(lease);
    if (renew_mode == RenewMode::kNotFound || unknown_leases.count(lease)) {
      resp.set_code(static_cast<int>(grpc::StatusCode::NOT_FOUND));
      resp.set_message("lease expired");
    } else if (renew_mode == RenewMode::kUnavailable) {
      resp.set_code(static_cast<int>(grpc::StatusCode::UNAVAILABLE));
      resp.set_message("no leader");
    } else {
      if (renewals++ == 0) first_renewal = BootClock::now();
      resp.set_remaining_ms(2000);
      if (report_holdings) {
        for (uint64_t t : held[lease]) resp.add_held_tokens(t);
        resp.set_holdings_listed(true);
      }
    }
  }

  grpc::Status Acquire(grpc::ServerContext* ctx, const pb::AcquireRequest* req,
                       pb::AcquireResponse* resp) override {
    Tag(ctx, "Acquire");
    bool hang;
    {
      std::lock_guard lock(mu);
      acquire_headers.push_back(req->header());
      if (fail_acquires_unavailable > 0) {
        --fail_acquires_unavailable;
        return grpc::Status(grpc::StatusCode::UNAVAILABLE, "leader changed");
      }
      if (acquire_error != grpc::StatusCode::OK) return grpc::Status(acquire_error, "scripted");
      hang = acquire_hangs;
    }
    if (hang) {
      for (int i = 0; i < 1000 && !ctx->IsCancelled(); ++i) std::this_thread::sleep_for(10ms);
      return grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "caller gave up");
    }
    bool committed_first;
    {
      std::lock_guard lock(mu);
      committed_first = commit_before_delay;
      if (committed_first) Grant(*req, resp);
    }
    std::this_thread::sleep_for(acquire_delay);
    std::lock_guard lock(mu);
    if (!committed_first) Grant(*req, resp);
    return grpc::Status::OK;
  }

  grpc::Status GetLock(grpc::ServerContext* ctx, const pb::GetLockRequest* req,
                       pb::GetLockResponse* resp) override {
    Tag(ctx, "GetLock");
    std::lock_guard lock(mu);
    if (deny_get_lock) return grpc::Status(grpc::StatusCode::PERMISSION_DENIED, "no read");
    resp->mutable_lock()->set_name(req->name());
    for (const auto& [lease, tokens] : held) {
      for (uint64_t t : tokens) {
        if (token_names[t] != req->name()) continue;
        auto* h = resp->mutable_lock()->add_holders();
        h->set_lease_id(lease);
        h->set_token(t);
        h->set_fence(t);
      }
    }
    return grpc::Status::OK;
  }

  grpc::Status GetLease(grpc::ServerContext* ctx, const pb::GetLeaseRequest* req,
                        pb::GetLeaseResponse* resp) override {
    Tag(ctx, "GetLease");
    std::lock_guard lock(mu);
    ++get_leases;
    resp->mutable_lease()->set_lease_id(req->lease_id());
    for (uint64_t t : held[req->lease_id()]) {
      resp->mutable_lease()->add_held(token_names[t]);
      if (list_lease_tokens) resp->mutable_lease()->add_held_tokens(t);
    }
    return grpc::Status::OK;
  }

  grpc::Status Cancel(grpc::ServerContext* ctx, const pb::CancelRequest* req,
                      pb::CancelResponse* resp) override {
    Tag(ctx, "Cancel");
    std::lock_guard lock(mu);
    if (fail_cancels_unavailable > 0) {
      --fail_cancels_unavailable;
      return grpc::Status(grpc::StatusCode::UNAVAILABLE, "no leader");
    }
    if (fail_cancels_exhausted > 0) {
      --fail_cancels_exhausted;
      return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "over its quota rate");
    }
    cancels.push_back(*req);
    resp->set_effect(pb::CancelResponse::WITHDREW_WAIT);
    return grpc::Status::OK;
  }

  grpc::Status Release(grpc::ServerContext* ctx, const pb::ReleaseRequest* req,
                       pb::ReleaseResponse*) override {
    Tag(ctx, "Release");
    std::lock_guard lock(mu);
    if (fail_releases_exhausted > 0) {
      --fail_releases_exhausted;
      return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "over its quota rate");
    }
    released_tokens.push_back(req->token());
    released_names.push_back(req->name());
    held[req->lease_id()].erase(req->token());
    return grpc::Status::OK;
  }

  grpc::Status RevokeLease(grpc::ServerContext* ctx, const pb::RevokeLeaseRequest* req,
                           pb::RevokeLeaseResponse*) override {
    Tag(ctx, "RevokeLease");
    std::lock_guard lock(mu);
    if (fail_revokes_exhausted > 0) {
      --fail_revokes_exhausted;
      return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "over its quota rate");
    }
    revoked.push_back(req->lease_id());
    held.erase(req->lease_id());
    return grpc::Status::OK;
  }

  /// Sends one ACQUIRED event for the name watched, then ends the stream.
  grpc::Status Watch(grpc::ServerContext* ctx, const pb::WatchRequest* req,
                     grpc::ServerWriter<pb::WatchResponse>* writer) override {
    Tag(ctx, "Watch");
    {
      std::lock_guard lock(mu);
      ++watches;
    }
    pb::WatchResponse resp;
    auto* e = resp.add_events();
    e->set_type(pb::LockEvent::ACQUIRED);
    e->set_name(req->name().empty() ? req->prefix() : req->name());
    writer->Write(resp);
    return grpc::Status::OK;
  }

  template <typename F>
  auto With(F f) {
    std::lock_guard lock(mu);
    return f();
  }

 private:
  /// Grants `req` (mu held).
  void Grant(const pb::AcquireRequest& req, pb::AcquireResponse* resp) {
    uint64_t lease = req.lease_id();
    if (lease == 0) {
      lease = next_lease++;
      resp->set_lease_ttl_ms(req.ttl_ms());
    }
    resp->set_acquired(true);
    resp->set_token(next_token);
    resp->set_fence(next_token);
    token_names[next_token] = req.name();
    held[lease].insert(next_token++);
    resp->set_mode(req.mode());
    resp->set_lease_id(lease);
  }

  void Tag(grpc::ServerContext* ctx, const char* method) {
    std::lock_guard lock(mu);
    const auto& md = ctx->client_metadata();
    const auto it = md.find("authorization");
    authorization.emplace_back(
        method, it == md.end() ? std::string() : std::string(it->second.data(), it->second.size()));
    ctx->AddInitialMetadata("lockd-cluster", cluster_id);
    ctx->AddInitialMetadata("lockd-leader", leader);
  }
};

struct FakeServer {
  FakeLockService service;
  std::string endpoint;
  std::unique_ptr<grpc::Server> server;

  /// `stream_window`: the HTTP/2 flow-control window the server grants each stream (bytes, 0:
  /// gRPC's default), so a test can fill it with few renewals.
  explicit FakeServer(int stream_window = 0) {
    // The kernel picks the port as the server binds it. A port found free beforehand could be
    // taken meanwhile by another test process, and gRPC binds with SO_REUSEPORT: two fakes then
    // shared it, each getting some of the other's calls (seen under ctest -j2 on TSan runs).
    int port = 0;
    grpc::ServerBuilder b;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    b.RegisterService(&service);
    if (stream_window > 0) {
      b.AddChannelArgument(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, stream_window);
      b.AddChannelArgument(GRPC_ARG_HTTP2_BDP_PROBE, 0);
    }
    server = b.BuildAndStart();
    endpoint = "127.0.0.1:" + std::to_string(port);
  }
  ~FakeServer() { server->Shutdown(std::chrono::system_clock::now() + 1s); }
};

}  // namespace lockd::client
