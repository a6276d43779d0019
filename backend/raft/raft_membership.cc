// Raft: membership (thesis §4.1, one server at a time, with learners as in
// etcd raft 3.4), bootstrap, installing a leader's snapshot (§7), and the
// node's Status.
#include <algorithm>

#include "backend/raft/raft.h"

namespace synod::raft {

namespace {

void Insert(std::vector<uint64_t>* v, uint64_t id) {
  auto it = std::lower_bound(v->begin(), v->end(), id);
  if (it == v->end() || *it != id) v->insert(it, id);
}

bool Erase(std::vector<uint64_t>* v, uint64_t id) {
  auto it = std::lower_bound(v->begin(), v->end(), id);
  if (it == v->end() || *it != id) return false;
  v->erase(it);
  return true;
}

std::vector<uint64_t> SortedUnique(std::vector<uint64_t> v) {
  std::sort(v.begin(), v.end());
  v.erase(std::unique(v.begin(), v.end()), v.end());
  return v;
}

}  // namespace

void Raft::Bootstrap(const std::vector<uint64_t>& voters,
                     const std::vector<uint64_t>& learners) {
  // Etcd's RawNode.Bootstrap: the initial membership goes into the log as
  // committed conf changes of term 1, so that every node's log (and a node
  // replaying it from index 1) tells the same membership history.
  BecomeFollower(1, kNone);
  std::vector<ConfChange> changes;
  for (uint64_t id : voters) {
    changes.push_back(ConfChange{ConfChangeType::kAddNode, id, ""});
  }
  for (uint64_t id : learners) {
    changes.push_back(ConfChange{ConfChangeType::kAddLearnerNode, id, ""});
  }
  std::vector<Entry> ents;
  for (size_t i = 0; i < changes.size(); ++i) {
    Entry e;
    e.term = 1;
    e.index = i + 1;
    e.type = EntryType::kConfChange;
    e.data = EncodeConfChange(changes[i]);
    ents.push_back(std::move(e));
  }
  log_.Append(ents);
  log_.CommitTo(ents.size());
  for (const ConfChange& cc : changes) ApplyConfChange(cc);
}

Progress Raft::NewProgress(bool is_learner) const {
  Progress pr(log_.LastIndex() + 1, max_inflight_);
  pr.is_learner = is_learner;
  // A new member counts as active, so that check-quorum does not step the
  // leader down before it had a chance to answer.
  pr.recent_active = true;
  return pr;
}

ConfState Raft::ApplyConfChange(const ConfChange& cc) {
  auto* l = std::get_if<LeaderState>(&state_);
  uint64_t id = cc.node_id;
  uint64_t added = kNone;
  if (id != kNone) {
    switch (cc.type) {
      case ConfChangeType::kAddNode:
        if (Erase(&learners_, id)) {
          // Promotion: the learner keeps its progress and now counts.
          Insert(&voters_, id);
          if (l != nullptr) {
            auto it = l->progress.find(id);
            if (it != l->progress.end()) it->second.is_learner = false;
          }
        } else if (!IsVoter(id)) {
          Insert(&voters_, id);
          added = id;
        }
        break;
      case ConfChangeType::kAddLearnerNode:
        // Etcd 3.4 ignores demoting a voter this way.
        if (!IsVoter(id) && !IsLearner(id)) {
          Insert(&learners_, id);
          added = id;
        }
        break;
      case ConfChangeType::kRemoveNode:
        if (Erase(&voters_, id) || Erase(&learners_, id)) {
          if (l != nullptr) l->progress.erase(id);
        }
        break;
      case ConfChangeType::kUpdateNode:
        break;
    }
  }
  if (l != nullptr) AfterConfChangeAsLeader(*l, added);
  return conf_state();
}

void Raft::AfterConfChangeAsLeader(LeaderState& l, uint64_t added) {
  if (!IsVoter(id_)) {
    // Removed (or demoted): a leader outside the voters cannot be counted
    // in its own quorum; step down at once so that the remaining voters
    // elect a leader among themselves. (Etcd 3.4 keeps leading until its
    // server stops; stepping down is the sane variant its TODO describes.)
    BecomeFollower(term_, kNone);
    return;
  }
  if (added != kNone && l.progress.count(added) == 0) {
    l.progress.emplace(added, NewProgress(IsLearner(added)));
  }
  // A removal may shrink the quorum: more entries may commit now.
  if (MaybeCommit(l)) {
    BroadcastAppend(l);
  } else {
    for (auto& [p, pr] : l.progress) {
      if (p != id_) SendAppend(l, p, /*send_if_empty=*/false);
    }
  }
  if (l.lead_transferee != kNone && !IsVoter(l.lead_transferee)) {
    l.lead_transferee = kNone;
  }
}

// ------------------------------------------------------------- snapshots

void Raft::HandleSnapshot(const Message& m) {
  Message r;
  r.type = MessageType::kAppResp;
  r.to = m.from;
  // §7: reply with how far our log now matches the leader's.
  r.index = Restore(m.snapshot) ? log_.LastIndex() : log_.committed();
  Send(std::move(r));
}

bool Raft::Restore(const Snapshot& snap) {
  const SnapshotMetadata& md = snap.metadata;
  // A stale snapshot: everything it covers is committed here already.
  if (md.index <= log_.committed()) return false;
  // §7: "If the follower already has log entries identical to the
  // snapshot's last included entry, it ... retains" its log; only commit
  // moves.
  if (log_.MatchTerm(md.index, md.term)) {
    log_.CommitTo(md.index);
    return false;
  }
  // §7: "the follower discards its entire log; it is all superseded by the
  // snapshot". The membership is the snapshot's. (Etcd 3.4 also drops a
  // snapshot whose membership lacks this node; we accept it, since a node
  // joining from a snapshot taken before its addition learns of itself from
  // the conf change entries that follow, instead of being sent the same
  // snapshot forever.)
  log_.Restore(snap);
  voters_ = SortedUnique(md.conf_state.voters);
  learners_ = SortedUnique(md.conf_state.learners);
  return true;
}

// ---------------------------------------------------------------- status

Status Raft::GetStatus() const {
  Status st;
  st.id = id_;
  st.hard_state = hard_state();
  st.soft_state = soft_state();
  st.applied = log_.applied();
  st.conf_state = conf_state();
  if (const auto* l = std::get_if<LeaderState>(&state_)) {
    for (const auto& [id, pr] : l->progress) {
      ProgressStatus ps;
      ps.match = pr.match;
      ps.next = pr.next;
      ps.state = ProgressStateName(pr.state);
      ps.pending_snapshot = pr.pending_snapshot;
      ps.is_learner = pr.is_learner;
      ps.recent_active = pr.recent_active;
      st.progress.emplace(id, std::move(ps));
    }
    st.lead_transferee = l->lead_transferee;
  }
  return st;
}

}  // namespace synod::raft
