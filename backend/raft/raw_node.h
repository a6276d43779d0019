// RawNode: the application's handle on one Raft node (etcd's RawNode).
//
// The node is a pure state machine: the application feeds it ticks, peer
// messages and client requests, and drains its work as a Ready:
//
//   while (node.HasReady()) {
//     Ready rd = node.GetReady();
//     storage.Persist(rd.hard_state, rd.entries);   // one synced write
//     transport.Send(rd.messages);
//     apply(rd.committed_entries);
//     node.Advance(rd);
//   }
//
// See Ready in types.h for what may be reordered.
// Thread-safety: none; one thread owns a RawNode (the raft loop).
#ifndef SYNOD_BACKEND_RAFT_RAW_NODE_H_
#define SYNOD_BACKEND_RAFT_RAW_NODE_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "backend/raft/raft.h"
#include "backend/raft/types.h"

namespace synod::raft {

class RawNode {
 public:
  // Restores term, vote, commit and log from config.storage.
  // Errors: InvalidArgument from Config::Validate().
  static absl::StatusOr<std::unique_ptr<RawNode>> Create(const Config& config);

  // Advances logical time by one tick (election and heartbeat timeouts are
  // counted in ticks).
  void Tick();
  // Starts an election now (MsgHup).
  void Campaign();
  // Feeds a message from a peer.
  // Errors: InvalidArgument for a local-only message type (MsgHup);
  // FailedPrecondition "raft: proposal dropped" as for Propose.
  absl::Status Step(const Message& m);
  // Proposes `data` for the log. A follower forwards it to the leader.
  // Errors: FailedPrecondition "raft: proposal dropped" if there is no known
  // leader or a leadership transfer is in progress. Success does not mean the
  // entry will commit: watch committed_entries.
  absl::Status Propose(std::string data);
  // Asks for a read index (thesis §6.4). The answer comes back as a
  // ReadState carrying `ctx` in a later Ready; `ctx` must be unique among
  // outstanding requests. Errors: as for Propose.
  absl::Status ReadIndex(std::string ctx);
  // Asks the leader to hand leadership to `transferee` (thesis §3.10).
  // Errors: as for Propose.
  absl::Status TransferLeadership(uint64_t transferee);

  bool HasReady() const;
  // REQUIRES: the previous Ready was passed to Advance (HasReady may still
  // be true while one is outstanding: do not call GetReady then).
  Ready GetReady();
  // REQUIRES: rd is the last Ready returned, fully processed.
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
