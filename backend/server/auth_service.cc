// The Auth service and the caller checks every other service uses
// (services.h). The rules themselves live in backend/auth/auth_store.h and
// the applier's auth stage (applier.h).
#include <memory>
#include <string>

#include "absl/strings/numbers.h"
#include "backend/server/services.h"
#include "common/errors.h"
#include "common/logging.h"
#include "common/tls.h"

namespace synod::server {

using common::EtcdError;
using common::Err;

namespace {

// The first value of metadata `key`, if sent.
const grpc::string_ref* FindMetadata(const grpc::ServerContextBase& ctx,
                                     const char* key) {
  auto it = ctx.client_metadata().find(key);
  return it == ctx.client_metadata().end() ? nullptr : &it->second;
}

}  // namespace

absl::StatusOr<auth::AuthInfo> CallerAuthInfo(EtcdServer* s,
                                              const grpc::ServerContextBase& ctx) {
  const grpc::string_ref* token = FindMetadata(ctx, "token");
  if (token == nullptr) token = FindMetadata(ctx, "authorization");
  if (token != nullptr) {
    const absl::string_view t(token->data(), token->size());
    // A simple token names the index of its Authenticate entry: a member
    // that has not applied it yet waits for it (etcd's isValidSimpleToken),
    // so a client may authenticate on one member and call another at once.
    const size_t dot = t.rfind('.');
    uint64_t index = 0;
    if (dot != absl::string_view::npos && dot + 1 < t.size() &&
        t.find('.') == dot && absl::SimpleAtoi(t.substr(dot + 1), &index) &&
        index > s->applied_index()) {
      s->AwaitApplied(index, absl::Seconds(5));
    }
    return s->auth_store()->AuthInfoFromToken(t);
  }
  if (s->config().client_cert_auth) {
    // A verified client certificate is an identity even without a CN: etcd
    // then checks user "" (permission denied, not "user name is empty").
    std::shared_ptr<const grpc::AuthContext> auth = ctx.auth_context();
    if (auth != nullptr && !auth->FindPropertyValues("x509_pem_cert").empty()) {
      return s->auth_store()->AuthInfoFromCommonName(common::PeerCommonName(ctx));
    }
  }
  return auth::AuthInfo{};
}

absl::Status StampCaller(EtcdServer* s, const grpc::ServerContextBase& ctx,
                         synodpb::Request* req) {
  auto info = CallerAuthInfo(s, ctx);
  if (!info.ok()) return info.status();
  req->mutable_header()->set_username(info->username);
  req->mutable_header()->set_auth_revision(info->revision);
  return absl::OkStatus();
}

absl::Status CheckCaller(
    EtcdServer* s, const grpc::ServerContextBase& ctx,
    const std::function<absl::Status(const auth::AuthInfo&)>& check,
    auth::AuthInfo* info_out) {
  auto info = CallerAuthInfo(s, ctx);
  if (!info.ok()) return info.status();
  if (info_out != nullptr) *info_out = *info;
  return check(*info);
}

absl::Status ReadStillPermitted(EtcdServer* s, const auth::AuthInfo& info) {
  if (info.revision != 0 && info.revision != s->auth_store()->Revision()) {
    return Err(EtcdError::kAuthOldRevision);
  }
  return absl::OkStatus();
}

absl::Status CheckAdmin(EtcdServer* s, const grpc::ServerContextBase& ctx) {
  auth::AuthStore* as = s->auth_store();
  if (!as->IsAuthEnabled()) return absl::OkStatus();
  return CheckCaller(s, ctx, [as](const auth::AuthInfo& info) {
    return as->IsAdminPermitted(info);
  });
}

grpc::ServerUnaryReactor* AuthService::AuthEnable(
    grpc::CallbackServerContext* ctx, const etcdserverpb::AuthEnableRequest* req,
    etcdserverpb::AuthEnableResponse* resp) {
  synodpb::Request r;
  *r.mutable_auth_enable() = *req;
  return ProposeAndFinish(s_, ctx, std::move(r), resp);
}

grpc::ServerUnaryReactor* AuthService::AuthDisable(
    grpc::CallbackServerContext* ctx,
    const etcdserverpb::AuthDisableRequest* req,
    etcdserverpb::AuthDisableResponse* resp) {
  synodpb::Request r;
  *r.mutable_auth_disable() = *req;
  return ProposeAndFinish(s_, ctx, std::move(r), resp);
}

namespace {

// One Authenticate attempt after the ReadIndex: check the password here,
// propose the token, and try again (up to `tries` more times) if the auth
// revision moved between the check and the apply (etcd's loop).
void AuthenticateOnce(EtcdServer* s, grpc::ServerUnaryReactor* reactor,
                      const etcdserverpb::AuthenticateRequest* req,
                      etcdserverpb::AuthenticateResponse* resp, int tries) {
  auth::AuthStore* as = s->auth_store();
  const uint64_t checked = as->Revision();
  absl::Status st = as->CheckPassword(req->name(), req->password());
  if (!st.ok()) {
    if (!common::IsErr(st, EtcdError::kAuthNotEnabled)) {
      SYNOD_LOG(WARNING) << "invalid authentication was requested (user "
                         << req->name() << "): " << st.message();
    }
    FinishWith(reactor, st);
    return;
  }
  synodpb::Request r;
  r.mutable_authenticate()->set_name(req->name());
  r.mutable_authenticate()->set_token_prefix(s->NewTokenPrefix());
  s->Propose(std::move(r), resp,
             [s, reactor, req, resp, checked, tries](absl::Status st) {
               if (st.ok() && checked != s->auth_store()->Revision() &&
                   tries > 0) {
                 SYNOD_LOG(INFO)
                     << "revision when password checked became stale; "
                        "retrying";
                 resp->clear_token();
                 AuthenticateOnce(s, reactor, req, resp, tries - 1);
                 return;
               }
               if (st.ok()) s->FillHeader(resp->mutable_header());
               FinishWith(reactor, st);
             });
}

}  // namespace

grpc::ServerUnaryReactor* AuthService::Authenticate(
    grpc::CallbackServerContext* ctx,
    const etcdserverpb::AuthenticateRequest* req,
    etcdserverpb::AuthenticateResponse* resp) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  if (s_->is_learner()) {
    FinishWith(reactor, Err(EtcdError::kNotSupportedForLearner));
    return reactor;
  }
  EtcdServer* s = s_;
  s_->LinearizableRead([s, reactor, req, resp](absl::Status st) {
    if (!st.ok()) {
      FinishWith(reactor, st);
      return;
    }
    AuthenticateOnce(s, reactor, req, resp, /*tries=*/3);
  });
  return reactor;
}

