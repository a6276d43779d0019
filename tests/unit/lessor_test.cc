#include "backend/lease/lessor.h"

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "backend/storage/backend.h"
#include "backend/storage/schema.h"
#include "common/clock.h"
#include "common/errors.h"
#include "gtest/gtest.h"
#include "leveldb/env.h"
#include "leveldb/helpers/memenv.h"
#include "proto/internal.pb.h"

namespace synod::lease {
namespace {

using common::EtcdError;
using common::IsErr;
using Due = std::vector<std::pair<int64_t, int64_t>>;

constexpr int64_t kMinTtl = 5;

class LessorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    env_.reset(leveldb::NewMemEnv(leveldb::Env::Default()));
    storage::BackendOptions opts;
    opts.env = env_.get();
    auto b = storage::Backend::Open("/db", opts);
    ASSERT_TRUE(b.ok()) << b.status();
    backend_ = std::move(*b);
    lessor_ = std::make_unique<Lessor>(&clock_, kMinTtl);
  }

  // Invariant: Leases() lists exactly the leases LeaseExists() knows.
  void TearDown() override {
    std::vector<int64_t> ids = lessor_->Leases();
    EXPECT_EQ(ids.size(), lessor_->Count());
    for (int64_t id : ids) EXPECT_TRUE(lessor_->LeaseExists(id)) << id;
  }

  // Grants and persists.
  int64_t Grant(int64_t id, int64_t ttl) {
    storage::Batch b;
    auto got = lessor_->Grant(id, ttl, &b);
    EXPECT_TRUE(got.ok()) << got.status();
    EXPECT_TRUE(backend_->Write(&b, true).ok());
    return got.ok() ? *got : -1;
  }
  std::vector<std::string> Revoke(int64_t id) {
    storage::Batch b;
    auto got = lessor_->Revoke(id, &b);
    EXPECT_TRUE(got.ok()) << got.status();
    EXPECT_TRUE(backend_->Write(&b, true).ok());
    return got.ok() ? *got : std::vector<std::string>{};
  }
  // Applies a checkpoint and persists it.
  void ApplyCheckpoint(int64_t id, int64_t remaining_ttl_s) {
    storage::Batch b;
    EXPECT_TRUE(lessor_->Checkpoint(id, remaining_ttl_s, &b).ok());
    EXPECT_TRUE(backend_->Write(&b, true).ok());
  }
  // The persisted record of lease `id`.
  synodpb::LeaseRecord Record(int64_t id) {
    synodpb::LeaseRecord rec;
    auto got = backend_->Get(storage::LeaseKey(id));
    EXPECT_TRUE(got.ok() && got->has_value()) << id;
    if (got.ok() && got->has_value()) {
      EXPECT_TRUE(rec.ParseFromString(**got));
    }
    return rec;
  }
  // This member leads with checkpoints every `interval`.
  void LeadWithCheckpoints(absl::Duration interval) {
    lessor_->SetCheckpointInterval(interval);
    lessor_->Promote(absl::ZeroDuration());
  }
  bool NeedsClear(int64_t id) {
    bool needs = false;
    EXPECT_TRUE(lessor_->KeepAlive(id, &needs).ok()) << id;
    return needs;
  }
  int64_t Remaining(int64_t id) {
    auto info = lessor_->TimeToLive(id, false);
    EXPECT_TRUE(info.ok()) << info.status();
    return info.ok() ? info->remaining : -1;
  }

  common::FakeClock clock_;
  std::unique_ptr<leveldb::Env> env_;
  std::unique_ptr<storage::Backend> backend_;
  std::unique_ptr<Lessor> lessor_;
};

TEST_F(LessorTest, GrantReturnsTtlAndPersistsRecord) {
  EXPECT_EQ(Grant(1, 60), 60);
  EXPECT_TRUE(lessor_->LeaseExists(1));
  EXPECT_FALSE(lessor_->LeaseExists(2));
  EXPECT_EQ(lessor_->Count(), 1u);
  auto rec = backend_->Get(storage::LeaseKey(1));
  ASSERT_TRUE(rec.ok());
  EXPECT_TRUE(rec->has_value());
  auto info = lessor_->TimeToLive(1, false);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->id, 1);
  EXPECT_EQ(info->ttl, 60);
  EXPECT_EQ(info->remaining, 60);
}

