// Log compaction and InstallSnapshot (Raft paper §7, thesis §5): storage
// compaction and snapshot errors, the leader sending snapshots to followers
// behind the compacted log, flow control around a snapshot in flight, and
// followers installing (or ignoring) snapshots.
#include "tests/raft/test_util.h"

namespace synod::raft {
namespace {

using testing::AppResp;
using testing::Cluster;
using testing::EntriesWithTerms;
using testing::MakeLeader;
using testing::Msg;
using testing::OfType;
using testing::TestNode;

Snapshot MakeSnapshot(uint64_t index, uint64_t term, ConfState cs,
                      std::string data = "state") {
  Snapshot s;
  s.data = std::move(data);
  s.metadata.index = index;
  s.metadata.term = term;
  s.metadata.conf_state = std::move(cs);
  return s;
}

ConfState Voters(std::vector<uint64_t> v) {
  return ConfState{std::move(v), {}};
}

// ---------------------------------------------------------------- storage

// §7: "Each server takes snapshots independently, covering just the
// committed entries in its log" and then discards the log up to there.
TEST(RaftSnapshotStorage, CompactDropsEntriesBeforeTheIndex) {
  MemoryStorage s;
  ASSERT_TRUE(s.Append(EntriesWithTerms({1, 1, 2, 2, 3})).ok());
  ASSERT_TRUE(s.Compact(3).ok());
  EXPECT_EQ(s.FirstIndex(), 4u);
  EXPECT_EQ(s.LastIndex(), 5u);
  EXPECT_EQ(*s.Term(3), 2u) << "the compaction point keeps its term";
  EXPECT_EQ(*s.Term(5), 3u);
  EXPECT_EQ(s.Term(2).status().message(), kErrCompacted);
  EXPECT_TRUE(IsCompacted(s.Term(2).status()));
  EXPECT_TRUE(IsCompacted(s.Entries(3, 5, kNoLimit).status()));
  EXPECT_EQ(s.Entries(4, 6, kNoLimit)->size(), 2u);
  EXPECT_EQ(s.Term(6).status().message(), kErrUnavailable);

  absl::Status again = s.Compact(3);
  EXPECT_TRUE(absl::IsOutOfRange(again));
  EXPECT_EQ(again.message(), kErrCompacted);
  absl::Status beyond = s.Compact(6);
  EXPECT_TRUE(absl::IsOutOfRange(beyond));
  EXPECT_EQ(beyond.message(), kErrUnavailable);
}

TEST(RaftSnapshotStorage, CreateSnapshotRecordsMetadataAndRefusesOldIndex) {
  MemoryStorage s;
  ASSERT_TRUE(s.Append(EntriesWithTerms({1, 1, 2, 2})).ok());
  absl::StatusOr<Snapshot> snap = s.CreateSnapshot(3, Voters({1, 2}), "d");
  ASSERT_TRUE(snap.ok()) << snap.status();
  EXPECT_EQ(snap->metadata.index, 3u);
  EXPECT_EQ(snap->metadata.term, 2u);
  EXPECT_EQ(snap->metadata.conf_state, Voters({1, 2}));
  EXPECT_EQ(s.Snapshot()->data, "d");
  EXPECT_EQ(s.FirstIndex(), 1u) << "creating a snapshot does not compact";

  absl::StatusOr<Snapshot> old = s.CreateSnapshot(3, Voters({1, 2}), "e");
  EXPECT_TRUE(absl::IsFailedPrecondition(old.status()));
  EXPECT_EQ(old.status().message(), kErrSnapOutOfDate);
  absl::StatusOr<Snapshot> beyond = s.CreateSnapshot(5, Voters({1}), "");
  EXPECT_EQ(beyond.status().message(), kErrUnavailable);
}

// §7: "the follower discards its entire log; it is all superseded by the
// snapshot".
TEST(RaftSnapshotStorage, ApplySnapshotReplacesTheLogAndMembership) {
  MemoryStorage s;
  ASSERT_TRUE(s.Append(EntriesWithTerms({1, 1, 1})).ok());
  ConfState cs{{1, 2, 3}, {4}};
  ASSERT_TRUE(s.ApplySnapshot(MakeSnapshot(10, 4, cs)).ok());
  EXPECT_EQ(s.FirstIndex(), 11u);
  EXPECT_EQ(s.LastIndex(), 10u);
  EXPECT_EQ(*s.Term(10), 4u);
  EXPECT_EQ(s.InitialState().conf_state, cs);
  EXPECT_EQ(s.Snapshot()->metadata.index, 10u);

  absl::Status older = s.ApplySnapshot(MakeSnapshot(9, 4, cs));
  EXPECT_TRUE(absl::IsFailedPrecondition(older));
  EXPECT_EQ(older.message(), kErrSnapOutOfDate);
  EXPECT_EQ(s.ApplySnapshot(MakeSnapshot(10, 4, cs)).message(),
            kErrSnapOutOfDate);

  // Appending entries the snapshot covers keeps only the new part.
  std::vector<Entry> ents =
      EntriesWithTerms({4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 5});
  ASSERT_TRUE(s.Append(ents).ok());
  EXPECT_EQ(s.FirstIndex(), 11u);
  EXPECT_EQ(s.LastIndex(), 12u);
  EXPECT_EQ(*s.Term(12), 5u);
}

TEST(RaftSnapshotStorage, RaftLogSeesTheSnapshotAsItsStart) {
  MemoryStorage s;
  ASSERT_TRUE(s.ApplySnapshot(MakeSnapshot(5, 2, Voters({1}))).ok());
  ASSERT_TRUE(s.Append({Entry{3, 6, EntryType::kNormal, "x"}}).ok());
  RaftLog log(&s);
  EXPECT_EQ(log.FirstIndex(), 6u);
  EXPECT_EQ(log.LastIndex(), 6u);
  EXPECT_EQ(log.Term(5), std::optional<uint64_t>(2));
  EXPECT_EQ(log.Term(4), std::nullopt) << "compacted";
  EXPECT_EQ(log.committed(), 5u) << "a snapshot covers committed entries";
  EXPECT_TRUE(IsCompacted(log.EntriesFrom(5, kNoLimit).status()));
  EXPECT_EQ(log.EntriesFrom(6, kNoLimit)->size(), 1u);

  // A newer snapshot from the leader supersedes the log until persisted.
  log.Restore(MakeSnapshot(9, 3, Voters({1, 2})));
  EXPECT_EQ(log.FirstIndex(), 10u);
  EXPECT_EQ(log.LastIndex(), 9u);
  EXPECT_EQ(log.Term(9), std::optional<uint64_t>(3));
  EXPECT_EQ(log.Term(6), std::nullopt);
  EXPECT_EQ(log.committed(), 9u);
  ASSERT_NE(log.PendingSnapshot(), nullptr);
  log.StableSnapTo(9);
  EXPECT_EQ(log.PendingSnapshot(), nullptr);
}

// ----------------------------------------------------------------- leader

// A leader of {1, 2} whose log is 1..4 (term 1), compacted up to 4, with
// follower 2 never having acknowledged anything. Returns its MsgSnap.
Message LeaderSendsSnapshot(TestNode& n) {
  MakeLeader(n);
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(n->Propose("v").ok());
  n.Drain();
  EXPECT_TRUE(n.storage.CreateSnapshot(4, Voters({1, 2}), "snap").ok());
  EXPECT_TRUE(n.storage.Compact(4).ok());
  // 2 rejects the first probe (prev index 0): it has nothing.
  Message rej = AppResp(2, 0);
  rej.reject = true;
  EXPECT_TRUE(n->Step(rej).ok());
  std::vector<Message> snaps = OfType(n.Drain(), MessageType::kSnap);
  EXPECT_EQ(snaps.size(), 1u);
  return snaps.empty() ? Message{} : snaps[0];
}

// §7: "the leader must occasionally send snapshots to followers that lag
// behind. This happens when the leader has already discarded the next log
// entry that it needs to send to a follower."
TEST(RaftSnapshotLeader, SendsSnapshotWhenNextEntryIsCompacted) {
  TestNode n(1, {1, 2});
  Message m = LeaderSendsSnapshot(n);
  EXPECT_EQ(m.to, 2u);
  EXPECT_EQ(m.term, 1u);
  EXPECT_EQ(m.snapshot.metadata.index, 4u);
  EXPECT_EQ(m.snapshot.metadata.term, 1u);
  EXPECT_EQ(m.snapshot.data, "snap");
  Status st = n->GetStatus();
  EXPECT_EQ(st.progress.at(2).state, "StateSnapshot");
  EXPECT_EQ(st.progress.at(2).pending_snapshot, 4u);
}

// Flow control: while a snapshot is in flight nothing else is sent to that
// follower; its acknowledgement of the snapshot resumes replication.
TEST(RaftSnapshotLeader, PendingSnapshotPausesProgressUntilAcknowledged) {
  TestNode n(1, {1, 2});
  LeaderSendsSnapshot(n);
  ASSERT_TRUE(n->Propose("later").ok());
  EXPECT_TRUE(OfType(n.Drain(), MessageType::kApp).empty());
  ASSERT_TRUE(n->Step(Msg(MessageType::kHeartbeatResp, 2, 1, 1)).ok());
  EXPECT_TRUE(OfType(n.Drain(), MessageType::kApp).empty())
      << "a heartbeat response does not unpause a snapshot";

  // The follower installed it and answers with the snapshot's index.
  ASSERT_TRUE(n->Step(AppResp(2, 4)).ok());
  std::vector<Message> apps = OfType(n.Drain(), MessageType::kApp);
  ASSERT_FALSE(apps.empty());
  EXPECT_EQ(apps[0].index, 4u);
  ASSERT_EQ(apps[0].entries.size(), 1u);
  EXPECT_EQ(apps[0].entries[0].data, "later");
  Status st = n->GetStatus();
  EXPECT_EQ(st.progress.at(2).state, "StateReplicate");
  EXPECT_EQ(st.progress.at(2).match, 4u);
}

// etcd's MsgSnapStatus: a failed send returns the follower to probing, and
// it is retried after a heartbeat response.
TEST(RaftSnapshotLeader, FailedSnapshotGoesBackToProbeAndRetries) {
  TestNode n(1, {1, 2});
  LeaderSendsSnapshot(n);
  n->ReportSnapshot(2, /*ok=*/false);
  Status st = n->GetStatus();
  EXPECT_EQ(st.progress.at(2).state, "StateProbe");
  EXPECT_EQ(st.progress.at(2).next, 1u) << "back to match + 1";
  EXPECT_TRUE(n.Drain().empty()) << "waits for a heartbeat interval";
  ASSERT_TRUE(n->Step(Msg(MessageType::kHeartbeatResp, 2, 1, 1)).ok());
  EXPECT_EQ(OfType(n.Drain(), MessageType::kSnap).size(), 1u);
}

TEST(RaftSnapshotLeader, DeliveredSnapshotProbesRightAfterIt) {
  TestNode n(1, {1, 2});
  LeaderSendsSnapshot(n);
  n->ReportSnapshot(2, /*ok=*/true);
  Status st = n->GetStatus();
  EXPECT_EQ(st.progress.at(2).state, "StateProbe");
  EXPECT_EQ(st.progress.at(2).next, 5u);
  EXPECT_TRUE(n.Drain().empty()) << "waits for the follower's MsgAppResp";
}

TEST(RaftSnapshotLeader, TemporarilyUnavailableSnapshotIsRetriedLater) {
  TestNode n(1, {1, 2});
  MakeLeader(n);
  ASSERT_TRUE(n->Propose("v").ok());
  n.Drain();
  ASSERT_TRUE(n.storage.CreateSnapshot(2, Voters({1, 2}), "s").ok());
  ASSERT_TRUE(n.storage.Compact(2).ok());
  n.storage.TEST_SetSnapshotUnavailable(true);
  Message rej = AppResp(2, 0);
  rej.reject = true;
  ASSERT_TRUE(n->Step(rej).ok());
  EXPECT_TRUE(OfType(n.Drain(), MessageType::kSnap).empty());
  EXPECT_EQ(n->GetStatus().progress.at(2).state, "StateProbe");
  n.storage.TEST_SetSnapshotUnavailable(false);
  ASSERT_TRUE(n->Step(Msg(MessageType::kHeartbeatResp, 2, 1, 1)).ok());
  EXPECT_EQ(OfType(n.Drain(), MessageType::kSnap).size(), 1u);
}

TEST(RaftSnapshotLeader, UnreachableFollowerIsProbedAgain) {
  TestNode n(1, {1, 2});
  MakeLeader(n);
  ASSERT_TRUE(n->Step(AppResp(2, 1)).ok());
  n.Drain();
  ASSERT_EQ(n->GetStatus().progress.at(2).state, "StateReplicate");
  n->ReportUnreachable(2);
  EXPECT_EQ(n->GetStatus().progress.at(2).state, "StateProbe");
  EXPECT_FALSE(n->Step(Msg(MessageType::kUnreachable, 2, 1, 0)).ok())
      << "local messages cannot come from the network";
}

// --------------------------------------------------------------- follower

// §7: "If instead the snapshot contains new information not already in the
// recipient's log, the follower discards its entire log".
TEST(RaftSnapshotFollower, InstallsNewerSnapshot) {
  TestNode f(2, {1, 2}, {}, EntriesWithTerms({1, 1}), HardState{1, 0, 1});
  Message m = Msg(MessageType::kSnap, 1, 2, 2);
  m.snapshot = MakeSnapshot(10, 2, ConfState{{1, 2, 3}, {4}});
  ASSERT_TRUE(f->Step(m).ok());
  ASSERT_TRUE(f->HasReady());
  Ready rd = f->GetReady();
  ASSERT_FALSE(rd.snapshot.empty());
  EXPECT_EQ(rd.snapshot.metadata.index, 10u);
  ASSERT_TRUE(rd.hard_state.has_value());
  EXPECT_EQ(rd.hard_state->commit, 10u);
  EXPECT_TRUE(rd.committed_entries.empty()) << "the snapshot is the state";
  ASSERT_EQ(rd.messages.size(), 1u);
  EXPECT_EQ(rd.messages[0].type, MessageType::kAppResp);
  EXPECT_FALSE(rd.messages[0].reject);
  EXPECT_EQ(rd.messages[0].index, 10u);
  ASSERT_TRUE(f.storage.ApplySnapshot(rd.snapshot).ok());
  f->Advance(rd);
  EXPECT_FALSE(f->HasReady());
  EXPECT_EQ(f.raft().log().applied(), 10u);
  EXPECT_EQ(f.raft().log().FirstIndex(), 11u);
  EXPECT_EQ(f.raft().lead(), 1u);
  EXPECT_EQ(f.raft().conf_state(), (ConfState{{1, 2, 3}, {4}}));

  // The log continues after the snapshot.
  Message app = Msg(MessageType::kApp, 1, 2, 2);
  app.index = 10;
  app.log_term = 2;
  app.entries = {Entry{2, 11, EntryType::kNormal, "next"}};
  app.commit = 11;
  ASSERT_TRUE(f->Step(app).ok());
  f.Drain();
  ASSERT_FALSE(f.applied.empty());
  EXPECT_EQ(f.applied.back().data, "next");
  EXPECT_EQ(f.applied_index, 11u);
}

// §7: "If the follower receives a snapshot that describes a prefix of its
// log ..., then log entries covered by the snapshot are deleted but entries
// following the snapshot are still valid and must be retained."
TEST(RaftSnapshotFollower, IgnoresStaleSnapshotAndKeepsMatchingLog) {
  TestNode f(2, {1, 2}, {}, EntriesWithTerms({1, 1, 1, 1, 1}),
             HardState{1, 0, 3});
  Message stale = Msg(MessageType::kSnap, 1, 2, 1);
  stale.snapshot = MakeSnapshot(2, 1, Voters({1, 2}));
  ASSERT_TRUE(f->Step(stale).ok());
  std::vector<Message> out = f.Drain();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].index, 3u) << "answers with its commit index";
  EXPECT_TRUE(f.snapshots.empty());

