#include "backend/auth/simple_token.h"

#include <openssl/rand.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/logging.h"

namespace synod::auth {
namespace {

constexpr absl::string_view kLetters =
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
constexpr size_t kPrefixLength = 16;
// The table is swept once it reaches max(this, twice its size after the
// last sweep).
constexpr size_t kMinSweepSize = 64;

}  // namespace

std::string NewSimpleTokenPrefix() {
  // Bytes >= 208 (4 x 52) are rejected so that every letter is equally
  // likely, as etcd's rand.Int(52) draws them.
  constexpr unsigned kLimit = 4 * kLetters.size();
  std::string prefix;
  prefix.reserve(kPrefixLength);
  unsigned char buf[32];
  while (prefix.size() < kPrefixLength) {
    if (RAND_bytes(buf, sizeof(buf)) != 1) {
      // The CSPRNG failing means the process cannot make secrets at all.
      SYNOD_LOG(FATAL) << "auth: RAND_bytes failed";
    }
    for (unsigned char b : buf) {
      if (b >= kLimit || prefix.size() == kPrefixLength) continue;
      prefix.push_back(kLetters[b % kLetters.size()]);
    }
  }
  return prefix;
}

SimpleTokenProvider::SimpleTokenProvider(absl::Duration ttl,
                                         common::Clock* clock)
    : ttl_(ttl > absl::ZeroDuration() ? ttl : kDefaultSimpleTokenTtl),
      clock_(clock),
      sweep_at_size_(kMinSweepSize) {}

std::string SimpleTokenProvider::NewTokenPrefix() {
  return NewSimpleTokenPrefix();
}

absl::StatusOr<std::string> SimpleTokenProvider::Assign(
    absl::string_view prefix, uint64_t index, absl::string_view username,
    uint64_t /*revision*/) {
  std::string token = absl::StrCat(prefix, ".", index);
  const absl::Time now = clock_->Now();
  absl::MutexLock l(&mu_);
  if (!enabled_) return token;
  if (tokens_.size() >= sweep_at_size_) SweepLocked(now);
  tokens_.insert_or_assign(token, Entry{std::string(username), now + ttl_});
  return token;
}

std::optional<AuthInfo> SimpleTokenProvider::Info(absl::string_view token,
                                                  uint64_t current_revision) {
  const absl::Time now = clock_->Now();
  absl::MutexLock l(&mu_);
  if (!enabled_) return std::nullopt;
  auto it = tokens_.find(token);
  if (it == tokens_.end()) return std::nullopt;
  if (now > it->second.deadline) {
    tokens_.erase(it);
    return std::nullopt;
  }
  it->second.deadline = now + ttl_;
  return AuthInfo{it->second.username, current_revision};
}

void SimpleTokenProvider::Enable() {
  absl::MutexLock l(&mu_);
  enabled_ = true;
}

void SimpleTokenProvider::Disable() {
  absl::MutexLock l(&mu_);
  enabled_ = false;
  tokens_.clear();
  sweep_at_size_ = kMinSweepSize;
}

void SimpleTokenProvider::InvalidateUser(absl::string_view username) {
  absl::MutexLock l(&mu_);
  absl::erase_if(tokens_, [username](const auto& kv) {
    return kv.second.username == username;
  });
}

size_t SimpleTokenProvider::TEST_TableSize() const {
  absl::MutexLock l(&mu_);
  return tokens_.size();
}

void SimpleTokenProvider::SweepLocked(absl::Time now) {
  absl::erase_if(tokens_,
                 [now](const auto& kv) { return now > kv.second.deadline; });
  sweep_at_size_ = std::max(kMinSweepSize, 2 * tokens_.size());
}

}  // namespace synod::auth
