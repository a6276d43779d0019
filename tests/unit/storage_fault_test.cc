// The member's storage (Backend, RaftLogStore, KvStore in one LevelDB) under
// a simulated power loss and a failing disk, on tests/support's
// FaultInjectionEnv over a leveldb memory env (no disk is touched).
//
// What must hold (docs/DESIGN.md, "Threads in a member" and "The member as
// a Raft cluster"): what a synced write stored survives a power loss;
// unsynced apply batches may be lost, but only a suffix of them, so the
// store reopens at some applied index with exactly the state it had then,
// and replaying the log from there gives the same state again; a failed
// write is an error Status, never a crash.
#include <algorithm>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "backend/mvcc/kv_store.h"
#include "backend/raft/random.h"
#include "backend/raft/types.h"
#include "backend/storage/backend.h"
#include "backend/storage/raft_log_store.h"
#include "gtest/gtest.h"
#include "leveldb/env.h"
#include "leveldb/helpers/memenv.h"
#include "proto/rpc.pb.h"
#include "tests/support/fault_injection_env.h"

namespace synod::storage {
namespace {

using testing::FaultInjectionEnv;

raft::Entry E(uint64_t index, uint64_t term) {
  raft::Entry e;
  e.index = index;
  e.term = term;
  e.data = "d" + std::to_string(index) + "t" + std::to_string(term);
  return e;
}

class StorageFaultTest : public ::testing::Test {
 protected:
  void SetUp() override { OpenEmpty(); }
  void TearDown() override { Close(); }

  // Closes the store, if open, and opens an empty one on a new memory env.
  void OpenEmpty() {
    Close();
    mem_.reset(leveldb::NewMemEnv(leveldb::Env::Default()));
    env_ = std::make_unique<FaultInjectionEnv>(mem_.get());
    Open();
  }

  void Open() {
    BackendOptions opts;
    opts.env = env_.get();
    auto b = Backend::Open("/db", opts);
    ASSERT_TRUE(b.ok()) << b.status();
    backend_ = std::move(*b);
    auto log = RaftLogStore::Open(backend_.get());
    ASSERT_TRUE(log.ok()) << log.status();
    log_ = std::move(*log);
    auto kv = mvcc::KvStore::Open(backend_.get());
    ASSERT_TRUE(kv.ok()) << kv.status();
    kv_ = std::move(*kv);
  }
  void Close() {
    kv_.reset();
    log_.reset();
    backend_.reset();
  }
  // The power goes: nothing written from now on counts (not even LevelDB's
  // shutdown), what was not synced is lost (`rnd` null) or torn (a random
  // prefix of it kept), and the member starts again.
  void PowerLoss(raft::Random* rnd = nullptr) {
    env_->SetFilesystemActive(false);
    Close();
    absl::Status st = rnd == nullptr ? env_->DropUnsyncedData()
                                     : env_->DropRandomUnsyncedData(rnd);
    ASSERT_TRUE(st.ok()) << st;
    env_->SetFilesystemActive(true);
    Open();
  }

  std::vector<raft::Entry> LogEntries() {
    if (log_->LastIndex() < log_->FirstIndex()) return {};
    auto r =
        log_->Entries(log_->FirstIndex(), log_->LastIndex() + 1, UINT64_MAX);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : std::vector<raft::Entry>{};
  }