  // A snapshot of an entry it already has only moves commit.
  Message prefix = Msg(MessageType::kSnap, 1, 2, 1);
  prefix.snapshot = MakeSnapshot(4, 1, Voters({1, 2}));
  ASSERT_TRUE(f->Step(prefix).ok());
  out = f.Drain();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].index, 4u);
  EXPECT_TRUE(f.snapshots.empty());
  EXPECT_EQ(f.raft().log().committed(), 4u);
  EXPECT_EQ(f.raft().log().LastIndex(), 5u) << "entry 5 is retained";
}

// Figure 2 / §7: a restarted server resumes from its snapshot and the
// membership recorded with it.
TEST(RaftSnapshotFollower, RestartFromStorageWithSnapshot) {
  TestNode n(1, {});
  ConfState cs{{1, 2, 3}, {4}};
  ASSERT_TRUE(n.storage.ApplySnapshot(MakeSnapshot(10, 3, cs)).ok());
  ASSERT_TRUE(n.storage.Append({Entry{3, 11, EntryType::kNormal, "a"}}).ok());
  n.storage.SetHardState(HardState{3, 0, 11});
  n.applied_index = 10;
  n.Restart();
  EXPECT_EQ(n.raft().conf_state(), cs);
  EXPECT_EQ(n.raft().term(), 3u);
  EXPECT_EQ(n.raft().log().FirstIndex(), 11u);
  EXPECT_EQ(n.raft().log().committed(), 11u);
  n.Drain();
  ASSERT_EQ(n.applied.size(), 1u) << "only what follows the snapshot";
  EXPECT_EQ(n.applied[0].data, "a");

  // The restored voters are the ones it campaigns among.
  n->Campaign();
  std::vector<Message> votes = OfType(n.Drain(), MessageType::kVote);
  ASSERT_EQ(votes.size(), 2u);
  EXPECT_EQ(votes[0].to, 2u);
  EXPECT_EQ(votes[1].to, 3u);
  EXPECT_EQ(votes[0].index, 11u);
  EXPECT_EQ(votes[0].log_term, 3u);
}

