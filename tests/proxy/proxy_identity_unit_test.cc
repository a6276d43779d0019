// ProxyIdentity on a FakeClock with a fake Authenticate: the --user flags,
// which errors make the proxy re-authenticate (and which never do), one
// retry per call, shared refreshes and the backoff between Authenticate
// calls.
#include "proxy/proxy_identity.h"

#include <deque>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "common/clock.h"
#include "common/errors.h"
#include "gtest/gtest.h"

namespace synod::proxy {
namespace {

using common::EtcdError;

grpc::Status Grpc(EtcdError e) { return common::ToGrpcStatus(common::Err(e)); }

TEST(ProxyIdentityFlagsTest, FollowEtcdctl) {
  std::string u, p;
  ASSERT_TRUE(ParseUserFlags("proxy:secret", "", &u, &p).ok());
  EXPECT_EQ(u, "proxy");
  EXPECT_EQ(p, "secret");
  ASSERT_TRUE(ParseUserFlags("a:b", "pw", &u, &p).ok());  // --password wins
  EXPECT_EQ(u, "a:b");
  EXPECT_EQ(p, "pw");
  ASSERT_TRUE(ParseUserFlags("", "", &u, &p).ok());
  EXPECT_TRUE(u.empty());
  EXPECT_FALSE(ParseUserFlags("proxy", "", &u, &p).ok());
  EXPECT_FALSE(ParseUserFlags(":pw", "", &u, &p).ok());
  EXPECT_FALSE(ParseUserFlags("", "pw", &u, &p).ok());
}

TEST(ProxyIdentityErrorsTest, OnlyTokenErrorsAskForANewToken) {
  EXPECT_TRUE(NeedsReauth(Grpc(EtcdError::kInvalidAuthToken)));
  EXPECT_TRUE(NeedsReauth(Grpc(EtcdError::kAuthOldRevision)));
  EXPECT_TRUE(NeedsReauth(Grpc(EtcdError::kUserEmpty)));
  EXPECT_FALSE(NeedsReauth(Grpc(EtcdError::kPermissionDenied)));
  EXPECT_FALSE(NeedsReauth(Grpc(EtcdError::kAuthFailed)));
  EXPECT_FALSE(NeedsReauth(grpc::Status::OK));
  EXPECT_FALSE(
      NeedsReauth(grpc::Status(grpc::StatusCode::UNAVAILABLE, "gone")));
  EXPECT_TRUE(ReasonNeedsReauth(
      "rpc error: code = Unauthenticated desc = etcdserver: invalid auth "
      "token"));
  EXPECT_TRUE(ReasonNeedsReauth("etcdserver: user name is empty"));
  EXPECT_FALSE(ReasonNeedsReauth(
      "rpc error: code = PermissionDenied desc = etcdserver: permission "
      "denied"));
}

class ProxyIdentityTest : public ::testing::Test {
 protected:
  ProxyIdentityTest()
      : id_("proxy", "pw",
            [this](const std::string& u, const std::string& p,
                   std::function<void(absl::StatusOr<std::string>)> done) {
              EXPECT_EQ(u, "proxy");
              EXPECT_EQ(p, "pw");
              auths_.push_back(std::move(done));
            },
            &clock_) {}

  // Answers the pending Authenticate with `token` (or an error).
  void Authenticated(absl::StatusOr<std::string> token) {
    ASSERT_FALSE(auths_.empty());
    auto done = std::move(auths_.front());
    auths_.pop_front();
    done(std::move(token));
  }

