// Inspection (GetLock, GetLease, ListLocks) and Watch, through the retrying call.
#include "client/acquire.h"
#include "client/client_core.h"
#include "lockd/client.h"

namespace lockd::client {

namespace {

Mode ModeOf(pb::LockMode m) {
  return m == pb::SHARED ? Mode::kShared : Mode::kExclusive;
}

}  // namespace

Result<LockInfo> Client::GetLock(const std::string& name) {
  pb::GetLockRequest req;
  req.set_name(name);
  pb::GetLockResponse resp;
  const auto& o = core_->options();
  grpc::Status s =
      core_->Call(&pb::LockService::Stub::GetLock, req, &resp,
                  std::chrono::steady_clock::now() + o.call_timeout, AttemptTimeout(o));
  if (!s.ok()) return FromGrpc(s);
  LockInfo info;
  info.name = resp.lock().name();
  for (const auto& h : resp.lock().holders()) {
    info.holders.push_back({h.lease_id(), h.lease_label(), ModeOf(h.mode()), h.token(), h.fence()});
  }
  for (const auto& w : resp.lock().waiters()) {
    info.waiters.push_back({w.lease_id(), w.lease_label(), ModeOf(w.mode())});
  }
  return info;
}

Result<LeaseInfo> Client::GetLease(uint64_t lease_id) {
  pb::GetLeaseRequest req;
  req.set_lease_id(lease_id);
  pb::GetLeaseResponse resp;
  const auto& o = core_->options();
  grpc::Status s =
      core_->Call(&pb::LockService::Stub::GetLease, req, &resp,
                  std::chrono::steady_clock::now() + o.call_timeout, AttemptTimeout(o));
  if (!s.ok()) return FromGrpc(s);
  LeaseInfo info;
  const auto& l = resp.lease();
  info.lease_id = l.lease_id();
  info.label = l.label();
  info.ttl = std::chrono::milliseconds(l.ttl_ms());
  info.remaining = std::chrono::milliseconds(l.remaining_ms());
  info.held.assign(l.held().begin(), l.held().end());
  info.waiting.assign(l.waiting().begin(), l.waiting().end());
  return info;
}

Result<std::vector<LockInfo>> Client::ListLocks(const std::string& prefix) {
  std::vector<LockInfo> out;
  pb::ListLocksRequest req;
  req.set_prefix(prefix);
  const auto& o = core_->options();
  const auto deadline = std::chrono::steady_clock::now() + o.call_timeout;
  for (int page = 0; page < 100'000; ++page) {  // bounded: at most 1000 per page
    pb::ListLocksResponse resp;
    grpc::Status s =
        core_->Call(&pb::LockService::Stub::ListLocks, req, &resp, deadline, AttemptTimeout(o));
    if (!s.ok()) return FromGrpc(s);
    for (const auto& l : resp.locks()) {
      LockInfo info;
      info.name = l.name();
      for (const auto& h : l.holders()) {
        info.holders.push_back(
            {h.lease_id(), h.lease_label(), ModeOf(h.mode()), h.token(), h.fence()});
      }
      for (const auto& w : l.waiters()) {
        info.waiters.push_back({w.lease_id(), w.lease_label(), ModeOf(w.mode())});
      }
      out.push_back(std::move(info));
    }
    if (resp.next_page_token().empty()) break;
    req.set_page_token(resp.next_page_token());
  }
  return out;
}

Status Client::Watch(const std::string& name, bool prefix, std::stop_token stop,
                     const std::function<void(const LockEvent&)>& on_event) {
  pb::WatchRequest req;
  if (prefix) {
    req.set_prefix(name);
  } else {
    req.set_name(name);
  }
  grpc::ClientContext ctx;
  std::stop_callback on_stop(stop, [&ctx] { ctx.TryCancel(); });
  auto reader = core_->stub(core_->PickEndpoint()).Watch(&ctx, req);
  pb::WatchResponse resp;
  bool first = true;
  while (reader->Read(&resp)) {
    if (first) {
      core_->ObserveMetadata(ctx);
      first = false;
    }
    for (const auto& e : resp.events()) {
      LockEvent ev;
      switch (e.type()) {
        case pb::LockEvent::ACQUIRED:
          ev.type = LockEvent::Type::kAcquired;
          break;
        case pb::LockEvent::RELEASED:
          ev.type = LockEvent::Type::kReleased;
          break;
        case pb::LockEvent::EXPIRED:
          ev.type = LockEvent::Type::kExpired;
          break;
        case pb::LockEvent::WAITING:
          ev.type = LockEvent::Type::kWaiting;
          break;
        case pb::LockEvent::CANCELLED:
          ev.type = LockEvent::Type::kCancelled;
          break;
        default:
          ev.type = LockEvent::Type::kOther;
          break;
      }
      ev.name = e.name();
      ev.lease_id = e.lease_id();
      ev.token = e.token();
      ev.fence = e.fence();
      ev.index = e.position().index();
      on_event(ev);
    }
  }
  grpc::Status s = reader->Finish();
  if (stop.stop_requested()) return Status::Ok();
  return FromGrpc(s);
}

}  // namespace lockd::client
