// The fuzz run's stream calls: KeepAlive with random renewals, Watch with random filters and
// positions, Backup. Synchronous, on threads of their own, so their waits do not slow the unary
// traffic.
#include "e2e/fuzz_gen.h"

namespace lockd::e2e::fuzz {

void World::DriveStreams(int thread, const std::atomic<bool>& stop) {
  Gen g{*this, std::mt19937_64(seed_ ^ (0xc2b2ae3d27d4eb4fULL * (thread + 1))), thread};
  while (!stop) {
    {
      std::lock_guard l(mu_);
      ++tally_.sent;
    }
    const int node = g.Node();
    const uint64_t r = g.U(0, 99);
    if (r < 45) {
      SendKeepAlive(g, node);
    } else if (r < 92) {
      SendWatch(g, node);
    } else {
      SendBackup(g, node);
    }
  }
}

void World::SendKeepAlive(Gen& g, int node) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + 4s);
  auto stream = cluster_.lock(node).KeepAlive(&ctx);
  std::vector<v1::RenewRequest> sent;
  const uint64_t n = g.U(0, 6);
  for (uint64_t i = 0; i < n; ++i) {
    v1::RenewRequest r;
    r.set_lease_id(g.P(0.5) ? g.KnownLease() : g.Lease());
    r.set_seq(g.rng());
    if (!stream->Write(r)) break;
    sent.push_back(r);
  }
  stream->WritesDone();
  std::string request = "renewals:";
  for (const auto& r : sent) request += " {" + r.ShortDebugString() + "}";
  size_t answers = 0;
  v1::RenewResponse a;
  while (stream->Read(&a)) {
    ++answers;
    {
      std::lock_guard l(mu_);
      ++tally_.keepalive_answer_codes[a.code()];
    }
    static const std::set<int> kAnswerCodes = {0, 3, 4, 5, 14};
    if (!kAnswerCodes.count(a.code())) {
      Violation("KeepAlive to node " + std::to_string(node + 1) + ": a renewal answered code " +
                std::to_string(a.code()) + " (" + a.message() + "); " + request);
    }
    const bool echoed = std::any_of(sent.begin(), sent.end(), [&](const v1::RenewRequest& r) {
      return r.lease_id() == a.lease_id() && r.seq() == a.seq();
    });
    if (!echoed) {
      Violation("KeepAlive to node " + std::to_string(node + 1) + ": an answer {" +
                a.ShortDebugString() + "} echoes no renewal sent; " + request);
    }
  }
  const grpc::Status s = stream->Finish();
  Record(Method::kKeepAlive, node, s, MetaOf(ctx), false, false, [&] { return request; });
  if (s.ok() && answers != sent.size()) {
    Violation("KeepAlive to node " + std::to_string(node + 1) + " ended OK with " +
              std::to_string(answers) + " answers to " + std::to_string(sent.size()) +
              " renewals; " + request);
  }
}

void World::SendWatch(Gen& g, int node) {
  v1::WatchRequest r;
  const uint64_t t = g.U(0, 9);
  if (t < 4) {
    r.set_name(g.Name());
  } else if (t < 9) {
    const uint64_t p = g.U(0, 3);
    r.set_prefix(p == 0 ? "" : p == 1 ? "fz/" : g.Bytes());
  }
  if (g.P(0.5)) {
    v1::StatusResponse st;
    const uint64_t applied = cluster_.Status(node, &st, 1s).ok() ? st.applied_index() : 0;
    auto* after = r.mutable_after();
    const std::string other = g.Text();
    after->set_cluster_id(g.P(0.8) ? cluster_id_ : other);
    const uint64_t i = g.U(0, 9);
    after->set_index(i < 5   ? applied - std::min<uint64_t>(applied, g.U(0, 300))
                     : i < 7 ? applied + g.U(1, 50)
                     : i < 8 ? 0
                             : g.Big());
    after->set_event(static_cast<uint32_t>(g.P(0.7) ? g.U(0, 3) : g.rng()));
  }
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + Ms(g.U(30, 120)));
  auto reader = cluster_.lock(node).Watch(&ctx, r);
  auto request = [&] { return Truncated(r.ShortDebugString()); };
  v1::WatchResponse resp;
  v1::WatchPosition last;
  while (reader->Read(&resp)) {
    for (const auto& e : resp.events()) {
      const bool match = r.target_case() == v1::WatchRequest::kName
                             ? e.name() == r.name()
                             : e.name().compare(0, r.prefix().size(), r.prefix()) == 0;
      if (!match || e.position().cluster_id() != cluster_id_ ||
          (last.index() != 0 && !PositionLess(last, e.position()))) {
        Violation("Watch to node " + std::to_string(node + 1) + ": event " + ToString(e) +
                  " does not match the filter, the cluster, or follows " + last.ShortDebugString() +
                  "; request: " + request());
      }
      last = e.position();
    }
  }
  const grpc::Status s = reader->Finish();
  Record(Method::kWatch, node, s, MetaOf(ctx), r.ByteSizeLong() > options_.max_request_bytes, false,
         request);
}

void World::SendBackup(Gen&, int node) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + 2s);
  auto reader = cluster_.cluster(node).Backup(&ctx, v1::BackupRequest());
  v1::BackupChunk chunk;
  while (reader->Read(&chunk)) {
  }
  const grpc::Status s = reader->Finish();
  Record(Method::kBackup, node, s, MetaOf(ctx), false, false, [] { return std::string("{}"); });
}

}  // namespace lockd::e2e::fuzz
