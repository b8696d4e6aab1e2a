#include "server/cluster_metadata.h"

namespace lockd::server {
namespace {

using grpc::experimental::InterceptionHookPoints;

class StampInterceptor final : public grpc::experimental::Interceptor {
 public:
  explicit StampInterceptor(const ClusterMetadata& md) : md_(md) {}
  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_INITIAL_METADATA)) {
      auto* md = methods->GetSendInitialMetadata();
      md->emplace("lockd-leader", md_.leader());
      md->emplace("lockd-cluster", md_.cluster());
    }
    methods->Proceed();
  }

 private:
  const ClusterMetadata& md_;
};

class StampFactory final : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit StampFactory(const ClusterMetadata& md) : md_(md) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo*) override {
    return new StampInterceptor(md_);  // gRPC owns and deletes it
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

std::string ClusterMetadata::cluster() const {
  std::lock_guard lock(mu_);
  return cluster_;
}

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> ClusterMetadata::Factory() {
  return std::make_unique<StampFactory>(*this);
}

}  // namespace lockd::server
