// Auth on a member, in process over real gRPC (KV, Watch, Lease, Auth and
// Maintenance services) on a FakeClock: the applier's auth stage, read and
// watch checks, admin calls, tokens, what Synod does beyond etcd 3.4
// (watchers canceled when their permission is revoked, nested txns
// checked), and the auth state across a restart.
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "backend/server/etcd_server.h"
#include "backend/server/services.h"
#include "gtest/gtest.h"
#include "proto/rpc.grpc.pb.h"

namespace synod::server {
namespace {

using etcdserverpb::WatchRequest;
using etcdserverpb::WatchResponse;

constexpr char kDenied[] = "etcdserver: permission denied";

class AuthServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/synod_auth_server_test_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    cfg_.data_dir = dir_ + "/data";
    cfg_.run_timer_thread = false;
    cfg_.bcrypt_cost = 4;  // the cheapest bcrypt, for speed
    Start();
  }
  void TearDown() override {
    Shutdown();
    std::filesystem::remove_all(dir_);
  }

  void Start() {
    auto s = EtcdServer::Open(cfg_, &clock_);
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = std::move(*s);
    kv_svc_ = std::make_unique<KvService>(server_.get());
    watch_svc_ = std::make_unique<WatchService>(server_.get());
    lease_svc_ = std::make_unique<LeaseService>(server_.get());
    auth_svc_ = std::make_unique<AuthService>(server_.get());
    maint_svc_ = std::make_unique<MaintenanceService>(server_.get());
    grpc::ServerBuilder b;
    int port = 0;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    b.RegisterService(kv_svc_.get());
    b.RegisterService(watch_svc_.get());
    b.RegisterService(lease_svc_.get());
    b.RegisterService(auth_svc_.get());
    b.RegisterService(maint_svc_.get());
    grpc_ = b.BuildAndStart();
    ASSERT_NE(grpc_, nullptr);
    auto ch = grpc::CreateChannel(absl::StrCat("127.0.0.1:", port),
                                  grpc::InsecureChannelCredentials());
    kv_ = etcdserverpb::KV::NewStub(ch);
    watch_ = etcdserverpb::Watch::NewStub(ch);
    lease_ = etcdserverpb::Lease::NewStub(ch);
    auth_ = etcdserverpb::Auth::NewStub(ch);
    maint_ = etcdserverpb::Maintenance::NewStub(ch);
  }
  void Shutdown() {
    if (grpc_ != nullptr) grpc_->Shutdown();
    if (server_ != nullptr) server_->Stop();
    grpc_.reset();
    server_.reset();
  }

  // A client context carrying `token` ("" = anonymous).
  static std::unique_ptr<grpc::ClientContext> Ctx(const std::string& token) {
    auto ctx = std::make_unique<grpc::ClientContext>();
    ctx->set_deadline(std::chrono::system_clock::now() +
                      std::chrono::seconds(20));
    if (!token.empty()) ctx->AddMetadata("token", token);
    return ctx;
  }

  std::string Login(const std::string& user, const std::string& pass) {
    etcdserverpb::AuthenticateRequest req;
    req.set_name(user);
    req.set_password(pass);
    etcdserverpb::AuthenticateResponse resp;
    grpc::Status st = auth_->Authenticate(Ctx("").get(), req, &resp);
    EXPECT_TRUE(st.ok()) << st.error_message();
    return resp.token();
  }

