// Auth (issue 13) against real member processes, driven by the stock
// etcdctl 3.4 and, where etcdctl cannot show what the member sent, a small
// gRPC client: the root user and role and `auth enable`; anonymous calls,
// wrong passwords; a user whose role is granted READ, WRITE or READWRITE on a
// key, a prefix and a from-key range is allowed exactly there and gets
// "etcdserver: permission denied" everywhere else (get, put, del, every
// compare and op of a txn, watch create, lease revoke, lock and election
// names); revocations take effect on the next call; a live watch is
// canceled with permission denied when its permission goes (Synod does
// better than etcd 3.4 here, which keeps sending events); root cannot be
// deleted or lose its role while auth is on; a non-root user cannot
// administer the cluster; auth state survives a kill -9 and is the same on
// all three members of a cluster; with --client-cert-auth a certificate's
// CN is the user unless a password is given; simple tokens expire after
// --auth-token-ttl idle; JWT tokens (RS256 with a certificate as the public
// key, ES256 with a bare public key or a certificate) and their expiry.
//
// Every expected output line was taken from real etcd 3.4: run the suite
// against it with SYNOD_TEST_SERVER=etcd (the Synod-only watch cancellation
// then checks etcd's behaviour instead).
#include <grpcpp/grpcpp.h>
#include <openssl/bio.h>
#include <openssl/pem.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/x509_util.h"
#include "gtest/gtest.h"
#include "proto/rpc.grpc.pb.h"
#include "tests/integration/cluster.h"
#include "tests/integration/harness.h"
#include "tests/support/test_certs.h"

namespace synod::testing {
namespace {

constexpr char kRoot[] = "root:root";
constexpr char kAlice[] = "alice:alice-pw";
// etcd's error lines, as etcdctl prints them.
constexpr char kDenied[] = "Error: etcdserver: permission denied";
constexpr char kNoUser[] = "Error: etcdserver: user name is empty";
constexpr char kBadPassword[] =
    "Error: etcdserver: authentication failed, invalid user ID or password";
constexpr char kInvalidMgmt[] = "Error: etcdserver: invalid auth management";
// What etcdctl prints when a watch is refused at create.
constexpr char kWatchDenied[] =
    "watch was canceled (rpc error: code = PermissionDenied desc = "
    "etcdserver: permission denied)";
constexpr char kWatchCanceled[] = "Error: watch is canceled by the server";
// How long a change made through one member may take to reach another, and
// a restarted member to serve.
constexpr absl::Duration kConvergeTimeout = absl::Seconds(15);
constexpr absl::Duration kReadyTimeout = absl::Seconds(20);

// etcdctl against `endpoint` as `user` ("name:password"; empty: anonymous).
CmdResult CtlAs(const std::string& endpoint, const std::string& user,
                std::vector<std::string> args,
                const std::optional<std::string>& stdin_data = std::nullopt) {
  if (!user.empty()) args.insert(args.begin(), "--user=" + user);
  return Etcdctl(endpoint, args, stdin_data);
}

std::string Describe(const std::vector<std::string>& args, const CmdResult& r) {
  return absl::StrCat("etcdctl ", absl::StrJoin(args, " "), "\nexit ",
                      r.exit_code, "\nstdout: ", r.out, "\nstderr: ", r.err);
}

// The command succeeded and printed exactly `out` (when given).
::testing::AssertionResult Ok(const CmdResult& r,
                              const std::vector<std::string>& args,
                              const std::optional<std::string>& out = {}) {
  if (r.exit_code != 0) {
    return ::testing::AssertionFailure() << "failed: " << Describe(args, r);
  }
  if (out.has_value() && r.out != *out) {
    return ::testing::AssertionFailure()
           << "expected stdout \"" << *out << "\": " << Describe(args, r);
  }
  return ::testing::AssertionSuccess();
}

// The command failed with etcdctl error line `error`.
::testing::AssertionResult Fails(const CmdResult& r,
                                 const std::vector<std::string>& args,
                                 const std::string& error) {
  if (r.exit_code == 0 || ErrorLine(r.err) != error) {
    return ::testing::AssertionFailure()
           << "expected \"" << error << "\": " << Describe(args, r);
  }
  return ::testing::AssertionSuccess();
}

// One client of a member: etcdctl as a given user, and checks on its output.
class Client {
 public:
  // `flags` go before every command (e.g. etcdctl's TLS flags).
  Client(std::string endpoint, std::string user,
         std::vector<std::string> flags = {})
      : endpoint_(std::move(endpoint)),
        user_(std::move(user)),
        flags_(std::move(flags)) {}

  CmdResult Run(const std::vector<std::string>& args,
                const std::optional<std::string>& stdin_data = {}) const {
    std::vector<std::string> full = flags_;
    full.insert(full.end(), args.begin(), args.end());
    return CtlAs(endpoint_, user_, full, stdin_data);
  }
  ::testing::AssertionResult Ok(const std::vector<std::string>& args,
                                const std::optional<std::string>& out = {},
                                const std::optional<std::string>& in = {}) {
    return testing::Ok(Run(args, in), WithUser(args), out);
  }
  ::testing::AssertionResult Fails(const std::vector<std::string>& args,
                                   const std::string& error,
                                   const std::optional<std::string>& in = {}) {
    return testing::Fails(Run(args, in), WithUser(args), error);
  }
  ::testing::AssertionResult Denied(const std::vector<std::string>& args,
                                    const std::optional<std::string>& in = {}) {
    return Fails(args, kDenied, in);
  }
  // `etcdctl txn` with its non-interactive stdin script.
  ::testing::AssertionResult TxnOk(const std::string& script,
                                   const std::string& out) {
    return Ok({"txn"}, out, script);
  }
  ::testing::AssertionResult TxnDenied(const std::string& script) {
    return Denied({"txn"}, script);
  }
  const std::string& endpoint() const { return endpoint_; }

 private:
  std::vector<std::string> WithUser(const std::vector<std::string>& args) {
    std::vector<std::string> full = args;
    full.insert(full.begin(),
                user_.empty() ? "(anonymous)" : "--user=" + user_);
    return full;
  }

