// ProxyIdentity: the proxy's own user on the cluster (--user, --password),
// used for what the proxy does on behalf of everyone: the shared upstream
// watches, the lease keep-alive stream, the range cache's loads, the
// Maintenance.Status polls of AuthMonitor and /health. Client calls never
// carry it: they carry the client's own token (see CallAs in upstream.h).
//
// Tokens. The proxy authenticates (Auth.Authenticate) at start and sends
// the token in the gRPC metadata key "token", as clientv3 does. A call made
// with token T that fails with one of the errors a new token may cure
//   Unauthenticated  "etcdserver: invalid auth token"   (expired, or the
//                    cluster restarted and forgot its simple tokens)
//   InvalidArgument  "etcdserver: revision of auth store is old"
//   InvalidArgument  "etcdserver: user name is empty"   (auth was enabled
//                    after the proxy started, or the token was lost)
// asks Refresh(T): the proxy authenticates once more (concurrent refreshes
// of T share one Authenticate; a token newer than T is used as is) and the
// caller retries once (RunWithReauth). "etcdserver: permission denied" is
// never cured by a new token and never causes one (etcd's proxy looped on
// it, PR #12897). Consecutive Authenticate calls are spaced by a backoff
// (`min_backoff`, doubling up to `max_backoff`, back to the minimum once
// refreshes have been quiet for twice `max_backoff`), so a member that
// keeps refusing tokens costs at most one bcrypt check per backoff.
//
// Without --user the proxy sends no token and never authenticates: with
// auth enabled its shared watches and cache loads are then refused (watches
// are canceled with the member's reason, reads are forwarded with the
// client's own token).
//
// Thread-safety: safe for concurrent use. Callbacks run with no lock held,
// on the thread that completes the Authenticate call, or in Tick().
#ifndef SYNOD_PROXY_PROXY_IDENTITY_H_
#define SYNOD_PROXY_PROXY_IDENTITY_H_

#include <grpcpp/support/status.h>

#include <functional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"

namespace synod::proxy {

// True for the three errors a new token may cure (above), whatever the
// code's spelling: a gRPC status, or a watch's cancel_reason (bare, as
// "etcdserver: invalid auth token", or as etcd 3.4 writes it, "rpc error:
// code = Unauthenticated desc = etcdserver: invalid auth token").
bool NeedsReauth(const grpc::Status& s);
bool ReasonNeedsReauth(absl::string_view cancel_reason);

// etcdctl's --user / --password rule: with --password, --user is the whole
// name; without, --user is "name:password". Errors: InvalidArgument
// "--user needs a password: give --user=name:password or --password" when
// there is no password, and for an empty name.
absl::Status ParseUserFlags(const std::string& user_flag,
                            const std::string& password_flag,
                            std::string* user, std::string* password);

struct ProxyIdentityOptions {
  absl::Duration min_backoff = absl::Milliseconds(200);
  absl::Duration max_backoff = absl::Seconds(10);
};

class ProxyIdentity {
 public:
  // Authenticates `user` with `password`: the token, or the member's error.
  // `done` is called exactly once, on any thread.
  using Authenticator = std::function<void(
      const std::string& user, const std::string& password,
      std::function<void(absl::StatusOr<std::string>)> done)>;

  // `user` empty: no identity (Token() is always "", Refresh never
  // authenticates). `clock` outlives the identity.
  ProxyIdentity(std::string user, std::string password,
                Authenticator authenticate, common::Clock* clock,
                ProxyIdentityOptions options = {});

  bool configured() const { return !user_.empty(); }
  const std::string& user() const { return user_; }

  // The current token; "" before the first successful Authenticate or
  // without a user.
  std::string Token() const;

  // Authenticates now if no token was obtained yet (at start). `done` (may
  // be null) gets whether a token is held afterwards.
  void Start(std::function<void(bool)> done = nullptr);

  // A call made with token `used` failed with an auth error (NeedsReauth).
  // `done(true)`: Token() is a token newer than `used`, retry with it.
  // `done(false)`: no new token (no user, or Authenticate failed). Runs
  // `done` at once when a newer token is already held; else after the
  // (shared, backed-off) Authenticate.
  void Refresh(const std::string& used, std::function<void(bool)> done);

  // False once the member refused the user's name or password
  // ("authentication failed, invalid user ID or password") on the last
  // Authenticate: a new attempt would not give a token either.
  bool MayAuthenticate() const;

  // Starts a refresh whose backoff has passed. Call periodically.
  void Tick();

  // Authenticate calls made so far.
  int TEST_authentications() const;

 private:
  void StartAuthLocked(std::vector<std::function<void()>>* out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnAuthenticated(absl::StatusOr<std::string> token);

  const std::string user_, password_;
  const Authenticator authenticate_;
  common::Clock* const clock_;
  const ProxyIdentityOptions options_;

  mutable absl::Mutex mu_;
  std::string token_ ABSL_GUARDED_BY(mu_);
  bool authenticating_ ABSL_GUARDED_BY(mu_) = false;
  bool want_auth_ ABSL_GUARDED_BY(mu_) = false;  // waiting for the backoff
  absl::Time last_auth_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  absl::Duration backoff_ ABSL_GUARDED_BY(mu_);
  int authentications_ ABSL_GUARDED_BY(mu_) = 0;
  bool refused_ ABSL_GUARDED_BY(mu_) = false;  // wrong name or password
  std::vector<std::function<void(bool)>> waiters_ ABSL_GUARDED_BY(mu_);
};

// Runs `call` with the identity's token; if it fails with NeedsReauth,
// refreshes and runs it once more with the new token. `done` gets the last
// status. Never retries any other error, and never more than once.
void RunWithReauth(
    ProxyIdentity* identity,
    std::function<void(const std::string& token,
                       std::function<void(const grpc::Status&)> done)>
        call,
    std::function<void(const grpc::Status&)> done);

}  // namespace synod::proxy

#endif  // SYNOD_PROXY_PROXY_IDENTITY_H_
