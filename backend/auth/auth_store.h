// AuthStore: etcd's users, roles and permissions (etcd 3.4 auth/store.go),
// replicated through Raft and kept in the member's LevelDB.
//
// State: the enabled flag, the auth revision, users (name, bcrypt hash,
// roles, options) and roles (name, key permissions). It changes only when a
// committed entry is applied: every *Apply* method below runs on the apply
// thread, stages its writes in the caller's storage::Batch (committed with
// the applied index, so a crash replays it), updates memory, and bumps the
// auth revision by one (except AuthEnable, which etcd 3.4 does not count). Reads (the Is*Permitted checks, tokens) run on any
// thread. Because the state lives under its own keys in LevelDB, it travels
// in snapshots; Reload() rebuilds memory after one is installed.
//
// Keys (PERSISTENT, see storage/schema.h): "a/enabled" -> "1" or "0",
// "a/revision" -> 8 bytes big-endian, "a/u/" + name -> authpb.User (its
// password field holds the bcrypt hash), "a/r/" + name -> authpb.Role.
//
// Rules mirrored from etcd 3.4:
//  * AuthEnable needs a user "root" holding the role "root"; the role
//    "root" need not exist as a record (it is built in: every key, read and
//    write). While auth is on, user root cannot be deleted or lose role
//    root, and role root cannot be deleted (kInvalidAuthMgmt).
//  * A user holding role "root" may do anything, including admin calls.
//  * A permission check passes when auth is off. Otherwise it needs a user
//    (revision 0 = no credentials: kUserEmpty), credentials no older than
//    the store (revision < Revision(): kAuthOldRevision), and a user whose
//    roles' permissions of the right type cover the whole range (union of
//    ranges; kPermissionDenied). A range check costs O(log n) in the user's
//    permissions: each user's READ and WRITE ranges are kept merged in an
//    ordered map (etcd uses an interval tree), rebuilt when a change
//    touches that user.
//  * Ranges follow etcd: range_end "" is the single key; range_end "\0"
//    is every key >= key; key "\0" with range_end "\0" is every key.
//
// Ownership: borrows the Backend and the TokenProvider it is given (they
// must outlive it). Thread-safe: the apply methods are called by one thread
// (the apply thread); everything else from any thread.
#ifndef SYNOD_BACKEND_AUTH_AUTH_STORE_H_
#define SYNOD_BACKEND_AUTH_AUTH_STORE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "backend/auth/token.h"
#include "backend/storage/backend.h"
#include "proto/auth.pb.h"
#include "proto/rpc.pb.h"

namespace synod::auth {

inline constexpr char kRootUser[] = "root";
inline constexpr char kRootRole[] = "root";

class AuthStore {
 public:
  struct Options {
    int bcrypt_cost = 10;  // --bcrypt-cost, 4..31 (Go bcrypt's range)
    TokenProvider* tokens = nullptr;  // required; not owned
  };

  // Loads the auth state from `backend` (an empty one: auth off, revision
  // 1, as etcd's new store, so that revision 0 means "no credentials").
  // Errors:
  // storage errors; DataLoss when a record does not parse; InvalidArgument
  // for a bcrypt_cost outside 4..31.
  static absl::StatusOr<std::unique_ptr<AuthStore>> Open(
      storage::Backend* backend, const Options& options);

  ~AuthStore();  // defined in auth_store.cc, where State is complete

  // Re-reads everything from the backend (after a snapshot was installed).
  absl::Status Reload();

  bool IsAuthEnabled() const;
  // The auth revision: bumped by every applied change (not by
  // Authenticate). Any thread.
  uint64_t Revision() const;

  // --- Proposer side (any thread, before proposing) ---

  // bcrypt of `password` at the configured cost (libxcrypt's "$2b$").
  // Errors: Internal when hashing fails.
  absl::StatusOr<std::string> HashPassword(absl::string_view password) const;
  // Checks name and password against the local state (etcd's
  // CheckPassword, done before Authenticate is proposed). Errors:
  // kAuthNotEnabled; kAuthFailed for an unknown user, a wrong password or a
  // user added with no_password.
  absl::Status CheckPassword(absl::string_view name,
                             absl::string_view password) const;

  // Who sent a call carrying `token` (gRPC metadata "token"). Errors:
  // kInvalidAuthToken when the provider does not know it.
  absl::StatusOr<AuthInfo> AuthInfoFromToken(absl::string_view token) const;
  // The identity of a client certificate's CN under --client-cert-auth: the
  // CN at the current revision (etcd's AuthInfoFromTLS).
  AuthInfo AuthInfoFromCommonName(absl::string_view cn) const;

