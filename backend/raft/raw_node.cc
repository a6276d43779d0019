#include "backend/raft/raw_node.h"

namespace synod::raft {

absl::StatusOr<std::unique_ptr<RawNode>> RawNode::Create(const Config& config) {
  absl::Status s = config.Validate();
  if (!s.ok()) return s;
  return std::unique_ptr<RawNode>(new RawNode(config));
}

RawNode::RawNode(const Config& config)
    : raft_(config),
      prev_soft_(raft_.soft_state()),
      // What is durable: a bootstrap changes the hard state in memory.
      prev_hard_(config.storage->InitialState().hard_state) {}

void RawNode::Tick() { raft_.Tick(); }

void RawNode::Campaign() {
  Message m;
  m.type = MessageType::kHup;
  m.from = raft_.id();
  (void)raft_.Step(m);
}

absl::Status RawNode::Step(const Message& m) {
  if (IsLocalMessage(m.type)) {
    return absl::InvalidArgumentError("raft: cannot step raft local message");
  }
  return raft_.Step(m);
}

absl::Status RawNode::Propose(std::string data) {
  Message m;
  m.type = MessageType::kProp;
  m.from = raft_.id();
  Entry e;
  e.data = std::move(data);
  m.entries.push_back(std::move(e));
  return raft_.Step(m);
}

absl::Status RawNode::ProposeBatch(std::vector<std::string> data) {
  Message m;
  m.type = MessageType::kProp;
  m.from = raft_.id();
  m.entries.reserve(data.size());
  for (std::string& d : data) {
    Entry e;
    e.data = std::move(d);
    m.entries.push_back(std::move(e));
  }
  return raft_.Step(m);
}

absl::Status RawNode::ReadIndex(std::string ctx) {
  Message m;
  m.type = MessageType::kReadIndex;
  m.from = raft_.id();
  m.context = std::move(ctx);
  return raft_.Step(m);
}

absl::Status RawNode::TransferLeadership(uint64_t transferee) {
  Message m;
  m.type = MessageType::kTransferLeader;
  m.from = transferee;
  return raft_.Step(m);
}

absl::Status RawNode::ProposeConfChange(const ConfChange& cc) {
  Message m;
  m.type = MessageType::kProp;
  m.from = raft_.id();
  Entry e;
  e.type = EntryType::kConfChange;
  e.data = EncodeConfChange(cc);
  m.entries.push_back(std::move(e));
  return raft_.Step(m);
}

ConfState RawNode::ApplyConfChange(const ConfChange& cc) {
  return raft_.ApplyConfChange(cc);
}

void RawNode::ReportSnapshot(uint64_t id, bool ok) {
  Message m;
  m.type = MessageType::kSnapStatus;
  m.from = id;
  m.reject = !ok;
  (void)raft_.Step(m);
}

void RawNode::ReportUnreachable(uint64_t id) {
  Message m;
  m.type = MessageType::kUnreachable;
  m.from = id;
  (void)raft_.Step(m);
}

bool RawNode::HasReady() const {
  return raft_.soft_state() != prev_soft_ || raft_.hard_state() != prev_hard_ ||
         raft_.log().PendingSnapshot() != nullptr ||
         !raft_.log().UnstableEntries().empty() ||
         raft_.log().HasNextCommittedEntries() ||
         raft_.HasMessagesOrReadStates();
}

Ready RawNode::GetReady() {
  Ready rd;
  SoftState soft = raft_.soft_state();
  if (soft != prev_soft_) {
    rd.soft_state = soft;
    prev_soft_ = soft;
  }
  HardState hard = raft_.hard_state();
  if (hard != prev_hard_) {
    rd.hard_state = hard;
    prev_hard_ = hard;
  }
  if (const Snapshot* snap = raft_.log().PendingSnapshot()) {
    rd.snapshot = *snap;
  }
  rd.entries = raft_.log().UnstableEntries();
  rd.committed_entries = raft_.log().NextCommittedEntries();
  rd.messages = raft_.TakeMessages();
  rd.read_states = raft_.TakeReadStates();
  return rd;
}

void RawNode::Advance(const Ready& rd) {
  RaftLog& log = raft_.mutable_log();
  if (!rd.committed_entries.empty()) {
    log.AppliedTo(rd.committed_entries.back().index);
  } else if (!rd.snapshot.empty()) {
    log.AppliedTo(rd.snapshot.metadata.index);
  }
  if (!rd.entries.empty()) {
    log.StableTo(rd.entries.back().index, rd.entries.back().term);
  }
  if (!rd.snapshot.empty()) log.StableSnapTo(rd.snapshot.metadata.index);
  raft_.OnPersisted();
}

}  // namespace synod::raft
