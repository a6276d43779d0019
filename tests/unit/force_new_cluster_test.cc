// backend/server/force_new_cluster.h: etcd's restartAsStandaloneNode on a
// stopped member's log: uncommitted entries dropped, a removal of every
// other member (as of the committed log) appended and committed.
#include "backend/server/force_new_cluster.h"

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "backend/raft/types.h"
#include "backend/storage/backend.h"
#include "backend/storage/raft_log_store.h"
#include "backend/storage/schema.h"
#include "gtest/gtest.h"

namespace synod::server {
namespace {

raft::Entry Normal(uint64_t term, uint64_t index) {
  raft::Entry e;
  e.term = term;
  e.index = index;
  e.data = "put";
  return e;
}

raft::Entry Conf(uint64_t term, uint64_t index, raft::ConfChangeType type, uint64_t id) {
  raft::ConfChange cc;
  cc.type = type;
  cc.node_id = id;
  raft::Entry e;
  e.term = term;
  e.index = index;
  e.type = raft::EntryType::kConfChange;
  e.data = raft::EncodeConfChange(cc);
  return e;
}

class ForceNewClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/force_new_cluster_test_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // A member 1 of members {1, 2, 3} whose log holds `entries`, committed up
  // to `commit`, with the conf state recorded at index 1.
  void Write(const std::vector<raft::Entry>& entries, uint64_t commit) {
    std::filesystem::create_directories(dir_ + "/member");
    auto b = storage::Backend::Open(dir_ + "/member/db");
    ASSERT_TRUE(b.ok()) << b.status();
    storage::Batch batch;
    std::string ids;
    storage::PutBigEndian64(&ids, 0xc1);  // cluster ID
    storage::PutBigEndian64(&ids, 1);     // member ID
    batch.Put(storage::kMetaIds, ids);
    ASSERT_TRUE((*b)->Write(&batch, true).ok());
    auto log = storage::RaftLogStore::Open(b->get());
    ASSERT_TRUE(log.ok()) << log.status();
    raft::HardState hs;
    hs.term = 3;
    hs.vote = 2;
    hs.commit = commit;
    ASSERT_TRUE((*log)->Save(hs, entries, raft::Snapshot()).ok());
    raft::ConfState cs;
    cs.voters = {1, 2, 3};
    ASSERT_TRUE((*log)->SetConfState(cs, 1).ok());
  }

  // The log after ForceNewCluster: (hard state, entries from 1).
  std::pair<raft::HardState, std::vector<raft::Entry>> Read() {
    auto b = storage::Backend::Open(dir_ + "/member/db");
    EXPECT_TRUE(b.ok()) << b.status();
    auto log = storage::RaftLogStore::Open(b->get());
    EXPECT_TRUE(log.ok()) << log.status();
    auto entries = (*log)->Entries(1, (*log)->LastIndex() + 1, UINT64_MAX);
    EXPECT_TRUE(entries.ok()) << entries.status();
    return {(*log)->GetInitialState().hard_state, *entries};
  }

  std::string dir_;
};

TEST_F(ForceNewClusterTest, DropsUncommittedEntriesAndCommitsTheOthersRemoval) {
  Write({Conf(1, 1, raft::ConfChangeType::kAddNode, 1), Normal(2, 2), Normal(2, 3),
         Normal(3, 4), Normal(3, 5)},
        /*commit=*/3);
  auto forced = ForceNewCluster(dir_);
  ASSERT_TRUE(forced.ok()) << forced.status();
  EXPECT_EQ(forced->member_id, 1u);
  EXPECT_EQ(forced->removed, (std::vector<uint64_t>{2, 3}));
  EXPECT_EQ(forced->commit_index, 5u);

  auto [hs, entries] = Read();
  EXPECT_EQ(hs.term, 3u);
  EXPECT_EQ(hs.vote, 2u);
  EXPECT_EQ(hs.commit, 5u);
  ASSERT_EQ(entries.size(), 5u);
  EXPECT_EQ(entries[2], Normal(2, 3));  // committed entries are kept
  // Entries 4 and 5 were never committed: replaced by the removals.
  EXPECT_EQ(entries[3], Conf(3, 4, raft::ConfChangeType::kRemoveNode, 2));
  EXPECT_EQ(entries[4], Conf(3, 5, raft::ConfChangeType::kRemoveNode, 3));
}

TEST_F(ForceNewClusterTest, CommittedConfChangesAfterTheRecordedStateCount) {
  // Member 4 was added and member 3 removed by committed entries not yet
  // applied (the conf state says {1, 2, 3}); an uncommitted add of 5 is not.
  Write({Conf(1, 1, raft::ConfChangeType::kAddNode, 1), Normal(2, 2),
         Conf(2, 3, raft::ConfChangeType::kAddLearnerNode, 4),
         Conf(2, 4, raft::ConfChangeType::kRemoveNode, 3),
         Conf(3, 5, raft::ConfChangeType::kAddNode, 5)},
        /*commit=*/4);
  auto forced = ForceNewCluster(dir_);
  ASSERT_TRUE(forced.ok()) << forced.status();
  EXPECT_EQ(forced->removed, (std::vector<uint64_t>{2, 4}));
  auto [hs, entries] = Read();
  EXPECT_EQ(hs.commit, 6u);
  ASSERT_EQ(entries.size(), 6u);
  EXPECT_EQ(entries[4], Conf(3, 5, raft::ConfChangeType::kRemoveNode, 2));
  EXPECT_EQ(entries[5], Conf(3, 6, raft::ConfChangeType::kRemoveNode, 4));
}

TEST_F(ForceNewClusterTest, AnEmptyDataDirOrALoneMemberIsLeftAlone) {
  auto fresh = ForceNewCluster(dir_);
  ASSERT_TRUE(fresh.ok()) << fresh.status();
  EXPECT_TRUE(fresh->removed.empty());
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/member"));

  Write({Conf(1, 1, raft::ConfChangeType::kAddNode, 1),
         Conf(1, 2, raft::ConfChangeType::kRemoveNode, 2),
         Conf(1, 3, raft::ConfChangeType::kRemoveNode, 3), Normal(1, 4)},
        /*commit=*/4);
  auto alone = ForceNewCluster(dir_);
  ASSERT_TRUE(alone.ok()) << alone.status();
  EXPECT_TRUE(alone->removed.empty());
  auto [hs, entries] = Read();
  EXPECT_EQ(hs.commit, 4u);
  EXPECT_EQ(entries.size(), 4u);
}

}  // namespace
}  // namespace synod::server