  // --- Checks (any thread) ---

  // Errors (auth on only): kUserEmpty, kAuthOldRevision, kPermissionDenied
  // (also for a user that no longer exists).
  absl::Status IsRangePermitted(const AuthInfo& info, absl::string_view key,
                                absl::string_view range_end) const;
  absl::Status IsPutPermitted(const AuthInfo& info,
                              absl::string_view key) const;
  absl::Status IsDeleteRangePermitted(const AuthInfo& info,
                                      absl::string_view key,
                                      absl::string_view range_end) const;
  // Admin calls need role root. Errors (auth on only): kUserEmpty,
  // kUserNotFound, kPermissionDenied.
  absl::Status IsAdminPermitted(const AuthInfo& info) const;
  // Whether user `name` exists and holds `role` (etcd lets a user get a role
  // it holds and itself without being root).
  bool HasRole(absl::string_view name, absl::string_view role) const;

  // --- Applied changes (apply thread only; writes go to `b`) ---
  // Each returns etcd's error for a refused change; a refused change writes
  // nothing and leaves the revision as it was.

  // Errors: kRootUserNotExist, kRootRoleNotExist. Enabling an enabled store
  // is a no-op (OK).
  absl::Status ApplyAuthEnable(storage::Batch* b);
  absl::Status ApplyAuthDisable(storage::Batch* b);
  // Issues a token for `name` (Raft entry `index`, proposer's `prefix`).
  // Errors: kAuthNotEnabled; kAuthFailed (no such user, or no_password).
  absl::StatusOr<std::string> ApplyAuthenticate(absl::string_view name,
                                                absl::string_view prefix,
                                                uint64_t index);
  // `hashed_password` is HashPassword()'s result ("" with no_password).
  // Errors: kUserEmpty, kUserAlreadyExist.
  absl::Status ApplyUserAdd(absl::string_view name,
                            absl::string_view hashed_password,
                            bool no_password, storage::Batch* b);
  // Errors: kInvalidAuthMgmt (root while enabled), kUserNotFound.
  absl::Status ApplyUserDelete(absl::string_view name, storage::Batch* b);
  // Errors: kUserNotFound.
  absl::Status ApplyUserChangePassword(absl::string_view name,
                                       absl::string_view hashed_password,
                                       storage::Batch* b);
  // Errors: kUserNotFound, kRoleNotFound (a role other than root that does
  // not exist). Granting a held role is a no-op (OK).
  absl::Status ApplyUserGrantRole(absl::string_view user,
                                  absl::string_view role, storage::Batch* b);
  // Errors: kInvalidAuthMgmt (root from root while enabled), kUserNotFound,
  // kRoleNotGranted.
  absl::Status ApplyUserRevokeRole(absl::string_view name,
                                   absl::string_view role, storage::Batch* b);
  // Errors: kRoleEmpty, kRoleAlreadyExist.
  absl::Status ApplyRoleAdd(absl::string_view name, storage::Batch* b);
  // Also revokes it from every user. Errors: kInvalidAuthMgmt (root while
  // enabled), kRoleNotFound.
  absl::Status ApplyRoleDelete(absl::string_view name, storage::Batch* b);
  // Adds the permission, or sets the type of one with the same key and
  // range_end. Errors: kRoleNotFound.
  absl::Status ApplyRoleGrantPermission(absl::string_view role,
                                        const authpb::Permission& perm,
                                        storage::Batch* b);
  // Errors: kRoleNotFound, kPermissionNotGranted.
  absl::Status ApplyRoleRevokePermission(absl::string_view role,
                                         absl::string_view key,
                                         absl::string_view range_end,
                                         storage::Batch* b);

  // --- Reads (any thread; linearizable callers read after applying) ---

  // Roles of `name`, as stored (sorted). Errors: kUserNotFound.
  absl::StatusOr<std::vector<std::string>> UserGet(absl::string_view name) const;
  std::vector<std::string> UserList() const;  // sorted
  // Permissions of `role`, sorted by key as etcd stores them. Errors:
  // kRoleNotFound.
  absl::StatusOr<std::vector<authpb::Permission>> RoleGet(
      absl::string_view role) const;
  std::vector<std::string> RoleList() const;  // sorted

 private:
  AuthStore() = default;
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace synod::auth

#endif  // SYNOD_BACKEND_AUTH_AUTH_STORE_H_
