#include "backend/auth/auth_store.h"

#include <crypt.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/btree_map.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "backend/auth/range_perms.h"
#include "backend/storage/schema.h"
#include "common/errors.h"

namespace synod::auth {

using common::Err;
using common::EtcdError;

namespace {

constexpr int kMinBcryptCost = 4;   // Go's bcrypt.MinCost
constexpr int kMaxBcryptCost = 31;  // Go's bcrypt.MaxCost

// Everything the store persists, as loaded from the backend.
struct Data {
  bool enabled = false;
  uint64_t revision = 1;  // etcd's new store starts at 1
  absl::btree_map<std::string, authpb::User> users;
  absl::btree_map<std::string, authpb::Role> roles;
};

// One user's permissions, merged over all its roles.
struct UserPerms {
  KeyRangeSet read;
  KeyRangeSet write;
};

std::string UserKey(absl::string_view name) {
  return absl::StrCat(storage::kAuthUserPrefix, name);
}
std::string RoleKey(absl::string_view name) {
  return absl::StrCat(storage::kAuthRolePrefix, name);
}

bool HoldsRole(const authpb::User& u, absl::string_view role) {
  return std::find(u.roles().begin(), u.roles().end(), role) != u.roles().end();
}

// Removes `role` from `u`'s roles; false when `u` did not hold it.
bool RemoveRole(authpb::User* u, absl::string_view role) {
  auto* roles = u->mutable_roles();
  auto end = std::remove(roles->begin(), roles->end(), role);
  if (end == roles->end()) return false;
  roles->erase(end, roles->end());
  return true;
}

bool NoPassword(const authpb::User& u) {
  return u.has_options() && u.options().no_password();
}

// Reads every record under `prefix` into `out`, keyed by the name after
// the prefix, which must match the record's own name.
template <typename Record>
absl::Status LoadRecords(const storage::Backend& backend,
                         absl::string_view prefix,
                         absl::btree_map<std::string, Record>* out) {
  auto it = backend.NewIterator();
  for (it->Seek(prefix); it->Valid() && absl::StartsWith(it->key(), prefix);
       it->Next()) {
    std::string name(it->key().substr(prefix.size()));
    Record rec;
    if (!rec.ParseFromArray(it->value().data(),
                            static_cast<int>(it->value().size())) ||
        rec.name() != name) {
      return absl::DataLossError(
          absl::StrCat("auth: bad record under key ", it->key()));
    }
    out->emplace(std::move(name), std::move(rec));
  }
  return it->status();
}

absl::StatusOr<Data> LoadData(const storage::Backend& backend) {
  Data d;
  auto enabled = backend.Get(storage::kAuthEnabled);
  if (!enabled.ok()) return enabled.status();
  if (enabled->has_value()) {
    if (**enabled != "1" && **enabled != "0") {
      return absl::DataLossError("auth: bad value under a/enabled");
    }
    d.enabled = **enabled == "1";
  }
  auto rev = backend.Get(storage::kAuthRevision);
  if (!rev.ok()) return rev.status();
  if (rev->has_value()) {
    if ((*rev)->size() != 8) {
      return absl::DataLossError("auth: bad value under a/revision");
    }
    d.revision = storage::GetBigEndian64(**rev);
  }
  absl::Status s = LoadRecords(backend, storage::kAuthUserPrefix, &d.users);
  if (!s.ok()) return s;
  s = LoadRecords(backend, storage::kAuthRolePrefix, &d.roles);
  if (!s.ok()) return s;
  return d;
}

// Whether `hash` is the bcrypt hash of `password`: recomputes it with the
// hash as setting and compares in constant time. Only bcrypt settings are
// tried ("$2a$", "$2b$", "$2y$"), so a damaged record cannot fall back to a
// weak scheme.
bool VerifyBcrypt(absl::string_view hash, absl::string_view password) {
  if (hash.size() < 4 || !absl::StartsWith(hash, "$2") || hash[3] != '$') {
    return false;
  }
  auto data = std::make_unique<crypt_data>();
  const std::string pw(password);
  const std::string setting(hash);
  const char* out =
      crypt_rn(pw.c_str(), setting.c_str(), data.get(), sizeof(crypt_data));
  if (out == nullptr || out[0] == '*') return false;
  if (std::strlen(out) != hash.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < hash.size(); ++i) {
    diff |= static_cast<unsigned char>(out[i] ^ hash[i]);
  }
  return diff == 0;
}

}  // namespace

// Lock order: mu is a leaf; the TokenProvider is called only without it.
struct AuthStore::State {
  State(storage::Backend* b, TokenProvider* t, int cost)
      : backend(b), tokens(t), bcrypt_cost(cost) {}

