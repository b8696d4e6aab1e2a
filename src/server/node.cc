#include "server/node.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <httplib.h>
#include <spdlog/spdlog.h>

#include <chrono>

#include "grpc/health/v1/health.pb.h"  // links the descriptor, so reflection can describe it
#include "storage/data_dir.h"
#include "storage/raft_store.h"
#include "storage/snapshot_store.h"

namespace lockd::server {

Node::Node(NodeOptions options) : options_(std::move(options)) {}

Node::~Node() {
  Shutdown();
}

Status Node::Start() {
  if (Status s = Validate(options_); !s.ok()) return s;

  auto dir = storage::DataDir::Open(options_.data_dir);
  if (!dir.ok()) return dir.status();
  data_dir_ = std::move(dir).value();
  // Recovery: the log, hard state and the newest snapshot are verified before anything is
  // served; damage stops the node with an error naming it.
  auto store = storage::RaftStore::Open(data_dir_->raft_dir());
  if (!store.ok()) return store.status();
  raft_store_ = std::move(store).value();
  auto snapshot = storage::SnapshotStore(data_dir_->snapshot_dir()).LoadLatest();
  if (!snapshot.ok()) return snapshot.status();
  spdlog::info("node {}: data dir {} opened: log [{}, {}], term {}, commit {}", options_.node_id,
               options_.data_dir, raft_store_->FirstIndex().value(),
               raft_store_->LastIndex().value(), raft_store_->Initial().hard.term.value(),
               raft_store_->Initial().hard.commit.value());

  // Touch the health descriptor so the linker keeps it for reflection.
  (void)grpc::health::v1::HealthCheckResponse::descriptor();
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();

  grpc::ServerBuilder builder;
  int bound_port = 0;
  builder.AddListeningPort(options_.client_addr, grpc::InsecureServerCredentials(), &bound_port);
  grpc_server_ = builder.BuildAndStart();
  if (!grpc_server_ || bound_port == 0) {
    grpc_server_.reset();
    return Unavailable("cannot listen on --client-addr " + options_.client_addr +
                       " (in use, or not an address of this machine)");
  }
  spdlog::info("node {}: client gRPC on {}", options_.node_id, options_.client_addr);

  if (Status s = StartHttp(); !s.ok()) {
    Shutdown();
    return s;
  }
  // A standalone node is its own leader; once Raft lands, health follows leader knowledge.
  serving_ = true;
  grpc_server_->GetHealthCheckService()->SetServingStatus(true);
  return Status::Ok();
}

Status Node::StartHttp() {
  auto hp = ParseHostPort(options_.http_addr);
  if (!hp.ok()) return hp.status();
  http_server_ = std::make_unique<httplib::Server>();
  http_server_->Get("/healthz", [this](const httplib::Request&, httplib::Response& res) {
    const bool ok = serving_.load();
    res.status = ok ? 200 : 503;
    res.set_content(ok ? "SERVING\n" : "NOT_SERVING\n", "text/plain");
  });
  http_server_->Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    up_.Set(serving_.load() ? 1 : 0);
    res.set_content(metrics_.Render(), "text/plain; version=0.0.4");
  });
  if (!http_server_->bind_to_port(hp->host, hp->port)) {
    http_server_.reset();
    return Unavailable("cannot listen on --http-addr " + options_.http_addr);
  }
  http_thread_ = std::thread([server = http_server_.get()] { server->listen_after_bind(); });
  spdlog::info("node {}: HTTP on {}", options_.node_id, options_.http_addr);
  return Status::Ok();
}

void Node::Shutdown() {
  serving_ = false;
  if (grpc_server_) {
    grpc_server_->GetHealthCheckService()->SetServingStatus(false);
    grpc_server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
    grpc_server_->Wait();
    grpc_server_.reset();
  }
  if (http_server_) {
    http_server_->stop();
    if (http_thread_.joinable()) http_thread_.join();
    http_server_.reset();
  }
  raft_store_.reset();
  data_dir_.reset();
}

}  // namespace lockd::server
