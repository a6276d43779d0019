#include "backend/auth/auth_store.h"

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "backend/storage/backend.h"
#include "backend/storage/schema.h"
#include "common/errors.h"
#include "gtest/gtest.h"
#include "leveldb/env.h"
#include "leveldb/helpers/memenv.h"

namespace synod::auth {
namespace {

using common::EtcdError;
using common::IsErr;
using Perm = authpb::Permission;

const std::string kNul("\0", 1);
constexpr int kCost = 4;  // Go bcrypt's minimum: fast tests

// bcrypt("etcd-pass", cost 4) from Go's golang.org/x/crypto/bcrypt, as etcd
// stores it.
constexpr char kGoHash[] =
    "$2a$04$CEma571j048IHuCLWAgZ9OkxD1mTDJz0rTrI2qS0PTdZr4GkDAJIG";

// A token table in memory, recording what the store asks of it.
class FakeTokens : public TokenProvider {
 public:
  std::string NewTokenPrefix() override { return "prefix"; }
  absl::StatusOr<std::string> Assign(absl::string_view prefix, uint64_t index,
                                     absl::string_view username,
                                     uint64_t revision) override {
    std::string token = absl::StrCat(prefix, ".", index);
    tokens[token] = AuthInfo{std::string(username), revision};
    return token;
  }
  std::optional<AuthInfo> Info(absl::string_view token,
                               uint64_t current_revision) override {
    auto it = tokens.find(std::string(token));
    if (it == tokens.end()) return std::nullopt;
    return AuthInfo{it->second.username, current_revision};
  }
  void Enable() override { ++enables; }
  void Disable() override {
    ++disables;
    tokens.clear();
  }
  void InvalidateUser(absl::string_view username) override {
    invalidated.emplace_back(username);
  }

  std::map<std::string, AuthInfo> tokens;
  int enables = 0;
  int disables = 0;
  std::vector<std::string> invalidated;
};

Perm MakePerm(absl::string_view key, absl::string_view range_end,
              Perm::Type type) {
  Perm p;
  p.set_key(std::string(key));
  p.set_range_end(std::string(range_end));
  p.set_permtype(type);
  return p;
}

class AuthStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    env_.reset(leveldb::NewMemEnv(leveldb::Env::Default()));
    OpenBackend();
    store_ = OpenStore(&tokens_);
  }

  // Invariant: the state in memory is the state on disk.
  void TearDown() override {
    if (store_ == nullptr) return;
    FakeTokens t;
    std::unique_ptr<AuthStore> fresh = OpenStore(&t);
    ASSERT_NE(fresh, nullptr);
    EXPECT_EQ(fresh->IsAuthEnabled(), store_->IsAuthEnabled());
    EXPECT_EQ(fresh->Revision(), store_->Revision());
    EXPECT_EQ(fresh->UserList(), store_->UserList());
    EXPECT_EQ(fresh->RoleList(), store_->RoleList());
    for (const std::string& u : store_->UserList()) {
      EXPECT_EQ(*fresh->UserGet(u), *store_->UserGet(u)) << u;
    }
    for (const std::string& r : store_->RoleList()) {
      auto a = fresh->RoleGet(r);
      auto b = store_->RoleGet(r);
      ASSERT_EQ(a->size(), b->size()) << r;
      for (size_t i = 0; i < a->size(); ++i) {
        EXPECT_EQ((*a)[i].SerializeAsString(), (*b)[i].SerializeAsString());
      }
    }
  }

  void OpenBackend() {
    storage::BackendOptions opts;
    opts.env = env_.get();
    auto b = storage::Backend::Open("/db", opts);
    ASSERT_TRUE(b.ok()) << b.status();
    backend_ = std::move(*b);
  }

  std::unique_ptr<AuthStore> OpenStore(FakeTokens* tokens) {
    AuthStore::Options opts;
    opts.bcrypt_cost = kCost;
    opts.tokens = tokens;
    auto s = AuthStore::Open(backend_.get(), opts);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? std::move(*s) : nullptr;
  }

  // Closes and reopens the backend and the store (a restart).
  void Reopen() {
    store_.reset();
    backend_.reset();
    OpenBackend();
    tokens_ = FakeTokens();
    store_ = OpenStore(&tokens_);
    ASSERT_NE(store_, nullptr);
  }

  // Runs one applied change and writes its batch. A refused change must
  // stage nothing and keep the revision.
  absl::Status Apply(const std::function<absl::Status(storage::Batch*)>& f) {
    const uint64_t before = store_->Revision();
    storage::Batch b;
    absl::Status s = f(&b);
    if (!s.ok()) {
      EXPECT_EQ(b.Count(), 0) << "refused change staged writes: " << s;
      EXPECT_EQ(store_->Revision(), before) << s;
    }
    EXPECT_TRUE(backend_->Write(&b, true).ok());
    return s;
  }