  std::string endpoint_;
  std::string user_;
  std::vector<std::string> flags_;
};

// Creates root (user and role) and enables auth, checking etcdctl's output
// at each step, through a client without credentials.
void EnableAuth(Client anonymous) {
  ASSERT_TRUE(anonymous.Ok({"user", "add", kRoot}, "User root created\n"));
  ASSERT_TRUE(anonymous.Ok({"role", "add", "root"}, "Role root created\n"));
  ASSERT_TRUE(anonymous.Ok({"user", "grant-role", "root", "root"},
                           "Role root is granted to user root\n"));
  ASSERT_TRUE(anonymous.Ok({"auth", "enable"}, "Authentication Enabled\n"));
}

// Adds user alice with role `role` (created here), through root.
void AddAlice(Client root, const std::string& role) {
  ASSERT_TRUE(root.Ok({"user", "add", kAlice}, "User alice created\n"));
  ASSERT_TRUE(root.Ok({"role", "add", role}, "Role " + role + " created\n"));
  ASSERT_TRUE(root.Ok({"user", "grant-role", "alice", role},
                      "Role " + role + " is granted to user alice\n"));
}

// Polls `get <probe>` as `user` (serializable when asked) on `server` until
// it succeeds: a member with auth on is ready when it serves that user.
::testing::AssertionResult WaitServingAs(
    ServerProcess& server, const std::string& user, bool serializable = false,
    absl::Duration timeout = kReadyTimeout) {
  std::vector<std::string> args = {"get", "synod-auth-probe"};
  if (serializable) args.push_back("--consistency=s");
  const absl::Time deadline = absl::Now() + timeout;
  std::string last;
  while (absl::Now() < deadline) {
    if (server.ExitedByItself()) {
      return ::testing::AssertionFailure()
             << server.name() << " exited (code " << server.exit_code()
             << ")\n--- log tail ---\n"
             << server.LogTail();
    }
    CmdResult r = CtlAs(server.Endpoint(), user, args);
    if (r.exit_code == 0) return ::testing::AssertionSuccess();
    last = ErrorLine(r.err);
    absl::SleepFor(absl::Milliseconds(100));  // polling, bounded by deadline
  }
  return ::testing::AssertionFailure()
         << server.name() << " not serving " << user << " within " << timeout
         << "; last error: " << last << "\n--- log tail ---\n"
         << server.LogTail();
}

// Polls `check` until it succeeds or `timeout` passes; returns its last
// result.
::testing::AssertionResult Eventually(
    const std::function<::testing::AssertionResult()>& check,
    absl::Duration timeout = kConvergeTimeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    ::testing::AssertionResult r = check();
    if (r || absl::Now() >= deadline) return r;
    absl::SleepFor(absl::Milliseconds(100));  // polling, bounded by deadline
  }
}

// ---------------------------------------------------------------------------
// A small gRPC client, for what etcdctl does not show: a watch's cancel
// reason and a token's expiry.

std::chrono::system_clock::time_point In(absl::Duration d) {
  return std::chrono::system_clock::now() +
         std::chrono::milliseconds(absl::ToInt64Milliseconds(d));
}

absl::StatusOr<std::string> Authenticate(const std::string& endpoint,
                                         const std::string& name,
                                         const std::string& password) {
  auto stub = etcdserverpb::Auth::NewStub(
      grpc::CreateChannel(endpoint, grpc::InsecureChannelCredentials()));
  etcdserverpb::AuthenticateRequest req;
  req.set_name(name);
  req.set_password(password);
  etcdserverpb::AuthenticateResponse resp;
  grpc::ClientContext ctx;
  ctx.set_deadline(In(absl::Seconds(10)));
  grpc::Status s = stub->Authenticate(&ctx, req, &resp);
  if (!s.ok()) return absl::UnknownError(s.error_message());
  return resp.token();
}

// A Range of `key` with `token` in the "token" metadata, as clientv3 sends
// it; the gRPC status.
grpc::Status RangeWithToken(const std::string& endpoint,
                            const std::string& token, const std::string& key) {
  auto stub = etcdserverpb::KV::NewStub(
      grpc::CreateChannel(endpoint, grpc::InsecureChannelCredentials()));
  etcdserverpb::RangeRequest req;
  req.set_key(key);
  etcdserverpb::RangeResponse resp;
  grpc::ClientContext ctx;
  ctx.AddMetadata("token", token);
  ctx.set_deadline(In(absl::Seconds(10)));
  return stub->Range(&ctx, req, &resp);
}

// Polls a Range of `key` with `token` (`idle` after the previous try, the
// first included) until the member refuses the token as etcd does: code
// Unauthenticated, "etcdserver: invalid auth token". Bounded at 20 s.
::testing::AssertionResult WaitTokenRefused(const std::string& endpoint,
                                            const std::string& token,
                                            const std::string& key,
                                            absl::Duration idle) {
  return Eventually(
      [&]() -> ::testing::AssertionResult {
        absl::SleepFor(idle);  // the token's idle time is what is tested
        grpc::Status s = RangeWithToken(endpoint, token, key);
        if (s.error_code() == grpc::StatusCode::UNAUTHENTICATED &&
            s.error_message() == "etcdserver: invalid auth token") {
          return ::testing::AssertionSuccess();
        }
        return ::testing::AssertionFailure()
               << "token still answered with " << s.error_code() << " \""
               << s.error_message() << "\"";
      },
      absl::Seconds(20));
}

// One watch on one gRPC stream with a token. Every Read is bounded by the
// stream's deadline, so a server that never answers fails the test instead
// of hanging it.
class TokenWatch {
 public:
  TokenWatch(const std::string& endpoint, const std::string& token)
      : stub_(etcdserverpb::Watch::NewStub(grpc::CreateChannel(
            endpoint, grpc::InsecureChannelCredentials()))) {
    ctx_.AddMetadata("token", token);
    ctx_.set_deadline(In(absl::Seconds(60)));
    stream_ = stub_->Watch(&ctx_);
  }
  ~TokenWatch() {
    ctx_.TryCancel();
    stream_->Finish().ok();  // the status of a canceled stream is not news
  }

  bool CreatePrefix(const std::string& prefix, std::string range_end) {
    etcdserverpb::WatchRequest req;
    req.mutable_create_request()->set_key(prefix);
    req.mutable_create_request()->set_range_end(std::move(range_end));
    return stream_->Write(req);
  }
  // The next response; nullopt when the stream ended.
  std::optional<etcdserverpb::WatchResponse> Next() {
    etcdserverpb::WatchResponse resp;
    if (!stream_->Read(&resp)) return std::nullopt;
    return resp;
  }

 private:
  std::unique_ptr<etcdserverpb::Watch::Stub> stub_;
  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientReaderWriter<etcdserverpb::WatchRequest,
                                           etcdserverpb::WatchResponse>>
      stream_;
};

// ---------------------------------------------------------------------------
// One member.

class AuthTest : public ServerTest {
 protected:
  Client Anonymous() { return Client(server_->Endpoint(), ""); }
  Client Root() { return Client(server_->Endpoint(), kRoot); }
  Client Alice() { return Client(server_->Endpoint(), kAlice); }