TEST_F(LessorTest, GrantRaisesTtlBelowMinimum) {
  EXPECT_EQ(Grant(1, 1), kMinTtl);
  EXPECT_EQ(Grant(2, 0), kMinTtl);
  EXPECT_EQ(Grant(3, kMinTtl + 1), kMinTtl + 1);
  EXPECT_EQ(lessor_->TimeToLive(1, false)->ttl, kMinTtl);
}

TEST_F(LessorTest, GrantOfExistingIdIsLeaseExist) {
  Grant(1, 60);
  storage::Batch b;
  EXPECT_TRUE(
      IsErr(lessor_->Grant(1, 30, &b).status(), EtcdError::kLeaseExist));
  EXPECT_EQ(b.Count(), 0);
  EXPECT_EQ(lessor_->TimeToLive(1, false)->ttl, 60);
}

TEST_F(LessorTest, GrantAboveMaxTtlIsTtlTooLarge) {
  storage::Batch b;
  EXPECT_TRUE(IsErr(lessor_->Grant(1, kMaxLeaseTTL + 1, &b).status(),
                    EtcdError::kLeaseTTLTooLarge));
  EXPECT_EQ(b.Count(), 0);
  EXPECT_FALSE(lessor_->LeaseExists(1));
  EXPECT_EQ(Grant(1, kMaxLeaseTTL), kMaxLeaseTTL);
}

TEST_F(LessorTest, LeaseExpiresAtItsTtl) {
  Grant(1, 10);
  Grant(2, 20);
  clock_.Advance(absl::Seconds(10) - absl::Milliseconds(1));
  EXPECT_TRUE(lessor_->Expired(10).empty());
  clock_.Advance(absl::Milliseconds(1));
  EXPECT_EQ(lessor_->Expired(10), (std::vector<int64_t>{1}));
  clock_.Advance(absl::Seconds(10));
  EXPECT_EQ(lessor_->Expired(10), (std::vector<int64_t>{1, 2}));
  // Expired leases stay until revoked.
  EXPECT_TRUE(lessor_->LeaseExists(1));
  EXPECT_EQ(Remaining(1), 0);
}

TEST_F(LessorTest, ExpiredReturnsAtMostMax) {
  for (int64_t id = 1; id <= 4; ++id) Grant(id, 10);
  clock_.Advance(absl::Seconds(11));
  EXPECT_EQ(lessor_->Expired(2).size(), 2u);
  EXPECT_EQ(lessor_->Expired(100).size(), 4u);
}

TEST_F(LessorTest, KeepAliveExtendsToFullTtl) {
  Grant(1, 10);
  clock_.Advance(absl::Seconds(8));
  EXPECT_EQ(Remaining(1), 2);
  auto ttl = lessor_->KeepAlive(1);
  ASSERT_TRUE(ttl.ok());
  EXPECT_EQ(*ttl, 10);
  EXPECT_EQ(Remaining(1), 10);
  clock_.Advance(absl::Seconds(9));
  EXPECT_TRUE(lessor_->Expired(10).empty());
  clock_.Advance(absl::Seconds(1));
  EXPECT_EQ(lessor_->Expired(10), (std::vector<int64_t>{1}));
}

TEST_F(LessorTest, KeepAliveOfUnknownOrExpiredLeaseIsNotFound) {
  EXPECT_TRUE(IsErr(lessor_->KeepAlive(1).status(), EtcdError::kLeaseNotFound));
  Grant(1, 10);
  clock_.Advance(absl::Seconds(10));
  EXPECT_TRUE(IsErr(lessor_->KeepAlive(1).status(), EtcdError::kLeaseNotFound));
}