  absl::Status AddUser(const std::string& name, const std::string& pw) {
    auto h = store_->HashPassword(pw);
    EXPECT_TRUE(h.ok()) << h.status();
    return Apply([&](storage::Batch* b) {
      return store_->ApplyUserAdd(name, *h, false, b);
    });
  }
  absl::Status AddUserNoPassword(const std::string& name) {
    return Apply([&](storage::Batch* b) {
      return store_->ApplyUserAdd(name, "", true, b);
    });
  }
  absl::Status DeleteUser(const std::string& name) {
    return Apply(
        [&](storage::Batch* b) { return store_->ApplyUserDelete(name, b); });
  }
  absl::Status ChangePassword(const std::string& name, const std::string& pw) {
    auto h = store_->HashPassword(pw);
    EXPECT_TRUE(h.ok()) << h.status();
    return Apply([&](storage::Batch* b) {
      return store_->ApplyUserChangePassword(name, *h, b);
    });
  }
  absl::Status AddRole(const std::string& name) {
    return Apply(
        [&](storage::Batch* b) { return store_->ApplyRoleAdd(name, b); });
  }
  absl::Status DeleteRole(const std::string& name) {
    return Apply(
        [&](storage::Batch* b) { return store_->ApplyRoleDelete(name, b); });
  }
  absl::Status GrantRole(const std::string& user, const std::string& role) {
    return Apply([&](storage::Batch* b) {
      return store_->ApplyUserGrantRole(user, role, b);
    });
  }
  absl::Status RevokeRole(const std::string& user, const std::string& role) {
    return Apply([&](storage::Batch* b) {
      return store_->ApplyUserRevokeRole(user, role, b);
    });
  }
  absl::Status GrantPerm(const std::string& role, absl::string_view key,
                         absl::string_view range_end, Perm::Type type) {
    return Apply([&](storage::Batch* b) {
      return store_->ApplyRoleGrantPermission(
          role, MakePerm(key, range_end, type), b);
    });
  }
  absl::Status RevokePerm(const std::string& role, absl::string_view key,
                          absl::string_view range_end) {
    return Apply([&](storage::Batch* b) {
      return store_->ApplyRoleRevokePermission(role, key, range_end, b);
    });
  }
  absl::Status Enable() {
    return Apply([&](storage::Batch* b) { return store_->ApplyAuthEnable(b); });
  }
  absl::Status Disable() {
    return Apply(
        [&](storage::Batch* b) { return store_->ApplyAuthDisable(b); });
  }
  // Adds user root with role root and enables auth.
  void EnableWithRoot() {
    ASSERT_TRUE(AddUser("root", "rootpw").ok());
    ASSERT_TRUE(GrantRole("root", "root").ok());
    ASSERT_TRUE(Enable().ok());
  }
  // Credentials of `user` at the current revision.
  AuthInfo Now(const std::string& user) {
    return AuthInfo{user, store_->Revision()};
  }

  std::unique_ptr<leveldb::Env> env_;
  std::unique_ptr<storage::Backend> backend_;
  FakeTokens tokens_;
  std::unique_ptr<AuthStore> store_;
};

// --- Opening and revision ---

TEST_F(AuthStoreTest, NewStoreIsOffAtRevisionOne) {
  EXPECT_FALSE(store_->IsAuthEnabled());
  EXPECT_EQ(store_->Revision(), 1u);
  EXPECT_TRUE(store_->UserList().empty());
  EXPECT_TRUE(store_->RoleList().empty());
  EXPECT_EQ(tokens_.enables, 0);
  // Auth off: everything is permitted, even with no credentials.
  EXPECT_TRUE(store_->IsRangePermitted(AuthInfo{}, "a", "").ok());
  EXPECT_TRUE(store_->IsPutPermitted(AuthInfo{}, "a").ok());
  EXPECT_TRUE(store_->IsDeleteRangePermitted(AuthInfo{}, "a", kNul).ok());
  EXPECT_TRUE(store_->IsAdminPermitted(AuthInfo{}).ok());
}