  // Root with role root, auth on, and a user `name` (password "pw") holding
  // role `name` with `type` on [key, range_end). Returns root's token.
  std::string EnableWithUser(const std::string& name,
                             authpb::Permission::Type type,
                             const std::string& key,
                             const std::string& range_end) {
    EXPECT_TRUE(UserAdd("root", "root").ok());
    EXPECT_TRUE(Grant("", "root", "root").ok());
    EXPECT_TRUE(UserAdd(name, "pw").ok());
    etcdserverpb::AuthRoleAddRequest ra;
    ra.set_name(name);
    etcdserverpb::AuthRoleAddResponse rar;
    EXPECT_TRUE(auth_->RoleAdd(Ctx("").get(), ra, &rar).ok());
    EXPECT_TRUE(GrantPerm("", name, type, key, range_end).ok());
    EXPECT_TRUE(Grant("", name, name).ok());
    etcdserverpb::AuthEnableResponse er;
    grpc::Status st =
        auth_->AuthEnable(Ctx("").get(), etcdserverpb::AuthEnableRequest(), &er);
    EXPECT_TRUE(st.ok()) << st.error_message();
    return Login("root", "root");
  }
  grpc::Status UserAdd(const std::string& name, const std::string& pw) {
    etcdserverpb::AuthUserAddRequest req;
    req.set_name(name);
    req.set_password(pw);
    etcdserverpb::AuthUserAddResponse resp;
    return auth_->UserAdd(Ctx("").get(), req, &resp);
  }
  grpc::Status Grant(const std::string& token, const std::string& user,
                     const std::string& role) {
    etcdserverpb::AuthUserGrantRoleRequest req;
    req.set_user(user);
    req.set_role(role);
    etcdserverpb::AuthUserGrantRoleResponse resp;
    return auth_->UserGrantRole(Ctx(token).get(), req, &resp);
  }
  grpc::Status GrantPerm(const std::string& token, const std::string& role,
                         authpb::Permission::Type type, const std::string& key,
                         const std::string& range_end) {
    etcdserverpb::AuthRoleGrantPermissionRequest req;
    req.set_name(role);
    req.mutable_perm()->set_permtype(type);
    req.mutable_perm()->set_key(key);
    req.mutable_perm()->set_range_end(range_end);
    etcdserverpb::AuthRoleGrantPermissionResponse resp;
    return auth_->RoleGrantPermission(Ctx(token).get(), req, &resp);
  }
  grpc::Status RevokePerm(const std::string& token, const std::string& role,
                          const std::string& key, const std::string& range_end) {
    etcdserverpb::AuthRoleRevokePermissionRequest req;
    req.set_role(role);
    req.set_key(key);
    req.set_range_end(range_end);
    etcdserverpb::AuthRoleRevokePermissionResponse resp;
    return auth_->RoleRevokePermission(Ctx(token).get(), req, &resp);
  }
  grpc::Status Put(const std::string& token, const std::string& k,
                   const std::string& v, int64_t lease = 0) {
    etcdserverpb::PutRequest req;
    req.set_key(k);
    req.set_value(v);
    req.set_lease(lease);
    etcdserverpb::PutResponse resp;
    return kv_->Put(Ctx(token).get(), req, &resp);
  }
  grpc::Status Get(const std::string& token, const std::string& k,
                   const std::string& range_end, bool serializable,
                   etcdserverpb::RangeResponse* resp) {
    etcdserverpb::RangeRequest req;
    req.set_key(k);
    req.set_range_end(range_end);
    req.set_serializable(serializable);
    return kv_->Range(Ctx(token).get(), req, resp);
  }
  grpc::Status Txn(const std::string& token,
                   const etcdserverpb::TxnRequest& req) {
    etcdserverpb::TxnResponse resp;
    return kv_->Txn(Ctx(token).get(), req, &resp);
  }

  std::string dir_;
  ServerConfig cfg_;
  common::FakeClock clock_;
  std::unique_ptr<EtcdServer> server_;
  std::unique_ptr<KvService> kv_svc_;
  std::unique_ptr<WatchService> watch_svc_;
  std::unique_ptr<LeaseService> lease_svc_;
  std::unique_ptr<AuthService> auth_svc_;
  std::unique_ptr<MaintenanceService> maint_svc_;
  std::unique_ptr<grpc::Server> grpc_;
  std::unique_ptr<etcdserverpb::KV::Stub> kv_;
  std::unique_ptr<etcdserverpb::Watch::Stub> watch_;
  std::unique_ptr<etcdserverpb::Lease::Stub> lease_;
  std::unique_ptr<etcdserverpb::Auth::Stub> auth_;
  std::unique_ptr<etcdserverpb::Maintenance::Stub> maint_;
};

