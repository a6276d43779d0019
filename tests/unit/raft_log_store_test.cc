// RaftLogStore: the Raft log, hard state and conf state of a member in its
// LevelDB. Each test runs on a leveldb memory env so a "reopen" is a fresh
// Backend + RaftLogStore over the same in-memory files.
#include "backend/storage/raft_log_store.h"

#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "backend/raft/random.h"
#include "backend/raft/raw_node.h"
#include "backend/storage/backend.h"
#include "backend/storage/schema.h"
#include "gtest/gtest.h"
#include "leveldb/env.h"
#include "leveldb/helpers/memenv.h"

namespace synod::storage {
namespace {

raft::Entry E(uint64_t index, uint64_t term, std::string data = "") {
  raft::Entry e;
  e.index = index;
  e.term = term;
  e.data = data.empty() ? "d" + std::to_string(index) : std::move(data);
  return e;
}

std::vector<raft::Entry> Range(uint64_t lo, uint64_t hi, uint64_t term) {
  std::vector<raft::Entry> out;
  for (uint64_t i = lo; i < hi; ++i) out.push_back(E(i, term));
  return out;
}

class RaftLogStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    env_.reset(leveldb::NewMemEnv(leveldb::Env::Default()));
    Reopen();
  }
  void TearDown() override {
    store_.reset();
    backend_.reset();
  }
  // Closes and reopens the backend and the store over the same memory env.
  void Reopen() {
    store_.reset();
    backend_.reset();
    BackendOptions opts;
    opts.env = env_.get();
    auto b = Backend::Open("/db", opts);
    ASSERT_TRUE(b.ok()) << b.status();
    backend_ = std::move(*b);
    auto s = RaftLogStore::Open(backend_.get());
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = std::move(*s);
  }
  void Save(const std::vector<raft::Entry>& ents,
            std::optional<raft::HardState> hs = std::nullopt) {
    ASSERT_TRUE(store_->Save(hs, ents, raft::Snapshot()).ok());
  }
  std::vector<raft::Entry> All() {
    auto r = store_->Entries(store_->FirstIndex(), store_->LastIndex() + 1,
                             UINT64_MAX);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : std::vector<raft::Entry>{};
  }

  std::unique_ptr<leveldb::Env> env_;
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<RaftLogStore> store_;
};

TEST_F(RaftLogStoreTest, EmptyStore) {
  EXPECT_EQ(store_->FirstIndex(), 1u);
  EXPECT_EQ(store_->LastIndex(), 0u);
  auto t = store_->Term(0);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(*t, 0u);
  EXPECT_EQ(store_->Term(1).status().message(), raft::kErrUnavailable);
  EXPECT_EQ(store_->GetInitialState().hard_state, raft::HardState());
  EXPECT_TRUE(store_->GetInitialState().conf_state.empty());
  auto snap = store_->Snapshot();
  ASSERT_TRUE(snap.ok());
  EXPECT_TRUE(snap->empty());
  EXPECT_EQ(store_->conf_index(), 0u);
  auto none = store_->Entries(1, 1, 100);
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
}

TEST_F(RaftLogStoreTest, SaveThenReopenKeepsEntriesAndHardState) {
  raft::HardState hs{3, 2, 4};
  std::vector<raft::Entry> ents = Range(1, 6, 2);
  ents[2].type = raft::EntryType::kConfChange;
  ents[3].data = std::string("\0bin\xff", 5);
  Save(ents, hs);
  EXPECT_EQ(All(), ents);
  Reopen();
  EXPECT_EQ(store_->FirstIndex(), 1u);
  EXPECT_EQ(store_->LastIndex(), 5u);
  EXPECT_EQ(store_->GetInitialState().hard_state, hs);
  EXPECT_EQ(All(), ents);
  for (uint64_t i = 1; i <= 5; ++i) EXPECT_EQ(*store_->Term(i), 2u);
  // Hard state alone (no entries) is also persisted.
  raft::HardState hs2{4, 0, 5};
  Save({}, hs2);
  Reopen();
  EXPECT_EQ(store_->GetInitialState().hard_state, hs2);
  EXPECT_EQ(store_->LastIndex(), 5u);
}

