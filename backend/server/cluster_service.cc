// etcdserverpb.Cluster: member list and membership changes. Changes go
// through the log as conf changes (see EtcdServer::AddMember and friends);
// answers carry the membership as this member has applied it.
#include "backend/server/services.h"
#include "common/errors.h"

namespace synod::server {

namespace {

void FillMembers(EtcdServer* s,
                 google::protobuf::RepeatedPtrField<etcdserverpb::Member>* out) {
  for (const synodpb::Member& m : s->membership()->Members()) {
    etcdserverpb::Member* pm = out->Add();
    pm->set_id(m.id());
    pm->set_name(m.name());
    for (const auto& u : m.peer_urls()) pm->add_peerurls(u);
    for (const auto& u : m.client_urls()) pm->add_clienturls(u);
    pm->set_islearner(m.is_learner());
  }
}

}  // namespace

grpc::ServerUnaryReactor* ClusterService::MemberList(
    grpc::CallbackServerContext* ctx, const etcdserverpb::MemberListRequest*,
    etcdserverpb::MemberListResponse* resp) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  FillMembers(s_, resp->mutable_members());
  s_->FillHeader(resp->mutable_header());
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* ClusterService::MemberAdd(
    grpc::CallbackServerContext* ctx, const etcdserverpb::MemberAddRequest* req,
    etcdserverpb::MemberAddResponse* resp) {
  // Membership changes are admin calls (role root while auth is on).
  absl::Status admin = CheckAdmin(s_, *ctx);
  if (!admin.ok()) return FinishNow(ctx, admin);
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  if (req->peerurls().empty()) {
    FinishWith(reactor, absl::InvalidArgumentError(
                            "etcdserver: member peer URLs are not provided"));
    return reactor;
  }
  EtcdServer* s = s_;
  s_->AddMember(
      {req->peerurls().begin(), req->peerurls().end()}, req->islearner(),
      [s, reactor, resp](absl::StatusOr<synodpb::Member> m) {
        if (!m.ok()) return FinishWith(reactor, m.status());
        etcdserverpb::Member* pm = resp->mutable_member();
        pm->set_id(m->id());
        pm->set_name(m->name());
        for (const auto& u : m->peer_urls()) pm->add_peerurls(u);
        pm->set_islearner(m->is_learner());
        FillMembers(s, resp->mutable_members());
        s->FillHeader(resp->mutable_header());
        FinishWith(reactor, absl::OkStatus());
      });
  return reactor;
}

grpc::ServerUnaryReactor* ClusterService::MemberRemove(
    grpc::CallbackServerContext* ctx,
    const etcdserverpb::MemberRemoveRequest* req,
    etcdserverpb::MemberRemoveResponse* resp) {
  // Membership changes are admin calls (role root while auth is on).
  absl::Status admin = CheckAdmin(s_, *ctx);
  if (!admin.ok()) return FinishNow(ctx, admin);
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  EtcdServer* s = s_;
  s_->RemoveMember(req->id(), [s, reactor, resp](absl::Status st) {
    if (st.ok()) {
      FillMembers(s, resp->mutable_members());
      s->FillHeader(resp->mutable_header());
    }
    FinishWith(reactor, st);
  });
  return reactor;
}

grpc::ServerUnaryReactor* ClusterService::MemberUpdate(
    grpc::CallbackServerContext* ctx,
    const etcdserverpb::MemberUpdateRequest* req,
    etcdserverpb::MemberUpdateResponse* resp) {
  // Membership changes are admin calls (role root while auth is on).
  absl::Status admin = CheckAdmin(s_, *ctx);
  if (!admin.ok()) return FinishNow(ctx, admin);
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  EtcdServer* s = s_;
  s_->UpdateMember(req->id(), {req->peerurls().begin(), req->peerurls().end()},
                   [s, reactor, resp](absl::Status st) {
                     if (st.ok()) {
                       FillMembers(s, resp->mutable_members());
                       s->FillHeader(resp->mutable_header());
                     }
                     FinishWith(reactor, st);
                   });
  return reactor;
}

grpc::ServerUnaryReactor* ClusterService::MemberPromote(
    grpc::CallbackServerContext* ctx,
    const etcdserverpb::MemberPromoteRequest* req,
    etcdserverpb::MemberPromoteResponse* resp) {
  // Membership changes are admin calls (role root while auth is on).
  absl::Status admin = CheckAdmin(s_, *ctx);
  if (!admin.ok()) return FinishNow(ctx, admin);
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  EtcdServer* s = s_;
  s_->PromoteMember(req->id(), [s, reactor, resp](absl::Status st) {
    if (st.ok()) {
      FillMembers(s, resp->mutable_members());
      s->FillHeader(resp->mutable_header());
    }
    FinishWith(reactor, st);
  });
  return reactor;
}

}  // namespace synod::server