TEST_F(LessorTest, TimeToLiveRoundsRemainingUp) {
  Grant(1, 10);
  clock_.Advance(absl::Milliseconds(500));
  EXPECT_EQ(Remaining(1), 10);
  clock_.Advance(absl::Milliseconds(600));
  EXPECT_EQ(Remaining(1), 9);
  clock_.Advance(absl::Seconds(8) + absl::Milliseconds(899));
  EXPECT_EQ(Remaining(1), 1);
  clock_.Advance(absl::Milliseconds(1));
  EXPECT_EQ(Remaining(1), 0);
}

TEST_F(LessorTest, TimeToLiveListsKeysOnlyWhenAsked) {
  Grant(1, 10);
  lessor_->Attach(1, "b");
  lessor_->Attach(1, "a");
  lessor_->Attach(1, "c");
  lessor_->Detach(1, "c");
  auto with = lessor_->TimeToLive(1, true);
  ASSERT_TRUE(with.ok());
  EXPECT_EQ(with->keys, (std::vector<std::string>{"a", "b"}));
  auto without = lessor_->TimeToLive(1, false);
  ASSERT_TRUE(without.ok());
  EXPECT_TRUE(without->keys.empty());
  EXPECT_TRUE(
      IsErr(lessor_->TimeToLive(2, true).status(), EtcdError::kLeaseNotFound));
}

TEST_F(LessorTest, AttachToUnknownLeaseIsIgnored) {
  lessor_->Attach(9, "k");
  EXPECT_FALSE(lessor_->LeaseExists(9));
  EXPECT_EQ(lessor_->Count(), 0u);
}

TEST_F(LessorTest, RevokeReturnsAttachedKeysSortedAndDeletesRecord) {
  Grant(1, 10);
  Grant(2, 10);
  lessor_->Attach(1, "z");
  lessor_->Attach(1, "m");
  lessor_->Attach(1, "a");
  lessor_->Attach(2, "other");
  EXPECT_EQ(Revoke(1), (std::vector<std::string>{"a", "m", "z"}));
  EXPECT_FALSE(lessor_->LeaseExists(1));
  EXPECT_TRUE(lessor_->LeaseExists(2));
  auto rec = backend_->Get(storage::LeaseKey(1));
  ASSERT_TRUE(rec.ok());
  EXPECT_FALSE(rec->has_value());
  storage::Batch b;
  EXPECT_TRUE(
      IsErr(lessor_->Revoke(1, &b).status(), EtcdError::kLeaseNotFound));
  EXPECT_TRUE(
      IsErr(lessor_->TimeToLive(1, false).status(), EtcdError::kLeaseNotFound));
  EXPECT_EQ(lessor_->Leases(), (std::vector<int64_t>{2}));
}

TEST_F(LessorTest, LeasesAreListedAscending) {
  for (int64_t id : {30, 4, 1000, 7}) Grant(id, 10);
  EXPECT_EQ(lessor_->Leases(), (std::vector<int64_t>{4, 7, 30, 1000}));
}

TEST_F(LessorTest, RestoreGivesFullTtlsAndAttachesKeys) {
  Grant(1, 10);
  Grant(2, 100);
  Grant(3, 50);
  Revoke(3);
  lessor_->Attach(1, "a");
  clock_.Advance(absl::Seconds(9));
  EXPECT_EQ(Remaining(1), 1);

  Lessor restored(&clock_, kMinTtl);
  ASSERT_TRUE(
      restored
          .Restore(backend_.get(), {{1, "a"}, {1, "b"}, {2, "c"}, {3, "gone"}})
          .ok());
  EXPECT_EQ(restored.Leases(), (std::vector<int64_t>{1, 2}));
  auto one = restored.TimeToLive(1, true);
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(one->ttl, 10);
  EXPECT_EQ(one->remaining, 10);  // renewal rule: a full TTL from now
  EXPECT_EQ(one->keys, (std::vector<std::string>{"a", "b"}));
  auto two = restored.TimeToLive(2, true);
  ASSERT_TRUE(two.ok());
  EXPECT_EQ(two->remaining, 100);
  EXPECT_EQ(two->keys, (std::vector<std::string>{"c"}));
  EXPECT_FALSE(restored.LeaseExists(3));
  clock_.Advance(absl::Seconds(10));
  EXPECT_EQ(restored.Expired(10), (std::vector<int64_t>{1}));
}