TEST_F(RaftLogStoreTest, ConflictingSuffixIsReplaced) {
  Save(Range(1, 8, 1));
  // A new leader overwrites from index 4 with a shorter log in term 2.
  Save({E(4, 2, "x4"), E(5, 2, "x5")});
  EXPECT_EQ(store_->LastIndex(), 5u);
  EXPECT_EQ(*store_->Term(3), 1u);
  EXPECT_EQ(*store_->Term(4), 2u);
  EXPECT_EQ(store_->Term(6).status().message(), raft::kErrUnavailable);
  std::vector<raft::Entry> want = Range(1, 4, 1);
  want.push_back(E(4, 2, "x4"));
  want.push_back(E(5, 2, "x5"));
  EXPECT_EQ(All(), want);
  Reopen();  // the old entries 6 and 7 must be gone on disk too
  EXPECT_EQ(store_->LastIndex(), 5u);
  EXPECT_EQ(All(), want);
  // Appending exactly after the last entry extends.
  Save({E(6, 2)});
  EXPECT_EQ(store_->LastIndex(), 6u);
  // A gap or an append below the snapshot point is refused.
  EXPECT_FALSE(store_->Save(std::nullopt, {E(9, 2)}, raft::Snapshot()).ok());
  EXPECT_EQ(store_->LastIndex(), 6u);
}

TEST_F(RaftLogStoreTest, EntriesSizeLimitAndErrors) {
  std::vector<raft::Entry> ents;
  for (uint64_t i = 1; i <= 10; ++i) ents.push_back(E(i, 1, std::string(10, 'a')));
  Save(ents);
  // At least one entry even when the first is larger than the limit.
  auto one = store_->Entries(3, 10, 0);
  ASSERT_TRUE(one.ok());
  ASSERT_EQ(one->size(), 1u);
  EXPECT_EQ((*one)[0].index, 3u);
  // 25 bytes: two 10-byte entries fit, the third would exceed.
  auto two = store_->Entries(3, 10, 25);
  ASSERT_TRUE(two.ok());
  EXPECT_EQ(two->size(), 2u);
  auto exact = store_->Entries(3, 10, 30);
  ASSERT_TRUE(exact.ok());
  EXPECT_EQ(exact->size(), 3u);
  auto all = store_->Entries(1, 11, UINT64_MAX);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->size(), 10u);
  // Beyond the last index.
  auto beyond = store_->Entries(5, 12, UINT64_MAX);
  ASSERT_FALSE(beyond.ok());
  EXPECT_EQ(beyond.status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(beyond.status().message(), raft::kErrUnavailable);
  // Compacted.
  ASSERT_TRUE(store_->Compact(4).ok());
  auto compacted = store_->Entries(4, 6, UINT64_MAX);
  ASSERT_FALSE(compacted.ok());
  EXPECT_EQ(compacted.status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(compacted.status().message(), raft::kErrCompacted);
  EXPECT_TRUE(raft::IsCompacted(compacted.status()));
  EXPECT_EQ(store_->Term(3).status().message(), raft::kErrCompacted);
  auto five = store_->Entries(5, 6, UINT64_MAX);
  ASSERT_TRUE(five.ok());
  EXPECT_EQ((*five)[0], ents[4]);
}

TEST_F(RaftLogStoreTest, CompactThenReopen) {
  Save(Range(1, 6, 1));
  Save(Range(6, 11, 3));
  ASSERT_TRUE(store_->Compact(7).ok());
  EXPECT_EQ(store_->FirstIndex(), 8u);
  EXPECT_EQ(store_->LastIndex(), 10u);
  EXPECT_EQ(*store_->Term(7), 3u);  // the snapshot point keeps its term
  // Compacting at or below the current point is a no-op; beyond last fails.
  EXPECT_TRUE(store_->Compact(5).ok());
  EXPECT_EQ(store_->FirstIndex(), 8u);
  EXPECT_FALSE(store_->Compact(11).ok());
  Reopen();
  EXPECT_EQ(store_->FirstIndex(), 8u);
  EXPECT_EQ(store_->LastIndex(), 10u);
  EXPECT_EQ(*store_->Term(7), 3u);
  auto snap = store_->Snapshot();
  ASSERT_TRUE(snap.ok());
  EXPECT_EQ(snap->metadata.index, 7u);
  EXPECT_EQ(snap->metadata.term, 3u);
  EXPECT_EQ(All(), Range(8, 11, 3));
  // The log still appends after the compaction point.
  Save({E(11, 4)});
  Reopen();
  EXPECT_EQ(store_->LastIndex(), 11u);
  EXPECT_EQ(*store_->Term(11), 4u);
}

TEST_F(RaftLogStoreTest, SaveWithSnapshotDropsTheOldLogAndSetsConfState) {
  Save(Range(1, 6, 1), raft::HardState{1, 1, 5});
  raft::Snapshot snap;
  snap.metadata.index = 20;
  snap.metadata.term = 4;
  snap.metadata.conf_state.voters = {1, 2, 3};
  snap.metadata.conf_state.learners = {9};
  ASSERT_TRUE(
      store_->Save(raft::HardState{4, 0, 20}, {E(21, 4), E(22, 4)}, snap).ok());
  EXPECT_EQ(store_->FirstIndex(), 21u);
  EXPECT_EQ(store_->LastIndex(), 22u);
  EXPECT_EQ(*store_->Term(20), 4u);
  EXPECT_EQ(store_->conf_index(), 20u);
  Reopen();
  EXPECT_EQ(store_->FirstIndex(), 21u);
  EXPECT_EQ(store_->LastIndex(), 22u);
  EXPECT_EQ(*store_->Term(20), 4u);
  raft::InitialState is = store_->GetInitialState();
  EXPECT_EQ(is.hard_state, (raft::HardState{4, 0, 20}));
  EXPECT_EQ(is.conf_state, snap.metadata.conf_state);
  EXPECT_EQ(store_->conf_index(), 20u);
  auto s = store_->Snapshot();
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->metadata.index, 20u);
  EXPECT_EQ(s->metadata.conf_state, snap.metadata.conf_state);
  // The old entries are gone from LevelDB, not merely hidden.
  for (uint64_t i = 1; i <= 5; ++i) {
    auto v = backend_->Get(RaftEntryKey(i));
    ASSERT_TRUE(v.ok());
    EXPECT_FALSE(v->has_value()) << "entry " << i << " survived the install";
  }
  // An older snapshot is ignored.
  raft::Snapshot old;
  old.metadata.index = 10;
  old.metadata.term = 2;
  old.metadata.conf_state.voters = {1};
  ASSERT_TRUE(store_->Save(std::nullopt, {}, old).ok());
  EXPECT_EQ(store_->FirstIndex(), 21u);
  EXPECT_EQ(store_->GetInitialState().conf_state, snap.metadata.conf_state);
}