TEST_F(AuthStoreTest, OpenRejectsBadOptions) {
  FakeTokens t;
  for (int cost : {3, 32, 0, -1}) {
    AuthStore::Options opts;
    opts.bcrypt_cost = cost;
    opts.tokens = &t;
    auto s = AuthStore::Open(backend_.get(), opts);
    EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument) << cost;
  }
  AuthStore::Options opts;
  opts.bcrypt_cost = kCost;
  EXPECT_EQ(AuthStore::Open(backend_.get(), opts).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(AuthStoreTest, EveryAppliedChangeBumpsRevisionByOne) {
  ASSERT_TRUE(AddUser("alice", "pw").ok());
  EXPECT_EQ(store_->Revision(), 2u);
  ASSERT_TRUE(AddRole("r").ok());
  EXPECT_EQ(store_->Revision(), 3u);
  ASSERT_TRUE(GrantRole("alice", "r").ok());
  EXPECT_EQ(store_->Revision(), 4u);
  ASSERT_TRUE(GrantPerm("r", "a", "", Perm::READ).ok());
  EXPECT_EQ(store_->Revision(), 5u);
  ASSERT_TRUE(RevokePerm("r", "a", "").ok());
  EXPECT_EQ(store_->Revision(), 6u);
  ASSERT_TRUE(RevokeRole("alice", "r").ok());
  EXPECT_EQ(store_->Revision(), 7u);
  ASSERT_TRUE(ChangePassword("alice", "pw2").ok());
  EXPECT_EQ(store_->Revision(), 8u);
  ASSERT_TRUE(DeleteRole("r").ok());
  EXPECT_EQ(store_->Revision(), 9u);
  ASSERT_TRUE(DeleteUser("alice").ok());
  EXPECT_EQ(store_->Revision(), 10u);
  auto rev = backend_->Get(storage::kAuthRevision);
  ASSERT_TRUE(rev.ok() && rev->has_value());
  EXPECT_EQ(**rev, storage::EncodeU64(10));
}

// etcd 3.4's AuthEnable does not commit a revision; AuthDisable does, and
// Authenticate never does.
TEST_F(AuthStoreTest, EnableKeepsRevisionDisableBumpsIt) {
  ASSERT_TRUE(AddUser("root", "pw").ok());
  ASSERT_TRUE(GrantRole("root", "root").ok());
  const uint64_t rev = store_->Revision();
  ASSERT_TRUE(Enable().ok());
  EXPECT_EQ(store_->Revision(), rev);
  ASSERT_TRUE(store_->ApplyAuthenticate("root", "p", 7).ok());
  EXPECT_EQ(store_->Revision(), rev);
  ASSERT_TRUE(Disable().ok());
  EXPECT_EQ(store_->Revision(), rev + 1);
}

// --- Enable and disable ---

TEST_F(AuthStoreTest, EnableNeedsRootUserWithRootRole) {
  EXPECT_TRUE(IsErr(Enable(), EtcdError::kRootUserNotExist));
  ASSERT_TRUE(AddUser("root", "pw").ok());
  EXPECT_TRUE(IsErr(Enable(), EtcdError::kRootRoleNotExist));
  // Role root is built in: granting it needs no role record.
  ASSERT_TRUE(GrantRole("root", "root").ok());
  EXPECT_TRUE(store_->RoleList().empty());
  ASSERT_TRUE(Enable().ok());
  EXPECT_TRUE(store_->IsAuthEnabled());
  EXPECT_EQ(tokens_.enables, 1);
  auto v = backend_->Get(storage::kAuthEnabled);
  ASSERT_TRUE(v.ok() && v->has_value());
  EXPECT_EQ(**v, "1");
}

TEST_F(AuthStoreTest, EnableTwiceAndDisableTwiceAreNoOps) {
  EnableWithRoot();
  const uint64_t rev = store_->Revision();
  storage::Batch b;
  EXPECT_TRUE(store_->ApplyAuthEnable(&b).ok());
  EXPECT_EQ(b.Count(), 0);
  EXPECT_EQ(tokens_.enables, 1);
  ASSERT_TRUE(Disable().ok());
  EXPECT_FALSE(store_->IsAuthEnabled());
  EXPECT_EQ(tokens_.disables, 1);
  EXPECT_EQ(store_->Revision(), rev + 1);
  EXPECT_TRUE(store_->ApplyAuthDisable(&b).ok());
  EXPECT_EQ(b.Count(), 0);
  EXPECT_EQ(tokens_.disables, 1);
  EXPECT_EQ(store_->Revision(), rev + 1);
  auto v = backend_->Get(storage::kAuthEnabled);
  ASSERT_TRUE(v.ok() && v->has_value());
  EXPECT_EQ(**v, "0");
}

TEST_F(AuthStoreTest, RootIsProtectedOnlyWhileEnabled) {
  EnableWithRoot();
  // Checked before existence, as etcd does: role root has no record yet.
  EXPECT_TRUE(IsErr(DeleteRole("root"), EtcdError::kInvalidAuthMgmt));
  ASSERT_TRUE(AddRole("root").ok());
  EXPECT_TRUE(IsErr(DeleteUser("root"), EtcdError::kInvalidAuthMgmt));
  EXPECT_TRUE(IsErr(RevokeRole("root", "root"), EtcdError::kInvalidAuthMgmt));
  EXPECT_TRUE(IsErr(DeleteRole("root"), EtcdError::kInvalidAuthMgmt));
  ASSERT_TRUE(Disable().ok());
  EXPECT_TRUE(RevokeRole("root", "root").ok());
  EXPECT_TRUE(DeleteRole("root").ok());
  EXPECT_TRUE(DeleteUser("root").ok());
}

// --- Users ---

TEST_F(AuthStoreTest, UserAddErrors) {
  EXPECT_TRUE(IsErr(AddUser("", "pw"), EtcdError::kUserEmpty));
  ASSERT_TRUE(AddUser("bob", "pw").ok());
  EXPECT_TRUE(IsErr(AddUser("bob", "other"), EtcdError::kUserAlreadyExist));
  EXPECT_TRUE(IsErr(AddUserNoPassword("bob"), EtcdError::kUserAlreadyExist));
}

TEST_F(AuthStoreTest, UserListIsSortedAndUserGetGivesRoles) {
  ASSERT_TRUE(AddUser("carol", "pw").ok());
  ASSERT_TRUE(AddUser("alice", "pw").ok());
  ASSERT_TRUE(AddUser("bob", "pw").ok());
  EXPECT_EQ(store_->UserList(),
            (std::vector<std::string>{"alice", "bob", "carol"}));
  EXPECT_TRUE(store_->UserGet("alice")->empty());
  EXPECT_TRUE(
      IsErr(store_->UserGet("dave").status(), EtcdError::kUserNotFound));
}

TEST_F(AuthStoreTest, UserRecordIsPersistedWithBcryptHash) {
  ASSERT_TRUE(AddUser("alice", "secret").ok());
  ASSERT_TRUE(AddUserNoPassword("nopw").ok());
  auto v = backend_->Get(absl::StrCat(storage::kAuthUserPrefix, "alice"));
  ASSERT_TRUE(v.ok() && v->has_value());
  authpb::User u;
  ASSERT_TRUE(u.ParseFromString(**v));
  EXPECT_EQ(u.name(), "alice");
  EXPECT_TRUE(absl::StartsWith(u.password(), "$2b$04$")) << u.password();
  EXPECT_FALSE(u.options().no_password());
  v = backend_->Get(absl::StrCat(storage::kAuthUserPrefix, "nopw"));
  ASSERT_TRUE(v.ok() && v->has_value());
  ASSERT_TRUE(u.ParseFromString(**v));
  EXPECT_TRUE(u.password().empty());
  EXPECT_TRUE(u.options().no_password());
}

TEST_F(AuthStoreTest, UserDeleteInvalidatesTokensAndPermissions) {
  EnableWithRoot();
  ASSERT_TRUE(AddUser("alice", "pw").ok());
  ASSERT_TRUE(AddRole("r").ok());
  ASSERT_TRUE(GrantPerm("r", "a", "", Perm::READ).ok());
  ASSERT_TRUE(GrantRole("alice", "r").ok());
  AuthInfo alice = Now("alice");
  ASSERT_TRUE(store_->IsRangePermitted(alice, "a", "").ok());
  EXPECT_TRUE(IsErr(DeleteUser("nobody"), EtcdError::kUserNotFound));
  ASSERT_TRUE(DeleteUser("alice").ok());
  EXPECT_EQ(tokens_.invalidated, (std::vector<std::string>{"alice"}));
  EXPECT_TRUE(IsErr(store_->IsRangePermitted(Now("alice"), "a", ""),
                    EtcdError::kPermissionDenied));
  EXPECT_TRUE(
      IsErr(store_->UserGet("alice").status(), EtcdError::kUserNotFound));
  // Re-adding the name starts with no roles.
  ASSERT_TRUE(AddUser("alice", "pw").ok());
  EXPECT_TRUE(store_->UserGet("alice")->empty());
  EXPECT_TRUE(IsErr(store_->IsRangePermitted(Now("alice"), "a", ""),
                    EtcdError::kPermissionDenied));
}

TEST_F(AuthStoreTest, ChangePasswordKeepsRolesAndInvalidatesTokens) {
  EnableWithRoot();
  ASSERT_TRUE(AddUser("alice", "old").ok());
  ASSERT_TRUE(AddRole("r").ok());
  ASSERT_TRUE(GrantRole("alice", "r").ok());
  EXPECT_TRUE(IsErr(ChangePassword("nobody", "x"), EtcdError::kUserNotFound));
  ASSERT_TRUE(ChangePassword("alice", "new").ok());
  EXPECT_EQ(tokens_.invalidated, (std::vector<std::string>{"alice"}));
  EXPECT_TRUE(
      IsErr(store_->CheckPassword("alice", "old"), EtcdError::kAuthFailed));
  EXPECT_TRUE(store_->CheckPassword("alice", "new").ok());
  EXPECT_EQ(*store_->UserGet("alice"), (std::vector<std::string>{"r"}));
}

// --- Passwords and Authenticate ---

TEST_F(AuthStoreTest, HashPasswordIsSaltedBcrypt) {
  auto a = store_->HashPassword("pw");
  auto b = store_->HashPassword("pw");
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_TRUE(absl::StartsWith(*a, "$2b$04$")) << *a;
  EXPECT_EQ(a->size(), 60u);
  EXPECT_NE(*a, *b);
}

TEST_F(AuthStoreTest, CheckPassword) {
  ASSERT_TRUE(AddUser("alice", "secret").ok());
  ASSERT_TRUE(AddUserNoPassword("nopw").ok());
  EXPECT_TRUE(IsErr(store_->CheckPassword("alice", "secret"),
                    EtcdError::kAuthNotEnabled));
  EnableWithRoot();
  EXPECT_TRUE(store_->CheckPassword("alice", "secret").ok());
  EXPECT_TRUE(store_->CheckPassword("root", "rootpw").ok());
  EXPECT_TRUE(
      IsErr(store_->CheckPassword("alice", "Secret"), EtcdError::kAuthFailed));
  EXPECT_TRUE(
      IsErr(store_->CheckPassword("alice", ""), EtcdError::kAuthFailed));
  EXPECT_TRUE(
      IsErr(store_->CheckPassword("nobody", "secret"), EtcdError::kAuthFailed));
  EXPECT_TRUE(IsErr(store_->CheckPassword("nopw", ""), EtcdError::kAuthFailed));
}

// A hash written by etcd (Go's bcrypt, "$2a$") verifies too.
TEST_F(AuthStoreTest, CheckPasswordAcceptsGoBcryptHash) {
  EnableWithRoot();
  ASSERT_TRUE(Apply([&](storage::Batch* b) {
                return store_->ApplyUserAdd("etcd", kGoHash, false, b);
              }).ok());
  EXPECT_TRUE(store_->CheckPassword("etcd", "etcd-pass").ok());
  EXPECT_TRUE(IsErr(store_->CheckPassword("etcd", "etcd-pasS"),
                    EtcdError::kAuthFailed));
}

// A record whose hash is not bcrypt never verifies (no fallback to DES).
TEST_F(AuthStoreTest, CheckPasswordRefusesNonBcryptHash) {
  EnableWithRoot();
  const std::vector<std::pair<std::string, std::string>> users = {
      {"des", "abzlUXK5ed5rs"},  // DES crypt(3) of "pw"
      {"md5", "$1$salt$hash"},
      {"short", "$2b$04$x"},
      {"empty", ""},
  };
  for (const auto& user : users) {
    ASSERT_TRUE(Apply([&](storage::Batch* b) {
                  return store_->ApplyUserAdd(user.first, user.second, false,
                                              b);
                }).ok());
  }
  for (const auto& [name, hash] : users) {
    EXPECT_TRUE(
        IsErr(store_->CheckPassword(name, "pw"), EtcdError::kAuthFailed))
        << name;
    EXPECT_TRUE(IsErr(store_->CheckPassword(name, ""), EtcdError::kAuthFailed))
        << name;
  }
}

TEST_F(AuthStoreTest, Authenticate) {
  ASSERT_TRUE(AddUser("alice", "pw").ok());
  ASSERT_TRUE(AddUserNoPassword("nopw").ok());
  EXPECT_TRUE(IsErr(store_->ApplyAuthenticate("alice", "p", 5).status(),
                    EtcdError::kAuthNotEnabled));
  EnableWithRoot();
  EXPECT_TRUE(IsErr(store_->ApplyAuthenticate("nobody", "p", 6).status(),
                    EtcdError::kAuthFailed));
  EXPECT_TRUE(IsErr(store_->ApplyAuthenticate("nopw", "p", 6).status(),
                    EtcdError::kAuthFailed));
  auto token = store_->ApplyAuthenticate("alice", "pre", 9);
  ASSERT_TRUE(token.ok()) << token.status();
  EXPECT_EQ(*token, "pre.9");
  EXPECT_EQ(tokens_.tokens[*token].revision, store_->Revision());
  auto info = store_->AuthInfoFromToken(*token);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->username, "alice");
  EXPECT_EQ(info->revision, store_->Revision());
  EXPECT_TRUE(IsErr(store_->AuthInfoFromToken("bogus").status(),
                    EtcdError::kInvalidAuthToken));
}