TEST_F(LessorTest, RestoreOfExpiredLeaseRevivesIt) {
  Grant(1, 10);
  clock_.Advance(absl::Seconds(30));
  EXPECT_EQ(lessor_->Expired(10), (std::vector<int64_t>{1}));
  Lessor restored(&clock_, kMinTtl);
  ASSERT_TRUE(restored.Restore(backend_.get(), {}).ok());
  EXPECT_TRUE(restored.Expired(10).empty());
  EXPECT_TRUE(restored.KeepAlive(1).ok());
}

TEST_F(LessorTest, RestoreOfCorruptRecordIsDataLoss) {
  storage::Batch b;
  b.Put(storage::LeaseKey(5), std::string("\xff\xff\xff", 3));
  ASSERT_TRUE(backend_->Write(&b, true).ok());
  Lessor restored(&clock_, kMinTtl);
  absl::Status st = restored.Restore(backend_.get(), {});
  EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss) << st;
}

TEST_F(LessorTest, PromoteResetsExpiryWithExtension) {
  Grant(1, 10);
  clock_.Advance(absl::Seconds(7));
  lessor_->Promote(absl::Seconds(5));
  EXPECT_EQ(Remaining(1), 15);
  clock_.Advance(absl::Seconds(14));
  EXPECT_TRUE(lessor_->Expired(10).empty());
  clock_.Advance(absl::Seconds(1));
  EXPECT_EQ(lessor_->Expired(10), (std::vector<int64_t>{1}));
}

// ---- Checkpoints (etcd's --experimental-enable-lease-checkpoint) ----

TEST_F(LessorTest, CheckpointsAreOffByDefault) {
  lessor_->Promote(absl::ZeroDuration());
  Grant(1, 1000);
  clock_.Advance(absl::Seconds(400));  // past etcd 3.4's fixed 5 minutes
  EXPECT_TRUE(lessor_->DueCheckpoints(1000).empty());
  // An applied checkpoint still counts, but keep-alives never ask to clear.
  ApplyCheckpoint(1, 40);
  EXPECT_FALSE(NeedsClear(1));
  lessor_->Promote(absl::ZeroDuration());
  EXPECT_EQ(Remaining(1), 40);
}

TEST_F(LessorTest, CheckpointIsDueAfterIntervalWithRemainingRoundedUp) {
  LeadWithCheckpoints(absl::Seconds(10));
  Grant(1, 60);
  clock_.Advance(absl::Seconds(10) - absl::Milliseconds(1));
  EXPECT_TRUE(lessor_->DueCheckpoints(1000).empty());
  clock_.Advance(absl::Milliseconds(301));  // 49.7 s left
  EXPECT_EQ(lessor_->DueCheckpoints(1000), (Due{{1, 50}}));
  // Rescheduled an interval later, not due again now.
  EXPECT_TRUE(lessor_->DueCheckpoints(1000).empty());
  clock_.Advance(absl::Seconds(10));
  EXPECT_EQ(lessor_->DueCheckpoints(1000), (Due{{1, 40}}));
}

TEST_F(LessorTest, CheckpointIsNotDueWhenRemainingIsAtLeastTtl) {
  LeadWithCheckpoints(absl::Seconds(10));
  Grant(1, 60);
  Grant(2, 60);
  clock_.Advance(absl::Seconds(10));
  ASSERT_TRUE(lessor_->KeepAlive(1).ok());  // 60 s left: nothing to save
  EXPECT_EQ(lessor_->DueCheckpoints(1000), (Due{{2, 50}}));
  // Still scheduled (etcd 3.4 would drop it until its next Promote).
  clock_.Advance(absl::Seconds(10));
  EXPECT_EQ(lessor_->DueCheckpoints(1000), (Due{{1, 50}, {2, 40}}));
}

