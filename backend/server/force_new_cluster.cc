#include "backend/server/force_new_cluster.h"

#include <algorithm>
#include <filesystem>
#include <set>

#include "absl/strings/str_cat.h"
#include "backend/raft/types.h"
#include "backend/storage/backend.h"
#include "backend/storage/raft_log_store.h"
#include "backend/storage/schema.h"

namespace synod::server {

absl::StatusOr<ForcedCluster> ForceNewCluster(const std::string& data_dir) {
  ForcedCluster out;
  const std::string db = data_dir + "/member/db";
  if (!std::filesystem::exists(db)) return out;
  auto backend = storage::Backend::Open(db);
  if (!backend.ok()) return backend.status();
  auto ids = (*backend)->Get(storage::kMetaIds);
  if (!ids.ok()) return ids.status();
  if (!ids->has_value() || (*ids)->size() != 16) return out;  // never bootstrapped
  out.member_id = storage::GetBigEndian64((*ids)->substr(8));
  auto log = storage::RaftLogStore::Open(backend->get());
  if (!log.ok()) return log.status();
  const raft::InitialState state = (*log)->GetInitialState();
  raft::HardState hs = state.hard_state;

  // The members as of the commit index: the recorded conf state, then the
  // committed conf changes after it (etcd's getIDs).
  std::set<uint64_t> members(state.conf_state.voters.begin(), state.conf_state.voters.end());
  members.insert(state.conf_state.learners.begin(), state.conf_state.learners.end());
  const uint64_t from = std::max((*log)->conf_index() + 1, (*log)->FirstIndex());
  if (from <= hs.commit) {
    auto entries = (*log)->Entries(from, hs.commit + 1, UINT64_MAX);
    if (!entries.ok()) return entries.status();
    for (const raft::Entry& e : *entries) {
      if (e.type != raft::EntryType::kConfChange) continue;
      auto cc = raft::DecodeConfChange(e.data);
      if (!cc.ok()) {
        return absl::DataLossError(
            absl::StrCat("conf change at index ", e.index, ": ", cc.status().message()));
      }
      if (cc->type == raft::ConfChangeType::kRemoveNode) {
        members.erase(cc->node_id);
      } else if (cc->type != raft::ConfChangeType::kUpdateNode) {
        members.insert(cc->node_id);
      }
    }
  }
  std::vector<raft::Entry> appended;
  for (uint64_t id : members) {
    if (id == out.member_id) continue;
    raft::ConfChange cc;
    cc.type = raft::ConfChangeType::kRemoveNode;
    cc.node_id = id;
    raft::Entry e;
    e.term = hs.term;
    e.index = hs.commit + 1 + appended.size();
    e.type = raft::EntryType::kConfChange;
    e.data = raft::EncodeConfChange(cc);
    appended.push_back(std::move(e));
    out.removed.push_back(id);
  }
  out.commit_index = hs.commit + appended.size();
  if (appended.empty()) return out;
  // Replaces the uncommitted suffix; one synced batch.
  hs.commit = out.commit_index;
  absl::Status st = (*log)->Save(hs, appended, raft::Snapshot());
  if (!st.ok()) return st;
  return out;
}

}  // namespace synod::server