TEST_F(AuthStoreTest, AuthInfoFromCommonNameIsAtCurrentRevision) {
  ASSERT_TRUE(AddUser("alice", "pw").ok());
  AuthInfo info = store_->AuthInfoFromCommonName("alice");
  EXPECT_EQ(info.username, "alice");
  EXPECT_EQ(info.revision, store_->Revision());
}

// --- Roles ---

TEST_F(AuthStoreTest, RoleAddErrorsAndList) {
  EXPECT_TRUE(IsErr(AddRole(""), EtcdError::kRoleEmpty));
  ASSERT_TRUE(AddRole("writer").ok());
  ASSERT_TRUE(AddRole("reader").ok());
  EXPECT_TRUE(IsErr(AddRole("reader"), EtcdError::kRoleAlreadyExist));
  EXPECT_EQ(store_->RoleList(), (std::vector<std::string>{"reader", "writer"}));
  EXPECT_TRUE(store_->RoleGet("reader")->empty());
  EXPECT_TRUE(
      IsErr(store_->RoleGet("nobody").status(), EtcdError::kRoleNotFound));
}

// etcd 3.4 has no record for the built-in role root: RoleGet finds it only
// once it was added.
TEST_F(AuthStoreTest, RoleGetRootNeedsARecord) {
  EnableWithRoot();
  EXPECT_TRUE(
      IsErr(store_->RoleGet("root").status(), EtcdError::kRoleNotFound));
  EXPECT_TRUE(store_->RoleList().empty());
  ASSERT_TRUE(AddRole("root").ok());
  auto perms = store_->RoleGet("root");
  ASSERT_TRUE(perms.ok());
  EXPECT_TRUE(perms->empty());
  EXPECT_EQ(store_->RoleList(), (std::vector<std::string>{"root"}));
}