  storage::Backend* const backend;
  TokenProvider* const tokens;
  const int bcrypt_cost;

  mutable absl::Mutex mu;
  Data data ABSL_GUARDED_BY(mu);
  // Every user's merged permissions (etcd's rangePermCache).
  absl::flat_hash_map<std::string, UserPerms> perms ABSL_GUARDED_BY(mu);

  const authpb::User* FindUser(absl::string_view name) const
      ABSL_SHARED_LOCKS_REQUIRED(mu) {
    auto it = data.users.find(name);
    return it == data.users.end() ? nullptr : &it->second;
  }
  authpb::Role* FindRole(absl::string_view name)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    auto it = data.roles.find(name);
    return it == data.roles.end() ? nullptr : &it->second;
  }

  // Rebuilds the merged permissions of user `name` from its roles.
  void RebuildPerms(const authpb::User& u) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    UserPerms p;
    for (const std::string& role_name : u.roles()) {
      auto r = data.roles.find(role_name);
      if (r == data.roles.end()) continue;
      for (const authpb::Permission& perm : r->second.keypermission()) {
        switch (perm.permtype()) {
          case authpb::Permission::READ:
            p.read.AddPermission(perm.key(), perm.range_end());
            break;
          case authpb::Permission::WRITE:
            p.write.AddPermission(perm.key(), perm.range_end());
            break;
          case authpb::Permission::READWRITE:
            p.read.AddPermission(perm.key(), perm.range_end());
            p.write.AddPermission(perm.key(), perm.range_end());
            break;
          default:  // an unknown type grants nothing, as in etcd
            break;
        }
      }
    }
    perms[u.name()] = std::move(p);
  }
  void RebuildPermsOfRoleHolders(absl::string_view role)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    for (const auto& [name, u] : data.users) {
      if (HoldsRole(u, role)) RebuildPerms(u);
    }
  }
  void RebuildAllPerms() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    perms.clear();
    for (const auto& [name, u] : data.users) RebuildPerms(u);
  }

  // Stage a record in `b` and store it in memory.
  void PutUser(authpb::User u, storage::Batch* b)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    b->Put(UserKey(u.name()), u.SerializeAsString());
    std::string name = u.name();
    data.users[name] = std::move(u);
  }
  void PutRole(authpb::Role r, storage::Batch* b)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    b->Put(RoleKey(r.name()), r.SerializeAsString());
    std::string name = r.name();
    data.roles[name] = std::move(r);
  }
  // etcd's commitRevision: one more applied change.
  void BumpRevision(storage::Batch* b) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    ++data.revision;
    b->Put(storage::kAuthRevision, storage::EncodeU64(data.revision));
  }

  // etcd's isOpPermitted.
  absl::Status CheckOp(const AuthInfo& info, absl::string_view key,
                       absl::string_view range_end, bool write) const {
    absl::ReaderMutexLock l(&mu);
    if (!data.enabled) return absl::OkStatus();
    if (info.revision == 0) return Err(EtcdError::kUserEmpty);
    if (info.revision < data.revision) {
      return Err(EtcdError::kAuthOldRevision);
    }
    const authpb::User* u = FindUser(info.username);
    if (u == nullptr) return Err(EtcdError::kPermissionDenied);
    if (HoldsRole(*u, kRootRole)) return absl::OkStatus();
    auto p = perms.find(info.username);
    if (p == perms.end()) return Err(EtcdError::kPermissionDenied);
    const KeyRangeSet& set = write ? p->second.write : p->second.read;
    if (set.Covers(key, range_end)) return absl::OkStatus();
    return Err(EtcdError::kPermissionDenied);
  }
};

