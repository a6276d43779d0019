// RaftLog and MemoryStorage: the stable/unstable split, truncation and size
// limits under the paper's log rules.
#include "backend/raft/raft_log.h"

#include "gtest/gtest.h"
#include "tests/raft/test_util.h"

namespace synod::raft {
namespace {

using testing::EntriesWithTerms;

Entry E(uint64_t term, uint64_t index, std::string data = "") {
  Entry e;
  e.term = term;
  e.index = index;
  e.data = std::move(data);
  return e;
}

std::vector<uint64_t> Terms(const std::vector<Entry>& ents) {
  std::vector<uint64_t> t;
  for (const Entry& e : ents) t.push_back(e.term);
  return t;
}

TEST(MemoryStorage, AppendTruncatesOverlappedSuffix) {
  MemoryStorage s;
  ASSERT_TRUE(s.Append(EntriesWithTerms({1, 1, 2})).ok());
  ASSERT_TRUE(s.Append({E(3, 2)}).ok());
  EXPECT_EQ(s.LastIndex(), 2u);
  EXPECT_EQ(*s.Term(2), 3u);
  EXPECT_EQ(*s.Term(0), 0u);
  EXPECT_FALSE(s.Term(3).ok());
  EXPECT_FALSE(s.Append({E(3, 5)}).ok()) << "a gap";
}

TEST(MemoryStorage, EntriesRespectsMaxBytesButReturnsOne) {
  MemoryStorage s;
  ASSERT_TRUE(s.Append({E(1, 1, "aaaa"), E(1, 2, "bbbb"), E(1, 3, "cc")}).ok());
  EXPECT_EQ(s.Entries(1, 4, 8)->size(), 2u);
  EXPECT_EQ(s.Entries(1, 4, 1)->size(), 1u);
  EXPECT_EQ(s.Entries(1, 4, kNoLimit)->size(), 3u);
  EXPECT_FALSE(s.Entries(0, 2, kNoLimit).ok());
}

TEST(RaftLog, UnstableEntriesBecomeStableOnlyIfUnchanged) {
  MemoryStorage s;
  ASSERT_TRUE(s.Append(EntriesWithTerms({1})).ok());
  RaftLog log(&s);
  EXPECT_EQ(log.StableLastIndex(), 1u);
  log.Append({E(2, 2), E(2, 3)});
  EXPECT_EQ(log.UnstableEntries().size(), 2u);
  // Persisted (3, term 1) does not match the unstable (3, term 2).
  log.StableTo(3, 1);
  EXPECT_EQ(log.UnstableEntries().size(), 2u);
  ASSERT_TRUE(s.Append(log.UnstableEntries()).ok());
  log.StableTo(3, 2);
  EXPECT_TRUE(log.UnstableEntries().empty());
  EXPECT_EQ(log.StableLastIndex(), 3u);
  EXPECT_EQ(log.LastIndex(), 3u);
}

TEST(RaftLog, AppendBeforeUnstableReplacesStableSuffix) {
  MemoryStorage s;
  ASSERT_TRUE(s.Append(EntriesWithTerms({1, 1, 1})).ok());
  RaftLog log(&s);
  log.Append({E(2, 2)});
  EXPECT_EQ(log.LastIndex(), 2u);
  EXPECT_EQ(log.StableLastIndex(), 1u);
  EXPECT_EQ(Terms(log.AllEntries()), (std::vector<uint64_t>{1, 2}));
  EXPECT_FALSE(log.Term(3).has_value());
}

TEST(RaftLog, MaybeAppendCommitsAtMostLastNewEntry) {
  MemoryStorage s;
  RaftLog log(&s);
  ASSERT_TRUE(log.MaybeAppend(0, 0, 10, EntriesWithTerms({1, 1})).has_value());
  // Figure 2: commitIndex = min(leaderCommit, index of last new entry).
  EXPECT_EQ(log.committed(), 2u);
  EXPECT_FALSE(log.MaybeAppend(2, 2, 10, {}).has_value());
  EXPECT_EQ(*log.MaybeAppend(1, 1, 1, {}), 1u);
  EXPECT_EQ(log.LastIndex(), 2u) << "a stale shorter append truncates nothing";
}

TEST(RaftLog, SliceSpansStableAndUnstableWithSizeLimit) {
  MemoryStorage s;
  ASSERT_TRUE(s.Append({E(1, 1, "aa"), E(1, 2, "bb")}).ok());
  RaftLog log(&s);
  log.Append({E(1, 3, "cc"), E(1, 4, "dd")});
  EXPECT_EQ(log.Slice(1, 5, kNoLimit).size(), 4u);
  EXPECT_EQ(log.Slice(2, 5, 4).size(), 2u);
  EXPECT_EQ(log.Slice(1, 5, 6).size(), 3u);
  EXPECT_EQ(log.Slice(3, 3, kNoLimit).size(), 0u);
}

TEST(RaftLog, NextCommittedEntriesFollowAppliedAndCommit) {
  MemoryStorage s;
  RaftLog log(&s);
  log.Append(EntriesWithTerms({1, 1, 1}));
  EXPECT_FALSE(log.HasNextCommittedEntries());
  log.CommitTo(2);
  EXPECT_EQ(log.NextCommittedEntries().size(), 2u);
  log.AppliedTo(1);
  ASSERT_EQ(log.NextCommittedEntries().size(), 1u);
  EXPECT_EQ(log.NextCommittedEntries()[0].index, 2u);
  log.CommitTo(1);
  EXPECT_EQ(log.committed(), 2u) << "commit never decreases";
}

TEST(RaftLog, MaybeCommitOnlyForEntriesOfTheGivenTerm) {
  MemoryStorage s;
  RaftLog log(&s);
  log.Append(EntriesWithTerms({1, 2}));
  EXPECT_FALSE(log.MaybeCommit(2, 3));
  EXPECT_TRUE(log.MaybeCommit(2, 2));
  EXPECT_EQ(log.committed(), 2u);
}

}  // namespace
}  // namespace synod::raft