TEST_F(AuthStoreTest, GrantRoleErrorsAndNoOp) {
  ASSERT_TRUE(AddUser("alice", "pw").ok());
  ASSERT_TRUE(AddRole("b").ok());
  ASSERT_TRUE(AddRole("a").ok());
  EXPECT_TRUE(IsErr(GrantRole("nobody", "a"), EtcdError::kUserNotFound));
  EXPECT_TRUE(IsErr(GrantRole("alice", "zz"), EtcdError::kRoleNotFound));
  ASSERT_TRUE(GrantRole("alice", "b").ok());
  ASSERT_TRUE(GrantRole("alice", "a").ok());
  EXPECT_EQ(*store_->UserGet("alice"), (std::vector<std::string>{"a", "b"}));
  // Granting a held role writes nothing and keeps the revision.
  const uint64_t rev = store_->Revision();
  storage::Batch b;
  EXPECT_TRUE(store_->ApplyUserGrantRole("alice", "a", &b).ok());
  EXPECT_EQ(b.Count(), 0);
  EXPECT_EQ(store_->Revision(), rev);
  EXPECT_TRUE(store_->HasRole("alice", "a"));
  EXPECT_FALSE(store_->HasRole("alice", "c"));
  EXPECT_FALSE(store_->HasRole("nobody", "a"));
}

TEST_F(AuthStoreTest, RevokeRoleErrors) {
  ASSERT_TRUE(AddUser("alice", "pw").ok());
  ASSERT_TRUE(AddRole("a").ok());
  EXPECT_TRUE(IsErr(RevokeRole("nobody", "a"), EtcdError::kUserNotFound));
  EXPECT_TRUE(IsErr(RevokeRole("alice", "a"), EtcdError::kRoleNotGranted));
  ASSERT_TRUE(GrantRole("alice", "a").ok());
  ASSERT_TRUE(RevokeRole("alice", "a").ok());
  EXPECT_TRUE(store_->UserGet("alice")->empty());
  EXPECT_TRUE(IsErr(RevokeRole("alice", "a"), EtcdError::kRoleNotGranted));
}

TEST_F(AuthStoreTest, RoleDeleteRevokesItFromEveryUser) {
  EnableWithRoot();
  ASSERT_TRUE(AddUser("alice", "pw").ok());
  ASSERT_TRUE(AddUser("bob", "pw").ok());
  ASSERT_TRUE(AddRole("r").ok());
  ASSERT_TRUE(AddRole("keep").ok());
  ASSERT_TRUE(GrantPerm("r", "a", "", Perm::READ).ok());
  ASSERT_TRUE(GrantRole("alice", "r").ok());
  ASSERT_TRUE(GrantRole("alice", "keep").ok());
  ASSERT_TRUE(GrantRole("bob", "r").ok());
  ASSERT_TRUE(store_->IsRangePermitted(Now("bob"), "a", "").ok());
  EXPECT_TRUE(IsErr(DeleteRole("nobody"), EtcdError::kRoleNotFound));
  ASSERT_TRUE(DeleteRole("r").ok());
  EXPECT_EQ(*store_->UserGet("alice"), (std::vector<std::string>{"keep"}));
  EXPECT_TRUE(store_->UserGet("bob")->empty());
  EXPECT_EQ(store_->RoleList(), (std::vector<std::string>{"keep"}));
  EXPECT_TRUE(IsErr(store_->IsRangePermitted(Now("bob"), "a", ""),
                    EtcdError::kPermissionDenied));
  // A new role of the same name does not come back to them.
  ASSERT_TRUE(AddRole("r").ok());
  EXPECT_TRUE(store_->UserGet("bob")->empty());
  Reopen();
  EXPECT_EQ(*store_->UserGet("alice"), (std::vector<std::string>{"keep"}));
  EXPECT_TRUE(store_->UserGet("bob")->empty());
}

// --- Permissions of roles ---