TEST_F(LessorTest, PromoteExtensionPastTtlSkipsFirstCheckpoint) {
  lessor_->SetCheckpointInterval(absl::Seconds(10));
  Grant(1, 60);
  lessor_->Promote(absl::Seconds(15));  // 75 s left
  clock_.Advance(absl::Seconds(10));    // 65 s left >= TTL
  EXPECT_TRUE(lessor_->DueCheckpoints(1000).empty());
  clock_.Advance(absl::Seconds(10));
  EXPECT_EQ(lessor_->DueCheckpoints(1000), (Due{{1, 55}}));
}

TEST_F(LessorTest, LeaseWithTtlAtMostIntervalIsNotScheduled) {
  LeadWithCheckpoints(absl::Seconds(10));
  Grant(1, 10);
  Grant(2, 11);
  clock_.Advance(absl::Seconds(9));
  ASSERT_TRUE(lessor_->KeepAlive(1).ok());
  ASSERT_TRUE(lessor_->KeepAlive(2).ok());
  clock_.Advance(absl::Seconds(1));  // both have 10 s of their TTL left
  EXPECT_EQ(lessor_->DueCheckpoints(1000), (Due{{2, 10}}));
}

TEST_F(LessorTest, FractionalIntervalSchedulesTtlAboveIt) {
  // etcd: RemainingTTL() > int64(interval.Seconds()), not rounded up.
  LeadWithCheckpoints(absl::Milliseconds(10500));
  Grant(1, 11);
  clock_.Advance(absl::Milliseconds(10500));
  EXPECT_EQ(lessor_->DueCheckpoints(1000), (Due{{1, 1}}));
}

TEST_F(LessorTest, AppliedCheckpointAtMostIntervalIsNotRescheduled) {
  LeadWithCheckpoints(absl::Seconds(10));
  Grant(1, 100);
  clock_.Advance(absl::Seconds(10));
  ASSERT_EQ(lessor_->DueCheckpoints(1000), (Due{{1, 90}}));
  ApplyCheckpoint(1, 8);  // e.g. from a checkpoint proposed long ago
  ASSERT_TRUE(lessor_->KeepAlive(1).ok());
  clock_.Advance(absl::Seconds(30));
  EXPECT_TRUE(lessor_->DueCheckpoints(1000).empty());
  // Clearing it (what the keep-alive asks for) schedules it again.
  ApplyCheckpoint(1, 0);
  clock_.Advance(absl::Seconds(10));
  EXPECT_EQ(lessor_->DueCheckpoints(1000), (Due{{1, 60}}));
}

TEST_F(LessorTest, AppliedCheckpointSchedulesTheNextAnIntervalLater) {
  LeadWithCheckpoints(absl::Seconds(10));
  Grant(1, 100);
  clock_.Advance(absl::Seconds(10));
  ASSERT_EQ(lessor_->DueCheckpoints(1000), (Due{{1, 90}}));
  clock_.Advance(absl::Seconds(2));  // the proposal takes 2 s to apply
  ApplyCheckpoint(1, 90);
  clock_.Advance(absl::Seconds(10) - absl::Milliseconds(1));
  EXPECT_TRUE(lessor_->DueCheckpoints(1000).empty());
  clock_.Advance(absl::Milliseconds(1));
  EXPECT_EQ(lessor_->DueCheckpoints(1000), (Due{{1, 78}}));
}

TEST_F(LessorTest, DueCheckpointsReturnsAtMostMaxEarliestFirst) {
  LeadWithCheckpoints(absl::Seconds(10));
  for (int64_t id = 5; id >= 1; --id) {
    Grant(id, 100);
    clock_.Advance(absl::Milliseconds(100));
  }
  clock_.Advance(absl::Seconds(10));
  Due first = lessor_->DueCheckpoints(2);
  ASSERT_EQ(first.size(), 2u);
  EXPECT_EQ(first[0].first, 5);
  EXPECT_EQ(first[1].first, 4);
  Due rest = lessor_->DueCheckpoints(1000);
  ASSERT_EQ(rest.size(), 3u);
  EXPECT_EQ(rest[0].first, 3);
  EXPECT_EQ(rest[2].first, 1);
  EXPECT_TRUE(lessor_->DueCheckpoints(1000).empty());
}

