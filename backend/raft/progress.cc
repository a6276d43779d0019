#include "backend/raft/progress.h"

#include <algorithm>
#include <functional>

namespace synod::raft {

void Progress::BecomeProbe() {
  // If the snapshot was sent (pending_snapshot still set), the follower will
  // have it: probe right after it rather than from match.
  uint64_t after_snapshot =
      state == State::kSnapshot ? pending_snapshot + 1 : 0;
  state = State::kProbe;
  next = std::max(match + 1, after_snapshot);
  probe_sent = false;
  pending_snapshot = 0;
  inflights.Reset();
}

void Progress::BecomeSnapshot(uint64_t snapshot_index) {
  state = State::kSnapshot;
  pending_snapshot = snapshot_index;
  probe_sent = false;
  inflights.Reset();
}

void Progress::BecomeReplicate() {
  state = State::kReplicate;
  next = match + 1;
  probe_sent = false;
  pending_snapshot = 0;
  inflights.Reset();
}

bool Progress::MaybeUpdate(uint64_t n) {
  bool updated = false;
  if (match < n) {
    match = n;
    updated = true;
    probe_sent = false;
  }
  next = std::max(next, n + 1);
  return updated;
}

bool Progress::MaybeDecrTo(uint64_t rejected, uint64_t hint) {
  if (state == State::kReplicate) {
    // A rejection of something already matched is stale.
    if (rejected <= match) return false;
    next = match + 1;
    return true;
  }
  // Probe: only the answer to the probe in flight counts.
  if (next - 1 != rejected) return false;
  next = std::max(std::min(rejected, hint + 1), match + 1);
  probe_sent = false;
  return true;
}

void Progress::SentEntries(uint64_t last) {
  if (state == State::kReplicate) {
    if (last != 0) {
      next = last + 1;
      inflights.Add(last);
    }
  } else {
    probe_sent = true;
  }
}

bool Progress::IsPaused() const {
  switch (state) {
    case State::kProbe:
      return probe_sent;
    case State::kReplicate:
      return inflights.Full();
    case State::kSnapshot:
      return true;
  }
  return true;
}

const char* ProgressStateName(Progress::State s) {
  switch (s) {
    case Progress::State::kProbe:
      return "StateProbe";
    case Progress::State::kReplicate:
      return "StateReplicate";
    case Progress::State::kSnapshot:
      return "StateSnapshot";
  }
  return "StateUnknown";
}

uint64_t QuorumIndex(std::vector<uint64_t> matches) {
  if (matches.empty()) return 0;
  std::sort(matches.begin(), matches.end(), std::greater<uint64_t>());
  return matches[matches.size() / 2];
}

VoteResult TallyVotes(const std::vector<uint64_t>& voters,
                      const std::map<uint64_t, bool>& votes) {
  size_t granted = 0, rejected = 0;
  for (uint64_t id : voters) {
    auto it = votes.find(id);
    if (it == votes.end()) continue;
    (it->second ? granted : rejected)++;
  }
  size_t quorum = voters.size() / 2 + 1;
  if (granted >= quorum) return VoteResult::kWon;
  if (rejected >= quorum) return VoteResult::kLost;
  return VoteResult::kPending;
}

}  // namespace synod::raft