TEST_F(AuthStoreTest, GrantPermissionReplacesSameKeyAndRangeEnd) {
  EXPECT_TRUE(IsErr(GrantPerm("nobody", "a", "", Perm::READ),
                    EtcdError::kRoleNotFound));
  ASSERT_TRUE(AddRole("r").ok());
  ASSERT_TRUE(GrantPerm("r", "k", "", Perm::READ).ok());
  ASSERT_TRUE(GrantPerm("r", "k", "", Perm::WRITE).ok());
  auto perms = store_->RoleGet("r");
  ASSERT_EQ(perms->size(), 1u);
  EXPECT_EQ((*perms)[0].permtype(), Perm::WRITE);
  // Same key, another range_end: a second permission.
  ASSERT_TRUE(GrantPerm("r", "k", "l", Perm::READ).ok());
  ASSERT_TRUE(GrantPerm("r", "k", "l", Perm::READWRITE).ok());
  perms = store_->RoleGet("r");
  ASSERT_EQ(perms->size(), 2u);
  EXPECT_EQ((*perms)[0].range_end(), "");
  EXPECT_EQ((*perms)[0].permtype(), Perm::WRITE);
  EXPECT_EQ((*perms)[1].range_end(), "l");
  EXPECT_EQ((*perms)[1].permtype(), Perm::READWRITE);
}

// etcd keeps a role's permissions sorted by key.
TEST_F(AuthStoreTest, RolePermissionsAreSortedByKey) {
  ASSERT_TRUE(AddRole("r").ok());
  ASSERT_TRUE(GrantPerm("r", "c", "", Perm::READ).ok());
  ASSERT_TRUE(GrantPerm("r", "a", "", Perm::READ).ok());
  ASSERT_TRUE(GrantPerm("r", "b", kNul, Perm::WRITE).ok());
  ASSERT_TRUE(GrantPerm("r", "a", "b", Perm::WRITE).ok());
  auto perms = store_->RoleGet("r");
  ASSERT_EQ(perms->size(), 4u);
  std::vector<std::pair<std::string, std::string>> got;
  for (const Perm& p : *perms) got.emplace_back(p.key(), p.range_end());
  EXPECT_EQ(got, (std::vector<std::pair<std::string, std::string>>{
                     {"a", ""}, {"a", "b"}, {"b", kNul}, {"c", ""}}));
}

TEST_F(AuthStoreTest, RevokePermissionErrors) {
  EXPECT_TRUE(IsErr(RevokePerm("nobody", "a", ""), EtcdError::kRoleNotFound));
  ASSERT_TRUE(AddRole("r").ok());
  ASSERT_TRUE(GrantPerm("r", "a", "c", Perm::READ).ok());
  EXPECT_TRUE(
      IsErr(RevokePerm("r", "a", ""), EtcdError::kPermissionNotGranted));
  EXPECT_TRUE(
      IsErr(RevokePerm("r", "a", "b"), EtcdError::kPermissionNotGranted));
  EXPECT_TRUE(
      IsErr(RevokePerm("r", "b", "c"), EtcdError::kPermissionNotGranted));
  ASSERT_TRUE(RevokePerm("r", "a", "c").ok());
  EXPECT_TRUE(store_->RoleGet("r")->empty());
}

// --- Permission checks ---

class AuthCheckTest : public AuthStoreTest {
 protected:
  void SetUp() override {
    AuthStoreTest::SetUp();
    EnableWithRoot();
    ASSERT_TRUE(AddUser("u", "pw").ok());
    ASSERT_TRUE(AddRole("r").ok());
    ASSERT_TRUE(GrantRole("u", "r").ok());
  }
  absl::Status Read(absl::string_view key, absl::string_view end = "") {
    return store_->IsRangePermitted(Now("u"), key, end);
  }
  absl::Status Put(absl::string_view key) {
    return store_->IsPutPermitted(Now("u"), key);
  }
  absl::Status Delete(absl::string_view key, absl::string_view end = "") {
    return store_->IsDeleteRangePermitted(Now("u"), key, end);
  }
  static bool Denied(const absl::Status& s) {
    return IsErr(s, EtcdError::kPermissionDenied);
  }
};

TEST_F(AuthCheckTest, CredentialRules) {
  ASSERT_TRUE(GrantPerm("r", "a", "", Perm::READ).ok());
  EXPECT_TRUE(store_->IsRangePermitted(Now("u"), "a", "").ok());
  EXPECT_TRUE(IsErr(store_->IsRangePermitted(AuthInfo{"u", 0}, "a", ""),
                    EtcdError::kUserEmpty));
  EXPECT_TRUE(IsErr(store_->IsRangePermitted(AuthInfo{}, "a", ""),
                    EtcdError::kUserEmpty));
  AuthInfo old = Now("u");
  ASSERT_TRUE(AddRole("other").ok());
  EXPECT_TRUE(IsErr(store_->IsRangePermitted(old, "a", ""),
                    EtcdError::kAuthOldRevision));
  EXPECT_TRUE(
      IsErr(store_->IsPutPermitted(old, "a"), EtcdError::kAuthOldRevision));
  // A newer revision than the store's (a member behind) is accepted.
  AuthInfo ahead{"u", store_->Revision() + 5};
  EXPECT_TRUE(store_->IsRangePermitted(ahead, "a", "").ok());
  EXPECT_TRUE(Denied(store_->IsRangePermitted(Now("nobody"), "a", "")));
  EXPECT_TRUE(Denied(store_->IsRangePermitted(Now(""), "a", "")));
}

TEST_F(AuthCheckTest, RootRoleMayDoEverything) {
  AuthInfo root = Now("root");
  EXPECT_TRUE(store_->IsRangePermitted(root, kNul, kNul).ok());
  EXPECT_TRUE(store_->IsRangePermitted(root, "", "").ok());
  EXPECT_TRUE(store_->IsPutPermitted(root, "anything").ok());
  EXPECT_TRUE(store_->IsDeleteRangePermitted(root, "a", "z").ok());
  // A user granted role root too.
  ASSERT_TRUE(GrantRole("u", "root").ok());
  EXPECT_TRUE(Put("x").ok());
  EXPECT_TRUE(Read(kNul, kNul).ok());
}