  common::FakeClock clock_;
  std::deque<std::function<void(absl::StatusOr<std::string>)>> auths_;
  ProxyIdentity id_;
};

// A member call as the test plays it: every attempt is recorded with the
// token it carried and answered from `answers` in order.
struct FakeCall {
  std::vector<std::string> tokens;
  std::deque<grpc::Status> answers;
  void operator()(const std::string& token,
                  std::function<void(const grpc::Status&)> done) {
    tokens.push_back(token);
    grpc::Status s = answers.front();
    answers.pop_front();
    done(s);
  }
};

TEST_F(ProxyIdentityTest, StartAuthenticatesOnce) {
  bool got = false;
  EXPECT_TRUE(id_.MayAuthenticate());
  id_.Start([&](bool ok) { got = ok; });
  ASSERT_EQ(auths_.size(), 1u);
  Authenticated(std::string("t1"));
  EXPECT_TRUE(got);
  EXPECT_EQ(id_.Token(), "t1");
  id_.Start();  // a token is held: nothing to do
  EXPECT_TRUE(auths_.empty());
}

TEST_F(ProxyIdentityTest, AnExpiredTokenIsRenewedAndTheCallRetriedOnce) {
  id_.Start();
  Authenticated(std::string("t1"));
  clock_.Advance(absl::Seconds(60));
  auto call = std::make_shared<FakeCall>();
  call->answers = {Grpc(EtcdError::kInvalidAuthToken), grpc::Status::OK};
  grpc::Status result(grpc::StatusCode::UNKNOWN, "not done");
  RunWithReauth(
      &id_, [call](auto&& t, auto&& d) { (*call)(t, d); },
      [&](const grpc::Status& s) { result = s; });
  ASSERT_EQ(auths_.size(), 1u);  // re-authenticating
  Authenticated(std::string("t2"));
  EXPECT_TRUE(result.ok());
  EXPECT_EQ(call->tokens, (std::vector<std::string>{"t1", "t2"}));
}

TEST_F(ProxyIdentityTest, PermissionDeniedNeverReauthenticates) {
  id_.Start();
  Authenticated(std::string("t1"));
  auto call = std::make_shared<FakeCall>();
  for (int i = 0; i < 5; ++i) {
    call->answers.push_back(Grpc(EtcdError::kPermissionDenied));
    grpc::Status result;
    RunWithReauth(
        &id_, [call](auto&& t, auto&& d) { (*call)(t, d); },
        [&](const grpc::Status& s) { result = s; });
    EXPECT_EQ(result.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  }
  EXPECT_EQ(call->tokens.size(), 5u);  // one attempt each, no retry
  EXPECT_EQ(id_.TEST_authentications(), 1);
  EXPECT_TRUE(auths_.empty());
}

TEST_F(ProxyIdentityTest, ACallIsRetriedAtMostOnce) {
  id_.Start();
  Authenticated(std::string("t1"));
  clock_.Advance(absl::Seconds(60));
  auto call = std::make_shared<FakeCall>();
  call->answers = {Grpc(EtcdError::kInvalidAuthToken),
                   Grpc(EtcdError::kInvalidAuthToken)};
  grpc::Status result;
  RunWithReauth(
      &id_, [call](auto&& t, auto&& d) { (*call)(t, d); },
      [&](const grpc::Status& s) { result = s; });
  Authenticated(std::string("t2"));
  EXPECT_EQ(result.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(call->tokens.size(), 2u);
  EXPECT_TRUE(call->answers.empty());
  EXPECT_TRUE(auths_.empty());
}

TEST_F(ProxyIdentityTest, ConcurrentRefreshesShareOneAuthenticate) {
  id_.Start();
  Authenticated(std::string("t1"));
  clock_.Advance(absl::Seconds(60));
  int fresh = 0;
  for (int i = 0; i < 3; ++i) id_.Refresh("t1", [&](bool ok) { fresh += ok; });
  ASSERT_EQ(auths_.size(), 1u);
  Authenticated(std::string("t2"));
  EXPECT_EQ(fresh, 3);
  // A late caller that used t1 gets t2 at once.
  id_.Refresh("t1", [&](bool ok) { fresh += ok; });
  EXPECT_EQ(fresh, 4);
  EXPECT_TRUE(auths_.empty());
}

TEST_F(ProxyIdentityTest, AuthenticateCallsAreSpacedByABackoff) {
  id_.Start();
  Authenticated(std::string("t1"));
  // The member keeps refusing every token (e.g. restarted, then refusing).
  std::vector<absl::Duration> gaps;
  absl::Time last = clock_.Now();
  std::string used = "t1";
  for (int i = 0; i < 6; ++i) {
    bool done = false;
    id_.Refresh(used, [&](bool) { done = true; });
    // Ticks every 100 ms until the refresh starts.
    for (int t = 0; t < 200 && auths_.empty(); ++t) {
      clock_.Advance(absl::Milliseconds(100));
      id_.Tick();
    }
    ASSERT_EQ(auths_.size(), 1u);
    gaps.push_back(clock_.Now() - last);
    last = clock_.Now();
    used = "t" + std::to_string(i + 2);
    Authenticated(used);
    EXPECT_TRUE(done);
  }
  // 200 ms doubling: 400, 800, 1600, 3200, 6400 ms between calls.
  for (size_t i = 2; i < gaps.size(); ++i) {
    EXPECT_GE(gaps[i], 2 * gaps[i - 1] - absl::Milliseconds(100)) << i;
  }
  EXPECT_GE(gaps.back(), absl::Seconds(6));
  EXPECT_EQ(id_.TEST_authentications(), 7);
}

TEST_F(ProxyIdentityTest, AFailedAuthenticateEndsTheRetry) {
  id_.Start();
  Authenticated(absl::InvalidArgumentError(
      "etcdserver: authentication failed, invalid user ID or password"));
  EXPECT_EQ(id_.Token(), "");
  EXPECT_FALSE(id_.MayAuthenticate());  // a wrong password stays wrong
  clock_.Advance(absl::Seconds(60));
  auto call = std::make_shared<FakeCall>();
  call->answers = {Grpc(EtcdError::kUserEmpty)};
  grpc::Status result;
  RunWithReauth(
      &id_, [call](auto&& t, auto&& d) { (*call)(t, d); },
      [&](const grpc::Status& s) { result = s; });
  Authenticated(absl::InvalidArgumentError("etcdserver: authentication failed"));
  EXPECT_EQ(result.error_message(), "etcdserver: user name is empty");
  EXPECT_EQ(call->tokens.size(), 1u);
}

TEST(ProxyIdentityNoUserTest, WithoutAUserNothingIsAuthenticated) {
  common::FakeClock clock;
  int auths = 0;
  ProxyIdentity id("", "", [&](auto&&...) { ++auths; }, &clock);
  EXPECT_FALSE(id.configured());
  bool fresh = true;
  id.Refresh("", [&](bool ok) { fresh = ok; });
  EXPECT_FALSE(fresh);
  EXPECT_EQ(auths, 0);
  EXPECT_EQ(id.Token(), "");
}

}  // namespace
}  // namespace synod::proxy