absl::StatusOr<std::unique_ptr<AuthStore>> AuthStore::Open(
    storage::Backend* backend, const Options& options) {
  if (options.bcrypt_cost < kMinBcryptCost ||
      options.bcrypt_cost > kMaxBcryptCost) {
    return absl::InvalidArgumentError(
        absl::StrCat("auth: bcrypt cost ", options.bcrypt_cost, " is outside ",
                     kMinBcryptCost, "..", kMaxBcryptCost));
  }
  if (options.tokens == nullptr) {
    return absl::InvalidArgumentError("auth: no token provider");
  }
  std::unique_ptr<AuthStore> store(new AuthStore());
  store->state_ =
      std::make_unique<State>(backend, options.tokens, options.bcrypt_cost);
  absl::Status s = store->Reload();
  if (!s.ok()) return s;
  return store;
}

AuthStore::~AuthStore() = default;

absl::Status AuthStore::Reload() {
  State& st = *state_;
  absl::StatusOr<Data> loaded = LoadData(*st.backend);
  if (!loaded.ok()) return loaded.status();
  bool was_enabled;
  bool now_enabled;
  std::vector<std::string> changed_users;
  {
    absl::MutexLock l(&st.mu);
    was_enabled = st.data.enabled;
    // Tokens of users that are gone or have a new password are forgotten.
    for (const auto& [name, u] : st.data.users) {
      auto now = loaded->users.find(name);
      if (now == loaded->users.end() ||
          now->second.password() != u.password()) {
        changed_users.push_back(name);
      }
    }
    st.data = *std::move(loaded);
    st.RebuildAllPerms();
    now_enabled = st.data.enabled;
  }
  if (now_enabled) {
    st.tokens->Enable();
  } else if (was_enabled) {
    st.tokens->Disable();
  }
  for (const std::string& name : changed_users) st.tokens->InvalidateUser(name);
  return absl::OkStatus();
}

bool AuthStore::IsAuthEnabled() const {
  absl::ReaderMutexLock l(&state_->mu);
  return state_->data.enabled;
}

uint64_t AuthStore::Revision() const {
  absl::ReaderMutexLock l(&state_->mu);
  return state_->data.revision;
}

absl::StatusOr<std::string> AuthStore::HashPassword(
    absl::string_view password) const {
  char salt[CRYPT_GENSALT_OUTPUT_SIZE];
  if (crypt_gensalt_rn("$2b$", state_->bcrypt_cost, nullptr, 0, salt,
                       sizeof(salt)) == nullptr) {
    return absl::InternalError(
        absl::StrCat("auth: bcrypt salt: ", std::strerror(errno)));
  }
  auto data = std::make_unique<crypt_data>();
  const std::string pw(password);
  const char* out = crypt_rn(pw.c_str(), salt, data.get(), sizeof(crypt_data));
  if (out == nullptr || out[0] == '*') {
    return absl::InternalError(
        absl::StrCat("auth: bcrypt: ", std::strerror(errno)));
  }
  return std::string(out);
}

absl::Status AuthStore::CheckPassword(absl::string_view name,
                                      absl::string_view password) const {
  std::string hash;
  {
    absl::ReaderMutexLock l(&state_->mu);
    if (!state_->data.enabled) return Err(EtcdError::kAuthNotEnabled);
    const authpb::User* u = state_->FindUser(name);
    if (u == nullptr || NoPassword(*u)) return Err(EtcdError::kAuthFailed);
    hash = u->password();
  }
  // bcrypt is slow on purpose: outside the lock.
  if (!VerifyBcrypt(hash, password)) return Err(EtcdError::kAuthFailed);
  return absl::OkStatus();
}

absl::StatusOr<AuthInfo> AuthStore::AuthInfoFromToken(
    absl::string_view token) const {
  std::optional<AuthInfo> info = state_->tokens->Info(token, Revision());
  if (!info.has_value()) return Err(EtcdError::kInvalidAuthToken);
  return *std::move(info);
}

