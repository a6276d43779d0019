#include "proxy/proxy_identity.h"

#include <algorithm>
#include <utility>

#include "absl/strings/match.h"
#include "common/errors.h"
#include "common/logging.h"

namespace synod::proxy {

using common::EtcdError;

namespace {

constexpr EtcdError kReauthErrors[] = {EtcdError::kInvalidAuthToken,
                                       EtcdError::kAuthOldRevision,
                                       EtcdError::kUserEmpty};

}  // namespace

bool NeedsReauth(const grpc::Status& s) {
  if (s.ok()) return false;
  const absl::Status st = common::FromGrpcStatus(s);
  for (EtcdError e : kReauthErrors) {
    if (common::IsErr(st, e)) return true;
  }
  return false;
}

bool ReasonNeedsReauth(absl::string_view cancel_reason) {
  for (EtcdError e : kReauthErrors) {
    if (absl::EndsWith(cancel_reason, common::Err(e).message())) return true;
  }
  return false;
}

absl::Status ParseUserFlags(const std::string& user_flag,
                            const std::string& password_flag,
                            std::string* user, std::string* password) {
  user->clear();
  password->clear();
  if (user_flag.empty()) {
    if (!password_flag.empty()) {
      return absl::InvalidArgumentError("--password needs --user");
    }
    return absl::OkStatus();
  }
  if (!password_flag.empty()) {
    *user = user_flag;
    *password = password_flag;
  } else {
    const size_t colon = user_flag.find(':');
    if (colon == std::string::npos) {
      return absl::InvalidArgumentError(
          "--user needs a password: give --user=name:password or "
          "--password");
    }
    *user = user_flag.substr(0, colon);
    *password = user_flag.substr(colon + 1);
  }
  if (user->empty()) {
    return absl::InvalidArgumentError("--user has an empty user name");
  }
  return absl::OkStatus();
}

ProxyIdentity::ProxyIdentity(std::string user, std::string password,
                             Authenticator authenticate, common::Clock* clock,
                             ProxyIdentityOptions options)
    : user_(std::move(user)),
      password_(std::move(password)),
      authenticate_(std::move(authenticate)),
      clock_(clock),
      options_(options),
      backoff_(options.min_backoff) {}

std::string ProxyIdentity::Token() const {
  absl::MutexLock l(&mu_);
  return token_;
}

void ProxyIdentity::Start(std::function<void(bool)> done) {
  Refresh("", done ? std::move(done) : [](bool) {});
}

void ProxyIdentity::Refresh(const std::string& used,
                            std::function<void(bool)> done) {
  if (!configured()) {
    done(false);
    return;
  }
  std::vector<std::function<void()>> out;
  {
    absl::MutexLock l(&mu_);
    if (!token_.empty() && token_ != used) {
      out.push_back([done] { done(true); });
    } else {
      waiters_.push_back(std::move(done));
      if (!authenticating_) {
        if (clock_->Now() >= last_auth_ + backoff_) {
          StartAuthLocked(&out);
        } else {
          want_auth_ = true;  // Tick() starts it once the backoff passed
        }
      }
    }
  }
  for (auto& f : out) f();
}

void ProxyIdentity::Tick() {
  std::vector<std::function<void()>> out;
  {
    absl::MutexLock l(&mu_);
    if (want_auth_ && !authenticating_ &&
        clock_->Now() >= last_auth_ + backoff_) {
      StartAuthLocked(&out);
    }
  }
  for (auto& f : out) f();
}

bool ProxyIdentity::MayAuthenticate() const {
  absl::MutexLock l(&mu_);
  return configured() && !refused_;
}

int ProxyIdentity::TEST_authentications() const {
  absl::MutexLock l(&mu_);
  return authentications_;
}

void ProxyIdentity::StartAuthLocked(std::vector<std::function<void()>>* out) {
  const absl::Time now = clock_->Now();
  authenticating_ = true;
  want_auth_ = false;
  ++authentications_;
  // The spacing before the next Authenticate: back to the minimum after a
  // quiet spell, else doubled.
  if (now - last_auth_ >= 2 * options_.max_backoff) {
    backoff_ = options_.min_backoff;
  } else {
    backoff_ = std::min(2 * backoff_, options_.max_backoff);
  }
  last_auth_ = now;
  out->push_back([this] {
    authenticate_(user_, password_, [this](absl::StatusOr<std::string> t) {
      OnAuthenticated(std::move(t));
    });
  });
}

void ProxyIdentity::OnAuthenticated(absl::StatusOr<std::string> token) {
  std::vector<std::function<void(bool)>> waiters;
  const bool ok = token.ok() && !token->empty();
  {
    absl::MutexLock l(&mu_);
    authenticating_ = false;
    if (ok) token_ = *token;
    refused_ = !token.ok() &&
               common::IsErr(token.status(), EtcdError::kAuthFailed);
    waiters.swap(waiters_);
  }
  if (ok) {
    SYNOD_LOG(INFO) << "synod-proxy authenticated as user " << user_;
  } else {
    SYNOD_LOG(WARNING) << "synod-proxy cannot authenticate as user " << user_
                       << ": "
                       << (token.ok() ? absl::UnknownError("empty token")
                                      : token.status());
  }
  for (auto& w : waiters) w(ok);
}

void RunWithReauth(
    ProxyIdentity* identity,
    std::function<void(const std::string& token,
                       std::function<void(const grpc::Status&)> done)>
        call,
    std::function<void(const grpc::Status&)> done) {
  const std::string token = identity != nullptr ? identity->Token() : "";
  call(token, [identity, call, done, token](const grpc::Status& s) {
    if (identity == nullptr || !identity->configured() || !NeedsReauth(s)) {
      done(s);
      return;
    }
    SYNOD_LOG(INFO) << "the member refused synod-proxy's token: "
                    << s.error_message();
    identity->Refresh(token, [identity, call, done, s](bool fresh) {
      if (!fresh) {
        done(s);
        return;
      }
      call(identity->Token(), done);  // once: its status is final
    });
  });
}

}  // namespace synod::proxy