TEST_F(RaftLogStoreTest, SetConfStatePersistsWithItsIndex) {
  raft::ConfState cs;
  cs.voters = {1, 5, 7};
  cs.learners = {8, 11};
  ASSERT_TRUE(store_->SetConfState(cs, 42).ok());
  EXPECT_EQ(store_->conf_index(), 42u);
  Reopen();
  EXPECT_EQ(store_->conf_index(), 42u);
  EXPECT_EQ(store_->GetInitialState().conf_state, cs);
  raft::ConfState only_voters;
  only_voters.voters = {2};
  ASSERT_TRUE(store_->SetConfState(only_voters, 43).ok());
  Reopen();
  EXPECT_EQ(store_->GetInitialState().conf_state, only_voters);
  EXPECT_EQ(store_->conf_index(), 43u);
}

TEST_F(RaftLogStoreTest, GapInStoredEntriesIsDataLoss) {
  Save(Range(1, 4, 1));
  // Write entry 6 directly: entries 4 and 5 are missing.
  Batch b;
  b.Put(RaftEntryKey(6), EncodeU64(1) + std::string(1, '\0') + "x");
  ASSERT_TRUE(backend_->Write(&b, true).ok());
  store_.reset();
  auto s = RaftLogStore::Open(backend_.get());
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(s.status().message().find("gap"), std::string::npos)
      << s.status();
}

TEST_F(RaftLogStoreTest, CorruptEntryAndHardStateAreDataLoss) {
  Save(Range(1, 3, 1));
  Batch b;
  b.Put(RaftEntryKey(3), "short");
  ASSERT_TRUE(backend_->Write(&b, true).ok());
  store_.reset();
  auto s = RaftLogStore::Open(backend_.get());
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kDataLoss);

  Batch fix;
  fix.Delete(RaftEntryKey(3));
  fix.Put("R/h", "not 24 bytes");
  ASSERT_TRUE(backend_->Write(&fix, true).ok());
  auto s2 = RaftLogStore::Open(backend_.get());
  ASSERT_FALSE(s2.ok());
  EXPECT_EQ(s2.status().code(), absl::StatusCode::kDataLoss);
}