  // Root, alice with role r, auth enabled.
  void SetUpUsers() {
    EnableAuth(Anonymous());
    AddAlice(Root(), "r");
  }
  void Grant(const std::vector<std::string>& perm) {
    std::vector<std::string> args = {"role", "grant-permission", "r"};
    args.insert(args.end(), perm.begin(), perm.end());
    ASSERT_TRUE(Root().Ok(args, "Role r updated\n"));
  }
  void Seed(const std::vector<std::string>& keys) {
    for (const std::string& k : keys) {
      ASSERT_TRUE(Root().Ok({"put", k, "v-" + k}, "OK\n"));
    }
  }
};

TEST_F(AuthTest, EnableNeedsRootThenRefusesAnonymousAndWrongPasswords) {
  ASSERT_TRUE(Anonymous().Fails({"auth", "enable"},
                                "Error: etcdserver: root user does not exist"));
  ASSERT_TRUE(Anonymous().Ok({"put", "k", "before"}, "OK\n"));
  EnableAuth(Anonymous());

  EXPECT_TRUE(Anonymous().Fails({"get", "k"}, kNoUser));
  EXPECT_TRUE(Anonymous().Fails({"put", "k", "anon"}, kNoUser));
  EXPECT_TRUE(Anonymous().Fails({"del", "k"}, kNoUser));
  EXPECT_TRUE(Anonymous().Fails({"user", "list"}, kNoUser));
  EXPECT_TRUE(Client(server_->Endpoint(), "root:wrong")
                  .Fails({"get", "k"}, kBadPassword));
  EXPECT_TRUE(Client(server_->Endpoint(), "nobody:root")
                  .Fails({"get", "k"}, kBadPassword));

  EXPECT_TRUE(Root().Ok({"get", "k"}, "k\nbefore\n"));
  EXPECT_TRUE(Root().Ok({"put", "k", "root"}, "OK\n"));
  EXPECT_TRUE(Root().Ok({"get", "k"}, "k\nroot\n"));

  EXPECT_TRUE(Root().Ok({"auth", "disable"}, "Authentication Disabled\n"));
  EXPECT_TRUE(Anonymous().Ok({"get", "k"}, "k\nroot\n"));
  EXPECT_TRUE(Anonymous().Ok({"put", "k", "anon"}, "OK\n"));
  // Enabled again, with the users and roles it had.
  EXPECT_TRUE(Anonymous().Ok({"auth", "enable"}, "Authentication Enabled\n"));
  EXPECT_TRUE(Anonymous().Fails({"get", "k"}, kNoUser));
  EXPECT_TRUE(Root().Ok({"get", "k"}, "k\nanon\n"));
}

TEST_F(AuthTest, KeyPermissionsAllowExactlyTheirKey) {
  SetUpUsers();
  Grant({"read", "k-read"});
  Grant({"write", "k-write"});
  Grant({"readwrite", "k-rw"});
  Seed({"k-read", "k-write", "k-rw", "other"});
  EXPECT_TRUE(Root().Ok({"role", "get", "r"},
                        "Role r\nKV Read:\n\tk-read\n\tk-rw\n"
                        "KV Write:\n\tk-rw\n\tk-write\n"));
  Client alice = Alice();

  EXPECT_TRUE(alice.Ok({"get", "k-read"}, "k-read\nv-k-read\n"));
  EXPECT_TRUE(alice.Denied({"put", "k-read", "x"}));
  EXPECT_TRUE(alice.Denied({"del", "k-read"}));

  EXPECT_TRUE(alice.Denied({"get", "k-write"}));
  EXPECT_TRUE(alice.Ok({"put", "k-write", "alice"}, "OK\n"));
  EXPECT_TRUE(alice.Ok({"del", "k-write"}, "1\n"));
  // A delete that returns the previous value needs read too.
  EXPECT_TRUE(alice.Ok({"put", "k-write", "again"}, "OK\n"));
  EXPECT_TRUE(alice.Denied({"del", "--prev-kv", "k-write"}));

  EXPECT_TRUE(alice.Ok({"get", "k-rw"}, "k-rw\nv-k-rw\n"));
  EXPECT_TRUE(alice.Ok({"put", "k-rw", "alice"}, "OK\n"));
  EXPECT_TRUE(alice.Ok({"get", "k-rw"}, "k-rw\nalice\n"));
  EXPECT_TRUE(alice.Ok({"del", "--prev-kv", "k-rw"}, "1\nk-rw\nalice\n"));

  EXPECT_TRUE(alice.Denied({"get", "other"}));
  EXPECT_TRUE(alice.Denied({"put", "other", "x"}));
  EXPECT_TRUE(alice.Denied({"del", "other"}));
  // A range holding only permitted keys is still a range she lacks.
  EXPECT_TRUE(alice.Denied({"get", "--prefix", "k-r"}));
  EXPECT_TRUE(alice.Denied({"get", "k-read", "k-reae"}));
  EXPECT_TRUE(Root().Ok({"get", "other"}, "other\nv-other\n"));
}

TEST_F(AuthTest, PrefixPermissionCoversItsRangeOnly) {
  SetUpUsers();
  Grant({"readwrite", "--prefix", "p/"});
  Seed({"p/a", "p0", "o"});
  EXPECT_TRUE(Root().Ok({"role", "get", "r"},
                        "Role r\nKV Read:\n\t[p/, p0) (prefix p/)\n"
                        "KV Write:\n\t[p/, p0) (prefix p/)\n"));
  Client alice = Alice();

  EXPECT_TRUE(alice.Ok({"put", "p/b", "alice"}, "OK\n"));
  EXPECT_TRUE(alice.Ok({"put", "p/", "the prefix itself"}, "OK\n"));
  EXPECT_TRUE(alice.Ok({"get", "--prefix", "p/", "--keys-only"},
                       "p/\n\np/a\n\np/b\n\n"));
  EXPECT_TRUE(alice.Ok({"get", "p/a", "p/b"}, "p/a\nv-p/a\n"));
  EXPECT_TRUE(alice.Ok({"get", "--prefix", "p/a/deeper"}, ""));

  // p0 is the range end: outside.
  EXPECT_TRUE(alice.Denied({"get", "p0"}));
  EXPECT_TRUE(alice.Denied({"put", "p0", "x"}));
  EXPECT_TRUE(alice.Denied({"get", "--prefix", "p"}));
  EXPECT_TRUE(alice.Denied({"get", "p/a", "p1"}));
  EXPECT_TRUE(alice.Denied({"get", "--from-key", "p/"}));
  EXPECT_TRUE(alice.Denied({"get", "o"}));
  EXPECT_TRUE(alice.Denied({"del", "--prefix", "p"}));

  EXPECT_TRUE(alice.Ok({"del", "--prefix", "p/"}, "3\n"));
  EXPECT_TRUE(Root().Ok({"get", "--prefix", "p", "--keys-only"}, "p0\n\n"));
}

TEST_F(AuthTest, FromKeyPermissionCoversEverythingFromItsKey) {
  SetUpUsers();
  Grant({"read", "--from-key", "m"});
  Seed({"l", "m", "zzz"});
  EXPECT_TRUE(Root().Ok({"role", "get", "r"},
                        "Role r\nKV Read:\n\t[m, <open ended>\nKV Write:\n"));
  Client alice = Alice();

  EXPECT_TRUE(alice.Ok({"get", "m"}, "m\nv-m\n"));
  EXPECT_TRUE(alice.Ok({"get", "zzz"}, "zzz\nv-zzz\n"));
  EXPECT_TRUE(
      alice.Ok({"get", "--from-key", "m", "--keys-only"}, "m\n\nzzz\n\n"));
  EXPECT_TRUE(alice.Ok({"get", "--from-key", "n", "--keys-only"}, "zzz\n\n"));
  EXPECT_TRUE(alice.Ok({"get", "--prefix", "z", "--keys-only"}, "zzz\n\n"));

  EXPECT_TRUE(alice.Denied({"get", "l"}));
  EXPECT_TRUE(alice.Denied({"get", "--from-key", "a"}));
  EXPECT_TRUE(alice.Denied({"get", "l", "n"}));
  // Read only.
  EXPECT_TRUE(alice.Denied({"put", "m", "x"}));
  EXPECT_TRUE(alice.Denied({"put", "zzz", "x"}));
  EXPECT_TRUE(alice.Denied({"del", "m"}));
}

TEST_F(AuthTest, TxnChecksEveryCompareAndEveryOpOfBothBranches) {
  SetUpUsers();
  Grant({"readwrite", "--prefix", "p/"});
  Grant({"read", "kr"});
  Seed({"p/a", "kr", "other"});
  Client alice = Alice();

  EXPECT_TRUE(
      alice.TxnOk("value(\"p/a\") = \"v-p/a\"\n\nput p/b 1\n\n"
                  "put p/c 2\n\n",
                  "SUCCESS\n\nOK\n"));
  EXPECT_TRUE(
      alice.TxnOk("value(\"p/a\") = \"x\"\n\nput p/b 1\n\n"
                  "put p/c 2\n\n",
                  "FAILURE\n\nOK\n"));
  EXPECT_TRUE(alice.TxnOk("value(\"kr\") = \"v-kr\"\n\nget kr\n\n\n",
                          "SUCCESS\n\nkr\nv-kr\n"));
  // A compare on a key she cannot read.
  EXPECT_TRUE(
      alice.TxnDenied("value(\"other\") = \"x\"\n\nput p/b 1\n\n"
                      "put p/c 2\n\n"));
  // An op she may not do, in the branch taken or in the other one.
  EXPECT_TRUE(
      alice.TxnDenied("value(\"p/a\") = \"v-p/a\"\n\nput other 1\n\n"
                      "put p/c 2\n\n"));
  EXPECT_TRUE(
      alice.TxnDenied("value(\"p/a\") = \"x\"\n\nput p/b 1\n\n"
                      "put other 2\n\n"));
  EXPECT_TRUE(alice.TxnDenied("value(\"p/a\") = \"x\"\n\nget other\n\n\n"));
  EXPECT_TRUE(alice.TxnDenied("value(\"kr\") = \"v-kr\"\n\nput kr x\n\n\n"));
  EXPECT_TRUE(alice.TxnDenied("value(\"kr\") = \"v-kr\"\n\ndel kr\n\n\n"));
  // Nothing of the refused txns was applied.
  EXPECT_TRUE(Root().Ok({"get", "other"}, "other\nv-other\n"));
  EXPECT_TRUE(Root().Ok({"get", "kr"}, "kr\nv-kr\n"));
}

TEST_F(AuthTest, WatchCreateIsChecked) {
  SetUpUsers();
  Grant({"read", "--prefix", "p/"});
  Client alice = Alice();
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{{"watch", "other"},
                                             {"watch", "--prefix", "p"},
                                             {"watch", "p/a", "p1"}}) {
    CmdResult r = alice.Run(args);
    EXPECT_NE(r.exit_code, 0) << Describe(args, r);
    EXPECT_TRUE(absl::StrContains(r.err, kWatchDenied)) << Describe(args, r);
    EXPECT_EQ(ErrorLine(r.err), kWatchCanceled) << Describe(args, r);
  }