TEST_F(LessorTest, RevokedAndExpiredLeasesAreNotCheckpointed) {
  LeadWithCheckpoints(absl::Seconds(10));
  Grant(1, 100);
  Grant(2, 100);
  Grant(3, 11);
  Revoke(1);
  clock_.Advance(absl::Seconds(11));  // the timer ran late: 3 has expired
  EXPECT_EQ(lessor_->DueCheckpoints(1000), (Due{{2, 89}}));
  clock_.Advance(absl::Seconds(10));
  EXPECT_EQ(lessor_->DueCheckpoints(1000), (Due{{2, 79}}));
}

TEST_F(LessorTest, OnlyThePrimarySchedulesCheckpoints) {
  lessor_->SetCheckpointInterval(absl::Seconds(10));
  Grant(1, 100);  // a follower applies the grant
  clock_.Advance(absl::Seconds(10));
  EXPECT_TRUE(lessor_->DueCheckpoints(1000).empty());
  ApplyCheckpoint(1, 90);  // and a checkpoint
  clock_.Advance(absl::Seconds(10));
  EXPECT_TRUE(lessor_->DueCheckpoints(1000).empty());

  lessor_->Promote(absl::ZeroDuration());
  clock_.Advance(absl::Seconds(10));
  EXPECT_EQ(lessor_->DueCheckpoints(1000), (Due{{1, 80}}));

  lessor_->Demote();
  clock_.Advance(absl::Seconds(30));
  EXPECT_TRUE(lessor_->DueCheckpoints(1000).empty());
  Grant(2, 100);
  ApplyCheckpoint(1, 50);
  clock_.Advance(absl::Seconds(30));
  EXPECT_TRUE(lessor_->DueCheckpoints(1000).empty());
}

TEST_F(LessorTest, SettingTheIntervalOnThePrimarySchedulesFromNow) {
  lessor_->Promote(absl::ZeroDuration());
  Grant(1, 100);
  clock_.Advance(absl::Seconds(5));
  lessor_->SetCheckpointInterval(absl::Seconds(10));
  clock_.Advance(absl::Seconds(10) - absl::Milliseconds(1));
  EXPECT_TRUE(lessor_->DueCheckpoints(1000).empty());
  clock_.Advance(absl::Milliseconds(1));
  EXPECT_EQ(lessor_->DueCheckpoints(1000), (Due{{1, 85}}));
  lessor_->SetCheckpointInterval(absl::ZeroDuration());
  clock_.Advance(absl::Seconds(30));
  EXPECT_TRUE(lessor_->DueCheckpoints(1000).empty());
}

TEST_F(LessorTest, PromoteAfterCheckpointUsesRemainingTtl) {
  LeadWithCheckpoints(absl::Seconds(10));
  Grant(1, 60);
  Grant(2, 60);
  clock_.Advance(absl::Seconds(10));
  Due due = lessor_->DueCheckpoints(1000);
  ASSERT_EQ(due, (Due{{1, 50}, {2, 50}}));
  ApplyCheckpoint(1, due[0].second);

  // A follower applies the same checkpoint, then becomes leader.
  Lessor follower(&clock_, kMinTtl);
  follower.SetCheckpointInterval(absl::Seconds(10));
  storage::Batch b;
  ASSERT_TRUE(follower.Grant(1, 60, &b).ok());
  ASSERT_TRUE(follower.Checkpoint(1, 50, &b).ok());

  clock_.Advance(absl::Seconds(3));
  lessor_->Promote(absl::Seconds(5));
  follower.Promote(absl::Seconds(5));
  EXPECT_EQ(Remaining(1), 55);  // 50 + 5, not 60 + 5
  EXPECT_EQ(Remaining(2), 65);  // no checkpoint applied
  EXPECT_EQ(follower.TimeToLive(1, false)->remaining, 55);
  clock_.Advance(absl::Seconds(55) - absl::Milliseconds(1));
  EXPECT_TRUE(lessor_->Expired(10).empty());
  clock_.Advance(absl::Milliseconds(1));
  EXPECT_EQ(lessor_->Expired(10), (std::vector<int64_t>{1}));
  EXPECT_EQ(follower.Expired(10), (std::vector<int64_t>{1}));
}

