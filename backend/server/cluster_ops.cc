// EtcdServer: membership changes (etcd's Cluster API), MoveLeader, and the
// lease calls that only the leader answers. Conf changes go through the log
// one at a time; the checks before proposing follow etcd 3.4
// (etcdserver/server.go: strict reconfig checks, learner promotion).
#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "backend/server/etcd_server.h"
#include "common/errors.h"
#include "common/logging.h"

namespace synod::server {

using common::EtcdError;
using common::Err;

namespace {

// etcd 3.4 allows one learner at a time (membership.maxLearners).
constexpr int kMaxLearners = 1;
// A learner is ready for promotion once its match index is within 90% of
// the leader's (etcd's readyPercent).
constexpr double kLearnerReadyPercent = 0.9;

// Started voters: members that have published their name (etcd counts
// members with a name as started).
int StartedVoters(const std::vector<synodpb::Member>& ms) {
  int n = 0;
  for (const auto& m : ms) n += (!m.is_learner() && !m.name().empty());
  return n;
}
int Voters(const std::vector<synodpb::Member>& ms) {
  int n = 0;
  for (const auto& m : ms) n += !m.is_learner();
  return n;
}

}  // namespace

void EtcdServer::AddMember(
    const std::vector<std::string>& peer_urls, bool is_learner,
    std::function<void(absl::StatusOr<synodpb::Member>)> done) {
  if (membership_.FindByPeerUrl(peer_urls).has_value()) {
    return done(Err(EtcdError::kPeerURLExist));
  }
  const std::vector<synodpb::Member> ms = membership_.Members();
  if (is_learner) {
    int learners = 0;
    for (const auto& m : ms) learners += m.is_learner();
    if (learners >= kMaxLearners) return done(Err(EtcdError::kTooManyLearners));
  } else if (config_.strict_reconfig_check) {
    // Adding a voter must leave a quorum of started voters, except that a
    // one-member cluster may grow to two (etcd's IsReadyToAddVotingMember:
    // the way to restore a cluster from one member's data).
    const int voters = Voters(ms) + 1;
    const int started = StartedVoters(ms);
    if (started < voters / 2 + 1 && !(started == 1 && voters == 2)) {
      return done(Err(EtcdError::kMemberNotEnoughStarted));
    }
  }
  synodpb::Member m;
  // etcd's MemberAdd: no cluster token, the time in whole seconds.
  m.set_id(ComputeMemberId("", peer_urls, "", absl::ToUnixSeconds(clock_->Now())));
  for (const auto& u : peer_urls) m.add_peer_urls(u);
  m.set_is_learner(is_learner);
  synodpb::Request req;
  *req.mutable_member_attributes() = m;
  raft::ConfChange cc;
  cc.type = is_learner ? raft::ConfChangeType::kAddLearnerNode
                       : raft::ConfChangeType::kAddNode;
  cc.node_id = m.id();
  ProposeWithWaiter(
      std::move(req), nullptr,
      [this, m, done = std::move(done)](absl::Status st) {
        if (!st.ok()) return done(st);
        done(membership_.Get(m.id()).value_or(m));
      },
      true, cc);
}

void EtcdServer::RemoveMember(uint64_t id, Done done) {
  const std::vector<synodpb::Member> ms = membership_.Members();
  auto it = std::find_if(ms.begin(), ms.end(),
                         [&](const auto& m) { return m.id() == id; });
  if (it == ms.end()) return done(Err(EtcdError::kMemberNotFound));
  if (!it->is_learner() && config_.strict_reconfig_check) {
    // Removing a voter must leave a quorum of started voters among the rest.
    const int voters = Voters(ms) - 1;
    const int started = StartedVoters(ms) - (it->name().empty() ? 0 : 1);
    if (voters > 0 && started < voters / 2 + 1) {
      return done(Err(EtcdError::kMemberNotEnoughStarted));
    }
  }
  synodpb::Request req;
  req.mutable_member_attributes()->set_id(id);
  raft::ConfChange cc;
  cc.type = raft::ConfChangeType::kRemoveNode;
  cc.node_id = id;
  ProposeWithWaiter(std::move(req), nullptr, std::move(done), true, cc);
}

void EtcdServer::PromoteMember(uint64_t id, Done done) {
  auto m = membership_.Get(id);
  if (!m.has_value()) return done(Err(EtcdError::kMemberNotFound));
  if (!m->is_learner()) return done(Err(EtcdError::kMemberNotLearner));
  if (!raft_->is_leader()) {
    // Only the leader knows how far the learner has caught up.
    const uint64_t lead = raft_->leader();
    if (lead == 0) return done(Err(EtcdError::kNoLeader));
    etcdserverpb::MemberPromoteRequest req;
    req.set_id(id);
    etcdserverpb::MemberPromoteResponse resp;
    grpc::Status st =
        transport_->MemberPromote(lead, req, &resp, RequestTimeout());
    return done(common::FromGrpcStatus(st));
  }
  raft::Status status = raft_->GetStatus();
  auto lp = status.progress.find(member_id_);
  auto pp = status.progress.find(id);
  if (lp == status.progress.end() || pp == status.progress.end() ||
      static_cast<double>(pp->second.match) <
          std::floor(static_cast<double>(lp->second.match) *
                     kLearnerReadyPercent)) {
    return done(Err(EtcdError::kLearnerNotReady));
  }
  synodpb::Request req;
  synodpb::Member* pm = req.mutable_member_attributes();
  *pm = *m;
  pm->set_is_learner(false);
  raft::ConfChange cc;
  cc.type = raft::ConfChangeType::kAddNode;
  cc.node_id = id;
  ProposeWithWaiter(std::move(req), nullptr, std::move(done), true, cc);
}

void EtcdServer::UpdateMember(uint64_t id,
                              const std::vector<std::string>& peer_urls,
                              Done done) {
  auto m = membership_.Get(id);
  if (!m.has_value()) return done(Err(EtcdError::kMemberNotFound));
  auto other = membership_.FindByPeerUrl(peer_urls);
  if (other.has_value() && *other != id) {
    return done(Err(EtcdError::kPeerURLExist));
  }
  synodpb::Request req;
  synodpb::Member* pm = req.mutable_member_attributes();
  *pm = *m;
  pm->clear_peer_urls();
  for (const auto& u : peer_urls) pm->add_peer_urls(u);
  raft::ConfChange cc;
  cc.type = raft::ConfChangeType::kUpdateNode;
  cc.node_id = id;
  ProposeWithWaiter(std::move(req), nullptr, std::move(done), true, cc);
}

void EtcdServer::MoveLeader(uint64_t transferee, Done done) {
  if (!raft_->is_leader()) return done(Err(EtcdError::kNotLeader));
  auto m = membership_.Get(transferee);
  if (!m.has_value() || m->is_learner()) {
    return done(Err(EtcdError::kBadLeaderTransferee));
  }
  if (transferee == member_id_) return done(absl::OkStatus());
  raft_->TransferLeadership(transferee, clock_->Now() + RequestTimeout(),
                            std::move(done));
}

absl::StatusOr<int64_t> EtcdServer::LeaseKeepAlive(int64_t id) {
  if (raft_->is_leader()) return leases_->KeepAlive(id);
  const uint64_t lead = raft_->leader();
  if (lead == 0) return Err(EtcdError::kNoLeader);
  etcdserverpb::LeaseKeepAliveRequest req;
  req.set_id(id);
  etcdserverpb::LeaseKeepAliveResponse resp;
  grpc::Status st = transport_->LeaseRenew(lead, req, &resp, RequestTimeout());
  if (!st.ok()) return common::FromGrpcStatus(st);
  return resp.ttl();
}

grpc::Status EtcdServer::LeaseTimeToLive(
    const etcdserverpb::LeaseTimeToLiveRequest& req,
    etcdserverpb::LeaseTimeToLiveResponse* resp) {
  if (!raft_->is_leader()) {
    const uint64_t lead = raft_->leader();
    if (lead == 0) return common::ToGrpcStatus(Err(EtcdError::kNoLeader));
    grpc::Status st =
        transport_->LeaseTimeToLive(lead, req, resp, RequestTimeout());
    if (st.ok()) FillHeader(resp->mutable_header());
    return st;
  }
  auto info = lessor_->TimeToLive(req.id(), req.keys());
  resp->set_id(req.id());
  if (!info.ok()) {
    // etcd answers an unknown or expired lease with TTL -1, not an error.
    resp->set_ttl(-1);
  } else {
    resp->set_ttl(info->remaining);
    resp->set_grantedttl(info->ttl);
    for (auto& k : info->keys) resp->add_keys(std::move(k));
  }
  FillHeader(resp->mutable_header());
  return grpc::Status::OK;
}

void EtcdServer::MaybeLogCapabilities() {
  if (capabilities_logged_.load()) return;
  const std::vector<synodpb::Member> ms = membership_.Members();
  if (StartedVoters(ms) < Voters(ms)) return;
  if (!capabilities_logged_.exchange(true)) {
    SYNOD_LOG(INFO) << "enabled capabilities for version 3.4";
  }
}

void EtcdServer::MaybePublishAttributes() {
  if (attributes_published_.load() || attributes_in_flight_.load()) return;
  auto me = membership_.Get(member_id_);
  if (!me.has_value()) return;
  std::vector<std::string> urls = config_.advertise_client_urls;
  if (me->name() == config_.name &&
      std::vector<std::string>(me->client_urls().begin(),
                               me->client_urls().end()) == urls) {
    attributes_published_ = true;
    SYNOD_LOG(INFO) << "published this member's name and client URLs "
                       "(unchanged since the last start)";
    MaybeLogCapabilities();
    return;
  }
  if (raft_->leader() == 0) return;
  attributes_in_flight_ = true;
  synodpb::Request req;
  synodpb::Member* m = req.mutable_member_attributes();
  m->set_id(member_id_);
  m->set_name(config_.name);
  for (const auto& u : urls) m->add_client_urls(u);
  Propose(std::move(req), nullptr, [this](absl::Status st) {
    if (st.ok()) {
      attributes_published_ = true;
      SYNOD_LOG(INFO) << "published this member's name and client URLs";
    }
    attributes_in_flight_ = false;
  });
}

}  // namespace synod::server