  std::unique_ptr<BackgroundCmd> watch = BackgroundCmd::Etcdctl(
      server_->Endpoint(),
      {"--user=" + std::string(kAlice), "watch", "--prefix", "p/"});
  // The watch is created once root's puts reach it; poll with fresh keys.
  ASSERT_TRUE(Eventually([&] {
    Root().Ok({"put", "p/seen", "1"}, "OK\n");
    if (watch->WaitForOutput("p/seen", absl::Milliseconds(300))) {
      return ::testing::AssertionSuccess();
    }
    return ::testing::AssertionFailure()
           << "watch output: " << watch->Out() << " / " << watch->Err();
  }));
  EXPECT_FALSE(watch->Exited()) << watch->Err();
}

TEST_F(AuthTest, RevocationsTakeEffectOnTheNextCall) {
  SetUpUsers();
  Grant({"readwrite", "k"});
  Grant({"readwrite", "--prefix", "p/"});
  Grant({"read", "--from-key", "x"});
  Seed({"k", "p/a", "y"});
  Client alice = Alice();
  Client root = Root();

  EXPECT_TRUE(alice.Ok({"get", "k"}, "k\nv-k\n"));
  EXPECT_TRUE(root.Ok({"role", "revoke-permission", "r", "k"},
                      "Permission of key k is revoked from role r\n"));
  EXPECT_TRUE(alice.Denied({"get", "k"}));
  EXPECT_TRUE(alice.Denied({"put", "k", "x"}));

  EXPECT_TRUE(alice.Ok({"get", "p/a"}, "p/a\nv-p/a\n"));
  EXPECT_TRUE(root.Ok({"role", "revoke-permission", "r", "--prefix", "p/"},
                      "Permission of range [p/, p0) is revoked from role r\n"));
  EXPECT_TRUE(alice.Denied({"get", "p/a"}));

  EXPECT_TRUE(alice.Ok({"get", "y"}, "y\nv-y\n"));
  EXPECT_TRUE(root.Ok({"role", "revoke-permission", "r", "--from-key", "x"},
                      "Permission of range [x, <open ended> is revoked from "
                      "role r\n"));
  EXPECT_TRUE(alice.Denied({"get", "y"}));
  EXPECT_TRUE(root.Ok({"role", "get", "r"}, "Role r\nKV Read:\nKV Write:\n"));

  // Granted back, then the role taken from the user.
  Grant({"read", "k"});
  EXPECT_TRUE(alice.Ok({"get", "k"}, "k\nv-k\n"));
  EXPECT_TRUE(root.Ok({"user", "revoke-role", "alice", "r"},
                      "Role r is revoked from user alice\n"));
  EXPECT_TRUE(alice.Denied({"get", "k"}));
  EXPECT_TRUE(alice.Ok({"user", "get", "alice"}, "User: alice\nRoles:\n"));

  // A role deleted takes its permissions with it.
  EXPECT_TRUE(root.Ok({"user", "grant-role", "alice", "r"},
                      "Role r is granted to user alice\n"));
  EXPECT_TRUE(alice.Ok({"get", "k"}, "k\nv-k\n"));
  EXPECT_TRUE(root.Ok({"role", "delete", "r"}, "Role r deleted\n"));
  EXPECT_TRUE(alice.Denied({"get", "k"}));

  // A new password replaces the old one; a deleted user cannot log in.
  EXPECT_TRUE(root.Ok({"user", "passwd", "alice", "--interactive=false"},
                      "Password updated\n", std::string("new-pw\n")));
  EXPECT_TRUE(alice.Fails({"get", "k"}, kBadPassword));
  Client renewed(server_->Endpoint(), "alice:new-pw");
  EXPECT_TRUE(renewed.Ok({"user", "get", "alice"}, "User: alice\nRoles:\n"));
  EXPECT_TRUE(root.Ok({"user", "delete", "alice"}, "User alice deleted\n"));
  EXPECT_TRUE(renewed.Fails({"get", "k"}, kBadPassword));
}