TEST_F(AuthCheckTest, SingleKey) {
  ASSERT_TRUE(GrantPerm("r", "foo", "", Perm::READ).ok());
  EXPECT_TRUE(Read("foo").ok());
  EXPECT_TRUE(Read("foo", "foo" + kNul).ok());
  EXPECT_TRUE(Denied(Read("foo0")));
  EXPECT_TRUE(Denied(Read("fo")));
  EXPECT_TRUE(Denied(Read("foo", "fop")));
  EXPECT_TRUE(Denied(Read("foo", kNul)));
}

TEST_F(AuthCheckTest, Prefix) {
  ASSERT_TRUE(GrantPerm("r", "foo/", "foo0", Perm::READ).ok());
  EXPECT_TRUE(Read("foo/").ok());
  EXPECT_TRUE(Read("foo/bar").ok());
  EXPECT_TRUE(Read("foo/", "foo0").ok());
  EXPECT_TRUE(Read("foo/a", "foo/b").ok());
  EXPECT_TRUE(Denied(Read("foo")));
  EXPECT_TRUE(Denied(Read("foo/", "foo1")));
  EXPECT_TRUE(Denied(Read("foo/", kNul)));
}

TEST_F(AuthCheckTest, FromKeyAndEveryKey) {
  ASSERT_TRUE(GrantPerm("r", "m", kNul, Perm::READ).ok());
  EXPECT_TRUE(Read("m").ok());
  EXPECT_TRUE(Read("zzz").ok());
  EXPECT_TRUE(Read("n", kNul).ok());
  EXPECT_TRUE(Denied(Read("l")));
  EXPECT_TRUE(Denied(Read("l", kNul)));
  EXPECT_TRUE(Denied(Read(kNul, kNul)));
  ASSERT_TRUE(GrantPerm("r", kNul, kNul, Perm::READ).ok());
  EXPECT_TRUE(Read(kNul, kNul).ok());
  EXPECT_TRUE(Read("a").ok());
  EXPECT_TRUE(Read("a", "b").ok());
}

// Two adjacent permissions, even from two roles, cover their union.
TEST_F(AuthCheckTest, UnionOfAdjacentPermissions) {
  ASSERT_TRUE(AddRole("r2").ok());
  ASSERT_TRUE(GrantRole("u", "r2").ok());
  ASSERT_TRUE(GrantPerm("r", "a", "c", Perm::READ).ok());
  EXPECT_TRUE(Denied(Read("a", "e")));
  ASSERT_TRUE(GrantPerm("r2", "c", "e", Perm::READWRITE).ok());
  EXPECT_TRUE(Read("a", "e").ok());
  EXPECT_TRUE(Read("b", "d").ok());
  EXPECT_TRUE(Denied(Read("a", "f")));
  EXPECT_TRUE(Denied(Delete("a", "e")));  // WRITE covers only [c, e)
  EXPECT_TRUE(Delete("c", "e").ok());
}

TEST_F(AuthCheckTest, ReadWriteAndReadWrite) {
  ASSERT_TRUE(GrantPerm("r", "r", "", Perm::READ).ok());
  ASSERT_TRUE(GrantPerm("r", "w", "", Perm::WRITE).ok());
  ASSERT_TRUE(GrantPerm("r", "rw", "", Perm::READWRITE).ok());
  EXPECT_TRUE(Read("r").ok());
  EXPECT_TRUE(Denied(Put("r")));
  EXPECT_TRUE(Denied(Delete("r")));
  EXPECT_TRUE(Denied(Read("w")));
  EXPECT_TRUE(Put("w").ok());
  EXPECT_TRUE(Delete("w").ok());
  EXPECT_TRUE(Read("rw").ok());
  EXPECT_TRUE(Put("rw").ok());
  EXPECT_TRUE(Delete("rw").ok());
}

TEST_F(AuthCheckTest, PermissionChangesTakeEffect) {
  ASSERT_TRUE(GrantPerm("r", "k", "", Perm::READ).ok());
  EXPECT_TRUE(Read("k").ok());
  EXPECT_TRUE(Denied(Put("k")));
  ASSERT_TRUE(GrantPerm("r", "k", "", Perm::WRITE).ok());  // replaces READ
  EXPECT_TRUE(Denied(Read("k")));
  EXPECT_TRUE(Put("k").ok());
  ASSERT_TRUE(RevokePerm("r", "k", "").ok());
  EXPECT_TRUE(Denied(Put("k")));
  ASSERT_TRUE(GrantPerm("r", "k", "", Perm::READ).ok());
  ASSERT_TRUE(RevokeRole("u", "r").ok());
  EXPECT_TRUE(Denied(Read("k")));
  ASSERT_TRUE(GrantRole("u", "r").ok());
  EXPECT_TRUE(Read("k").ok());
}

TEST_F(AuthCheckTest, ChecksPassWhenDisabled) {
  ASSERT_TRUE(Disable().ok());
  EXPECT_TRUE(store_->IsPutPermitted(AuthInfo{}, "k").ok());
  EXPECT_TRUE(store_->IsRangePermitted(AuthInfo{"nobody", 1}, "a", "").ok());
}

TEST_F(AuthCheckTest, AdminPermitted) {
  EXPECT_TRUE(store_->IsAdminPermitted(Now("root")).ok());
  EXPECT_TRUE(
      IsErr(store_->IsAdminPermitted(AuthInfo{}), EtcdError::kUserEmpty));
  EXPECT_TRUE(
      IsErr(store_->IsAdminPermitted(Now("nobody")), EtcdError::kUserNotFound));
  EXPECT_TRUE(
      IsErr(store_->IsAdminPermitted(Now("u")), EtcdError::kPermissionDenied));
  // etcd's IsAdminPermitted does not look at the revision.
  AuthInfo old_root = Now("root");
  ASSERT_TRUE(AddRole("x").ok());
  EXPECT_TRUE(store_->IsAdminPermitted(old_root).ok());
  ASSERT_TRUE(GrantRole("u", "root").ok());
  EXPECT_TRUE(store_->IsAdminPermitted(Now("u")).ok());
}

