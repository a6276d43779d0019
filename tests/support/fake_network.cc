#include "tests/support/fake_network.h"

#include <algorithm>
#include <utility>

#include "common/errors.h"

namespace synod::testing {

struct FakeNetwork::Endpoint {
  uint64_t id = 0;
  uint64_t cluster_id = 0;
  std::vector<std::string> urls;
  server::PeerHandlers handlers;
  int active = 0;       // calls running in its handlers (FakeNetwork::mu_)
  bool closed = false;  // (FakeNetwork::mu_)
};

namespace {

grpc::Status Unreachable(uint64_t id) {
  return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                      "fake network: member unreachable");
}

}  // namespace

class FakeTransport final : public server::Transport {
 public:
  FakeTransport(FakeNetwork* net, uint64_t id) : net_(net), id_(id) {}
  ~FakeTransport() override { Stop(); }

  void AddPeer(uint64_t id, const std::vector<std::string>&) override {
    absl::MutexLock l(&mu_);
    if (id != id_) peers_.insert(id);
  }
  void RemovePeer(uint64_t id) override {
    absl::MutexLock l(&mu_);
    peers_.erase(id);
  }
  bool HasPeer(uint64_t id) const override {
    absl::MutexLock l(&mu_);
    return peers_.contains(id);
  }

  void Send(std::vector<raft::Message> msgs) override {
    const server::PeerHandlers* self = Self();
    if (self == nullptr) return;
    for (raft::Message& m : msgs) {
      const uint64_t to = m.to;
      if (!HasPeer(to)) {
        self->on_unreachable(to);
        continue;
      }
      if (m.type == raft::MessageType::kSnap) {
        std::vector<std::string> chunks;
        absl::Status st = self->snapshot_source([&](std::string c) {
          chunks.push_back(std::move(c));
          return true;
        });
        bool ok = false;
        if (st.ok()) {
          net_->Call(id_, to, [&](const server::PeerHandlers& h) {
            ok = h.on_snapshot(m, chunks).ok();
          });
        }
        self->on_snapshot_status(to, ok);
        continue;
      }
      bool sent = net_->Call(id_, to, [&](const server::PeerHandlers& h) {
        h.on_message(std::move(m));
      });
      if (sent) {
        absl::MutexLock l(&net_->mu_);
        ++net_->delivered_;
      } else {
        self->on_unreachable(to);
      }
    }
  }

  grpc::Status LeaseRenew(uint64_t id,
                          const etcdserverpb::LeaseKeepAliveRequest& req,
                          etcdserverpb::LeaseKeepAliveResponse* resp,
                          absl::Duration) override {
    return CallPeer(id, [&](const server::PeerHandlers& h) {
      return h.on_lease_renew(req, resp);
    });
  }
  grpc::Status LeaseTimeToLive(uint64_t id,
                               const etcdserverpb::LeaseTimeToLiveRequest& req,
                               etcdserverpb::LeaseTimeToLiveResponse* resp,
                               absl::Duration) override {
    return CallPeer(id, [&](const server::PeerHandlers& h) {
      return h.on_lease_ttl(req, resp);
    });
  }
  grpc::Status HashKV(uint64_t id, const etcdserverpb::HashKVRequest& req,
                      etcdserverpb::HashKVResponse* resp,
                      absl::Duration) override {
    return CallPeer(id, [&](const server::PeerHandlers& h) {
      return h.on_hash_kv(req, resp);
    });
  }
  grpc::Status MemberPromote(uint64_t id,
                             const etcdserverpb::MemberPromoteRequest& req,
                             etcdserverpb::MemberPromoteResponse* resp,
                             absl::Duration) override {
    return CallPeer(id, [&](const server::PeerHandlers& h) {
      return h.on_member_promote(req, resp);
    });
  }

  void Stop() override {
    {
      absl::MutexLock l(&mu_);
      if (stopped_) return;
      stopped_ = true;
    }
    net_->Close(id_);
  }

 private:
  // This member's own handlers (for reports back to its raft thread);
  // nullptr once stopped.
  const server::PeerHandlers* Self() {
    absl::MutexLock l(&net_->mu_);
    auto it = net_->members_.find(id_);
    if (it == net_->members_.end() || it->second->closed) return nullptr;
    return &it->second->handlers;
  }