AuthInfo AuthStore::AuthInfoFromCommonName(absl::string_view cn) const {
  return AuthInfo{std::string(cn), Revision()};
}

absl::Status AuthStore::IsRangePermitted(const AuthInfo& info,
                                         absl::string_view key,
                                         absl::string_view range_end) const {
  return state_->CheckOp(info, key, range_end, /*write=*/false);
}

absl::Status AuthStore::IsPutPermitted(const AuthInfo& info,
                                       absl::string_view key) const {
  return state_->CheckOp(info, key, "", /*write=*/true);
}

absl::Status AuthStore::IsDeleteRangePermitted(
    const AuthInfo& info, absl::string_view key,
    absl::string_view range_end) const {
  return state_->CheckOp(info, key, range_end, /*write=*/true);
}

absl::Status AuthStore::IsAdminPermitted(const AuthInfo& info) const {
  absl::ReaderMutexLock l(&state_->mu);
  if (!state_->data.enabled) return absl::OkStatus();
  if (info.username.empty()) return Err(EtcdError::kUserEmpty);
  const authpb::User* u = state_->FindUser(info.username);
  if (u == nullptr) return Err(EtcdError::kUserNotFound);
  if (!HoldsRole(*u, kRootRole)) return Err(EtcdError::kPermissionDenied);
  return absl::OkStatus();
}

bool AuthStore::HasRole(absl::string_view name, absl::string_view role) const {
  absl::ReaderMutexLock l(&state_->mu);
  const authpb::User* u = state_->FindUser(name);
  return u != nullptr && HoldsRole(*u, role);
}

absl::Status AuthStore::ApplyAuthEnable(storage::Batch* b) {
  State& st = *state_;
  {
    absl::MutexLock l(&st.mu);
    if (st.data.enabled) return absl::OkStatus();
    const authpb::User* root = st.FindUser(kRootUser);
    if (root == nullptr) return Err(EtcdError::kRootUserNotExist);
    if (!HoldsRole(*root, kRootRole)) return Err(EtcdError::kRootRoleNotExist);
    b->Put(storage::kAuthEnabled, "1");
    st.data.enabled = true;
    // etcd 3.4's AuthEnable does not commit a new revision.
  }
  st.tokens->Enable();
  return absl::OkStatus();
}

absl::Status AuthStore::ApplyAuthDisable(storage::Batch* b) {
  State& st = *state_;
  {
    absl::MutexLock l(&st.mu);
    if (!st.data.enabled) return absl::OkStatus();
    b->Put(storage::kAuthEnabled, "0");
    st.data.enabled = false;
    st.BumpRevision(b);
  }
  st.tokens->Disable();
  return absl::OkStatus();
}

absl::StatusOr<std::string> AuthStore::ApplyAuthenticate(
    absl::string_view name, absl::string_view prefix, uint64_t index) {
  uint64_t revision;
  {
    absl::ReaderMutexLock l(&state_->mu);
    if (!state_->data.enabled) return Err(EtcdError::kAuthNotEnabled);
    const authpb::User* u = state_->FindUser(name);
    if (u == nullptr || NoPassword(*u)) return Err(EtcdError::kAuthFailed);
    revision = state_->data.revision;
  }
  return state_->tokens->Assign(prefix, index, name, revision);
}

absl::Status AuthStore::ApplyUserAdd(absl::string_view name,
                                     absl::string_view hashed_password,
                                     bool no_password, storage::Batch* b) {
  if (name.empty()) return Err(EtcdError::kUserEmpty);
  State& st = *state_;
  absl::MutexLock l(&st.mu);
  if (st.FindUser(name) != nullptr) return Err(EtcdError::kUserAlreadyExist);
  authpb::User u;
  u.set_name(std::string(name));
  if (!no_password) u.set_password(std::string(hashed_password));
  u.mutable_options()->set_no_password(no_password);
  st.perms[u.name()] = UserPerms();
  st.PutUser(std::move(u), b);
  st.BumpRevision(b);
  return absl::OkStatus();
}

