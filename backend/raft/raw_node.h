// RawNode: the application's handle on one Raft node (etcd's RawNode).
//
// The node is a pure state machine: the application feeds it ticks, peer
// messages and client requests, and drains its work as a Ready:
//
//   while (node.HasReady()) {
//     Ready rd = node.GetReady();
//     storage.Persist(rd.snapshot, rd.hard_state, rd.entries);  // one sync
//     transport.Send(rd.messages);   // report MsgSnap results: ReportSnapshot
//     apply(rd.snapshot);            // if non-empty
//     for (const Entry& e : rd.committed_entries) {
//       if (e.type == EntryType::kConfChange) {
//         ConfState cs = node.ApplyConfChange(*DecodeConfChange(e.data));
//         storage.SetConfState(cs);  // with the applied index
//       } else {
//         apply(e);
//       }
//     }
//     node.Advance(rd);
//   }
//
// See Ready in types.h for what may be reordered.
// Thread-safety: none; one thread owns a RawNode (the raft loop).
#ifndef SYNOD_BACKEND_RAFT_RAW_NODE_H_
#define SYNOD_BACKEND_RAFT_RAW_NODE_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "backend/raft/raft.h"
#include "backend/raft/types.h"

namespace synod::raft {

class RawNode {
 public:
  // Restores term, vote, commit, log and membership from config.storage,
  // or bootstraps a new cluster (see Config::peers and Config::bootstrap).
  // Errors: InvalidArgument from Config::Validate().
  static absl::StatusOr<std::unique_ptr<RawNode>> Create(const Config& config);

  // Advances logical time by one tick (election and heartbeat timeouts are
  // counted in ticks).
  void Tick();
  // Starts an election now (MsgHup).
  void Campaign();
  // Feeds a message from a peer.
  // Errors: InvalidArgument "raft: cannot step raft local message" for a
  // local-only message type (MsgHup, MsgSnapStatus, MsgUnreachable);
  // FailedPrecondition "raft proposal dropped" as for Propose.
  absl::Status Step(const Message& m);
  // Proposes `data` for the log. A follower forwards it to the leader.
  // Errors: FailedPrecondition "raft proposal dropped" if there is no known
  // leader or a leadership transfer is in progress. Success does not mean the
  // entry will commit: watch committed_entries.
  absl::Status Propose(std::string data);
  // Proposes several entries in one MsgProp, in order: all of them enter the
  // log, or none does (same errors as Propose). The leader replicates them in
  // one MsgApp per follower where Propose would send one per entry; a
  // follower forwards them in one message. `data` must not be empty.
  absl::Status ProposeBatch(std::vector<std::string> data);
  // Asks for a read index (thesis §6.4). The answer comes back as a
  // ReadState carrying `ctx` in a later Ready; `ctx` must be unique among
  // outstanding requests. Errors: as for Propose.
  absl::Status ReadIndex(std::string ctx);
  // Asks the leader to hand leadership to `transferee` (thesis §3.10). The
  // leader ignores a transfer to a learner or a non-member.
  // Errors: as for Propose.
  absl::Status TransferLeadership(uint64_t transferee);

  // Proposes a membership change: appends a kConfChange entry carrying
  // EncodeConfChange(cc). A follower forwards it to the leader. Only one
  // change may be in flight: like etcd, a leader that has an unapplied conf
  // change in its log turns a second one into an empty normal entry (the
  // call still succeeds; the change simply never shows up as a committed
  // kConfChange entry), so serialize changes above raft.
  // Errors: as for Propose.
  absl::Status ProposeConfChange(const ConfChange& cc);
  // Applies a committed kConfChange entry's change to the membership and
  // returns the new membership (persist it with the applied index). The
  // APPLICATION calls it, in log order, for each such entry it applies
  // (raft applies none by itself, except at bootstrap and when installing a
  // snapshot). Idempotent: adding a member of the same kind, removing a
  // non-member, or adding as learner a voter are no-ops; kAddNode promotes
  // a learner. A leader that removes itself steps down (same term) and never
  // campaigns again; a leader that removes others may commit more at once.
  ConfState ApplyConfChange(const ConfChange& cc);
  // Reports the outcome of sending a MsgSnap to `id` (ok = delivered). On
  // failure the leader probes `id` again after a heartbeat.
  void ReportSnapshot(uint64_t id, bool ok);
  // Reports that `id` could not be reached; a leader stops pipelining to it.
  void ReportUnreachable(uint64_t id);
  // The node's state: hard and soft state, applied index, membership and,
  // on a leader, every member's progress.
  Status GetStatus() const { return raft_.GetStatus(); }

  bool HasReady() const;
  // REQUIRES: the previous Ready was passed to Advance (HasReady may still
  // be true while one is outstanding: do not call GetReady then).
  Ready GetReady();
  // REQUIRES: rd is the last Ready returned, fully processed (its snapshot
  // persisted and applied, its entries persisted, its committed entries
  // applied).
  void Advance(const Ready& rd);

  uint64_t id() const { return raft_.id(); }
  SoftState soft_state() const { return raft_.soft_state(); }
  HardState hard_state() const { return raft_.hard_state(); }

  const Raft& TEST_raft() const { return raft_; }

 private:
  explicit RawNode(const Config& config);

  Raft raft_;
  SoftState prev_soft_;
  HardState prev_hard_;
};

}  // namespace synod::raft

#endif  // SYNOD_BACKEND_RAFT_RAW_NODE_H_