TEST_F(LessorTest, ClearedCheckpointRestoresFullTtlPromotion) {
  LeadWithCheckpoints(absl::Seconds(10));
  Grant(1, 60);
  ApplyCheckpoint(1, 20);
  lessor_->Promote(absl::Seconds(5));
  EXPECT_EQ(Remaining(1), 25);
  ApplyCheckpoint(1, 0);
  lessor_->Promote(absl::Seconds(5));
  EXPECT_EQ(Remaining(1), 65);
}

TEST_F(LessorTest, KeepAliveNeedsCheckpointClearOnlyWhileRemainingIsSet) {
  LeadWithCheckpoints(absl::Seconds(10));
  Grant(1, 60);
  EXPECT_FALSE(NeedsClear(1));
  ApplyCheckpoint(1, 50);
  EXPECT_TRUE(NeedsClear(1));
  EXPECT_TRUE(NeedsClear(1));   // until the clear applies
  EXPECT_EQ(Remaining(1), 60);  // renewed to the full TTL all the same
  ApplyCheckpoint(1, 0);
  EXPECT_FALSE(NeedsClear(1));
  // Unknown lease: not found, and no clear.
  bool needs = true;
  EXPECT_TRUE(
      IsErr(lessor_->KeepAlive(2, &needs).status(), EtcdError::kLeaseNotFound));
  EXPECT_FALSE(needs);
  // Checkpoints turned off: never asks.
  ApplyCheckpoint(1, 50);
  lessor_->SetCheckpointInterval(absl::ZeroDuration());
  EXPECT_FALSE(NeedsClear(1));
}

TEST_F(LessorTest, CheckpointIsPersistedAndSurvivesRestore) {
  LeadWithCheckpoints(absl::Seconds(10));
  Grant(1, 60);
  Grant(2, 60);
  lessor_->Attach(1, "a");
  ApplyCheckpoint(1, 42);
  ApplyCheckpoint(2, 30);
  ApplyCheckpoint(2, 0);
  EXPECT_EQ(Record(1).ttl(), 60);
  EXPECT_EQ(Record(1).remaining_ttl(), 42);
  EXPECT_EQ(Record(2).remaining_ttl(), 0);

  clock_.Advance(absl::Seconds(100));
  Lessor restored(&clock_, kMinTtl);
  ASSERT_TRUE(restored.Restore(backend_.get(), {{1, "a"}}).ok());
  auto one = restored.TimeToLive(1, true);
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(one->ttl, 60);
  EXPECT_EQ(one->remaining, 42);
  EXPECT_EQ(one->keys, (std::vector<std::string>{"a"}));
  EXPECT_EQ(restored.TimeToLive(2, false)->remaining, 60);
  restored.Promote(absl::Seconds(2));
  EXPECT_EQ(restored.TimeToLive(1, false)->remaining, 44);
  EXPECT_EQ(restored.TimeToLive(2, false)->remaining, 62);
}

TEST_F(LessorTest, CheckpointOfUnknownLeaseIsIgnored) {
  LeadWithCheckpoints(absl::Seconds(10));
  storage::Batch b;
  EXPECT_TRUE(lessor_->Checkpoint(7, 30, &b).ok());
  EXPECT_EQ(b.Count(), 0);
  EXPECT_FALSE(lessor_->LeaseExists(7));
}

TEST_F(LessorTest, RestoreOnThePrimarySchedulesFromNow) {
  LeadWithCheckpoints(absl::Seconds(10));
  Grant(1, 100);
  clock_.Advance(absl::Seconds(5));
  lessor_->Clear();  // an installed snapshot
  ASSERT_TRUE(lessor_->Restore(backend_.get(), {}).ok());
  clock_.Advance(absl::Seconds(5));
  EXPECT_TRUE(lessor_->DueCheckpoints(1000).empty());
  clock_.Advance(absl::Seconds(5));
  EXPECT_EQ(lessor_->DueCheckpoints(1000), (Due{{1, 90}}));
}

}  // namespace
}  // namespace synod::lease