// A live watch loses its permission. Synod cancels it with "permission
// denied" (etcd 3.4 keeps sending events: with SYNOD_TEST_SERVER=etcd this
// test checks that instead).
TEST_F(AuthTest, LiveWatchIsCanceledWhenItsPermissionIsRevoked) {
  SetUpUsers();
  Grant({"read", "--prefix", "p/"});
  Grant({"read", "--prefix", "q/"});
  Client root = Root();

  // etcdctl's watch on p/: ends when the permission is revoked.
  std::unique_ptr<BackgroundCmd> watch = BackgroundCmd::Etcdctl(
      server_->Endpoint(),
      {"--user=" + std::string(kAlice), "watch", "--prefix", "p/"});
  ASSERT_TRUE(Eventually([&] {
    root.Ok({"put", "p/before", "1"}, "OK\n");
    if (watch->WaitForOutput("p/before", absl::Milliseconds(300))) {
      return ::testing::AssertionSuccess();
    }
    return ::testing::AssertionFailure() << watch->Out() << watch->Err();
  }));

  // A gRPC watch on q/ with alice's token: shows the cancel reason.
  absl::StatusOr<std::string> token =
      Authenticate(server_->Endpoint(), "alice", "alice-pw");
  ASSERT_TRUE(token.ok()) << token.status();
  TokenWatch grpc_watch(server_->Endpoint(), *token);
  ASSERT_TRUE(grpc_watch.CreatePrefix("q/", "q0"));
  std::optional<etcdserverpb::WatchResponse> created = grpc_watch.Next();
  ASSERT_TRUE(created.has_value());
  ASSERT_TRUE(created->created()) << created->DebugString();
  ASSERT_FALSE(created->canceled()) << created->DebugString();
  const int64_t watch_id = created->watch_id();
  ASSERT_TRUE(root.Ok({"put", "q/before", "1"}, "OK\n"));
  std::optional<etcdserverpb::WatchResponse> event = grpc_watch.Next();
  ASSERT_TRUE(event.has_value());
  ASSERT_EQ(event->events_size(), 1) << event->DebugString();
  EXPECT_EQ(event->events(0).kv().key(), "q/before");

  ASSERT_TRUE(root.Ok({"role", "revoke-permission", "r", "--prefix", "p/"},
                      "Permission of range [p/, p0) is revoked from role r\n"));
  ASSERT_TRUE(root.Ok({"role", "revoke-permission", "r", "--prefix", "q/"},
                      "Permission of range [q/, q0) is revoked from role r\n"));
  ASSERT_TRUE(root.Ok({"put", "p/after", "1"}, "OK\n"));
  ASSERT_TRUE(root.Ok({"put", "q/after", "1"}, "OK\n"));

  if (UsingRealEtcd()) {
    // etcd 3.4: both watches keep delivering.
    EXPECT_TRUE(watch->WaitForOutput("p/after", absl::Seconds(10)));
    std::optional<etcdserverpb::WatchResponse> more = grpc_watch.Next();
    ASSERT_TRUE(more.has_value());
    EXPECT_FALSE(more->canceled()) << more->DebugString();
    return;
  }
  ASSERT_TRUE(watch->WaitForExit(absl::Seconds(10)))
      << "etcdctl watch still running: " << watch->Out() << watch->Err();
  EXPECT_EQ(ErrorLine(watch->Err()), kWatchCanceled) << watch->Err();
  EXPECT_FALSE(absl::StrContains(watch->Out(), "p/after")) << watch->Out();

  std::optional<etcdserverpb::WatchResponse> cancel = grpc_watch.Next();
  ASSERT_TRUE(cancel.has_value());
  EXPECT_TRUE(cancel->canceled()) << cancel->DebugString();
  EXPECT_EQ(cancel->watch_id(), watch_id) << cancel->DebugString();
  // The reason etcd gives a watch refused at create.
  EXPECT_EQ(cancel->cancel_reason(),
            "rpc error: code = PermissionDenied desc = etcdserver: "
            "permission denied");
  EXPECT_EQ(cancel->events_size(), 0) << cancel->DebugString();
}

// The lease's id from `etcdctl lease grant`'s "lease <hex> granted with
// TTL(<n>s)"; "" when the line is not that.
std::string LeaseId(const CmdResult& r) {
  std::vector<std::string> words = absl::StrSplit(r.out, ' ');
  if (r.exit_code != 0 || words.size() < 3 || words[0] != "lease") return "";
  return words[1];
}

TEST_F(AuthTest, LeaseRevokeLocksAndElectionsAreChecked) {
  SetUpUsers();
  Grant({"readwrite", "--prefix", "p/"});
  Client alice = Alice();
  Client root = Root();

  // Revoking a lease deletes its keys: it needs write on every one of them.
  const std::string mixed = LeaseId(root.Run({"lease", "grant", "100"}));
  ASSERT_FALSE(mixed.empty());
  ASSERT_TRUE(root.Ok({"put", "p/a", "1", "--lease=" + mixed}, "OK\n"));
  ASSERT_TRUE(root.Ok({"put", "secret", "1", "--lease=" + mixed}, "OK\n"));
  EXPECT_TRUE(alice.Fails({"lease", "revoke", mixed},
                          "Error: failed to revoke lease (etcdserver: "
                          "permission denied)"));
  EXPECT_TRUE(root.Ok({"get", "secret"}, "secret\n1\n"));
  const std::string own = LeaseId(alice.Run({"lease", "grant", "100"}));
  ASSERT_FALSE(own.empty());
  ASSERT_TRUE(alice.Ok({"put", "p/b", "1", "--lease=" + own}, "OK\n"));
  EXPECT_TRUE(
      alice.Ok({"lease", "revoke", own}, "lease " + own + " revoked\n"));
  EXPECT_TRUE(root.Ok({"get", "p/b"}, ""));
  EXPECT_TRUE(
      root.Ok({"lease", "revoke", mixed}, "lease " + mixed + " revoked\n"));

  // A lock or a campaign writes a key under its name.
  EXPECT_TRUE(alice.Denied({"lock", "mylock"}));
  EXPECT_TRUE(alice.Ok({"lock", "p/lock", "echo", "held"}, "held\n"));
  EXPECT_TRUE(alice.Denied({"elect", "myelect", "v"}));
  std::unique_ptr<BackgroundCmd> campaign = BackgroundCmd::Etcdctl(
      server_->Endpoint(),
      {"--user=" + std::string(kAlice), "elect", "p/el", "v"});
  EXPECT_TRUE(campaign->WaitForOutput("p/el/", absl::Seconds(10)))
      << campaign->Out() << campaign->Err();
  EXPECT_TRUE(Eventually([&] {
    CmdResult r = root.Run({"get", "--prefix", "p/el/", "--print-value-only"});
    if (r.exit_code == 0 && r.out == "v\n") {
      return ::testing::AssertionSuccess();
    }
    return ::testing::AssertionFailure() << Describe({"get p/el/"}, r);
  }));
  campaign->Terminate();
}

TEST_F(AuthTest, RootCannotBeRemovedWhileAuthIsEnabled) {
  SetUpUsers();
  Client root = Root();
  EXPECT_TRUE(root.Fails({"user", "delete", "root"}, kInvalidMgmt));
  EXPECT_TRUE(
      root.Fails({"user", "revoke-role", "root", "root"}, kInvalidMgmt));
  EXPECT_TRUE(root.Fails({"role", "delete", "root"}, kInvalidMgmt));
  EXPECT_TRUE(root.Ok({"user", "get", "root"}, "User: root\nRoles: root\n"));
  EXPECT_TRUE(root.Ok({"get", "k"}, ""));

  // Once auth is off, root is a user like any other.
  EXPECT_TRUE(root.Ok({"auth", "disable"}, "Authentication Disabled\n"));
  Client anonymous = Anonymous();
  EXPECT_TRUE(anonymous.Ok({"user", "revoke-role", "root", "root"},
                           "Role root is revoked from user root\n"));
  // etcdctl meets "root user does not have root role" by adding the root
  // role and trying again, which fails as the role exists.
  EXPECT_TRUE(anonymous.Fails({"auth", "enable"},
                              "Error: etcdserver: role name already exists"));
  EXPECT_TRUE(anonymous.Ok({"user", "delete", "root"}, "User root deleted\n"));
  EXPECT_TRUE(anonymous.Fails({"auth", "enable"},
                              "Error: etcdserver: root user does not exist"));
}