absl::Status AuthStore::ApplyUserDelete(absl::string_view name,
                                        storage::Batch* b) {
  State& st = *state_;
  {
    absl::MutexLock l(&st.mu);
    if (st.data.enabled && name == kRootUser) {
      return Err(EtcdError::kInvalidAuthMgmt);
    }
    auto it = st.data.users.find(name);
    if (it == st.data.users.end()) return Err(EtcdError::kUserNotFound);
    b->Delete(UserKey(name));
    st.data.users.erase(it);
    st.perms.erase(name);
    st.BumpRevision(b);
  }
  st.tokens->InvalidateUser(name);
  return absl::OkStatus();
}

absl::Status AuthStore::ApplyUserChangePassword(
    absl::string_view name, absl::string_view hashed_password,
    storage::Batch* b) {
  State& st = *state_;
  {
    absl::MutexLock l(&st.mu);
    const authpb::User* old = st.FindUser(name);
    if (old == nullptr) return Err(EtcdError::kUserNotFound);
    authpb::User u = *old;  // roles and options stay
    u.set_password(std::string(hashed_password));
    st.PutUser(std::move(u), b);
    st.BumpRevision(b);
  }
  st.tokens->InvalidateUser(name);
  return absl::OkStatus();
}

absl::Status AuthStore::ApplyUserGrantRole(absl::string_view user,
                                           absl::string_view role,
                                           storage::Batch* b) {
  State& st = *state_;
  absl::MutexLock l(&st.mu);
  const authpb::User* old = st.FindUser(user);
  if (old == nullptr) return Err(EtcdError::kUserNotFound);
  if (role != kRootRole && st.FindRole(role) == nullptr) {
    return Err(EtcdError::kRoleNotFound);
  }
  if (HoldsRole(*old, role)) return absl::OkStatus();  // no-op, as etcd
  authpb::User u = *old;
  u.add_roles(std::string(role));
  std::sort(u.mutable_roles()->begin(), u.mutable_roles()->end());
  st.PutUser(std::move(u), b);
  st.RebuildPerms(*st.FindUser(user));
  st.BumpRevision(b);
  return absl::OkStatus();
}

absl::Status AuthStore::ApplyUserRevokeRole(absl::string_view name,
                                            absl::string_view role,
                                            storage::Batch* b) {
  State& st = *state_;
  absl::MutexLock l(&st.mu);
  if (st.data.enabled && name == kRootUser && role == kRootRole) {
    return Err(EtcdError::kInvalidAuthMgmt);
  }
  const authpb::User* old = st.FindUser(name);
  if (old == nullptr) return Err(EtcdError::kUserNotFound);
  authpb::User u = *old;
  if (!RemoveRole(&u, role)) return Err(EtcdError::kRoleNotGranted);
  st.PutUser(std::move(u), b);
  st.RebuildPerms(*st.FindUser(name));
  st.BumpRevision(b);
  return absl::OkStatus();
}

absl::Status AuthStore::ApplyRoleAdd(absl::string_view name,
                                     storage::Batch* b) {
  if (name.empty()) return Err(EtcdError::kRoleEmpty);
  State& st = *state_;
  absl::MutexLock l(&st.mu);
  if (st.FindRole(name) != nullptr) return Err(EtcdError::kRoleAlreadyExist);
  authpb::Role r;
  r.set_name(std::string(name));
  st.PutRole(std::move(r), b);
  st.BumpRevision(b);
  return absl::OkStatus();
}

absl::Status AuthStore::ApplyRoleDelete(absl::string_view name,
                                        storage::Batch* b) {
  State& st = *state_;
  absl::MutexLock l(&st.mu);
  if (st.data.enabled && name == kRootRole) {
    return Err(EtcdError::kInvalidAuthMgmt);
  }
  auto it = st.data.roles.find(name);
  if (it == st.data.roles.end()) return Err(EtcdError::kRoleNotFound);
  b->Delete(RoleKey(name));
  st.data.roles.erase(it);
  // Revoke it from every user that holds it.
  std::vector<authpb::User> updated;
  for (const auto& [user_name, u] : st.data.users) {
    if (!HoldsRole(u, name)) continue;
    updated.push_back(u);
    RemoveRole(&updated.back(), name);
  }
  for (authpb::User& u : updated) {
    std::string user_name = u.name();
    st.PutUser(std::move(u), b);
    st.RebuildPerms(*st.FindUser(user_name));
  }
  st.BumpRevision(b);
  return absl::OkStatus();
}

