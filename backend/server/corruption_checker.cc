#include "backend/server/corruption_checker.h"

#include <map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/errors.h"
#include "common/logging.h"

namespace synod::server {

namespace {

std::string Hex(uint64_t v) { return absl::StrCat(absl::Hex(v)); }

}  // namespace

absl::Status CorruptionChecker::InitialCheck(uint64_t self, const Deps& deps) {
  auto local = deps.local_hash(0);
  if (!local.ok()) return local.status();
  const int64_t rev = local->header().revision();
  SYNOD_LOG(INFO) << "initial corruption check: member " << Hex(self)
                  << " hash " << local->hash() << " at revision " << rev
                  << " (compacted revision " << local->compact_revision()
                  << ")";
  int mismatches = 0;
  for (const PeerHash& p : deps.peer_hashes(rev)) {
    if (!p.resp.ok()) {
      const absl::Status& st = p.resp.status();
      if (common::IsErr(st, common::EtcdError::kFutureRev)) {
        SYNOD_LOG(WARNING) << "initial corruption check: peer " << Hex(p.member_id)
                           << " has not reached revision " << rev << "; skipped";
      } else if (common::IsErr(st, common::EtcdError::kCompacted)) {
        SYNOD_LOG(WARNING) << "initial corruption check: peer " << Hex(p.member_id)
                           << " compacted past revision " << rev
                           << " (this member is behind); skipped";
      } else {
        SYNOD_LOG(WARNING) << "initial corruption check: cannot fetch hash from "
                           << Hex(p.member_id) << ": " << st << "; skipped";
      }
      continue;
    }
    if (p.resp->hash() == local->hash()) continue;
    if (p.resp->compact_revision() != local->compact_revision()) {
      SYNOD_LOG(WARNING) << "initial corruption check: peer " << Hex(p.member_id)
                         << " has compacted revision "
                         << p.resp->compact_revision() << ", this member "
                         << local->compact_revision()
                         << "; hashes not comparable";
      continue;
    }
    SYNOD_LOG(ERROR) << "initial corruption check: peer " << Hex(p.member_id)
                     << " has hash " << p.resp->hash() << " at revision " << rev
                     << ", this member " << local->hash();
    ++mismatches;
  }
  if (mismatches > 0) {
    return absl::FailedPreconditionError(
        absl::StrCat(Hex(self), " found data inconsistency with peers"));
  }
  return absl::OkStatus();
}

CorruptionChecker::CorruptionChecker(uint64_t self, Deps deps,
                                     absl::Duration interval)
    : self_(self),
      deps_(std::move(deps)),
      clock_(deps_.clock != nullptr ? deps_.clock : common::RealClock::Get()),
      interval_(interval) {}

CorruptionChecker::~CorruptionChecker() { Stop(); }

void CorruptionChecker::Start() {
  if (thread_.joinable()) return;
  thread_ = std::thread([this] { Loop(); });
}

void CorruptionChecker::Stop() {
  {
    absl::MutexLock l(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

void CorruptionChecker::Loop() {
  while (true) {
    {
      absl::MutexLock l(&mu_);
      if (clock_->AwaitWithTimeout(&mu_, absl::Condition(&stopping_),
                                   interval_)) {
        return;
      }
    }
    CheckOnce();
  }
}

std::vector<uint64_t> CorruptionChecker::CheckOnce() {
  std::vector<uint64_t> corrupt;
  if (!deps_.is_leader()) return corrupt;
  auto local = deps_.local_hash(0);
  if (!local.ok()) {
    SYNOD_LOG(WARNING) << "corruption check: local HashKV failed: "
                       << local.status();
    return corrupt;
  }
  const int64_t rev = local->header().revision();
  // Hashes of the members that can be compared with the leader's: same
  // revision and same compacted revision.
  std::map<uint64_t, uint32_t> hashes = {{self_, local->hash()}};
  for (const PeerHash& p : deps_.peer_hashes(rev)) {
    if (!p.resp.ok()) {
      SYNOD_LOG(DEBUG) << "corruption check: no hash from " << Hex(p.member_id)
                       << " at revision " << rev << ": " << p.resp.status();
      continue;
    }
    if (p.resp->compact_revision() != local->compact_revision()) continue;
    hashes[p.member_id] = p.resp->hash();
  }
  std::map<uint32_t, size_t> votes;
  for (const auto& [id, h] : hashes) ++votes[h];
  if (votes.size() == 1) return corrupt;  // all agree
  uint32_t good = local->hash();
  for (const auto& [h, n] : votes) {
    if (2 * n > hashes.size()) good = h;
  }
  for (const auto& [id, h] : hashes) {
    if (h == good) continue;
    SYNOD_LOG(ERROR) << "corruption check: member " << Hex(id) << " has hash "
                     << h << " at revision " << rev << ", the cluster " << good
                     << "; raising CORRUPT";
    corrupt.push_back(id);
    deps_.raise_corrupt(id);
  }
  return corrupt;
}

}  // namespace synod::server
