#include "backend/mvcc/key_index.h"

#include <vector>

#include "gtest/gtest.h"

namespace synod::mvcc {
namespace {

// put@2, put@3, tombstone@5, put@7, put@8.
KeyIndex TwoGenerations() {
  KeyIndex ki;
  ki.Put(Revision{2, 0}, 0);
  ki.Put(Revision{3, 1}, 10);
  ki.Tombstone(Revision{5, 0});
  ki.Put(Revision{7, 0}, 0);
  ki.Put(Revision{8, 2}, 0);
  return ki;
}

std::vector<int64_t> Mains(const KeyIndex& ki) {
  std::vector<int64_t> out;
  for (const IndexEntry& e : ki.entries()) out.push_back(e.rev.main);
  return out;
}

std::vector<int64_t> Mains(const std::vector<Revision>& revs) {
  std::vector<int64_t> out;
  for (const Revision& r : revs) out.push_back(r.main);
  return out;
}

TEST(KeyIndexTest, EmptyIndexHasNoEntryAtAnyRevision) {
  KeyIndex ki;
  EXPECT_EQ(ki.At(0), nullptr);
  EXPECT_EQ(ki.At(100), nullptr);
  EXPECT_EQ(ki.Last(), nullptr);
}

TEST(KeyIndexTest, AtReturnsNewestEntryAtOrBelowRevisionAcrossGenerations) {
  KeyIndex ki = TwoGenerations();
  EXPECT_EQ(ki.At(1), nullptr);
  ASSERT_NE(ki.At(2), nullptr);
  EXPECT_EQ(ki.At(2)->rev, (Revision{2, 0}));
  EXPECT_EQ(ki.At(3)->rev, (Revision{3, 1}));
  EXPECT_EQ(ki.At(4)->rev, (Revision{3, 1}));
  EXPECT_TRUE(ki.At(5)->tombstone());
  EXPECT_TRUE(ki.At(6)->tombstone());
  EXPECT_EQ(ki.At(7)->rev, (Revision{7, 0}));
  EXPECT_FALSE(ki.At(7)->tombstone());
  EXPECT_EQ(ki.At(8)->rev, (Revision{8, 2}));
  EXPECT_EQ(ki.At(1000)->rev, (Revision{8, 2}));
  EXPECT_EQ(ki.Last()->rev, (Revision{8, 2}));
}

TEST(KeyIndexTest, PutsInOneGenerationShareCreateRevisionAndCountVersions) {
  KeyIndex ki = TwoGenerations();
  const IndexEntry* first = ki.At(2);
  EXPECT_EQ(first->create_revision, 2);
  EXPECT_EQ(first->version, 1);
  EXPECT_EQ(first->lease, 0);
  const IndexEntry* second = ki.At(3);
  EXPECT_EQ(second->create_revision, 2);
  EXPECT_EQ(second->version, 2);
  EXPECT_EQ(second->lease, 10);
}

TEST(KeyIndexTest, TombstoneResetsVersionAndCreateRevision) {
  KeyIndex ki = TwoGenerations();
  const IndexEntry* tomb = ki.At(5);
  EXPECT_EQ(tomb->version, 0);
  EXPECT_EQ(tomb->create_revision, 0);
  EXPECT_EQ(tomb->lease, 0);
  const IndexEntry* reborn = ki.At(7);
  EXPECT_EQ(reborn->create_revision, 7);
  EXPECT_EQ(reborn->version, 1);
  const IndexEntry* next = ki.At(8);
  EXPECT_EQ(next->create_revision, 7);
  EXPECT_EQ(next->version, 2);
}

TEST(KeyIndexTest, PutReturnsTheAppendedEntry) {
  KeyIndex ki;
  const IndexEntry& e = ki.Put(Revision{4, 3}, 99);
  EXPECT_EQ(e.rev, (Revision{4, 3}));
  EXPECT_EQ(e.lease, 99);
  EXPECT_EQ(e.version, 1);
  EXPECT_EQ(e.create_revision, 4);
  EXPECT_EQ(&e, ki.Last());
}

TEST(KeyIndexTest, CompactKeepsNewestEntryAtOrBelowRevision) {
  KeyIndex ki = TwoGenerations();
  std::vector<Revision> dropped;
  EXPECT_FALSE(ki.Compact(4, &dropped));
  EXPECT_EQ(Mains(dropped), (std::vector<int64_t>{2}));
  EXPECT_EQ(Mains(ki), (std::vector<int64_t>{3, 5, 7, 8}));
  // The kept entry still answers reads at the compacted revision.
  ASSERT_NE(ki.At(4), nullptr);
  EXPECT_EQ(ki.At(4)->rev, (Revision{3, 1}));
  EXPECT_EQ(ki.At(4)->version, 2);
}

TEST(KeyIndexTest, CompactBelowFirstEntryDropsNothing) {
  KeyIndex ki = TwoGenerations();
  std::vector<Revision> dropped;
  EXPECT_FALSE(ki.Compact(1, &dropped));
  EXPECT_TRUE(dropped.empty());
  EXPECT_EQ(Mains(ki), (std::vector<int64_t>{2, 3, 5, 7, 8}));
}

TEST(KeyIndexTest, CompactAtExactEntryKeepsIt) {
  KeyIndex ki = TwoGenerations();
  std::vector<Revision> dropped;
  EXPECT_FALSE(ki.Compact(7, &dropped));
  EXPECT_EQ(Mains(dropped), (std::vector<int64_t>{2, 3, 5}));
  EXPECT_EQ(Mains(ki), (std::vector<int64_t>{7, 8}));
}

TEST(KeyIndexTest, CompactDropsTombstoneOlderThanRevision) {
  KeyIndex ki = TwoGenerations();
  std::vector<Revision> dropped;
  EXPECT_FALSE(ki.Compact(6, &dropped));
  EXPECT_EQ(Mains(dropped), (std::vector<int64_t>{2, 3, 5}));
  EXPECT_EQ(Mains(ki), (std::vector<int64_t>{7, 8}));
  EXPECT_EQ(ki.At(6), nullptr);
}

TEST(KeyIndexTest, CompactKeepsTombstoneAtExactlyRevision) {
  KeyIndex ki = TwoGenerations();
  std::vector<Revision> dropped;
  EXPECT_FALSE(ki.Compact(5, &dropped));
  EXPECT_EQ(Mains(dropped), (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(Mains(ki), (std::vector<int64_t>{5, 7, 8}));
  ASSERT_NE(ki.At(5), nullptr);
  EXPECT_TRUE(ki.At(5)->tombstone());
  // The next compaction past it drops it.
  dropped.clear();
  EXPECT_FALSE(ki.Compact(6, &dropped));
  EXPECT_EQ(Mains(dropped), (std::vector<int64_t>{5}));
  EXPECT_EQ(Mains(ki), (std::vector<int64_t>{7, 8}));
}

TEST(KeyIndexTest, CompactPastFinalTombstoneEmptiesIndex) {
  KeyIndex ki;
  ki.Put(Revision{2, 0}, 0);
  ki.Put(Revision{3, 0}, 0);
  ki.Tombstone(Revision{4, 0});
  std::vector<Revision> dropped;
  EXPECT_FALSE(ki.Compact(4, &dropped));  // tombstone at exactly 4 stays
  EXPECT_EQ(Mains(ki), (std::vector<int64_t>{4}));
  dropped.clear();
  EXPECT_TRUE(ki.Compact(9, &dropped));
  EXPECT_EQ(Mains(dropped), (std::vector<int64_t>{4}));
  EXPECT_TRUE(ki.entries().empty());
  EXPECT_EQ(ki.At(9), nullptr);
}

TEST(KeyIndexTest, CompactAppendsToDroppedAndKeepsSubRevisions) {
  KeyIndex ki;
  ki.Put(Revision{2, 1}, 0);
  ki.Put(Revision{3, 4}, 0);
  std::vector<Revision> dropped = {Revision{1, 0}};
  EXPECT_FALSE(ki.Compact(3, &dropped));
  ASSERT_EQ(dropped.size(), 2u);
  EXPECT_EQ(dropped[0], (Revision{1, 0}));
  EXPECT_EQ(dropped[1], (Revision{2, 1}));
}

TEST(KeyIndexTest, CompactOfLiveKeyNeverEmptiesIndex) {
  KeyIndex ki;
  ki.Put(Revision{2, 0}, 0);
  std::vector<Revision> dropped;
  EXPECT_FALSE(ki.Compact(100, &dropped));
  EXPECT_TRUE(dropped.empty());
  EXPECT_EQ(ki.At(100)->rev, (Revision{2, 0}));
}

TEST(KeyIndexTest, RestoreKeepsStoredFieldsVerbatim) {
  KeyIndex ki;
  IndexEntry e;
  e.rev = Revision{9, 1};
  e.create_revision = 4;
  e.version = 6;
  e.lease = 77;
  ki.Restore(e);
  const IndexEntry& next = ki.Put(Revision{10, 0}, 0);
  EXPECT_EQ(next.create_revision, 4);
  EXPECT_EQ(next.version, 7);
}

TEST(KeyIndexTest, TruncateAfterUndoesNewerEntries) {
  KeyIndex ki = TwoGenerations();
  EXPECT_FALSE(ki.TruncateAfter(5));
  EXPECT_EQ(Mains(ki), (std::vector<int64_t>{2, 3, 5}));
  EXPECT_TRUE(ki.TruncateAfter(1));
}

TEST(RevisionTest, OrdersByMainThenSub) {
  EXPECT_TRUE((Revision{1, 5}) < (Revision{2, 0}));
  EXPECT_TRUE((Revision{2, 0}) < (Revision{2, 1}));
  EXPECT_FALSE((Revision{2, 1}) < (Revision{2, 1}));
  EXPECT_FALSE((Revision{2, 1}) == (Revision{2, 0}));
}

}  // namespace
}  // namespace synod::mvcc
