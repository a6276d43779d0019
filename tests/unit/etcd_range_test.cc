// etcd's Range and Txn-compare rules in common/ (etcd_range.h,
// etcd_compare.h), which the member's store and the proxy's cache share.
#include <string>
#include <vector>

#include "common/etcd_compare.h"
#include "common/etcd_range.h"
#include "gtest/gtest.h"

namespace synod::common {
namespace {

using etcdserverpb::Compare;
using etcdserverpb::RangeRequest;
using etcdserverpb::RangeResponse;

mvccpb::KeyValue Kv(const std::string& key, const std::string& value,
                    int64_t version, int64_t create, int64_t mod,
                    int64_t lease = 0) {
  mvccpb::KeyValue kv;
  kv.set_key(key);
  kv.set_value(value);
  kv.set_version(version);
  kv.set_create_revision(create);
  kv.set_mod_revision(mod);
  kv.set_lease(lease);
  return kv;
}

// Four keys in key order; every sort target orders them differently.
std::vector<mvccpb::KeyValue> Fixture() {
  return {Kv("a", "z", 3, 4, 9), Kv("b", "x", 1, 2, 7), Kv("c", "y", 2, 5, 6),
          Kv("d", "w", 1, 3, 8)};
}

std::string Keys(const std::vector<mvccpb::KeyValue>& kvs) {
  std::string out;
  for (const auto& kv : kvs) out += kv.key();
  return out;
}

std::string Sorted(RangeRequest::SortTarget target,
                   RangeRequest::SortOrder order) {
  RangeRequest r;
  r.set_sort_target(target);
  r.set_sort_order(order);
  std::vector<mvccpb::KeyValue> kvs = Fixture();
  SortRange(r, &kvs, MetaOf,
            [](const mvccpb::KeyValue& kv) -> const std::string& {
              return kv.value();
            });
  return Keys(kvs);
}

TEST(EtcdRangeTest, KeyAscendingIsTheNaturalOrder) {
  EXPECT_EQ(Sorted(RangeRequest::KEY, RangeRequest::NONE), "abcd");
  EXPECT_EQ(Sorted(RangeRequest::KEY, RangeRequest::ASCEND), "abcd");
  EXPECT_EQ(Sorted(RangeRequest::KEY, RangeRequest::DESCEND), "dcba");
}

TEST(EtcdRangeTest, EachTargetSortsBothWays) {
  EXPECT_EQ(Sorted(RangeRequest::VALUE, RangeRequest::ASCEND), "dbca");
  EXPECT_EQ(Sorted(RangeRequest::VALUE, RangeRequest::DESCEND), "acbd");
  EXPECT_EQ(Sorted(RangeRequest::CREATE, RangeRequest::ASCEND), "bdac");
  EXPECT_EQ(Sorted(RangeRequest::CREATE, RangeRequest::DESCEND), "cadb");
  EXPECT_EQ(Sorted(RangeRequest::MOD, RangeRequest::ASCEND), "cbda");
  EXPECT_EQ(Sorted(RangeRequest::MOD, RangeRequest::DESCEND), "adbc");
}

TEST(EtcdRangeTest, NonKeyTargetWithoutOrderSortsAscending) {
  EXPECT_EQ(EffectiveSortOrder(RangeRequest()), RangeRequest::NONE);
  RangeRequest r;
  r.set_sort_target(RangeRequest::MOD);
  EXPECT_EQ(EffectiveSortOrder(r), RangeRequest::ASCEND);
  EXPECT_EQ(Sorted(RangeRequest::MOD, RangeRequest::NONE), "cbda");
  EXPECT_EQ(Sorted(RangeRequest::VALUE, RangeRequest::NONE), "dbca");
}

TEST(EtcdRangeTest, EqualFieldsKeepKeyOrder) {
  // b and d both have version 1; a has 3, c has 2.
  EXPECT_EQ(Sorted(RangeRequest::VERSION, RangeRequest::ASCEND), "bdca");
  EXPECT_EQ(Sorted(RangeRequest::VERSION, RangeRequest::DESCEND), "acbd");
}

TEST(EtcdRangeTest, SortsByValueOnlyForTheValueTarget) {
  RangeRequest r;
  EXPECT_FALSE(SortsByValue(r));
  r.set_sort_target(RangeRequest::VALUE);
  EXPECT_TRUE(SortsByValue(r));
  r.set_sort_order(RangeRequest::DESCEND);
  EXPECT_TRUE(SortsByValue(r));
  r.set_sort_target(RangeRequest::CREATE);
  EXPECT_FALSE(SortsByValue(r));
}

TEST(EtcdRangeTest, RevisionFiltersAreInclusiveAndZeroMeansNoBound) {
  RangeRequest r;
  std::vector<mvccpb::KeyValue> kvs = Fixture();
  FilterByRevision(r, &kvs, MetaOf);
  EXPECT_EQ(Keys(kvs), "abcd");

  r.set_min_mod_revision(7);
  r.set_max_mod_revision(8);
  kvs = Fixture();
  FilterByRevision(r, &kvs, MetaOf);
  EXPECT_EQ(Keys(kvs), "bd");

  r = RangeRequest();
  r.set_min_create_revision(3);
  r.set_max_create_revision(4);
  kvs = Fixture();
  FilterByRevision(r, &kvs, MetaOf);
  EXPECT_EQ(Keys(kvs), "ad");
  EXPECT_TRUE(PassesRevisionFilters(r, KvMeta{1, 3, 100}));
  EXPECT_FALSE(PassesRevisionFilters(r, KvMeta{1, 5, 1}));
}

TEST(EtcdRangeTest, LimitKeepsTheFirstAndSetsMore) {
  RangeRequest r;
  RangeResponse resp;
  EXPECT_EQ(ApplyLimit(r, 4, &resp), 4u);
  EXPECT_FALSE(resp.more());
  r.set_limit(4);
  EXPECT_EQ(ApplyLimit(r, 4, &resp), 4u);
  EXPECT_FALSE(resp.more());
  r.set_limit(3);
  EXPECT_EQ(ApplyLimit(r, 4, &resp), 3u);
  EXPECT_TRUE(resp.more());
}

TEST(EtcdRangeTest, CollectLimitFetchesAllWhenSortingOrFiltering) {
  RangeRequest r;
  EXPECT_EQ(CollectLimit(r), 0);
  r.set_limit(2);
  EXPECT_EQ(CollectLimit(r), 3);
  RangeRequest sorted = r;
  sorted.set_sort_order(RangeRequest::DESCEND);
  EXPECT_EQ(CollectLimit(sorted), 0);
  RangeRequest by_mod = r;
  by_mod.set_sort_target(RangeRequest::MOD);
  EXPECT_EQ(CollectLimit(by_mod), 0);
  RangeRequest filtered = r;
  filtered.set_min_create_revision(1);
  EXPECT_EQ(CollectLimit(filtered), 0);
}

Compare Cmp(Compare::CompareTarget target, Compare::CompareResult result,
            int64_t n, const std::string& value = "") {
  Compare c;
  c.set_target(target);
  c.set_result(result);
  c.set_key("k");
  switch (target) {
    case Compare::VERSION: c.set_version(n); break;
    case Compare::CREATE: c.set_create_revision(n); break;
    case Compare::MOD: c.set_mod_revision(n); break;
    case Compare::LEASE: c.set_lease(n); break;
    case Compare::VALUE: c.set_value(value); break;
    default: break;
  }
  return c;
}

TEST(EtcdCompareTest, EveryTargetAndResult) {
  const mvccpb::KeyValue kv = Kv("k", "m", 2, 3, 4, 5);
  const struct {
    Compare::CompareTarget target;
    int64_t equal;
  } targets[] = {{Compare::VERSION, 2},
                 {Compare::CREATE, 3},
                 {Compare::MOD, 4},
                 {Compare::LEASE, 5}};
  for (const auto& t : targets) {
    SCOPED_TRACE(Compare::CompareTarget_Name(t.target));
    EXPECT_TRUE(CompareHolds(Cmp(t.target, Compare::EQUAL, t.equal), kv));
    EXPECT_FALSE(CompareHolds(Cmp(t.target, Compare::EQUAL, t.equal + 1), kv));
    EXPECT_TRUE(
        CompareHolds(Cmp(t.target, Compare::NOT_EQUAL, t.equal + 1), kv));
    EXPECT_FALSE(CompareHolds(Cmp(t.target, Compare::NOT_EQUAL, t.equal), kv));
    EXPECT_TRUE(CompareHolds(Cmp(t.target, Compare::GREATER, t.equal - 1), kv));
    EXPECT_FALSE(CompareHolds(Cmp(t.target, Compare::GREATER, t.equal), kv));
    EXPECT_TRUE(CompareHolds(Cmp(t.target, Compare::LESS, t.equal + 1), kv));
    EXPECT_FALSE(CompareHolds(Cmp(t.target, Compare::LESS, t.equal), kv));
  }
  EXPECT_TRUE(CompareHolds(Cmp(Compare::VALUE, Compare::EQUAL, 0, "m"), kv));
  EXPECT_TRUE(CompareHolds(Cmp(Compare::VALUE, Compare::GREATER, 0, "l"), kv));
  EXPECT_TRUE(CompareHolds(Cmp(Compare::VALUE, Compare::LESS, 0, "ma"), kv));
  EXPECT_TRUE(
      CompareHolds(Cmp(Compare::VALUE, Compare::NOT_EQUAL, 0, "n"), kv));
}

TEST(EtcdCompareTest, ValuesCompareAsUnsignedBytes) {
  const mvccpb::KeyValue kv = Kv("k", "\xff", 1, 1, 1);
  EXPECT_TRUE(CompareHolds(Cmp(Compare::VALUE, Compare::GREATER, 0, "a"), kv));
}

TEST(EtcdCompareTest, MissingKeyFailsValueAndComparesZeroOtherwise) {
  EXPECT_FALSE(
      CompareHoldsOnMissingKey(Cmp(Compare::VALUE, Compare::EQUAL, 0, "")));
  EXPECT_FALSE(
      CompareHoldsOnMissingKey(Cmp(Compare::VALUE, Compare::NOT_EQUAL, 0, "x")));
  EXPECT_TRUE(CompareHoldsOnMissingKey(Cmp(Compare::VERSION, Compare::EQUAL, 0)));
  EXPECT_TRUE(CompareHoldsOnMissingKey(Cmp(Compare::CREATE, Compare::LESS, 1)));
  EXPECT_FALSE(CompareHoldsOnMissingKey(Cmp(Compare::MOD, Compare::GREATER, 0)));
  EXPECT_TRUE(CompareHoldsOnMissingKey(Cmp(Compare::LEASE, Compare::EQUAL, 0)));
}

}  // namespace
}  // namespace synod::common