TEST_F(AuthTest, NonRootCannotAdministerButMayReadItself) {
  SetUpUsers();
  Grant({"readwrite", "--prefix", "p/"});
  Client alice = Alice();
  Client root = Root();

  EXPECT_TRUE(alice.Ok({"user", "get", "alice"}, "User: alice\nRoles: r\n"));
  EXPECT_TRUE(alice.Ok({"role", "get", "r"},
                       "Role r\nKV Read:\n\t[p/, p0) (prefix p/)\n"
                       "KV Write:\n\t[p/, p0) (prefix p/)\n"));
  EXPECT_TRUE(alice.Denied({"user", "get", "root"}));
  EXPECT_TRUE(alice.Denied({"role", "get", "root"}));
  EXPECT_TRUE(alice.Denied({"user", "list"}));
  EXPECT_TRUE(alice.Denied({"role", "list"}));
  EXPECT_TRUE(alice.Denied({"user", "add", "mallory:pw"}));
  EXPECT_TRUE(alice.Denied({"role", "add", "evil"}));
  EXPECT_TRUE(alice.Denied({"user", "grant-role", "alice", "root"}));
  EXPECT_TRUE(alice.Denied(
      {"role", "grant-permission", "r", "readwrite", "--from-key", ""}));
  EXPECT_TRUE(alice.Denied({"user", "passwd", "alice", "--interactive=false"},
                           std::string("mine\n")));
  EXPECT_TRUE(alice.Denied({"auth", "disable"}));
  EXPECT_TRUE(
      alice.Denied({"member", "add", "m2", "--peer-urls=http://127.0.0.1:1"}));
  // Open to every user, as in etcd 3.4.
  EXPECT_TRUE(alice.Ok({"member", "list"}));
  EXPECT_TRUE(alice.Ok({"endpoint", "status"}));

  EXPECT_TRUE(root.Ok({"user", "list"}, "alice\nroot\n"));
  EXPECT_TRUE(root.Ok({"role", "list"}, "r\nroot\n"));
  // Nothing alice tried took effect.
  EXPECT_TRUE(root.Ok({"user", "get", "alice"}, "User: alice\nRoles: r\n"));
  EXPECT_EQ(SplitLines(root.Run({"member", "list"}).out).size(), 1u);
}

TEST_F(AuthTest, AuthStateSurvivesKill9AndRestart) {
  SetUpUsers();
  Grant({"readwrite", "--prefix", "p/"});
  Grant({"read", "k"});
  Seed({"p/a", "k", "other"});
  const std::string role_r =
      "Role r\nKV Read:\n\tk\n\t[p/, p0) (prefix p/)\n"
      "KV Write:\n\t[p/, p0) (prefix p/)\n";
  ASSERT_TRUE(Root().Ok({"role", "get", "r"}, role_r));

  server_->Kill9();
  ASSERT_TRUE(server_->Spawn());
  ASSERT_TRUE(WaitServingAs(*server_, kRoot));

  EXPECT_TRUE(Root().Ok({"role", "get", "r"}, role_r));
  EXPECT_TRUE(Root().Ok({"user", "list"}, "alice\nroot\n"));
  EXPECT_TRUE(Root().Ok({"user", "get", "alice"}, "User: alice\nRoles: r\n"));
  EXPECT_TRUE(Anonymous().Fails({"get", "k"}, kNoUser));
  EXPECT_TRUE(Client(server_->Endpoint(), "alice:wrong")
                  .Fails({"get", "k"}, kBadPassword));
  EXPECT_TRUE(Alice().Ok({"get", "k"}, "k\nv-k\n"));
  EXPECT_TRUE(Alice().Ok({"put", "p/b", "after"}, "OK\n"));
  EXPECT_TRUE(Alice().Denied({"get", "other"}));
  EXPECT_TRUE(Alice().Denied({"put", "k", "x"}));

  // A change made after the restart survives the next one.
  EXPECT_TRUE(Root().Ok({"user", "revoke-role", "alice", "r"},
                        "Role r is revoked from user alice\n"));
  server_->Stop();
  ASSERT_TRUE(server_->Spawn());
  ASSERT_TRUE(WaitServingAs(*server_, kRoot));
  EXPECT_TRUE(Alice().Denied({"get", "k"}));
  EXPECT_TRUE(Root().Ok({"get", "p/b"}, "p/b\nafter\n"));
}

// etcd 3.4's maintenance server refuses Defragment, Snapshot, Hash and HashKV
// from non-root users with the auth store's own error, not a gRPC one:
// code Unknown, "auth: permission denied" ("auth: user name is empty"
// without a user).
TEST_F(AuthTest, MaintenanceCallsRefuseNonRootWithEtcdsErrors) {
  SetUpUsers();
  struct Case {
    std::vector<std::string> args;
    std::string line;  // printed for the endpoint, %s = the reason
  };
  const std::string ep = server_->Endpoint();
  const std::string snap = dir_->path() + "/alice.db";
  const std::vector<Case> cases = {
      {{"defrag"}, "Failed to defragment etcd member[" + ep + "] (%s)"},
      {{"endpoint", "hashkv"},
       "Failed to get the hash of endpoint " + ep + " (%s)"},
      {{"snapshot", "save", snap}, "Error: %s"},
  };
  for (const auto& [user, reason] :
       std::vector<std::pair<std::string, std::string>>{
           {kAlice, "auth: permission denied"},
           {"", "auth: user name is empty"}}) {
    Client client(ep, user);
    for (const Case& c : cases) {
      CmdResult r = client.Run(c.args);
      const std::string want = absl::StrReplaceAll(
          c.line, {{"%s", "rpc error: code = Unknown desc = " + reason}});
      EXPECT_TRUE(absl::StrContains(r.err, want))
          << "want \"" << want << "\" from " << Describe(c.args, r);
    }
  }
  EXPECT_TRUE(Root().Ok({"defrag"},
                        "Finished defragmenting etcd member[" + ep + "]\n"));
}

// With the simple token's TTL short, a token left unused is refused.
class AuthTokenTtlTest : public AuthTest {
 protected:
  std::vector<std::string> ExtraFlags() override {
    return {"--auth-token-ttl=1"};
  }
};

TEST_F(AuthTokenTtlTest, SimpleTokenExpiresAfterItsTtl) {
  SetUpUsers();
  Grant({"read", "k"});
  absl::StatusOr<std::string> token =
      Authenticate(server_->Endpoint(), "alice", "alice-pw");
  ASSERT_TRUE(token.ok()) << token.status();
  grpc::Status first = RangeWithToken(server_->Endpoint(), *token, "k");
  ASSERT_TRUE(first.ok()) << first.error_message();
  grpc::Status denied = RangeWithToken(server_->Endpoint(), *token, "other");
  EXPECT_EQ(denied.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(denied.error_message(), "etcdserver: permission denied");
  // The TTL counts from the last use: leave the token idle past it (the
  // idle time is what is tested) before each try.
  EXPECT_TRUE(WaitTokenRefused(server_->Endpoint(), *token, "k",
                               absl::Milliseconds(2500)));
  // etcdctl authenticates anew and carries on.
  EXPECT_TRUE(Alice().Ok({"get", "k"}, ""));
}

// ---------------------------------------------------------------------------
// JWT tokens.

struct JwtCase {
  std::string name;         // test name suffix
  std::string sign_method;  // --auth-token's sign-method
  common::KeyType key_type;
  bool pub_key_is_cert;  // pub-key is an X.509 certificate, else PUBLIC KEY
};

void PrintTo(const JwtCase& c, std::ostream* os) { *os << c.name; }

absl::Status WritePublicKey(EVP_PKEY* key, const std::string& path) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()),
                                                &BIO_free);
  if (bio == nullptr || PEM_write_bio_PUBKEY(bio.get(), key) != 1) {
    return absl::InternalError(common::DrainOpenSslErrors());
  }
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return common::WriteFileAtomically(path, std::string(data, len), 0644);
}

