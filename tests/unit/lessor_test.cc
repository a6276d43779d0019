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

namespace synod::lease {
namespace {

using common::EtcdError;
using common::IsErr;

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

}  // namespace
}  // namespace synod::lease