absl::Status AuthStore::ApplyRoleGrantPermission(absl::string_view role,
                                                 const authpb::Permission& perm,
                                                 storage::Batch* b) {
  State& st = *state_;
  absl::MutexLock l(&st.mu);
  const authpb::Role* old = st.FindRole(role);
  if (old == nullptr) return Err(EtcdError::kRoleNotFound);
  authpb::Role r = *old;
  auto* kps = r.mutable_keypermission();
  auto same = std::find_if(kps->begin(), kps->end(), [&](const auto& p) {
    return p.key() == perm.key() && p.range_end() == perm.range_end();
  });
  if (same != kps->end()) {
    same->set_permtype(perm.permtype());
  } else {
    // Kept sorted by key, a new one after those with the same key (etcd
    // sorts by key after appending).
    authpb::Permission* added = kps->Add();
    added->set_key(perm.key());
    added->set_range_end(perm.range_end());
    added->set_permtype(perm.permtype());
    std::stable_sort(
        kps->begin(), kps->end(),
        [](const auto& x, const auto& y) { return x.key() < y.key(); });
  }
  st.PutRole(std::move(r), b);
  st.RebuildPermsOfRoleHolders(role);
  st.BumpRevision(b);
  return absl::OkStatus();
}

absl::Status AuthStore::ApplyRoleRevokePermission(absl::string_view role,
                                                  absl::string_view key,
                                                  absl::string_view range_end,
                                                  storage::Batch* b) {
  State& st = *state_;
  absl::MutexLock l(&st.mu);
  const authpb::Role* old = st.FindRole(role);
  if (old == nullptr) return Err(EtcdError::kRoleNotFound);
  authpb::Role r = *old;
  auto* kps = r.mutable_keypermission();
  auto end = std::remove_if(kps->begin(), kps->end(), [&](const auto& p) {
    return p.key() == key && p.range_end() == range_end;
  });
  if (end == kps->end()) return Err(EtcdError::kPermissionNotGranted);
  kps->erase(end, kps->end());
  st.PutRole(std::move(r), b);
  st.RebuildPermsOfRoleHolders(role);
  st.BumpRevision(b);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> AuthStore::UserGet(
    absl::string_view name) const {
  absl::ReaderMutexLock l(&state_->mu);
  const authpb::User* u = state_->FindUser(name);
  if (u == nullptr) return Err(EtcdError::kUserNotFound);
  return std::vector<std::string>(u->roles().begin(), u->roles().end());
}

std::vector<std::string> AuthStore::UserList() const {
  absl::ReaderMutexLock l(&state_->mu);
  std::vector<std::string> out;
  out.reserve(state_->data.users.size());
  for (const auto& [name, u] : state_->data.users) out.push_back(name);
  return out;
}

absl::StatusOr<std::vector<authpb::Permission>> AuthStore::RoleGet(
    absl::string_view role) const {
  absl::ReaderMutexLock l(&state_->mu);
  auto it = state_->data.roles.find(role);
  // etcd 3.4 has no built-in record for "root": kRoleNotFound until added.
  if (it == state_->data.roles.end()) return Err(EtcdError::kRoleNotFound);
  const auto& kps = it->second.keypermission();
  return std::vector<authpb::Permission>(kps.begin(), kps.end());
}

std::vector<std::string> AuthStore::RoleList() const {
  absl::ReaderMutexLock l(&state_->mu);
  std::vector<std::string> out;
  out.reserve(state_->data.roles.size());
  for (const auto& [name, r] : state_->data.roles) out.push_back(name);
  return out;
}

}  // namespace synod::auth