grpc::ServerUnaryReactor* AuthService::UserAdd(
    grpc::CallbackServerContext* ctx, const etcdserverpb::AuthUserAddRequest* req,
    etcdserverpb::AuthUserAddResponse* resp) {
  synodpb::Request r;
  auto* u = r.mutable_user_add();
  u->set_name(req->name());
  u->set_no_password(req->has_options() && req->options().no_password());
  if (!u->no_password()) {
    auto hash = s_->auth_store()->HashPassword(req->password());
    if (!hash.ok()) return FinishNow(ctx, hash.status());
    u->set_hashed_password(*hash);
  }
  return ProposeAndFinish(s_, ctx, std::move(r), resp);
}

grpc::ServerUnaryReactor* AuthService::UserChangePassword(
    grpc::CallbackServerContext* ctx,
    const etcdserverpb::AuthUserChangePasswordRequest* req,
    etcdserverpb::AuthUserChangePasswordResponse* resp) {
  synodpb::Request r;
  auto* u = r.mutable_user_change_password();
  u->set_name(req->name());
  auto hash = s_->auth_store()->HashPassword(req->password());
  if (!hash.ok()) return FinishNow(ctx, hash.status());
  u->set_hashed_password(*hash);
  return ProposeAndFinish(s_, ctx, std::move(r), resp);
}

// The calls whose request goes into the log as it is.
#define SYNOD_AUTH_PASSTHROUGH(Method, Type, field)                         \
  grpc::ServerUnaryReactor* AuthService::Method(                          \
      grpc::CallbackServerContext* ctx,                                   \
      const etcdserverpb::Type##Request* req,                             \
      etcdserverpb::Type##Response* resp) {                               \
    synodpb::Request r;                                                   \
    *r.mutable_##field() = *req;                                          \
    return ProposeAndFinish(s_, ctx, std::move(r), resp);                           \
  }

SYNOD_AUTH_PASSTHROUGH(UserGet, AuthUserGet, user_get)
SYNOD_AUTH_PASSTHROUGH(UserList, AuthUserList, user_list)
SYNOD_AUTH_PASSTHROUGH(UserDelete, AuthUserDelete, user_delete)
SYNOD_AUTH_PASSTHROUGH(UserGrantRole, AuthUserGrantRole, user_grant_role)
SYNOD_AUTH_PASSTHROUGH(UserRevokeRole, AuthUserRevokeRole, user_revoke_role)
SYNOD_AUTH_PASSTHROUGH(RoleAdd, AuthRoleAdd, role_add)
SYNOD_AUTH_PASSTHROUGH(RoleGet, AuthRoleGet, role_get)
SYNOD_AUTH_PASSTHROUGH(RoleList, AuthRoleList, role_list)
SYNOD_AUTH_PASSTHROUGH(RoleDelete, AuthRoleDelete, role_delete)
SYNOD_AUTH_PASSTHROUGH(RoleGrantPermission, AuthRoleGrantPermission,
                       role_grant_permission)
SYNOD_AUTH_PASSTHROUGH(RoleRevokePermission, AuthRoleRevokePermission,
                       role_revoke_permission)

#undef SYNOD_AUTH_PASSTHROUGH

}  // namespace synod::server