  std::unique_ptr<leveldb::Env> mem_;
  std::unique_ptr<FaultInjectionEnv> env_;
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<RaftLogStore> log_;
  std::unique_ptr<mvcc::KvStore> kv_;
};

// ---- (a) The Raft log: a synced Save survives. ----

TEST_F(StorageFaultTest, SavedEntriesAndHardStateSurvivePowerLoss) {
  std::vector<raft::Entry> ents = {E(1, 1), E(2, 1), E(3, 2)};
  const int64_t syncs = env_->sync_count();
  ASSERT_TRUE(log_->Save(raft::HardState{2, 1, 2}, ents, {}).ok());
  EXPECT_GT(env_->sync_count(), syncs);
  // Only the commit index moves: not synced (etcd's MustSync).
  const int64_t syncs2 = env_->sync_count();
  ASSERT_TRUE(log_->Save(raft::HardState{2, 1, 3}, {}, {}).ok());
  EXPECT_EQ(env_->sync_count(), syncs2);

  PowerLoss();
  EXPECT_EQ(LogEntries(), ents);
  // The unsynced commit index is lost; term and vote are not.
  EXPECT_EQ(log_->GetInitialState().hard_state, (raft::HardState{2, 1, 2}));
}

TEST_F(StorageFaultTest, ReplacedSuffixAndNewTermSurvivePowerLoss) {
  ASSERT_TRUE(
      log_->Save(raft::HardState{1, 1, 1}, {E(1, 1), E(2, 1), E(3, 1)}, {})
          .ok());
  // A new leader in term 2 replaces entries 2.. (Raft §5.3).
  ASSERT_TRUE(log_->Save(raft::HardState{2, 2, 1}, {E(2, 2)}, {}).ok());
  PowerLoss();
  EXPECT_EQ(LogEntries(), (std::vector<raft::Entry>{E(1, 1), E(2, 2)}));
  EXPECT_EQ(log_->GetInitialState().hard_state, (raft::HardState{2, 2, 1}));
}

// Random Saves (appends, replaced suffixes, commit-only updates), then a
// torn power loss, several times over: the log is always what the last
// synced Save left, and the commit index one written since.
TEST_F(StorageFaultTest, RandomSavesSurviveTornPowerLoss) {
  for (uint64_t seed = 1; seed <= 5; ++seed) {
    SCOPED_TRACE(::testing::Message() << "seed " << seed);
    std::cout << "RandomSavesSurviveTornPowerLoss seed " << seed << "\n";
    raft::Random rnd(seed);
    std::vector<raft::Entry> log = LogEntries();
    raft::HardState hs = log_->GetInitialState().hard_state;
    for (int loss = 0; loss < 3; ++loss) {
      std::vector<uint64_t> commits = {hs.commit};  // since the last sync
      for (int op = 0; op < 20; ++op) {
        if (!log.empty() && hs.commit < log.size() && rnd.OneIn(3)) {
          hs.commit += 1 + rnd.Uniform(log.size() - hs.commit);
          ASSERT_TRUE(log_->Save(hs, {}, {}).ok());
          commits.push_back(hs.commit);
          continue;
        }
        // Append, or replace a suffix above the commit index in a new term.
        const uint64_t first =
            rnd.OneIn(4)
                ? hs.commit + 1 + rnd.Uniform(log.size() - hs.commit + 1)
                : log.size() + 1;
        if (first <= log.size()) ++hs.term;
        log.resize(first - 1);
        std::vector<raft::Entry> ents;
        for (uint64_t i = 0, n = 1 + rnd.Uniform(4); i < n; ++i) {
          ents.push_back(E(first + i, hs.term));
        }
        log.insert(log.end(), ents.begin(), ents.end());
        ASSERT_TRUE(log_->Save(hs, ents, {}).ok());
        commits = {hs.commit};
      }
      PowerLoss(&rnd);
      ASSERT_EQ(LogEntries(), log);
      const raft::HardState got = log_->GetInitialState().hard_state;
      EXPECT_EQ(got.term, hs.term);
      EXPECT_EQ(got.vote, hs.vote);
      EXPECT_NE(std::find(commits.begin(), commits.end(), got.commit),
                commits.end())
          << "commit " << got.commit;
      hs = got;
    }
    OpenEmpty();  // the next seed starts from an empty store
  }
}

// ---- (b) Apply batches: unsynced ones may be lost, only as a suffix. ----

// One apply step: a put or a delete of one of ten keys.
struct Op {
  std::string key;
  std::optional<std::string> value;  // nullopt: delete
};

Op RandomOp(raft::Random* rnd, uint64_t index) {
  Op op;
  op.key = "k" + std::to_string(rnd->Uniform(10));
  if (!rnd->OneIn(4)) op.value = "v" + std::to_string(index);
  return op;
}

// What the store looked like right after applying an index.
struct Applied {
  int64_t rev = 0;
  uint32_t hash = 0;
};

class StorageFaultApplyTest : public StorageFaultTest {
 protected:
  void Apply(uint64_t index, const Op& op, bool sync) {
    auto t = kv_->Write();
    if (op.value.has_value()) {
      etcdserverpb::PutRequest r;
      r.set_key(op.key);
      r.set_value(*op.value);
      etcdserverpb::PutResponse resp;
      ASSERT_TRUE(t->Put(r, &resp).ok());
    } else {
      etcdserverpb::DeleteRangeRequest r;
      r.set_key(op.key);
      etcdserverpb::DeleteRangeResponse resp;
      ASSERT_TRUE(t->DeleteRange(r, &resp).ok());
    }
    t.reset();
    absl::Status st = kv_->Commit(index, nullptr, sync);
    ASSERT_TRUE(st.ok()) << st;
  }
  Applied Now() {
    auto hash = kv_->HashKV(0);
    EXPECT_TRUE(hash.ok()) << hash.status();
    return Applied{kv_->Rev(), hash.ok() ? *hash : 0};
  }
};

TEST_F(StorageFaultApplyTest, LostApplyBatchesAreASuffixAndReplayRestoresThem) {
  for (uint64_t seed = 1; seed <= 5; ++seed) {
    SCOPED_TRACE(::testing::Message() << "seed " << seed);
    std::cout << "LostApplyBatchesAreASuffix seed " << seed << "\n";
    raft::Random rnd(seed);
    std::vector<Op> ops(1);                // ops[i]: applied at index i
    std::vector<Applied> after = {Now()};  // after[i]: state at index i
    uint64_t durable = 0;  // every index up to here was made durable
    bool saw_loss = false;
    for (int loss = 0; loss < 3; ++loss) {
      for (int n = 0; n < 40; ++n) {
        const uint64_t index = ops.size();
        ops.push_back(RandomOp(&rnd, index));
        // As a member whose Raft log is durable: apply batches unsynced.
        // Now and then a synced write makes them durable: the raft
        // thread's Save of new entries, or (rarely) a synced Commit.
        const bool sync_commit = rnd.OneIn(20);
        Apply(index, ops.back(), sync_commit);
        after.push_back(Now());
        if (sync_commit) durable = index;
        if (rnd.OneIn(8)) {
          std::vector<raft::Entry> ents;
          for (uint64_t i = log_->LastIndex() + 1; i <= index; ++i) {
            ents.push_back(E(i, 1));
          }
          ASSERT_TRUE(log_->Save(raft::HardState{1, 1, index}, ents, {}).ok());
          durable = index;
        }
      }
      const uint64_t last = ops.size() - 1;
      PowerLoss(&rnd);
      const uint64_t got = kv_->AppliedIndex();
      ASSERT_GE(got, durable);
      ASSERT_LE(got, last);
      saw_loss |= got < last;
      EXPECT_EQ(kv_->Rev(), after[got].rev) << "applied index " << got;
      auto hash = kv_->HashKV(0);
      ASSERT_TRUE(hash.ok()) << hash.status();
      EXPECT_EQ(*hash, after[got].hash) << "applied index " << got;
      // The log replays what the loss took; the state comes out the same.
      for (uint64_t i = got + 1; i <= last; ++i) {
        Apply(i, ops[i], /*sync=*/false);
        ASSERT_EQ(Now().hash, after[i].hash) << "replaying index " << i;
      }
      durable = got;
    }
    EXPECT_TRUE(saw_loss) << "no apply batch was lost: the test proved nothing";
    OpenEmpty();
  }
}

// ---- (c) A failing disk: errors, not crashes. ----

TEST_F(StorageFaultApplyTest, WritesOnAFailingDiskReturnErrors) {
  ASSERT_TRUE(log_->Save(raft::HardState{1, 1, 1}, {E(1, 1)}, {}).ok());
  Apply(1, Op{"a", "1"}, /*sync=*/true);
  const Applied before = Now();

  env_->SetFilesystemActive(false);
  Batch b;
  b.Put("x", "y");
  EXPECT_FALSE(backend_->Write(&b, /*sync=*/false).ok());
  EXPECT_FALSE(backend_->Write(&b, /*sync=*/true).ok());
  EXPECT_FALSE(log_->Save(raft::HardState{1, 1, 2}, {E(2, 1)}, {}).ok());
  EXPECT_FALSE(log_->SetConfState(raft::ConfState{{1}, {}}, 2).ok());
  EXPECT_FALSE(log_->Compact(1).ok());
  {
    auto t = kv_->Write();
    etcdserverpb::PutRequest r;
    r.set_key("b");
    r.set_value("2");
    etcdserverpb::PutResponse resp;
    ASSERT_TRUE(t->Put(r, &resp).ok());
  }
  EXPECT_FALSE(kv_->Commit(2, nullptr, /*sync=*/true).ok());

  // What was synced before the disk failed is all there is.
  PowerLoss();
  EXPECT_EQ(LogEntries(), (std::vector<raft::Entry>{E(1, 1)}));
  EXPECT_EQ(log_->GetInitialState().hard_state, (raft::HardState{1, 1, 1}));
  EXPECT_EQ(kv_->AppliedIndex(), 1u);
  EXPECT_EQ(Now().hash, before.hash);
  auto x = backend_->Get("x");
  ASSERT_TRUE(x.ok());
  EXPECT_FALSE(x->has_value());
}

// The raft core reads the store while the process stops on a failed write:
// it must see what is durable, not what failed to be written.
TEST_F(StorageFaultTest, AFailedSaveLeavesTheLogStoreAsItWas) {
  ASSERT_TRUE(
      log_->Save(raft::HardState{1, 1, 1}, {E(1, 1), E(2, 1)}, {}).ok());
  ASSERT_TRUE(log_->SetConfState(raft::ConfState{{1}, {}}, 1).ok());
  env_->SetFilesystemActive(false);
  EXPECT_FALSE(
      log_->Save(raft::HardState{2, 2, 1}, {E(2, 2), E(3, 2)}, {}).ok());
  raft::Snapshot snap;
  snap.metadata = raft::SnapshotMetadata{raft::ConfState{{1, 2}, {}}, 5, 2};
  EXPECT_FALSE(log_->Save(std::nullopt, {}, snap).ok());
  EXPECT_FALSE(log_->SetConfState(raft::ConfState{{1, 2}, {}}, 2).ok());
  EXPECT_FALSE(log_->Compact(2).ok());

  EXPECT_EQ(log_->FirstIndex(), 1u);
  EXPECT_EQ(log_->LastIndex(), 2u);
  EXPECT_EQ(*log_->Term(2), 1u);
  EXPECT_EQ(log_->GetInitialState().hard_state, (raft::HardState{1, 1, 1}));
  EXPECT_EQ(log_->GetInitialState().conf_state, (raft::ConfState{{1}, {}}));
  EXPECT_EQ(log_->conf_index(), 1u);
  EXPECT_TRUE(log_->Snapshot()->empty());
  EXPECT_EQ(LogEntries(), (std::vector<raft::Entry>{E(1, 1), E(2, 1)}));
}

// LevelDB's log writer counts the bytes of a failed append as written, so
// records appended after it are misplaced in the log and recovery drops
// them. Before the Backend refused writes after a failure, 169 of 200
// synced writes acknowledged after one failed unsynced write were gone
// after a power loss.
TEST_F(StorageFaultTest, AfterAFailedWriteEveryWriteIsRefusedUntilReopen) {
  Batch a;
  a.Put("a", "1");
  ASSERT_TRUE(backend_->Write(&a, /*sync=*/true).ok());
  env_->SetFilesystemActive(false);
  Batch lost;
  lost.Put("lost", std::string(1000, 'x'));
  EXPECT_FALSE(backend_->Write(&lost, /*sync=*/false).ok());
  env_->SetFilesystemActive(true);

  std::vector<std::string> acked;
  for (int i = 0; i < 200; ++i) {
    Batch b;
    const std::string key = "k" + std::to_string(i);
    b.Put(key, std::string(1000, 'v'));  // 200 KB: crosses log blocks
    absl::Status st = backend_->Write(&b, /*sync=*/true);
    if (st.ok()) {
      acked.push_back(key);
    } else {
      EXPECT_NE(st.message().find("refusing writes after a failed write"),
                absl::string_view::npos)
          << st;
    }
  }
  EXPECT_TRUE(acked.empty()) << acked.size() << " writes acknowledged";

  PowerLoss();
  for (const std::string& key : acked) {
    auto got = backend_->Get(key);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_TRUE(got->has_value()) << "acknowledged " << key << " was lost";
  }
  auto got = backend_->Get("a");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, std::optional<std::string>("1"));
  EXPECT_TRUE(backend_->Write(&a, /*sync=*/true).ok());  // reopened: writes
}

TEST_F(StorageFaultTest, OpenOnAFailingDiskReturnsAnError) {
  Close();
  env_->SetFilesystemActive(false);
  BackendOptions opts;
  opts.env = env_.get();
  auto b = Backend::Open("/db", opts);
  EXPECT_FALSE(b.ok());
  env_->SetFilesystemActive(true);
  Open();
}

}  // namespace
}  // namespace synod::storage
