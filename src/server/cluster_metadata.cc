#include "server/cluster_metadata.h"

#include <string_view>

namespace lockd::server {
namespace {

using grpc::experimental::InterceptionHookPoints;

class StampInterceptor final : public grpc::experimental::Interceptor {
 public:
  StampInterceptor(const ClusterMetadata& md, bool lockd_api) : md_(md), lockd_api_(lockd_api) {}
  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_INITIAL_METADATA)) {
      auto* md = methods->GetSendInitialMetadata();
      md->emplace("lockd-leader", md_.leader());
      md->emplace("lockd-cluster", md_.cluster());
    }
    if (lockd_api_ &&
        methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS) &&
        md_.cluster().empty()) {
      methods->ModifySendStatus(grpc::Status(grpc::StatusCode::UNAVAILABLE, md_.UndecidedReason()));
    }
    methods->Proceed();
  }

 private:
  const ClusterMetadata& md_;
  const bool lockd_api_;  ///< a lockd.v1 method (not health or reflection)
};

class StampFactory final : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit StampFactory(const ClusterMetadata& md) : md_(md) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    const std::string_view method = info->method() ? info->method() : "";
    return new StampInterceptor(md_, method.starts_with("/lockd.v1."));  // gRPC deletes it
  }

 private:
  const ClusterMetadata& md_;
};

}  // namespace

void ClusterMetadata::Set(std::string leader_client_addr, std::string cluster_id) {
  std::lock_guard lock(mu_);
  leader_ = std::move(leader_client_addr);
  cluster_ = std::move(cluster_id);
}

void ClusterMetadata::SetLeaderSource(std::function<std::string()> source) {
  std::lock_guard lock(mu_);
  leader_source_ = std::move(source);
}

std::string ClusterMetadata::leader() const {
  std::function<std::string()> source;
  {
    std::lock_guard lock(mu_);
    if (!leader_source_) return leader_;
    source = leader_source_;
  }
  return source();
}

void ClusterMetadata::SetUndecidedReason(std::function<std::string()> reason) {
  std::lock_guard lock(mu_);
  undecided_reason_ = std::move(reason);
}

std::string ClusterMetadata::UndecidedReason() const {
  std::function<std::string()> reason;
  {
    std::lock_guard lock(mu_);
    reason = undecided_reason_;
  }
  return reason ? reason() : "cluster id not decided yet; retry";
}

std::string ClusterMetadata::cluster() const {
  std::lock_guard lock(mu_);
  return cluster_;
}

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> ClusterMetadata::Factory() {
  return std::make_unique<StampFactory>(*this);
}

}  // namespace lockd::server