  grpc::Status CallPeer(
      uint64_t id,
      const std::function<grpc::Status(const server::PeerHandlers&)>& fn) {
    if (!HasPeer(id)) {
      return common::ToGrpcStatus(
          common::Err(common::EtcdError::kNoLeader));
    }
    grpc::Status st;
    if (!net_->Call(id_, id, [&](const server::PeerHandlers& h) { st = fn(h); })) {
      return Unreachable(id);
    }
    return st;
  }

  FakeNetwork* const net_;
  const uint64_t id_;
  mutable absl::Mutex mu_;
  absl::flat_hash_set<uint64_t> peers_ ABSL_GUARDED_BY(mu_);
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
};

std::unique_ptr<server::Transport> FakeNetwork::NewTransport(
    uint64_t member_id, uint64_t cluster_id,
    const std::vector<std::string>& peer_urls, server::PeerHandlers handlers) {
  auto ep = std::make_shared<Endpoint>();
  ep->id = member_id;
  ep->cluster_id = cluster_id;
  ep->urls = peer_urls;
  ep->handlers = std::move(handlers);
  {
    absl::MutexLock l(&mu_);
    members_[member_id] = std::move(ep);
  }
  return std::make_unique<FakeTransport>(this, member_id);
}

bool FakeNetwork::Enter(const std::shared_ptr<Endpoint>& ep) {
  if (ep->closed) return false;
  ++ep->active;
  return true;
}

void FakeNetwork::Leave(const std::shared_ptr<Endpoint>& ep) {
  absl::MutexLock l(&mu_);
  --ep->active;
}

bool FakeNetwork::Call(
    uint64_t from, uint64_t to,
    const std::function<void(const server::PeerHandlers&)>& fn) {
  std::shared_ptr<Endpoint> ep;
  {
    absl::MutexLock l(&mu_);
    if (isolated_.contains(from) || isolated_.contains(to)) return false;
    auto it = members_.find(to);
    if (it == members_.end() || !Enter(it->second)) return false;
    ep = it->second;
  }
  fn(ep->handlers);
  Leave(ep);
  return true;
}

bool FakeNetwork::CallUrl(
    const std::string& url,
    const std::function<void(const server::PeerHandlers&)>& fn) {
  std::shared_ptr<Endpoint> ep;
  {
    absl::MutexLock l(&mu_);
    for (auto& [id, e] : members_) {
      if (std::find(e->urls.begin(), e->urls.end(), url) == e->urls.end()) {
        continue;
      }
      if (isolated_.contains(id) || !Enter(e)) return false;
      ep = e;
      break;
    }
  }
  if (ep == nullptr) return false;
  fn(ep->handlers);
  Leave(ep);
  return true;
}

void FakeNetwork::Close(uint64_t id) {
  absl::MutexLock l(&mu_);
  auto it = members_.find(id);
  if (it == members_.end()) return;
  std::shared_ptr<Endpoint> ep = it->second;
  ep->closed = true;
  // Calls already inside its handlers finish first: they use its server.
  mu_.Await(absl::Condition(
      +[](Endpoint* e) { return e->active == 0; }, ep.get()));
  auto now = members_.find(id);
  if (now != members_.end() && now->second == ep) members_.erase(now);
}

absl::StatusOr<synodpb::ClusterInfo> FakeNetwork::FetchClusterInfo(
    const std::string& peer_url, absl::Duration) {
  synodpb::ClusterInfo info;
  if (!CallUrl(peer_url, [&](const server::PeerHandlers& h) { h.on_members(&info); })) {
    return absl::UnavailableError("fake network: no member at " + peer_url);
  }
  return info;
}

absl::StatusOr<etcdserverpb::HashKVResponse> FakeNetwork::FetchHashKV(
    const std::string& peer_url, int64_t revision, absl::Duration) {
  etcdserverpb::HashKVRequest req;
  req.set_revision(revision);
  etcdserverpb::HashKVResponse resp;
  grpc::Status st;
  if (!CallUrl(peer_url, [&](const server::PeerHandlers& h) {
        st = h.on_hash_kv(req, &resp);
      })) {
    return absl::UnavailableError("fake network: no member at " + peer_url);
  }
  if (!st.ok()) return common::FromGrpcStatus(st);
  return resp;
}

void FakeNetwork::SetIsolated(uint64_t id, bool isolated) {
  absl::MutexLock l(&mu_);
  if (isolated) {
    isolated_.insert(id);
  } else {
    isolated_.erase(id);
  }
}

uint64_t FakeNetwork::delivered() const {
  absl::MutexLock l(&mu_);
  return delivered_;
}

}  // namespace synod::testing