// Random appends (with conflicting suffixes), compactions and reopens,
// checked against raft::MemoryStorage as the model.
TEST_F(RaftLogStoreTest, RandomOpsMatchMemoryStorage) {
  const uint64_t seed = absl::ToUnixNanos(absl::Now());
  std::cout << "seed " << seed << std::endl;
  SCOPED_TRACE(seed);
  raft::Random rnd(seed);
  raft::MemoryStorage model;
  uint64_t term = 1;
  for (int op = 0; op < 400; ++op) {
    const uint64_t first = store_->FirstIndex();
    const uint64_t last = store_->LastIndex();
    switch (rnd.Uniform(10)) {
      case 0:
        if (last >= first) {
          const uint64_t at = first + rnd.Uniform(last - first + 1);
          ASSERT_TRUE(store_->Compact(at).ok());
          ASSERT_TRUE(model.Compact(at).ok());
        }
        break;
      case 1:
        Reopen();
        break;
      default: {
        // Append at any index from the first one to just past the end.
        const uint64_t from = first + rnd.Uniform(last - first + 2);
        if (rnd.OneIn(3)) ++term;
        std::vector<raft::Entry> ents;
        const uint64_t n = 1 + rnd.Uniform(5);
        for (uint64_t i = 0; i < n; ++i) {
          ents.push_back(E(from + i, term, std::string(rnd.Uniform(20) + 1,
                                                       'a' + op % 26)));
        }
        ASSERT_TRUE(store_->Save(std::nullopt, ents, raft::Snapshot()).ok());
        ASSERT_TRUE(model.Append(ents).ok());
      }
    }
    ASSERT_EQ(store_->FirstIndex(), model.FirstIndex()) << "op " << op;
    ASSERT_EQ(store_->LastIndex(), model.LastIndex()) << "op " << op;
    for (uint64_t i = store_->FirstIndex() - 1; i <= store_->LastIndex(); ++i) {
      ASSERT_EQ(*store_->Term(i), *model.Term(i)) << "op " << op << " i " << i;
    }
    const uint64_t lo = store_->FirstIndex(), hi = store_->LastIndex() + 1;
    const uint64_t max_bytes = rnd.Uniform(60);
    auto got = store_->Entries(lo, hi, max_bytes);
    auto want = model.Entries(lo, hi, max_bytes);
    ASSERT_EQ(got.ok(), want.ok()) << got.status() << " vs " << want.status();
    if (got.ok()) {
      ASSERT_EQ(*got, *want) << "op " << op;
    }
  }
}

// A single-voter RawNode bootstrapped on the store: it elects itself,
// commits proposals, and a node restarted on the reopened store has them.
TEST_F(RaftLogStoreTest, BacksARealRawNode) {
  raft::Random random(7);
  auto make = [&](bool bootstrap) {
    raft::Config c;
    c.id = 1;
    c.peers = {1};
    c.bootstrap = bootstrap;
    c.election_tick = 10;
    c.heartbeat_tick = 1;
    c.storage = store_.get();
    c.random = &random;
    auto n = raft::RawNode::Create(c);
    EXPECT_TRUE(n.ok()) << n.status();
    return n.ok() ? std::move(*n) : nullptr;
  };
  std::vector<std::string> applied;
  // Handles every pending Ready the way the raft thread does.
  auto drain = [&](raft::RawNode* n) {
    for (int i = 0; i < 100 && n->HasReady(); ++i) {
      raft::Ready rd = n->GetReady();
      ASSERT_TRUE(store_->Save(rd.hard_state, rd.entries, rd.snapshot).ok());
      for (const raft::Entry& e : rd.committed_entries) {
        if (e.type == raft::EntryType::kConfChange) {
          auto cc = raft::DecodeConfChange(e.data);
          ASSERT_TRUE(cc.ok());
          raft::ConfState cs = n->ApplyConfChange(*cc);
          ASSERT_TRUE(store_->SetConfState(cs, e.index).ok());
        } else if (!e.data.empty()) {
          applied.push_back(e.data);
        }
      }
      n->Advance(rd);
    }
    ASSERT_FALSE(n->HasReady());
  };

  auto node = make(/*bootstrap=*/true);
  ASSERT_NE(node, nullptr);
  drain(node.get());
  EXPECT_EQ(store_->LastIndex(), 1u);  // the bootstrap conf change
  node->Campaign();
  drain(node.get());
  ASSERT_EQ(node->soft_state().role, raft::Role::kLeader);
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(node->Propose("p" + std::to_string(i)).ok());
    drain(node.get());
  }
  EXPECT_EQ(applied,
            (std::vector<std::string>{"p0", "p1", "p2", "p3", "p4"}));
  const uint64_t last = store_->LastIndex();
  const raft::HardState hs = node->hard_state();
  EXPECT_EQ(hs.commit, last);

  node.reset();
  Reopen();
  EXPECT_EQ(store_->LastIndex(), last);
  EXPECT_EQ(store_->GetInitialState().hard_state, hs);
  EXPECT_EQ(store_->GetInitialState().conf_state.voters,
            std::vector<uint64_t>{1});
  auto again = make(/*bootstrap=*/true);  // ignored: the store is not empty
  ASSERT_NE(again, nullptr);
  EXPECT_EQ(again->hard_state(), hs);
  again->Campaign();
  applied.clear();
  drain(again.get());
  ASSERT_EQ(again->soft_state().role, raft::Role::kLeader);
  ASSERT_TRUE(again->Propose("after").ok());
  drain(again.get());
  ASSERT_FALSE(applied.empty());
  EXPECT_EQ(applied.back(), "after");
  EXPECT_EQ(store_->LastIndex(), last + 2);  // new term's empty entry + "after"
}

}  // namespace
}  // namespace synod::storage