class AuthJwtTest : public ::testing::TestWithParam<JwtCase> {
 protected:
  void SetUp() override {
    dir_ = std::make_unique<TestDir>();
    const JwtCase& c = GetParam();
    std::string pub, priv;
    if (c.pub_key_is_cert) {
      auto pki = TestPki::Create(dir_->path());
      ASSERT_TRUE(pki.ok()) << pki.status();
      LeafSpec spec = LeafSpec::Named("jwt");
      spec.key_type = c.key_type;
      auto paths = pki->Issue(spec);
      ASSERT_TRUE(paths.ok()) << paths.status();
      pub = paths->cert_file;
      priv = paths->key_file;
    } else {
      auto key = common::GenerateKey(c.key_type);
      ASSERT_TRUE(key.ok()) << key.status();
      auto pem = common::PrivateKeyToPem(key->get());
      ASSERT_TRUE(pem.ok()) << pem.status();
      priv = dir_->path() + "/jwt.key";
      pub = dir_->path() + "/jwt.pub";
      ASSERT_TRUE(common::WriteFileAtomically(priv, *pem, 0600).ok());
      ASSERT_TRUE(WritePublicKey(key->get(), pub).ok());
    }
    ServerOptions options;
    options.extra_flags = {
        absl::StrCat("--auth-token=jwt,pub-key=", pub, ",priv-key=", priv,
                     ",sign-method=", c.sign_method, ",ttl=1s")};
    server_ = std::make_unique<ServerProcess>(dir_->path(), options);
    ASSERT_TRUE(server_->Start());
  }
  void TearDown() override {
    if (server_ != nullptr && HasFailure()) {
      std::cerr << "--- server log tail ---\n" << server_->LogTail(3000);
    }
    server_.reset();
    dir_.reset();
  }

  std::unique_ptr<TestDir> dir_;
  std::unique_ptr<ServerProcess> server_;
};

TEST_P(AuthJwtTest, PutGetRoundTripWithUsersAndTokenExpiry) {
  Client anonymous(server_->Endpoint(), "");
  Client root(server_->Endpoint(), kRoot);
  Client alice(server_->Endpoint(), kAlice);
  EnableAuth(anonymous);
  AddAlice(root, "r");
  ASSERT_TRUE(
      root.Ok({"role", "grant-permission", "r", "readwrite", "--prefix", "p/"},
              "Role r updated\n"));

  EXPECT_TRUE(root.Ok({"put", "k", "by-root"}, "OK\n"));
  EXPECT_TRUE(root.Ok({"get", "k"}, "k\nby-root\n"));
  EXPECT_TRUE(alice.Ok({"put", "p/a", "by-alice"}, "OK\n"));
  EXPECT_TRUE(alice.Ok({"get", "p/a"}, "p/a\nby-alice\n"));
  EXPECT_TRUE(alice.Denied({"get", "k"}));
  EXPECT_TRUE(anonymous.Fails({"get", "k"}, kNoUser));
  EXPECT_TRUE(Client(server_->Endpoint(), "alice:wrong")
                  .Fails({"get", "p/a"}, kBadPassword));

  // The token is a JWT (three dot-separated parts), good until its ttl.
  absl::StatusOr<std::string> token =
      Authenticate(server_->Endpoint(), "alice", "alice-pw");
  ASSERT_TRUE(token.ok()) << token.status();
  EXPECT_EQ(std::count(token->begin(), token->end(), '.'), 2) << *token;
  const absl::Time issued = absl::Now();
  grpc::Status first = RangeWithToken(server_->Endpoint(), *token, "p/a");
  // Allowed unless this machine took the whole second to get here.
  if (absl::Now() - issued < absl::Milliseconds(900)) {
    EXPECT_TRUE(first.ok()) << first.error_message();
  }
  EXPECT_TRUE(WaitTokenRefused(server_->Endpoint(), *token, "p/a",
                               absl::ZeroDuration()));
  EXPECT_TRUE(alice.Ok({"get", "p/a"}, "p/a\nby-alice\n"));
}

INSTANTIATE_TEST_SUITE_P(
    SignMethods, AuthJwtTest,
    ::testing::Values(
        JwtCase{"RS256", "RS256", common::KeyType::kRsa2048, true},
        JwtCase{"ES256", "ES256", common::KeyType::kEcdsaP256, false},
        JwtCase{"ES256Cert", "ES256", common::KeyType::kEcdsaP256, true}),
    [](const ::testing::TestParamInfo<JwtCase>& info) {
      return info.param.name;
    });

// ---------------------------------------------------------------------------
// --client-cert-auth: a client certificate's CN is the user, unless the
// client also gives a user name and password.

class AuthCertCnTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::make_unique<TestDir>();
    auto pki = TestPki::Create(dir_->path());
    ASSERT_TRUE(pki.ok()) << pki.status();
    pki_ = std::make_unique<TestPki>(*std::move(pki));
    auto server_cert = pki_->Issue(LeafSpec::Named("server"));
    ASSERT_TRUE(server_cert.ok()) << server_cert.status();
    ServerOptions options;
    options.client_port = PickFreePort();
    const std::string url =
        absl::StrCat("https://127.0.0.1:", options.client_port);
    options.extra_flags = {"--listen-client-urls=" + url,
                           "--advertise-client-urls=" + url,
                           "--cert-file=" + server_cert->cert_file,
                           "--key-file=" + server_cert->key_file,
                           "--trusted-ca-file=" + pki_->ca_file(),
                           "--client-cert-auth"};
    server_ = std::make_unique<ServerProcess>(dir_->path(), options);
    ASSERT_TRUE(server_->Spawn());
    Client root = WithCert("root", "root", "");
    ASSERT_TRUE(Eventually(
        [&] {
          if (server_->ExitedByItself()) {
            return ::testing::AssertionFailure() << "exited";
          }
          return root.Ok({"get", "synod-auth-probe"});
        },
        kReadyTimeout))
        << server_->LogTail();
  }
  void TearDown() override {
    if (server_ != nullptr && HasFailure()) {
      std::cerr << "--- server log tail ---\n" << server_->LogTail(3000);
    }
    server_.reset();
    dir_.reset();
  }

  // etcdctl over TLS with a certificate whose CN is `cn` ("" = none), as
  // `user` ("" = no --user).
  Client WithCert(const std::string& name, const std::string& cn,
                  const std::string& user) {
    auto cert = pki_->Issue(LeafSpec::Named(name, cn));
    EXPECT_TRUE(cert.ok()) << cert.status();
    if (!cert.ok()) return Client("", "");
    return Client("https://" + server_->Endpoint(), user,
                  {"--cacert=" + pki_->ca_file(), "--cert=" + cert->cert_file,
                   "--key=" + cert->key_file});
  }

  std::unique_ptr<TestDir> dir_;
  std::unique_ptr<TestPki> pki_;
  std::unique_ptr<ServerProcess> server_;
};

