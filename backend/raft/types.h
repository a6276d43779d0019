// Plain value types of the Raft core: log entries, hard state, messages and
// the Ready batch handed to the application. They mirror etcd's raftpb so the
// transport can later map them one to one onto a proto; until then they are
// in-memory only.
// Thread-safety: plain values, no internal synchronization.
#ifndef SYNOD_BACKEND_RAFT_TYPES_H_
#define SYNOD_BACKEND_RAFT_TYPES_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace synod::raft {

// A node id of 0 means "nobody" (no vote, no known leader).
inline constexpr uint64_t kNone = 0;

// Persisted inside entries: do not change these values.
enum class EntryType : uint8_t {
  kNormal = 0,
  kConfChange = 1,  // data is an EncodeConfChange()d ConfChange
};

struct Entry {
  uint64_t term = 0;
  uint64_t index = 0;
  EntryType type = EntryType::kNormal;
  std::string data;

  bool operator==(const Entry& o) const {
    return term == o.term && index == o.index && type == o.type &&
           data == o.data;
  }
  bool operator!=(const Entry& o) const { return !(*this == o); }
};

// Must be durable before any message that depends on it is sent (§5.1,
// Figure 2 "Persistent state on all servers").
struct HardState {
  uint64_t term = 0;
  uint64_t vote = kNone;
  uint64_t commit = 0;

  bool operator==(const HardState& o) const {
    return term == o.term && vote == o.vote && commit == o.commit;
  }
  bool operator!=(const HardState& o) const { return !(*this == o); }
};

// The membership of the cluster: voters count towards every quorum, learners
// are replicated to but never vote nor campaign. Both sorted, disjoint.
struct ConfState {
  std::vector<uint64_t> voters;
  std::vector<uint64_t> learners;

  bool empty() const { return voters.empty() && learners.empty(); }
  bool operator==(const ConfState& o) const {
    return voters == o.voters && learners == o.learners;
  }
  bool operator!=(const ConfState& o) const { return !(*this == o); }
};

struct SnapshotMetadata {
  ConfState conf_state;  // the membership as of `index`
  uint64_t index = 0;    // last entry the snapshot covers
  uint64_t term = 0;     // term of that entry
};

// The state machine as of metadata.index: replaces the log up to there
// (thesis §5.1, paper §7). `data` is opaque to the core.
struct Snapshot {
  std::string data;
  SnapshotMetadata metadata;
  bool empty() const { return metadata.index == 0; }
};

// Persisted inside kConfChange entries: do not change these values.
enum class ConfChangeType : uint8_t {
  kAddNode = 0,         // add a voter, or promote a learner to voter
  kRemoveNode = 1,      // remove a voter or a learner
  kUpdateNode = 2,      // no membership effect; `context` is for the app
  kAddLearnerNode = 3,  // add a learner (ignored if already a voter)
};

// One membership change (thesis §4.1: one server at a time).
struct ConfChange {
  ConfChangeType type = ConfChangeType::kAddNode;
  uint64_t node_id = kNone;
  std::string context;  // opaque to the core (etcd puts the member there)

  bool operator==(const ConfChange& o) const {
    return type == o.type && node_id == o.node_id && context == o.context;
  }
  bool operator!=(const ConfChange& o) const { return !(*this == o); }
};

// The bytes of a kConfChange entry: a version byte (1), the type byte, the
// node id as 8 bytes little-endian, the context length as 4 bytes
// little-endian, then the context. A persisted format: do not change it;
// add a new version instead.
std::string EncodeConfChange(const ConfChange& cc);
// Errors: InvalidArgument "raft: malformed conf change: ..." for any input
// EncodeConfChange could not have produced (never crashes on any bytes).
absl::StatusOr<ConfChange> DecodeConfChange(std::string_view data);

const char* ConfChangeTypeName(ConfChangeType t);

// Wire and log values: do not change them; append new types at the end.
enum class MessageType : uint8_t {
  kHup = 0,   // local: start an election now
  kVote = 1,  // RequestVote (§5.2)
  kVoteResp = 2,
  kPreVote = 3,  // thesis §9.6
  kPreVoteResp = 4,
  kApp = 5,  // AppendEntries (§5.3)
  kAppResp = 6,
  kHeartbeat = 7,  // empty AppendEntries (§5.2), carries commit
  kHeartbeatResp = 8,
  kProp = 9,        // client proposal, local or forwarded
  kReadIndex = 10,  // thesis §6.4, local or forwarded
  kReadIndexResp = 11,
  kTimeoutNow = 12,      // thesis §3.10
  kTransferLeader = 13,  // local or forwarded: from = the transferee
  kSnap = 14,            // InstallSnapshot (§7): carries `snapshot`
  kSnapStatus = 15,      // local: sending a snapshot to `from` ended;
                         // reject = true means it failed
  kUnreachable = 16,     // local: `from` could not be reached
};

// True for messages that only the local application may step (never sent
// over the wire): MsgHup, MsgSnapStatus, MsgUnreachable.
bool IsLocalMessage(MessageType t);

const char* MessageTypeName(MessageType t);

struct Message {
  MessageType type = MessageType::kHup;
  uint64_t from = kNone;
  uint64_t to = kNone;
  uint64_t term = 0;      // 0 for local messages
  uint64_t log_term = 0;  // MsgApp: term of `index`; votes: last log term
  uint64_t index = 0;     // MsgApp: prev index; votes: last log index;
                          // MsgAppResp: last index matched (or rejected)
  std::vector<Entry> entries;
  uint64_t commit = 0;
  bool reject = false;
  uint64_t reject_hint = 0;  // MsgAppResp reject: follower's last index
  std::string context;       // ReadIndex request ctx; campaign kind
  Snapshot snapshot;         // MsgSnap only
};

enum class Role : uint8_t { kFollower, kPreCandidate, kCandidate, kLeader };
const char* RoleName(Role r);

// Volatile state worth reporting; not persisted.
struct SoftState {
  uint64_t lead = kNone;
  Role role = Role::kFollower;
  bool operator==(const SoftState& o) const {
    return lead == o.lead && role == o.role;
  }
  bool operator!=(const SoftState& o) const { return !(*this == o); }
};

// A linearizable read may be served once the applied index reaches `index`
// (thesis §6.4). `request_ctx` is the ctx given to RawNode::ReadIndex.
struct ReadState {
  uint64_t index = 0;
  std::string request_ctx;
};

// One batch of work for the application. Process it in this order:
//  1. persist `snapshot` (if non-empty: it replaces the log up to its index,
//     e.g. MemoryStorage::ApplySnapshot), `hard_state` (if set) and append
//     `entries` to stable storage, in one synced write;
//  2. send `messages` (a leader's may be sent before step 1, thesis §10.2.1:
//     the leader counts itself towards a quorum only after Advance);
//  3. apply `snapshot` (if non-empty) to the state machine, then
//     `committed_entries` in order (calling RawNode::ApplyConfChange for
//     each kConfChange entry);
//  4. call RawNode::Advance(ready).
// Tick, Step and client calls may go on between GetReady and Advance (while
// the write is in flight); GetReady may not.
struct Ready {
  std::optional<SoftState> soft_state;   // set when it changed
  std::optional<HardState> hard_state;   // set when it changed
  Snapshot snapshot;                     // to persist and apply, if non-empty
  std::vector<Entry> entries;            // unstable: to persist
  std::vector<Entry> committed_entries;  // to apply
  std::vector<Message> messages;
  std::vector<ReadState> read_states;
};

}  // namespace synod::raft

#endif  // SYNOD_BACKEND_RAFT_TYPES_H_