// The stored membership wins over Config.peers on restart.
TEST(RaftSnapshotFollower, StoredConfStateOverridesConfigPeers) {
  TestNode n(1, {1, 2, 3});
  n.storage.SetConfState(Voters({1, 5}));
  n.Restart();
  EXPECT_EQ(n.raft().conf_state(), Voters({1, 5}));
}

// ------------------------------------------------------------ end to end

TEST(RaftSnapshotCluster, LaggingFollowerCatchesUpThroughSnapshot) {
  Cluster c(3);
  c.Elect(1);
  c.Isolate(3);
  for (int i = 0; i < 5; ++i)
    ASSERT_TRUE(c[1]->Propose("v" + std::to_string(i)).ok());
  c.Stabilize();
  uint64_t applied = c[1].applied_index;
  ASSERT_EQ(applied, 6u);
  for (uint64_t id : {1, 2}) {
    ASSERT_TRUE(
        c[id].storage.CreateSnapshot(applied, Voters({1, 2, 3}), "upto6").ok());
    ASSERT_TRUE(c[id].storage.Compact(applied).ok());
  }
  c.Heal();
  ASSERT_TRUE(c[1]->Propose("after").ok());
  c.TickAll(3);  // heartbeats make 3 recently active
  ASSERT_EQ(c[3].snapshots.size(), 1u);
  EXPECT_EQ(c[3].snapshots[0].data, "upto6");
  c[1]->ReportSnapshot(3, true);
  c.Stabilize();
  EXPECT_EQ(c[3].raft().log().LastIndex(), c[1].raft().log().LastIndex());
  EXPECT_EQ(c[3].raft().log().committed(), c[1].raft().log().committed());
  ASSERT_FALSE(c[3].applied.empty());
  EXPECT_EQ(c[3].applied.back().data, "after");
  EXPECT_EQ(c[1]->GetStatus().progress.at(3).state, "StateReplicate");
}

}  // namespace
}  // namespace synod::raft