TEST_F(AuthCertCnTest, CommonNameIsTheUserUnlessAPasswordIsGiven) {
  Client root = WithCert("root", "root", "");
  EnableAuth(root);
  ASSERT_TRUE(root.Ok({"user", "add", kAlice}, "User alice created\n"));
  ASSERT_TRUE(root.Ok({"role", "add", "r"}, "Role r created\n"));
  ASSERT_TRUE(root.Ok({"user", "grant-role", "alice", "r"},
                      "Role r is granted to user alice\n"));
  ASSERT_TRUE(
      root.Ok({"role", "grant-permission", "r", "readwrite", "--prefix", "p/"},
              "Role r updated\n"));
  ASSERT_TRUE(root.Ok({"put", "other", "1"}, "OK\n"));
  EXPECT_TRUE(root.Ok({"user", "list"}, "alice\nroot\n"));

  Client alice = WithCert("alice", "alice", "");
  EXPECT_TRUE(alice.Ok({"put", "p/a", "by-cert"}, "OK\n"));
  EXPECT_TRUE(alice.Ok({"get", "p/a"}, "p/a\nby-cert\n"));
  EXPECT_TRUE(alice.Denied({"get", "other"}));
  EXPECT_TRUE(alice.Denied({"user", "list"}));

  // A user name and password win over the certificate's CN, both ways.
  EXPECT_TRUE(
      WithCert("alice2", "alice", kRoot).Ok({"user", "list"}, "alice\nroot\n"));
  EXPECT_TRUE(WithCert("root2", "root", kAlice).Denied({"user", "list"}));
  EXPECT_TRUE(WithCert("root3", "root", "root:wrong")
                  .Fails({"get", "p/a"}, kBadPassword));

  // A CN that names no user has no rights.
  EXPECT_TRUE(WithCert("nobody", "nobody", "").Denied({"get", "p/a"}));
}

// etcd 3.4 takes a verified certificate's CN as the user name whatever it
// is, the empty one included: a certificate without a CN is a user without
// rights (permission denied), not an anonymous client ("user name is
// empty").
TEST_F(AuthCertCnTest, CertificateWithoutCommonNameIsDeniedNotAnonymous) {
  EnableAuth(WithCert("root", "root", ""));
  Client no_cn = WithCert("nocn", "", "");
  EXPECT_TRUE(no_cn.Denied({"get", "k"}));
  EXPECT_TRUE(no_cn.Denied({"put", "k", "x"}));
}

// ---------------------------------------------------------------------------
// Three members.

class AuthClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    cluster_ = std::make_unique<Cluster>();
    ASSERT_TRUE(cluster_->Start());
  }
  void TearDown() override {
    if (cluster_ != nullptr && HasFailure()) {
      std::cerr << "--- member logs ---\n" << cluster_->LogTails();
    }
    cluster_.reset();
  }
  Client As(int i, const std::string& user) {
    return Client(cluster_->Endpoint(i), user);
  }

  std::unique_ptr<Cluster> cluster_;
};

TEST_F(AuthClusterTest, AuthStateIsTheSameOnEveryMemberAndAfterRestart) {
  // The member killed later is a follower (asked before auth is on, as
  // endpoint status needs no user then), so no write waits on an election.
  const int leader = cluster_->WaitForLeader(absl::Seconds(10));
  ASSERT_GE(leader, 0);
  const int victim = (leader + 1) % 3;
  EnableAuth(As(0, ""));
  AddAlice(As(0, kRoot), "r");
  ASSERT_TRUE(As(1, kRoot).Ok(
      {"role", "grant-permission", "r", "readwrite", "--prefix", "p/"},
      "Role r updated\n"));
  ASSERT_TRUE(As(2, kRoot).Ok({"role", "grant-permission", "r", "read", "k"},
                              "Role r updated\n"));
  ASSERT_TRUE(As(0, kRoot).Ok({"put", "p/a", "1"}, "OK\n"));
  ASSERT_TRUE(As(0, kRoot).Ok({"put", "k", "2"}, "OK\n"));
  ASSERT_TRUE(As(0, kRoot).Ok({"put", "other", "3"}, "OK\n"));
  const std::string role_r =
      "Role r\nKV Read:\n\tk\n\t[p/, p0) (prefix p/)\n"
      "KV Write:\n\t[p/, p0) (prefix p/)\n";

  // Each member answers from its own auth store: serializable reads are
  // checked there, and role get / user list are asked of that member.
  auto member_has_state = [&](int i) {
    return Eventually([&] {
      Client root = As(i, kRoot), alice = As(i, kAlice), anon = As(i, "");
      ::testing::AssertionResult r =
          alice.Ok({"get", "p/a", "--consistency=s"}, "p/a\n1\n");
      if (r) r = alice.Ok({"get", "k", "--consistency=s"}, "k\n2\n");
      if (r) r = alice.Denied({"get", "other", "--consistency=s"});
      if (r) r = alice.Denied({"put", "k", "x"});
      if (r) r = anon.Fails({"get", "k", "--consistency=s"}, kNoUser);
      if (r) r = root.Ok({"role", "get", "r"}, role_r);
      if (r) r = root.Ok({"user", "list"}, "alice\nroot\n");
      if (r) r = root.Ok({"role", "list"}, "r\nroot\n");
      return r << " (member " << i << ")";
    });
  };
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(member_has_state(i));

  // A revocation through one member reaches the serializable reads of all.
  ASSERT_TRUE(As(1, kRoot).Ok({"role", "revoke-permission", "r", "k"},
                              "Permission of key k is revoked from role r\n"));
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(Eventually([&] {
      return As(i, kAlice).Denied({"get", "k", "--consistency=s"})
             << " (member " << i << ")";
    }));
  }
  ASSERT_TRUE(As(1, kRoot).Ok({"role", "grant-permission", "r", "read", "k"},
                              "Role r updated\n"));

  // A member killed and restarted has the same state.
  // A member killed and restarted has the same state, and what changed
  // while it was down.
  cluster_->Kill9(victim);
  ASSERT_TRUE(As(leader, kRoot)
                  .Ok({"user", "add", "bob:bob-pw"}, "User bob created\n"));
  ASSERT_TRUE(cluster_->member(victim).Spawn());
  ASSERT_TRUE(WaitServingAs(cluster_->member(victim), kRoot,
                            /*serializable=*/true));
  EXPECT_TRUE(Eventually([&] {
    return As(victim, kRoot).Ok({"user", "list"}, "alice\nbob\nroot\n");
  }));
  EXPECT_TRUE(As(victim, kRoot).Ok({"role", "get", "r"}, role_r));
  EXPECT_TRUE(Eventually([&] {
    return As(victim, kAlice).Ok({"get", "k", "--consistency=s"}, "k\n2\n");
  }));
  EXPECT_TRUE(As(victim, kAlice).Denied({"get", "other", "--consistency=s"}));
  EXPECT_TRUE(As(victim, "bob:bob-pw")
                  .Ok({"user", "get", "bob"}, "User: bob\nRoles:\n"));

  // Root disables auth through one member; every member serves anonymous
  // clients again.
  ASSERT_TRUE(
      As(victim, kRoot).Ok({"auth", "disable"}, "Authentication Disabled\n"));
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(Eventually([&] {
      return As(i, "").Ok({"get", "other", "--consistency=s"}, "other\n3\n")
             << " (member " << i << ")";
    }));
  }
}

}  // namespace
}  // namespace synod::testing