// --- Persistence and Reload ---

TEST_F(AuthStoreTest, StateSurvivesReopen) {
  EnableWithRoot();
  ASSERT_TRUE(AddUser("alice", "pw").ok());
  ASSERT_TRUE(AddUserNoPassword("nopw").ok());
  ASSERT_TRUE(AddRole("r").ok());
  ASSERT_TRUE(GrantPerm("r", "a", "c", Perm::READ).ok());
  ASSERT_TRUE(GrantPerm("r", "x", kNul, Perm::WRITE).ok());
  ASSERT_TRUE(GrantRole("alice", "r").ok());
  const uint64_t rev = store_->Revision();
  Reopen();
  EXPECT_TRUE(store_->IsAuthEnabled());
  EXPECT_EQ(tokens_.enables, 1);
  EXPECT_EQ(store_->Revision(), rev);
  EXPECT_EQ(store_->UserList(),
            (std::vector<std::string>{"alice", "nopw", "root"}));
  EXPECT_EQ(*store_->UserGet("alice"), (std::vector<std::string>{"r"}));
  EXPECT_EQ(store_->RoleGet("r")->size(), 2u);
  EXPECT_TRUE(store_->CheckPassword("alice", "pw").ok());
  EXPECT_TRUE(IsErr(store_->CheckPassword("nopw", ""), EtcdError::kAuthFailed));
  EXPECT_TRUE(store_->IsRangePermitted(Now("alice"), "b", "").ok());
  EXPECT_TRUE(store_->IsPutPermitted(Now("alice"), "y").ok());
  EXPECT_TRUE(IsErr(store_->IsPutPermitted(Now("alice"), "b"),
                    EtcdError::kPermissionDenied));
  EXPECT_TRUE(store_->IsAdminPermitted(Now("root")).ok());
  EXPECT_TRUE(IsErr(DeleteUser("root"), EtcdError::kInvalidAuthMgmt));
}

TEST_F(AuthStoreTest, DisabledStateSurvivesReopen) {
  EnableWithRoot();
  ASSERT_TRUE(Disable().ok());
  const uint64_t rev = store_->Revision();
  Reopen();
  EXPECT_FALSE(store_->IsAuthEnabled());
  EXPECT_EQ(tokens_.enables, 0);
  EXPECT_EQ(store_->Revision(), rev);
}

// A snapshot install replaces the data under the store; Reload picks it up.
TEST_F(AuthStoreTest, ReloadSeesNewState) {
  EnableWithRoot();
  ASSERT_TRUE(AddUser("alice", "pw").ok());
  ASSERT_TRUE(AddUser("bob", "pw").ok());
  ASSERT_TRUE(AddRole("r").ok());
  // A second store on the same backend plays the member that was behind.
  FakeTokens stale_tokens;
  std::unique_ptr<AuthStore> stale = OpenStore(&stale_tokens);
  ASSERT_NE(stale, nullptr);
  EXPECT_EQ(stale_tokens.enables, 1);
  ASSERT_TRUE(GrantPerm("r", "k", "", Perm::READWRITE).ok());
  ASSERT_TRUE(GrantRole("alice", "r").ok());
  ASSERT_TRUE(ChangePassword("alice", "pw2").ok());
  ASSERT_TRUE(DeleteUser("bob").ok());
  ASSERT_TRUE(AddUser("carol", "pw").ok());
  EXPECT_EQ(stale->UserList(),
            (std::vector<std::string>{"alice", "bob", "root"}));
  ASSERT_TRUE(stale->Reload().ok());
  EXPECT_EQ(stale->Revision(), store_->Revision());
  EXPECT_EQ(stale->UserList(),
            (std::vector<std::string>{"alice", "carol", "root"}));
  EXPECT_EQ(*stale->UserGet("alice"), (std::vector<std::string>{"r"}));
  EXPECT_TRUE(stale->CheckPassword("alice", "pw2").ok());
  EXPECT_TRUE(
      stale->IsPutPermitted(AuthInfo{"alice", stale->Revision()}, "k").ok());
  // Tokens of users that are gone or have a new password are forgotten.
  EXPECT_EQ(stale_tokens.invalidated,
            (std::vector<std::string>{"alice", "bob"}));
  // A snapshot with auth off disables the provider.
  ASSERT_TRUE(Disable().ok());
  ASSERT_TRUE(stale->Reload().ok());
  EXPECT_FALSE(stale->IsAuthEnabled());
  EXPECT_EQ(stale_tokens.disables, 1);
}

TEST_F(AuthStoreTest, OpenRefusesDamagedRecords) {
  struct Case {
    std::string key;
    std::string value;
  };
  authpb::User other;
  other.set_name("someone-else");
  for (const Case& c : std::vector<Case>{
           {absl::StrCat(storage::kAuthUserPrefix, "x"), "\xff\xff garbage"},
           {absl::StrCat(storage::kAuthUserPrefix, "x"),
            other.SerializeAsString()},
           {absl::StrCat(storage::kAuthRolePrefix, "x"), "\xff\xff garbage"},
           {storage::kAuthRevision, "123"},
           {storage::kAuthEnabled, "yes"},
       }) {
    storage::Batch b;
    b.Put(c.key, c.value);
    ASSERT_TRUE(backend_->Write(&b, true).ok());
    FakeTokens t;
    AuthStore::Options opts;
    opts.bcrypt_cost = kCost;
    opts.tokens = &t;
    EXPECT_EQ(AuthStore::Open(backend_.get(), opts).status().code(),
              absl::StatusCode::kDataLoss)
        << c.key;
    EXPECT_EQ(store_->Reload().code(), absl::StatusCode::kDataLoss) << c.key;
    b.Clear();
    b.Delete(c.key);
    ASSERT_TRUE(backend_->Write(&b, true).ok());
  }
  EXPECT_TRUE(store_->Reload().ok());
}

}  // namespace
}  // namespace synod::auth