TEST_F(AuthServerTest, AnonymousAndWrongPasswordAreRefusedWithEtcdErrors) {
  EnableWithUser("u", authpb::Permission::READWRITE, "/a/", "/a0");
  grpc::Status st = Put("", "/a/k", "v");
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(st.error_message(), "etcdserver: user name is empty");
  etcdserverpb::RangeResponse r;
  st = Get("", "/a/k", "", true, &r);
  EXPECT_EQ(st.error_message(), "etcdserver: user name is empty");

  etcdserverpb::AuthenticateRequest req;
  req.set_name("u");
  req.set_password("wrong");
  etcdserverpb::AuthenticateResponse resp;
  st = auth_->Authenticate(Ctx("").get(), req, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(st.error_message(),
            "etcdserver: authentication failed, invalid user ID or password");

  st = Put("nosuch.1", "/a/k", "v");
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(st.error_message(), "etcdserver: invalid auth token");
}

TEST_F(AuthServerTest, KeyOpsAreCheckedAgainstTheCallersRanges) {
  EnableWithUser("u", authpb::Permission::READWRITE, "/a/", "/a0");
  const std::string tok = Login("u", "pw");
  EXPECT_TRUE(Put(tok, "/a/k", "v").ok());
  grpc::Status st = Put(tok, "/b/k", "v");
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(st.error_message(), kDenied);
  for (bool serializable : {false, true}) {
    etcdserverpb::RangeResponse r;
    ASSERT_TRUE(Get(tok, "/a/", "/a0", serializable, &r).ok());
    ASSERT_EQ(r.kvs_size(), 1);
    EXPECT_EQ(r.kvs(0).value(), "v");
    // A range reaching past the permission is refused as a whole.
    st = Get(tok, "/a/", "/b0", serializable, &r);
    EXPECT_EQ(st.error_message(), kDenied);
  }
  // Txn: a compare outside the permission, then a nested op outside it
  // (etcd 3.4 does not look inside nested txns).
  etcdserverpb::TxnRequest t;
  auto* c = t.add_compare();
  c->set_key("/b/x");
  c->set_target(etcdserverpb::Compare::VERSION);
  c->set_version(0);
  t.add_success()->mutable_request_put()->set_key("/a/t");
  EXPECT_EQ(Txn(tok, t).error_message(), kDenied);
  etcdserverpb::TxnRequest nested;
  auto* inner = nested.add_success()->mutable_request_txn();
  inner->add_success()->mutable_request_put()->set_key("/b/nested");
  EXPECT_EQ(Txn(tok, nested).error_message(), kDenied);
  etcdserverpb::TxnRequest ok;
  ok.add_success()->mutable_request_txn()->add_success()
      ->mutable_request_put()->set_key("/a/nested");
  EXPECT_TRUE(Txn(tok, ok).ok());
}

TEST_F(AuthServerTest, ReadOnlyRoleCannotWriteOrRevokeOthersLeases) {
  const std::string root =
      EnableWithUser("u", authpb::Permission::READ, "/a/", "/a0");
  const std::string tok = Login("u", "pw");
  EXPECT_EQ(Put(tok, "/a/k", "v").error_message(), kDenied);
  // A lease holding a key u may not write: u may not revoke it.
  etcdserverpb::LeaseGrantRequest lg;
  lg.set_ttl(60);
  etcdserverpb::LeaseGrantResponse lgr;
  ASSERT_TRUE(lease_->LeaseGrant(Ctx(root).get(), lg, &lgr).ok());
  ASSERT_TRUE(Put(root, "/a/leased", "v", lgr.id()).ok());
  etcdserverpb::LeaseRevokeRequest rv;
  rv.set_id(lgr.id());
  etcdserverpb::LeaseRevokeResponse rvr;
  grpc::Status st = lease_->LeaseRevoke(Ctx(tok).get(), rv, &rvr);
  EXPECT_EQ(st.error_message(), kDenied);
  EXPECT_TRUE(lease_->LeaseRevoke(Ctx(root).get(), rv, &rvr).ok());
}

TEST_F(AuthServerTest, AdminCallsNeedRoot) {
  const std::string root =
      EnableWithUser("u", authpb::Permission::READWRITE, "/a/", "/a0");
  const std::string tok = Login("u", "pw");
  ASSERT_TRUE(Put(tok, "/a/k", "v").ok());
  etcdserverpb::CompactionRequest cr;
  cr.set_revision(2);
  etcdserverpb::CompactionResponse crr;
  EXPECT_EQ(kv_->Compact(Ctx(tok).get(), cr, &crr).error_message(), kDenied);
  EXPECT_TRUE(kv_->Compact(Ctx(root).get(), cr, &crr).ok());
  // Maintenance answers with the auth package's own error, as etcd 3.4's.
  etcdserverpb::DefragmentResponse dr;
  grpc::Status defrag =
      maint_->Defragment(Ctx(tok).get(), etcdserverpb::DefragmentRequest(), &dr);
  EXPECT_EQ(defrag.error_code(), grpc::StatusCode::UNKNOWN);
  EXPECT_EQ(defrag.error_message(), "auth: permission denied");
  EXPECT_TRUE(maint_->Defragment(Ctx(root).get(),
                                 etcdserverpb::DefragmentRequest(), &dr).ok());
  etcdserverpb::AuthUserListResponse ul;
  EXPECT_EQ(auth_->UserList(Ctx(tok).get(), etcdserverpb::AuthUserListRequest(),
                            &ul).error_message(),
            kDenied);
  // A user may read itself and a role it holds.
  etcdserverpb::AuthUserGetRequest ug;
  ug.set_name("u");
  etcdserverpb::AuthUserGetResponse ugr;
  ASSERT_TRUE(auth_->UserGet(Ctx(tok).get(), ug, &ugr).ok());
  ASSERT_EQ(ugr.roles_size(), 1);
  EXPECT_EQ(ugr.roles(0), "u");
  ug.set_name("root");
  EXPECT_EQ(auth_->UserGet(Ctx(tok).get(), ug, &ugr).error_message(), kDenied);
  // Root cannot lose root while auth is on.
  etcdserverpb::AuthUserRevokeRoleRequest rr;
  rr.set_name("root");
  rr.set_role("root");
  etcdserverpb::AuthUserRevokeRoleResponse rrr;
  EXPECT_EQ(auth_->UserRevokeRole(Ctx(root).get(), rr, &rrr).error_message(),
            "etcdserver: invalid auth management");
}

TEST_F(AuthServerTest, WatchIsCheckedAtCreateAndCanceledWhenRevoked) {
  const std::string root =
      EnableWithUser("u", authpb::Permission::READ, "/a/", "/a0");
  const std::string tok = Login("u", "pw");
  auto ctx = Ctx(tok);
  auto stream = watch_->Watch(ctx.get());
  WatchRequest req;
  req.mutable_create_request()->set_key("/b/k");
  ASSERT_TRUE(stream->Write(req));
  WatchResponse resp;
  ASSERT_TRUE(stream->Read(&resp));
  EXPECT_TRUE(resp.created());
  EXPECT_TRUE(resp.canceled());
  EXPECT_EQ(resp.watch_id(), -1);
  EXPECT_EQ(resp.cancel_reason(),
            "rpc error: code = PermissionDenied desc = etcdserver: permission "
            "denied");

  req.mutable_create_request()->set_key("/a/");
  req.mutable_create_request()->set_range_end("/a0");
  ASSERT_TRUE(stream->Write(req));
  ASSERT_TRUE(stream->Read(&resp));
  ASSERT_TRUE(resp.created());
  ASSERT_FALSE(resp.canceled());
  const int64_t id = resp.watch_id();
  ASSERT_TRUE(Put(root, "/a/1", "v").ok());
  ASSERT_TRUE(stream->Read(&resp));
  ASSERT_EQ(resp.events_size(), 1);
  EXPECT_EQ(resp.events(0).kv().key(), "/a/1");

  // Revoked: the watcher is canceled before the revoke is acknowledged,
  // and a later write reaches nobody.
  ASSERT_TRUE(RevokePerm(root, "u", "/a/", "/a0").ok());
  ASSERT_TRUE(stream->Read(&resp));
  EXPECT_EQ(resp.watch_id(), id);
  EXPECT_TRUE(resp.canceled());
  EXPECT_EQ(resp.cancel_reason(),
            "rpc error: code = PermissionDenied desc = etcdserver: permission "
            "denied");
  ASSERT_TRUE(Put(root, "/a/2", "v").ok());
  // A progress request is answered after anything queued before it: no
  // event for /a/2 may come first.
  WatchRequest progress;
  progress.mutable_progress_request();
  ASSERT_TRUE(stream->Write(progress));
  ASSERT_TRUE(stream->Read(&resp));
  EXPECT_EQ(resp.events_size(), 0);
  EXPECT_EQ(resp.watch_id(), -1);
  stream->WritesDone();
  while (stream->Read(&resp)) {
  }
  stream->Finish();
}

TEST_F(AuthServerTest, RevokedRoleStopsReadsAtOnce) {
  const std::string root =
      EnableWithUser("u", authpb::Permission::READWRITE, "/a/", "/a0");
  const std::string tok = Login("u", "pw");
  ASSERT_TRUE(Put(tok, "/a/k", "v").ok());
  etcdserverpb::AuthUserRevokeRoleRequest rr;
  rr.set_name("u");
  rr.set_role("u");
  etcdserverpb::AuthUserRevokeRoleResponse rrr;
  ASSERT_TRUE(auth_->UserRevokeRole(Ctx(root).get(), rr, &rrr).ok());
  etcdserverpb::RangeResponse r;
  EXPECT_EQ(Get(tok, "/a/k", "", true, &r).error_message(), kDenied);
  EXPECT_EQ(Put(tok, "/a/k", "v2").error_message(), kDenied);
}

TEST_F(AuthServerTest, AuthStateAndStatusMetadataSurviveARestart) {
  EnableWithUser("u", authpb::Permission::READWRITE, "/a/", "/a0");
  const uint64_t revision = server_->auth_store()->Revision();
  Shutdown();
  Start();
  ASSERT_TRUE(server_->auth_store()->IsAuthEnabled());
  EXPECT_EQ(server_->auth_store()->Revision(), revision);
  // Tokens live in memory only; a new login works with the old password.
  const std::string tok = Login("u", "pw");
  EXPECT_TRUE(Put(tok, "/a/k", "v").ok());
  EXPECT_EQ(Put(tok, "/b/k", "v").error_message(), kDenied);
  // Status tells synod-proxy the auth state.
  grpc::ClientContext ctx;
  etcdserverpb::StatusResponse sr;
  ASSERT_TRUE(maint_->Status(&ctx, etcdserverpb::StatusRequest(), &sr).ok());
  const auto& md = ctx.GetServerInitialMetadata();
  auto enabled = md.find("synod-auth-enabled");
  auto rev = md.find("synod-auth-revision");
  ASSERT_NE(enabled, md.end());
  ASSERT_NE(rev, md.end());
  EXPECT_EQ(std::string(enabled->second.data(), enabled->second.size()), "true");
  EXPECT_EQ(std::string(rev->second.data(), rev->second.size()),
            absl::StrCat(revision));
}

}  // namespace
}  // namespace synod::server
