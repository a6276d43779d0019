#include "backend/mvcc/kv_store.h"

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "backend/storage/backend.h"
#include "backend/storage/schema.h"
#include "common/errors.h"
#include "common/key_range.h"
#include "gtest/gtest.h"
#include "leveldb/env.h"
#include "leveldb/helpers/memenv.h"

namespace synod::mvcc {
namespace {

using common::EtcdError;
using common::IsErr;
using etcdserverpb::Compare;
using etcdserverpb::DeleteRangeRequest;
using etcdserverpb::DeleteRangeResponse;
using etcdserverpb::PutRequest;
using etcdserverpb::PutResponse;
using etcdserverpb::RangeRequest;
using etcdserverpb::RangeResponse;
using etcdserverpb::RequestOp;
using etcdserverpb::TxnRequest;
using etcdserverpb::TxnResponse;

// Leases 1..n exist when listed in `leases`; records Attach/Detach calls.
class FakeLeaseHooks : public LeaseHooks {
 public:
  bool LeaseExists(int64_t id) const override { return leases.count(id) > 0; }
  void Attach(int64_t id, const std::string& key) override {
    calls.push_back("attach " + std::to_string(id) + " " + key);
  }
  void Detach(int64_t id, const std::string& key) override {
    calls.push_back("detach " + std::to_string(id) + " " + key);
  }
  std::set<int64_t> leases;
  std::vector<std::string> calls;
};

std::vector<std::string> Keys(const RangeResponse& r) {
  std::vector<std::string> out;
  for (const auto& kv : r.kvs()) out.push_back(kv.key());
  return out;
}

RequestOp PutOp(const std::string& k, const std::string& v, int64_t lease = 0) {
  RequestOp op;
  op.mutable_request_put()->set_key(k);
  op.mutable_request_put()->set_value(v);
  op.mutable_request_put()->set_lease(lease);
  return op;
}

RequestOp DeleteOp(const std::string& k) {
  RequestOp op;
  op.mutable_request_delete_range()->set_key(k);
  return op;
}

RequestOp RangeOp(const std::string& k) {
  RequestOp op;
  op.mutable_request_range()->set_key(k);
  return op;
}

class KvStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    env_.reset(leveldb::NewMemEnv(leveldb::Env::Default()));
    OpenBackend();
    OpenStore();
  }

  // Invariant: every test leaves everything committed, and a restart on the
  // same data rebuilds the same published state.
  void TearDown() override {
    if (kv_ == nullptr) return;
    EXPECT_EQ(kv_->StagedRev(), kv_->Rev()) << "test left writes staged";
    if (kv_->StagedRev() != kv_->Rev()) return;
    const int64_t rev = kv_->Rev();
    const int64_t compact = kv_->CompactRev();
    const size_t keys = kv_->KeyCount();
    auto hash = kv_->HashKV(0);
    ASSERT_TRUE(hash.ok()) << hash.status();
    Restart();
    EXPECT_EQ(kv_->Rev(), rev);
    EXPECT_EQ(kv_->CompactRev(), compact);
    EXPECT_EQ(kv_->KeyCount(), keys);
    auto hash2 = kv_->HashKV(0);
    ASSERT_TRUE(hash2.ok()) << hash2.status();
    EXPECT_EQ(*hash2, *hash);
  }

  void OpenBackend() {
    storage::BackendOptions opts;
    opts.env = env_.get();
    auto b = storage::Backend::Open("/db", opts);
    ASSERT_TRUE(b.ok()) << b.status();
    backend_ = std::move(*b);
  }
  void OpenStore() {
    auto s = KvStore::Open(backend_.get());
    ASSERT_TRUE(s.ok()) << s.status();
    kv_ = std::move(*s);
    kv_->SetLeaseHooks(&hooks_);
  }
  // Closes the store and the LevelDB database, then opens both again.
  void Restart() {
    kv_.reset();
    backend_.reset();
    OpenBackend();
    OpenStore();
  }

  void Commit() {
    absl::Status st = kv_->Commit(++applied_, &events_);
    ASSERT_TRUE(st.ok()) << st;
  }

  // One committed Put; returns its revision.
  int64_t Put(const std::string& k, const std::string& v, int64_t lease = 0) {
    PutRequest r;
    r.set_key(k);
    r.set_value(v);
    r.set_lease(lease);
    PutResponse resp;
    auto t = kv_->Write();
    absl::Status st = t->Put(r, &resp);
    EXPECT_TRUE(st.ok()) << st;
    const int64_t rev = t->Rev();
    EXPECT_EQ(resp.header().revision(), rev);
    t.reset();
    Commit();
    return rev;
  }

  absl::Status PutStatus(const PutRequest& r, PutResponse* resp) {
    auto t = kv_->Write();
    absl::Status st = t->Put(r, resp);
    t.reset();
    Commit();
    return st;
  }

  int64_t Delete(const std::string& k, const std::string& end = "") {
    DeleteRangeRequest r;
    r.set_key(k);
    r.set_range_end(end);
    DeleteRangeResponse resp;
    auto t = kv_->Write();
    EXPECT_TRUE(t->DeleteRange(r, &resp).ok());
    t.reset();
    Commit();
    return resp.deleted();
  }

  absl::Status Txn(const TxnRequest& r, TxnResponse* resp) {
    auto t = kv_->Write();
    absl::Status st = t->Txn(r, resp);
    t.reset();
    Commit();
    return st;
  }

  RangeResponse Range(RangeRequest r) {
    RangeResponse resp;
    absl::Status st = kv_->Range(r, &resp);
    EXPECT_TRUE(st.ok()) << st;
    return resp;
  }
  RangeResponse Range(const std::string& k, const std::string& end = "",
                      int64_t rev = 0) {
    RangeRequest r;
    r.set_key(k);
    r.set_range_end(end);
    r.set_revision(rev);
    return Range(r);
  }
  // Every live key and value, at `rev` (0 = current).
  std::map<std::string, std::string> All(int64_t rev = 0) {
    std::map<std::string, std::string> out;
    const RangeResponse resp =
        Range(std::string(1, '\0'), std::string(1, '\0'), rev);
    for (const auto& kv : resp.kvs()) {
      out[kv.key()] = kv.value();
    }
    return out;
  }

  std::vector<mvccpb::Event> AllEvents(int64_t from, int64_t* next = nullptr) {
    std::vector<mvccpb::Event> out;
    int64_t n = 0;
    absl::Status st = kv_->ReadEvents(from, kv_->Rev(), 1 << 20, &out, &n);
    EXPECT_TRUE(st.ok()) << st;
    if (next != nullptr) *next = n;
    return out;
  }

  std::unique_ptr<leveldb::Env> env_;
  std::unique_ptr<storage::Backend> backend_;
  std::unique_ptr<KvStore> kv_;
  FakeLeaseHooks hooks_;
  uint64_t applied_ = 0;
  std::vector<mvccpb::Event> events_;
};

// ---------------- Put, Get, revisions ----------------

TEST_F(KvStoreTest, EmptyStoreStartsAtRevisionOne) {
  EXPECT_EQ(kv_->Rev(), 1);
  EXPECT_EQ(kv_->StagedRev(), 1);
  EXPECT_EQ(kv_->CompactRev(), 0);
  EXPECT_EQ(kv_->KeyCount(), 0u);
  RangeResponse r = Range("a");
  EXPECT_EQ(r.kvs_size(), 0);
  EXPECT_EQ(r.count(), 0);
  EXPECT_EQ(r.header().revision(), 1);
}

TEST_F(KvStoreTest, EachPutMakesOneRevision) {
  EXPECT_EQ(Put("a", "1"), 2);
  EXPECT_EQ(Put("b", "2"), 3);
  EXPECT_EQ(Put("a", "3"), 4);
  EXPECT_EQ(kv_->Rev(), 4);
  EXPECT_EQ(kv_->AppliedIndex(), applied_);
  RangeResponse r = Range("a");
  ASSERT_EQ(r.kvs_size(), 1);
  EXPECT_EQ(r.kvs(0).value(), "3");
  EXPECT_EQ(r.kvs(0).create_revision(), 2);
  EXPECT_EQ(r.kvs(0).mod_revision(), 4);
  EXPECT_EQ(r.kvs(0).version(), 2);
  EXPECT_EQ(r.header().revision(), 4);
}

TEST_F(KvStoreTest, PutReturnsPrevKvOnlyWhenAsked) {
  Put("a", "old");
  PutRequest r;
  r.set_key("a");
  r.set_value("new");
  PutResponse resp;
  ASSERT_TRUE(PutStatus(r, &resp).ok());
  EXPECT_FALSE(resp.has_prev_kv());
  r.set_prev_kv(true);
  r.set_value("newer");
  resp.Clear();
  ASSERT_TRUE(PutStatus(r, &resp).ok());
  ASSERT_TRUE(resp.has_prev_kv());
  EXPECT_EQ(resp.prev_kv().value(), "new");
  EXPECT_EQ(resp.prev_kv().version(), 2);
}

TEST_F(KvStoreTest, StagedWritesAreInvisibleUntilCommit) {
  Put("a", "1");
  auto t1 = kv_->Write();
  PutRequest p;
  p.set_key("a");
  p.set_value("2");
  PutResponse pr;
  ASSERT_TRUE(t1->Put(p, &pr).ok());
  EXPECT_EQ(t1->Rev(), 3);
  t1.reset();
  auto t2 = kv_->Write();
  EXPECT_EQ(t2->Rev(), 4);  // group commit: builds on the staged revision
  // The second txn sees the first one's staged write.
  RangeRequest rr;
  rr.set_key("a");
  RangeResponse in_txn;
  ASSERT_TRUE(t2->Range(rr, &in_txn).ok());
  ASSERT_EQ(in_txn.kvs_size(), 1);
  EXPECT_EQ(in_txn.kvs(0).value(), "2");
  EXPECT_EQ(in_txn.header().revision(), 3);
  p.set_value("3");
  ASSERT_TRUE(t2->Put(p, &pr).ok());
  t2.reset();
  EXPECT_EQ(kv_->StagedRev(), 4);
  // Readers still see the published state.
  EXPECT_EQ(kv_->Rev(), 2);
  EXPECT_EQ(Range("a").kvs(0).value(), "1");
  events_.clear();
  Commit();
  EXPECT_EQ(kv_->Rev(), 4);
  EXPECT_EQ(Range("a").kvs(0).value(), "3");
  ASSERT_EQ(events_.size(), 2u);
  EXPECT_EQ(events_[0].kv().mod_revision(), 3);
  EXPECT_EQ(events_[1].kv().mod_revision(), 4);
}

TEST_F(KvStoreTest, ReadOnlyWriteTxnMakesNoRevision) {
  Put("a", "1");
  auto t = kv_->Write();
  EXPECT_EQ(t->ReadRev(), 2);
  RangeRequest rr;
  rr.set_key("a");
  RangeResponse resp;
  ASSERT_TRUE(t->Range(rr, &resp).ok());
  t.reset();
  Commit();
  EXPECT_EQ(kv_->Rev(), 2);
  EXPECT_EQ(Put("b", "1"), 3);
}

TEST_F(KvStoreTest, TxnWritesAreSubRevisionsOfOneMainRevision) {
  Put("x", "0");
  TxnRequest r;
  *r.add_success() = PutOp("a", "1");
  *r.add_success() = PutOp("b", "2");
  *r.add_success() = DeleteOp("x");
  TxnResponse resp;
  events_.clear();
  ASSERT_TRUE(Txn(r, &resp).ok());
  EXPECT_TRUE(resp.succeeded());
  EXPECT_EQ(kv_->Rev(), 3);
  EXPECT_EQ(resp.header().revision(), 3);
  ASSERT_EQ(events_.size(), 3u);
  for (const auto& ev : events_) EXPECT_EQ(ev.kv().mod_revision(), 3);
  EXPECT_EQ(events_[0].kv().key(), "a");
  EXPECT_EQ(events_[1].kv().key(), "b");
  EXPECT_EQ(events_[2].type(), mvccpb::Event::DELETE);
  // The records are stored under sub-revisions 0, 1, 2 of revision 3.
  for (int64_t sub = 0; sub < 3; ++sub) {
    auto rec = backend_->Get(storage::RevisionKey(3, sub));
    ASSERT_TRUE(rec.ok());
    EXPECT_TRUE(rec->has_value()) << "sub " << sub;
  }
  auto none = backend_->Get(storage::RevisionKey(3, 3));
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
}

// ---------------- Delete ----------------

TEST_F(KvStoreTest, DeleteThenPutRestartsVersionAndCreateRevision) {
  Put("a", "1");
  Put("a", "2");
  EXPECT_EQ(Range("a").kvs(0).version(), 2);
  EXPECT_EQ(Delete("a"), 1);
  EXPECT_EQ(kv_->Rev(), 4);
  EXPECT_EQ(Range("a").kvs_size(), 0);
  const int64_t rev = Put("a", "3");
  RangeResponse r = Range("a");
  ASSERT_EQ(r.kvs_size(), 1);
  EXPECT_EQ(r.kvs(0).version(), 1);
  EXPECT_EQ(r.kvs(0).create_revision(), rev);
  EXPECT_EQ(r.kvs(0).mod_revision(), rev);
}

TEST_F(KvStoreTest, DeleteOfMissingKeyMakesNoRevision) {
  Put("a", "1");
  EXPECT_EQ(Delete("zz"), 0);
  EXPECT_EQ(kv_->Rev(), 2);
}

TEST_F(KvStoreTest, DeleteRangeReturnsPrevKvsAndCount) {
  Put("a", "1");
  Put("b", "2");
  Put("c", "3");
  DeleteRangeRequest r;
  r.set_key("a");
  r.set_range_end("c");
  r.set_prev_kv(true);
  DeleteRangeResponse resp;
  auto t = kv_->Write();
  ASSERT_TRUE(t->DeleteRange(r, &resp).ok());
  t.reset();
  Commit();
  EXPECT_EQ(resp.deleted(), 2);
  EXPECT_EQ(resp.header().revision(), 5);
  ASSERT_EQ(resp.prev_kvs_size(), 2);
  EXPECT_EQ(resp.prev_kvs(0).value(), "1");
  EXPECT_EQ(resp.prev_kvs(1).value(), "2");
  EXPECT_EQ(All(), (std::map<std::string, std::string>{{"c", "3"}}));
}

// ---------------- Range: range_end, limit, count, keys_only ----------------

class KvStoreRangeTest : public KvStoreTest {
 protected:
  void SetUp() override {
    KvStoreTest::SetUp();
    for (const char* k : {"a", "ab", "abc", "b", "b\xff", "c"}) Put(k, k);
  }
};

TEST_F(KvStoreRangeTest, EmptyRangeEndIsOneKey) {
  EXPECT_EQ(Keys(Range("ab")), (std::vector<std::string>{"ab"}));
  EXPECT_TRUE(Keys(Range("aa")).empty());
}

TEST_F(KvStoreRangeTest, RangeEndIsExclusive) {
  EXPECT_EQ(Keys(Range("ab", "b")), (std::vector<std::string>{"ab", "abc"}));
  EXPECT_EQ(Keys(Range("a", "ab")), (std::vector<std::string>{"a"}));
}

TEST_F(KvStoreRangeTest, NulRangeEndMeansEveryKeyFromKey) {
  const std::string nul(1, '\0');
  EXPECT_EQ(Keys(Range("b", nul)),
            (std::vector<std::string>{"b", "b\xff", "c"}));
  EXPECT_EQ(Range(nul, nul).count(), 6);
}

TEST_F(KvStoreRangeTest, PrefixRangeEnd) {
  EXPECT_EQ(Keys(Range("ab", common::PrefixEnd("ab"))),
            (std::vector<std::string>{"ab", "abc"}));
  EXPECT_EQ(Keys(Range("b", common::PrefixEnd("b"))),
            (std::vector<std::string>{"b", "b\xff"}));
}

TEST_F(KvStoreRangeTest, RangeEndBelowKeyIsEmpty) {
  EXPECT_TRUE(Keys(Range("c", "a")).empty());
}

TEST_F(KvStoreRangeTest, LimitTruncatesSetsMoreAndCountsAll) {
  RangeRequest r;
  r.set_key("a");
  r.set_range_end(std::string(1, '\0'));
  r.set_limit(2);
  RangeResponse resp = Range(r);
  EXPECT_EQ(Keys(resp), (std::vector<std::string>{"a", "ab"}));
  EXPECT_TRUE(resp.more());
  EXPECT_EQ(resp.count(), 6);

  r.set_limit(6);
  resp = Range(r);
  EXPECT_EQ(resp.kvs_size(), 6);
  EXPECT_FALSE(resp.more());
  EXPECT_EQ(resp.count(), 6);

  r.set_limit(100);
  EXPECT_FALSE(Range(r).more());
}

TEST_F(KvStoreRangeTest, CountOnlyReturnsNoKvs) {
  RangeRequest r;
  r.set_key("a");
  r.set_range_end("b");
  r.set_count_only(true);
  RangeResponse resp = Range(r);
  EXPECT_EQ(resp.kvs_size(), 0);
  EXPECT_EQ(resp.count(), 3);
  EXPECT_EQ(resp.header().revision(), kv_->Rev());
}

TEST_F(KvStoreRangeTest, KeysOnlyOmitsValuesButKeepsMetadata) {
  RangeRequest r;
  r.set_key("a");
  r.set_range_end("b");
  r.set_keys_only(true);
  RangeResponse resp = Range(r);
  ASSERT_EQ(resp.kvs_size(), 3);
  for (const auto& kv : resp.kvs()) {
    EXPECT_TRUE(kv.value().empty()) << kv.key();
    EXPECT_GT(kv.mod_revision(), 1);
    EXPECT_EQ(kv.version(), 1);
  }
  // Without keys_only the values are there.
  r.set_keys_only(false);
  EXPECT_EQ(Range(r).kvs(2).value(), "abc");
}

// ---------------- Range: sort and filters ----------------

// Final state, chosen so that every target orders the keys differently:
//   key  create  mod  version  value
//   a    4       4    1        "m"
//   b    2       10   4        "x"
//   c    5       9    2        "a"
//   d    3       11   3        "b"
class KvStoreSortTest : public KvStoreTest {
 protected:
  void SetUp() override {
    KvStoreTest::SetUp();
    Put("b", "-");  // 2
    Put("d", "-");  // 3
    Put("a", "m");  // 4
    Put("c", "-");  // 5
    Put("b", "-");  // 6
    Put("d", "-");  // 7
    Put("b", "-");  // 8
    Put("c", "a");  // 9
    Put("b", "x");  // 10
    Put("d", "b");  // 11
  }
  std::vector<std::string> Sorted(RangeRequest::SortTarget target,
                                  RangeRequest::SortOrder order,
                                  bool keys_only = false) {
    RangeRequest r;
    r.set_key("a");
    r.set_range_end("z");
    r.set_sort_target(target);
    r.set_sort_order(order);
    r.set_keys_only(keys_only);
    return Keys(Range(r));
  }
  using V = std::vector<std::string>;
};

TEST_F(KvStoreSortTest, FixtureHasExpectedMetadata) {
  RangeResponse r = Range("a", "z");
  ASSERT_EQ(r.kvs_size(), 4);
  EXPECT_EQ(r.kvs(1).create_revision(), 2);
  EXPECT_EQ(r.kvs(1).mod_revision(), 10);
  EXPECT_EQ(r.kvs(1).version(), 4);
  EXPECT_EQ(r.kvs(3).version(), 3);
}

TEST_F(KvStoreSortTest, SortByKey) {
  EXPECT_EQ(Sorted(RangeRequest::KEY, RangeRequest::NONE),
            (V{"a", "b", "c", "d"}));
  EXPECT_EQ(Sorted(RangeRequest::KEY, RangeRequest::ASCEND),
            (V{"a", "b", "c", "d"}));
  EXPECT_EQ(Sorted(RangeRequest::KEY, RangeRequest::DESCEND),
            (V{"d", "c", "b", "a"}));
}

TEST_F(KvStoreSortTest, SortByCreateRevision) {
  EXPECT_EQ(Sorted(RangeRequest::CREATE, RangeRequest::ASCEND),
            (V{"b", "d", "a", "c"}));
  EXPECT_EQ(Sorted(RangeRequest::CREATE, RangeRequest::DESCEND),
            (V{"c", "a", "d", "b"}));
}

TEST_F(KvStoreSortTest, SortByModRevision) {
  EXPECT_EQ(Sorted(RangeRequest::MOD, RangeRequest::ASCEND),
            (V{"a", "c", "b", "d"}));
  EXPECT_EQ(Sorted(RangeRequest::MOD, RangeRequest::DESCEND),
            (V{"d", "b", "c", "a"}));
}

TEST_F(KvStoreSortTest, SortByVersion) {
  EXPECT_EQ(Sorted(RangeRequest::VERSION, RangeRequest::ASCEND),
            (V{"a", "c", "d", "b"}));
  EXPECT_EQ(Sorted(RangeRequest::VERSION, RangeRequest::DESCEND),
            (V{"b", "d", "c", "a"}));
}

TEST_F(KvStoreSortTest, SortByValue) {
  EXPECT_EQ(Sorted(RangeRequest::VALUE, RangeRequest::ASCEND),
            (V{"c", "d", "a", "b"}));
  EXPECT_EQ(Sorted(RangeRequest::VALUE, RangeRequest::DESCEND),
            (V{"b", "a", "d", "c"}));
}

TEST_F(KvStoreSortTest, NonKeyTargetWithoutOrderSortsAscending) {
  EXPECT_EQ(Sorted(RangeRequest::MOD, RangeRequest::NONE),
            (V{"a", "c", "b", "d"}));
  EXPECT_EQ(Sorted(RangeRequest::VALUE, RangeRequest::NONE),
            (V{"c", "d", "a", "b"}));
}

TEST_F(KvStoreSortTest, LimitAppliesAfterSort) {
  RangeRequest r;
  r.set_key("a");
  r.set_range_end("z");
  r.set_sort_target(RangeRequest::MOD);
  r.set_sort_order(RangeRequest::DESCEND);
  r.set_limit(2);
  RangeResponse resp = Range(r);
  EXPECT_EQ(Keys(resp), (V{"d", "b"}));
  EXPECT_TRUE(resp.more());
  EXPECT_EQ(resp.count(), 4);
}

TEST_F(KvStoreSortTest, ModRevisionFilters) {
  RangeRequest r;
  r.set_key("a");
  r.set_range_end("z");
  r.set_min_mod_revision(10);
  EXPECT_EQ(Keys(Range(r)), (V{"b", "d"}));
  r.clear_min_mod_revision();
  r.set_max_mod_revision(9);
  EXPECT_EQ(Keys(Range(r)), (V{"a", "c"}));
  r.set_min_mod_revision(5);
  EXPECT_EQ(Keys(Range(r)), (V{"c"}));
  // etcd counts the keys in the range before filtering.
  EXPECT_EQ(Range(r).count(), 4);
}

TEST_F(KvStoreSortTest, CreateRevisionFilters) {
  RangeRequest r;
  r.set_key("a");
  r.set_range_end("z");
  r.set_min_create_revision(4);
  EXPECT_EQ(Keys(Range(r)), (V{"a", "c"}));
  r.clear_min_create_revision();
  r.set_max_create_revision(3);
  EXPECT_EQ(Keys(Range(r)), (V{"b", "d"}));
  r.set_min_create_revision(3);
  EXPECT_EQ(Keys(Range(r)), (V{"d"}));
}

TEST_F(KvStoreSortTest, FilterThenLimitSetsMore) {
  RangeRequest r;
  r.set_key("a");
  r.set_range_end("z");
  r.set_min_mod_revision(5);
  r.set_limit(2);
  RangeResponse resp = Range(r);
  EXPECT_EQ(Keys(resp), (V{"b", "c"}));
  EXPECT_TRUE(resp.more());
}

// ---------------- History and revision errors ----------------

TEST_F(KvStoreTest, RangeAtPastRevisionSeesHistory) {
  Put("a", "1");  // 2
  Put("b", "1");  // 3
  Put("a", "2");  // 4
  Delete("b");    // 5
  EXPECT_EQ(All(2), (std::map<std::string, std::string>{{"a", "1"}}));
  EXPECT_EQ(All(3),
            (std::map<std::string, std::string>{{"a", "1"}, {"b", "1"}}));
  EXPECT_EQ(All(4),
            (std::map<std::string, std::string>{{"a", "2"}, {"b", "1"}}));
  EXPECT_EQ(All(5), (std::map<std::string, std::string>{{"a", "2"}}));
  EXPECT_EQ(All(1).size(), 0u);
  RangeResponse r = Range("a", "", 3);
  EXPECT_EQ(r.header().revision(), 5);  // the current revision, as etcd
  ASSERT_EQ(r.kvs_size(), 1);
  EXPECT_EQ(r.kvs(0).mod_revision(), 2);
  EXPECT_EQ(r.kvs(0).version(), 1);
}

TEST_F(KvStoreTest, GetReadsKeyAtRevision) {
  Put("a", "1");  // 2
  Put("a", "2");  // 3
  Delete("a");    // 4
  auto at2 = kv_->Get("a", 2);
  ASSERT_TRUE(at2.ok());
  ASSERT_TRUE(at2->has_value());
  EXPECT_EQ((*at2)->value(), "1");
  auto at3 = kv_->Get("a", 3);
  ASSERT_TRUE(at3.ok() && at3->has_value());
  EXPECT_EQ((*at3)->value(), "2");
  EXPECT_EQ((*at3)->version(), 2);
  auto at4 = kv_->Get("a", 4);
  ASSERT_TRUE(at4.ok());
  EXPECT_FALSE(at4->has_value());
  auto missing = kv_->Get("nope", 4);
  ASSERT_TRUE(missing.ok());
  EXPECT_FALSE(missing->has_value());
}

TEST_F(KvStoreTest, FutureRevisionIsAnError) {
  Put("a", "1");
  RangeRequest r;
  r.set_key("a");
  r.set_revision(3);
  RangeResponse resp;
  EXPECT_TRUE(IsErr(kv_->Range(r, &resp), EtcdError::kFutureRev));
  EXPECT_TRUE(IsErr(kv_->HashKV(3).status(), EtcdError::kFutureRev));
  // In a write txn the bound is the txn's read revision.
  auto t = kv_->Write();
  EXPECT_TRUE(IsErr(t->Range(r, &resp), EtcdError::kFutureRev));
  t.reset();
  r.set_revision(2);
  EXPECT_TRUE(kv_->Range(r, &resp).ok());
}

// etcd answers a historical read with the store's current revision in the
// header: clients take header.revision as "now" and start watches from it.
TEST_F(KvStoreTest, HistoricalReadHeaderCarriesCurrentRevision) {
  Put("a", "1");  // 2
  Put("a", "2");  // 3
  Put("b", "1");  // 4
  RangeResponse old = Range("a", "", 2);
  ASSERT_EQ(old.kvs_size(), 1);
  EXPECT_EQ(old.kvs(0).value(), "1");
  EXPECT_EQ(old.header().revision(), 4);
  // Inside a txn too: the sub-response reports the txn's revision.
  auto t = kv_->Write();
  RangeRequest r;
  r.set_key("a");
  r.set_revision(2);
  RangeResponse in_txn;
  ASSERT_TRUE(t->Range(r, &in_txn).ok());
  EXPECT_EQ(in_txn.kvs(0).value(), "1");
  EXPECT_EQ(in_txn.header().revision(), 4);
}

TEST_F(KvStoreTest, RangeBelowCompactedRevisionIsAnError) {
  Put("a", "1");  // 2
  Put("a", "2");  // 3
  Put("a", "3");  // 4
  ASSERT_TRUE(kv_->Compact(3).ok());
  Commit();
  RangeRequest r;
  r.set_key("a");
  r.set_revision(2);
  RangeResponse resp;
  EXPECT_TRUE(IsErr(kv_->Range(r, &resp), EtcdError::kCompacted));
  EXPECT_TRUE(IsErr(kv_->Get("a", 2).status(), EtcdError::kCompacted));
  EXPECT_TRUE(IsErr(kv_->HashKV(2).status(), EtcdError::kCompacted));
  // Exactly at the compacted revision a Range still reads, but an explicit
  // HashKV there is refused (etcd's HashByRev); the current one works.
  EXPECT_EQ(Range("a", "", 3).kvs(0).value(), "2");
  EXPECT_TRUE(IsErr(kv_->HashKV(3).status(), EtcdError::kCompacted));
  EXPECT_TRUE(kv_->HashKV(4).ok());
  EXPECT_TRUE(kv_->HashKV(0).ok());
}

// ---------------- Txn compares ----------------

struct CompareCase {
  const char* name;
  Compare::CompareTarget target;
  Compare::CompareResult result;
  int64_t number;     // for non-VALUE targets
  const char* value;  // for VALUE
  bool want;
};

class KvStoreCompareTest : public KvStoreTest,
                           public ::testing::WithParamInterface<CompareCase> {
 protected:
  void SetUp() override {
    KvStoreTest::SetUp();
    hooks_.leases.insert(7);
    Put("k", "v1");     // 2: create 2
    Put("other", "x");  // 3
    Put("k", "v2", 7);  // 4: mod 4, version 2, lease 7
  }
};

Compare MakeCompare(const CompareCase& c, const std::string& key) {
  Compare cmp;
  cmp.set_key(key);
  cmp.set_target(c.target);
  cmp.set_result(c.result);
  switch (c.target) {
    case Compare::VERSION:
      cmp.set_version(c.number);
      break;
    case Compare::CREATE:
      cmp.set_create_revision(c.number);
      break;
    case Compare::MOD:
      cmp.set_mod_revision(c.number);
      break;
    case Compare::LEASE:
      cmp.set_lease(c.number);
      break;
    case Compare::VALUE:
      cmp.set_value(c.value);
      break;
    default:
      break;
  }
  return cmp;
}

TEST_P(KvStoreCompareTest, CompareOnExistingKeyPicksBranch) {
  const CompareCase& c = GetParam();
  TxnRequest r;
  *r.add_compare() = MakeCompare(c, "k");
  *r.add_success() = PutOp("result", "success");
  *r.add_failure() = PutOp("result", "failure");
  TxnResponse resp;
  ASSERT_TRUE(Txn(r, &resp).ok());
  EXPECT_EQ(resp.succeeded(), c.want);
  EXPECT_EQ(Range("result").kvs(0).value(), c.want ? "success" : "failure");
}

const CompareCase kExistingKeyCases[] = {
    {"VersionEqual", Compare::VERSION, Compare::EQUAL, 2, "", true},
    {"VersionEqualWrong", Compare::VERSION, Compare::EQUAL, 1, "", false},
    {"VersionGreater", Compare::VERSION, Compare::GREATER, 1, "", true},
    {"VersionGreaterEqual", Compare::VERSION, Compare::GREATER, 2, "", false},
    {"VersionLess", Compare::VERSION, Compare::LESS, 3, "", true},
    {"VersionLessEqual", Compare::VERSION, Compare::LESS, 2, "", false},
    {"VersionNotEqual", Compare::VERSION, Compare::NOT_EQUAL, 1, "", true},
    {"VersionNotEqualSame", Compare::VERSION, Compare::NOT_EQUAL, 2, "", false},
    {"CreateEqual", Compare::CREATE, Compare::EQUAL, 2, "", true},
    {"CreateEqualWrong", Compare::CREATE, Compare::EQUAL, 4, "", false},
    {"CreateLess", Compare::CREATE, Compare::LESS, 3, "", true},
    {"CreateGreater", Compare::CREATE, Compare::GREATER, 2, "", false},
    {"ModEqual", Compare::MOD, Compare::EQUAL, 4, "", true},
    {"ModEqualCreate", Compare::MOD, Compare::EQUAL, 2, "", false},
    {"ModGreater", Compare::MOD, Compare::GREATER, 3, "", true},
    {"ModLess", Compare::MOD, Compare::LESS, 4, "", false},
    {"ModNotEqual", Compare::MOD, Compare::NOT_EQUAL, 4, "", false},
    {"ValueEqual", Compare::VALUE, Compare::EQUAL, 0, "v2", true},
    {"ValueEqualOld", Compare::VALUE, Compare::EQUAL, 0, "v1", false},
    {"ValueGreater", Compare::VALUE, Compare::GREATER, 0, "v1", true},
    {"ValueGreaterPrefix", Compare::VALUE, Compare::GREATER, 0, "v", true},
    {"ValueLess", Compare::VALUE, Compare::LESS, 0, "v3", true},
    {"ValueLessSame", Compare::VALUE, Compare::LESS, 0, "v2", false},
    {"ValueNotEqual", Compare::VALUE, Compare::NOT_EQUAL, 0, "v1", true},
    {"LeaseEqual", Compare::LEASE, Compare::EQUAL, 7, "", true},
    {"LeaseEqualZero", Compare::LEASE, Compare::EQUAL, 0, "", false},
    {"LeaseGreater", Compare::LEASE, Compare::GREATER, 6, "", true},
    {"LeaseLess", Compare::LEASE, Compare::LESS, 7, "", false},
    {"LeaseNotEqual", Compare::LEASE, Compare::NOT_EQUAL, 8, "", true},
};

INSTANTIATE_TEST_SUITE_P(Targets, KvStoreCompareTest,
                         ::testing::ValuesIn(kExistingKeyCases),
                         [](const auto& info) { return info.param.name; });

class KvStoreMissingKeyCompareTest : public KvStoreCompareTest {};

TEST_P(KvStoreMissingKeyCompareTest, CompareOnMissingKeyPicksBranch) {
  const CompareCase& c = GetParam();
  TxnRequest r;
  *r.add_compare() = MakeCompare(c, "missing");
  *r.add_success() = PutOp("result", "success");
  *r.add_failure() = PutOp("result", "failure");
  TxnResponse resp;
  ASSERT_TRUE(Txn(r, &resp).ok());
  EXPECT_EQ(resp.succeeded(), c.want);
}

// etcd: VALUE compares on a missing key always fail; other targets compare
// against zero.
const CompareCase kMissingKeyCases[] = {
    {"ValueEqualEmpty", Compare::VALUE, Compare::EQUAL, 0, "", false},
    {"ValueNotEqual", Compare::VALUE, Compare::NOT_EQUAL, 0, "x", false},
    {"ValueLess", Compare::VALUE, Compare::LESS, 0, "zzz", false},
    {"VersionEqualZero", Compare::VERSION, Compare::EQUAL, 0, "", true},
    {"VersionGreaterZero", Compare::VERSION, Compare::GREATER, 0, "", false},
    {"VersionLessOne", Compare::VERSION, Compare::LESS, 1, "", true},
    {"CreateEqualZero", Compare::CREATE, Compare::EQUAL, 0, "", true},
    {"CreateNotEqualZero", Compare::CREATE, Compare::NOT_EQUAL, 0, "", false},
    {"ModEqualZero", Compare::MOD, Compare::EQUAL, 0, "", true},
    {"ModLessOne", Compare::MOD, Compare::LESS, 1, "", true},
    {"LeaseEqualZero", Compare::LEASE, Compare::EQUAL, 0, "", true},
    {"LeaseEqualSeven", Compare::LEASE, Compare::EQUAL, 7, "", false},
};

INSTANTIATE_TEST_SUITE_P(MissingKey, KvStoreMissingKeyCompareTest,
                         ::testing::ValuesIn(kMissingKeyCases),
                         [](const auto& info) { return info.param.name; });

TEST_F(KvStoreTest, CompareOverRangeRequiresEveryKey) {
  Put("p/a", "1");
  Put("p/b", "1");
  Put("p/c", "2");
  auto run = [&](const std::string& end) {
    TxnRequest r;
    Compare* c = r.add_compare();
    c->set_key("p/a");
    c->set_range_end(end);
    c->set_target(Compare::VALUE);
    c->set_result(Compare::EQUAL);
    c->set_value("1");
    TxnResponse resp;
    EXPECT_TRUE(Txn(r, &resp).ok());
    return resp.succeeded();
  };
  EXPECT_TRUE(run("p/c"));
  EXPECT_FALSE(run("p/d"));
}

TEST_F(KvStoreTest, AllComparesMustHold) {
  Put("a", "1");
  TxnRequest r;
  Compare* c1 = r.add_compare();
  c1->set_key("a");
  c1->set_target(Compare::VALUE);
  c1->set_value("1");
  Compare* c2 = r.add_compare();
  c2->set_key("a");
  c2->set_target(Compare::VERSION);
  c2->set_version(5);
  TxnResponse resp;
  ASSERT_TRUE(Txn(r, &resp).ok());
  EXPECT_FALSE(resp.succeeded());
  c2->set_version(1);
  resp.Clear();
  ASSERT_TRUE(Txn(r, &resp).ok());
  EXPECT_TRUE(resp.succeeded());
}

TEST_F(KvStoreTest, TxnResponsesFollowTheChosenBranch) {
  Put("a", "1");
  TxnRequest r;
  *r.add_success() = PutOp("b", "2");
  *r.add_success() = RangeOp("b");
  *r.add_success() = DeleteOp("a");
  TxnResponse resp;
  ASSERT_TRUE(Txn(r, &resp).ok());
  ASSERT_EQ(resp.responses_size(), 3);
  EXPECT_TRUE(resp.responses(0).has_response_put());
  // The range inside the txn sees the txn's own earlier put.
  ASSERT_EQ(resp.responses(1).response_range().kvs_size(), 1);
  EXPECT_EQ(resp.responses(1).response_range().kvs(0).value(), "2");
  EXPECT_EQ(resp.responses(2).response_delete_range().deleted(), 1);
  EXPECT_EQ(All(), (std::map<std::string, std::string>{{"b", "2"}}));
}

TEST_F(KvStoreTest, NestedTxnComparesSeeStateBeforeTheTxn) {
  Put("k", "old");
  TxnRequest r;
  *r.add_success() = PutOp("k", "new");
  TxnRequest* inner = r.add_success()->mutable_request_txn();
  Compare* c = inner->add_compare();
  c->set_key("k");
  c->set_target(Compare::VALUE);
  c->set_value("old");  // true before the txn, false after its first put
  *inner->add_success() = PutOp("inner", "saw-old");
  *inner->add_failure() = PutOp("inner", "saw-new");
  TxnRequest* failing = r.add_success()->mutable_request_txn();
  Compare* c2 = failing->add_compare();
  c2->set_key("k");
  c2->set_target(Compare::VERSION);
  c2->set_version(9);
  *failing->add_failure() = PutOp("inner2", "failure-branch");
  TxnResponse resp;
  const int64_t before = kv_->Rev();
  ASSERT_TRUE(Txn(r, &resp).ok());
  EXPECT_EQ(kv_->Rev(), before + 1);
  ASSERT_EQ(resp.responses_size(), 3);
  EXPECT_TRUE(resp.responses(1).response_txn().succeeded());
  EXPECT_FALSE(resp.responses(2).response_txn().succeeded());
  EXPECT_EQ(
      All(),
      (std::map<std::string, std::string>{
          {"k", "new"}, {"inner", "saw-old"}, {"inner2", "failure-branch"}}));
}

TEST_F(KvStoreTest, FailedTxnCheckHasNoEffect) {
  Put("a", "1");
  TxnRequest r;
  *r.add_success() = PutOp("b", "2");
  *r.add_success() = PutOp("c", "3", /*lease=*/42);  // lease 42 unknown
  TxnResponse resp;
  events_.clear();
  EXPECT_TRUE(IsErr(Txn(r, &resp), EtcdError::kLeaseNotFound));
  EXPECT_EQ(kv_->Rev(), 2);
  EXPECT_TRUE(events_.empty());
  EXPECT_EQ(All(), (std::map<std::string, std::string>{{"a", "1"}}));
}

TEST_F(KvStoreTest, TxnRangeAtCompactedRevisionFailsWholeTxn) {
  Put("a", "1");
  Put("a", "2");
  Put("a", "3");
  ASSERT_TRUE(kv_->Compact(3).ok());
  Commit();
  TxnRequest r;
  *r.add_success() = PutOp("b", "1");
  RequestOp range = RangeOp("a");
  range.mutable_request_range()->set_revision(2);
  *r.add_success() = range;
  TxnResponse resp;
  EXPECT_TRUE(IsErr(Txn(r, &resp), EtcdError::kCompacted));
  EXPECT_EQ(Range("b").kvs_size(), 0);
}

// ---------------- ignore_value, ignore_lease, leases ----------------

TEST_F(KvStoreTest, IgnoreValueKeepsValueAndMayChangeLease) {
  hooks_.leases.insert(5);
  Put("a", "keep");
  PutRequest r;
  r.set_key("a");
  r.set_ignore_value(true);
  r.set_lease(5);
  PutResponse resp;
  ASSERT_TRUE(PutStatus(r, &resp).ok());
  RangeResponse got = Range("a");
  EXPECT_EQ(got.kvs(0).value(), "keep");
  EXPECT_EQ(got.kvs(0).lease(), 5);
  EXPECT_EQ(got.kvs(0).version(), 2);
}

TEST_F(KvStoreTest, IgnoreLeaseKeepsLeaseAndChangesValue) {
  hooks_.leases.insert(5);
  Put("a", "v1", 5);
  PutRequest r;
  r.set_key("a");
  r.set_value("v2");
  r.set_ignore_lease(true);
  PutResponse resp;
  ASSERT_TRUE(PutStatus(r, &resp).ok());
  RangeResponse got = Range("a");
  EXPECT_EQ(got.kvs(0).value(), "v2");
  EXPECT_EQ(got.kvs(0).lease(), 5);
}

TEST_F(KvStoreTest, IgnoreValueOrLeaseOnMissingKeyIsKeyNotFound) {
  Put("a", "1");
  Delete("a");
  const int64_t rev = kv_->Rev();
  PutRequest r;
  r.set_key("a");
  r.set_ignore_value(true);
  PutResponse resp;
  EXPECT_TRUE(IsErr(PutStatus(r, &resp), EtcdError::kKeyNotFound));
  r.set_ignore_value(false);
  r.set_ignore_lease(true);
  EXPECT_TRUE(IsErr(PutStatus(r, &resp), EtcdError::kKeyNotFound));
  r.set_key("never");
  EXPECT_TRUE(IsErr(PutStatus(r, &resp), EtcdError::kKeyNotFound));
  EXPECT_EQ(kv_->Rev(), rev);
  // Inside a txn it fails the whole txn.
  TxnRequest t;
  *t.add_success() = PutOp("b", "1");
  RequestOp op = PutOp("never", "");
  op.mutable_request_put()->set_ignore_value(true);
  *t.add_success() = op;
  TxnResponse tr;
  EXPECT_TRUE(IsErr(Txn(t, &tr), EtcdError::kKeyNotFound));
  EXPECT_EQ(kv_->Rev(), rev);
}

TEST_F(KvStoreTest, PutWithUnknownLeaseIsLeaseNotFound) {
  PutRequest r;
  r.set_key("a");
  r.set_value("1");
  r.set_lease(99);
  PutResponse resp;
  EXPECT_TRUE(IsErr(PutStatus(r, &resp), EtcdError::kLeaseNotFound));
  EXPECT_EQ(kv_->Rev(), 1);
  EXPECT_TRUE(hooks_.calls.empty());
  hooks_.leases.insert(99);
  EXPECT_TRUE(PutStatus(r, &resp).ok());
  EXPECT_EQ(Range("a").kvs(0).lease(), 99);
}

TEST_F(KvStoreTest, PutWithoutHooksRejectsLeases) {
  kv_->SetLeaseHooks(nullptr);
  PutRequest r;
  r.set_key("a");
  r.set_lease(1);
  PutResponse resp;
  EXPECT_TRUE(IsErr(PutStatus(r, &resp), EtcdError::kLeaseNotFound));
}

TEST_F(KvStoreTest, LeaseHooksFollowAttachAndDetach) {
  hooks_.leases = {1, 2};
  Put("a", "v", 1);
  Put("a", "v", 1);  // same lease: no call
  Put("a", "v", 2);
  Put("a", "v", 0);
  Put("b", "v", 2);
  Delete("b");
  Put("c", "v", 1);
  EXPECT_EQ(hooks_.calls,
            (std::vector<std::string>{"attach 1 a", "detach 1 a", "attach 2 a",
                                      "detach 2 a", "attach 2 b", "detach 2 b",
                                      "attach 1 c"}));
  EXPECT_EQ(kv_->LeasedKeys(),
            (std::vector<std::pair<int64_t, std::string>>{{1, "c"}}));
}

TEST_F(KvStoreTest, DeleteKeyTombstonesLiveKeyOnly) {
  Put("a", "1");
  auto t = kv_->Write();
  EXPECT_TRUE(t->DeleteKey("a"));
  EXPECT_FALSE(t->DeleteKey("a"));
  EXPECT_FALSE(t->DeleteKey("missing"));
  t.reset();
  Commit();
  EXPECT_EQ(kv_->Rev(), 3);
  EXPECT_TRUE(All().empty());
}

// ---------------- Compaction ----------------

// Revision keys present in the backend.
std::vector<int64_t> StoredMains(storage::Backend* b) {
  std::vector<int64_t> out;
  auto it = b->NewIterator();
  for (it->Seek(std::string(1, storage::kRevPrefix)); it->Valid(); it->Next()) {
    int64_t main, sub;
    if (!storage::DecodeRevisionKey(it->key(), &main, &sub)) break;
    out.push_back(main);
  }
  return out;
}

TEST_F(KvStoreTest, CompactionDropsOldRevisionsKeepsLatestOfLiveKeys) {
  Put("a", "1");  // 2
  Put("a", "2");  // 3
  Put("b", "1");  // 4
  Delete("b");    // 5
  Put("c", "1");  // 6
  Put("a", "3");  // 7
  ASSERT_TRUE(kv_->Compact(6).ok());
  EXPECT_EQ(kv_->CompactRev(), 6);
  Commit();
  // a@2 and b's whole history go; a@3 (newest <= 6), c@6 and a@7 stay.
  EXPECT_EQ(StoredMains(backend_.get()), (std::vector<int64_t>{3, 6, 7}));
  EXPECT_EQ(kv_->KeyCount(), 2u);
  EXPECT_EQ(All(6),
            (std::map<std::string, std::string>{{"a", "2"}, {"c", "1"}}));
  EXPECT_EQ(All(),
            (std::map<std::string, std::string>{{"a", "3"}, {"c", "1"}}));
  RangeResponse a = Range("a");
  EXPECT_EQ(a.kvs(0).create_revision(), 2);
  EXPECT_EQ(a.kvs(0).version(), 3);
  std::vector<mvccpb::Event> out;
  int64_t next = 0;
  EXPECT_TRUE(
      IsErr(kv_->ReadEvents(5, 7, 100, &out, &next), EtcdError::kCompacted));
  EXPECT_TRUE(out.empty());
  // Reading from exactly the compacted revision works.
  std::vector<mvccpb::Event> evs = AllEvents(6, &next);
  ASSERT_EQ(evs.size(), 2u);
  EXPECT_EQ(evs[0].kv().key(), "c");
  EXPECT_EQ(evs[1].kv().key(), "a");
  EXPECT_EQ(next, 8);
}

TEST_F(KvStoreTest, CompactionKeepsOldOnlyRevisionOfLiveKey) {
  Put("a", "only");  // 2
  for (int i = 0; i < 5; ++i) Put("b", std::to_string(i));
  ASSERT_TRUE(kv_->Compact(kv_->Rev()).ok());
  Commit();
  RangeResponse a = Range("a");
  ASSERT_EQ(a.kvs_size(), 1);
  EXPECT_EQ(a.kvs(0).value(), "only");
  EXPECT_EQ(a.kvs(0).mod_revision(), 2);
  EXPECT_EQ(Range("b").kvs(0).value(), "4");
  EXPECT_EQ(StoredMains(backend_.get()), (std::vector<int64_t>{2, 7}));
}

TEST_F(KvStoreTest, CompactionKeepsTombstoneAtExactlyCompactRevision) {
  Put("a", "1");  // 2
  Delete("a");    // 3
  ASSERT_TRUE(kv_->Compact(3).ok());
  Commit();
  EXPECT_EQ(kv_->KeyCount(), 1u);
  std::vector<mvccpb::Event> evs = AllEvents(3);
  ASSERT_EQ(evs.size(), 1u);
  EXPECT_EQ(evs[0].type(), mvccpb::Event::DELETE);
  Put("b", "1");  // 4
  ASSERT_TRUE(kv_->Compact(4).ok());
  Commit();
  EXPECT_EQ(kv_->KeyCount(), 1u);
  EXPECT_EQ(StoredMains(backend_.get()), (std::vector<int64_t>{4}));
}

TEST_F(KvStoreTest, CompactRejectsOldFutureAndStagedRevisions) {
  Put("a", "1");
  Put("a", "2");
  EXPECT_TRUE(IsErr(kv_->Compact(4), EtcdError::kFutureRev));
  ASSERT_TRUE(kv_->Compact(2).ok());
  Commit();
  EXPECT_TRUE(IsErr(kv_->Compact(2), EtcdError::kCompacted));
  EXPECT_TRUE(IsErr(kv_->Compact(1), EtcdError::kCompacted));
  // Staged but unpublished writes must be committed first.
  auto t = kv_->Write();
  PutRequest p;
  p.set_key("a");
  PutResponse pr;
  ASSERT_TRUE(t->Put(p, &pr).ok());
  t.reset();
  absl::Status st = kv_->Compact(3);
  EXPECT_FALSE(st.ok());
  EXPECT_EQ(kv_->CompactRev(), 2);
  Commit();
  EXPECT_TRUE(kv_->Compact(3).ok());
  Commit();
}

// ---------------- Restart ----------------

TEST_F(KvStoreTest, RestartRebuildsIdenticalState) {
  hooks_.leases = {3};
  Put("a", "1");
  Put("b", "1", 3);
  TxnRequest r;
  *r.add_success() = PutOp("c", "1");
  *r.add_success() = PutOp("a", "2");
  TxnResponse tr;
  ASSERT_TRUE(Txn(r, &tr).ok());
  Delete("c");
  Put("c", "again");
  ASSERT_TRUE(kv_->Compact(3).ok());
  Commit();
  Put("d", "1", 3);

  const int64_t rev = kv_->Rev();
  const uint64_t applied = kv_->AppliedIndex();
  auto hash = kv_->HashKV(0);
  auto hash_past = kv_->HashKV(4);
  ASSERT_TRUE(hash.ok() && hash_past.ok());
  std::vector<std::map<std::string, std::string>> views;
  for (int64_t at = 3; at <= rev; ++at) views.push_back(All(at));
  RangeResponse full = Range(std::string(1, '\0'), std::string(1, '\0'));
  std::vector<mvccpb::Event> history = AllEvents(3);
  auto leased = kv_->LeasedKeys();

  Restart();

  EXPECT_EQ(kv_->Rev(), rev);
  EXPECT_EQ(kv_->StagedRev(), rev);
  EXPECT_EQ(kv_->AppliedIndex(), applied);
  EXPECT_EQ(kv_->CompactRev(), 3);
  EXPECT_EQ(*kv_->HashKV(0), *hash);
  EXPECT_EQ(*kv_->HashKV(4), *hash_past);
  for (int64_t at = 3; at <= rev; ++at) {
    EXPECT_EQ(All(at), views[at - 3]) << "at " << at;
  }
  EXPECT_EQ(Range(std::string(1, '\0'), std::string(1, '\0')).DebugString(),
            full.DebugString());
  std::vector<mvccpb::Event> history2 = AllEvents(3);
  ASSERT_EQ(history2.size(), history.size());
  for (size_t i = 0; i < history.size(); ++i) {
    EXPECT_EQ(history2[i].DebugString(), history[i].DebugString());
  }
  EXPECT_EQ(kv_->LeasedKeys(), leased);
  // Writing continues from the same revision.
  EXPECT_EQ(Put("e", "1"), rev + 1);
  EXPECT_EQ(Range("a").kvs(0).version(), 2);
}

TEST_F(KvStoreTest, RestartAfterCompactingEverythingKeepsRevision) {
  Put("a", "1");
  Delete("a");
  Put("b", "1");
  Delete("b");  // 5
  ASSERT_TRUE(kv_->Compact(5).ok());
  Commit();
  Restart();
  EXPECT_EQ(kv_->Rev(), 5);
  EXPECT_EQ(Put("c", "1"), 6);
}

TEST_F(KvStoreTest, SameWritesGiveSameHashDifferentWritesDiffer) {
  Put("a", "1");
  Put("b", "2");
  auto h1 = kv_->HashKV(0);
  auto h_at2 = kv_->HashKV(2);
  ASSERT_TRUE(h1.ok() && h_at2.ok());
  EXPECT_NE(*h1, *h_at2);
  // A second store fed the same writes hashes the same.
  std::unique_ptr<leveldb::Env> env2(
      leveldb::NewMemEnv(leveldb::Env::Default()));
  storage::BackendOptions opts;
  opts.env = env2.get();
  auto b2 = storage::Backend::Open("/db2", opts);
  ASSERT_TRUE(b2.ok());
  auto s2 = KvStore::Open(b2->get());
  ASSERT_TRUE(s2.ok());
  auto put = [&](const std::string& k, const std::string& v) {
    PutRequest r;
    r.set_key(k);
    r.set_value(v);
    PutResponse resp;
    auto t = (*s2)->Write();
    ASSERT_TRUE(t->Put(r, &resp).ok());
    t.reset();
    ASSERT_TRUE((*s2)->Commit(1, nullptr).ok());
  };
  put("a", "1");
  put("b", "2");
  EXPECT_EQ(*(*s2)->HashKV(0), *h1);
  put("c", "3");
  EXPECT_NE(*(*s2)->HashKV(0), *h1);
  EXPECT_EQ(*(*s2)->HashKV(3), *h1);
}

// ---------------- ReadEvents ----------------

TEST_F(KvStoreTest, ReadEventsNeverSplitsARevision) {
  Put("a", "1");  // 2: one event
  TxnRequest r;   // 3: three events
  *r.add_success() = PutOp("b", "1");
  *r.add_success() = PutOp("c", "1");
  *r.add_success() = DeleteOp("a");
  TxnResponse tr;
  ASSERT_TRUE(Txn(r, &tr).ok());
  Put("d", "1");  // 4: one event

  std::vector<mvccpb::Event> out;
  int64_t next = 0;
  ASSERT_TRUE(kv_->ReadEvents(2, 4, 2, &out, &next).ok());
  // Revision 2 (1 event) is under the cap, so revision 3 is read whole.
  ASSERT_EQ(out.size(), 4u);
  EXPECT_EQ(next, 4);
  for (size_t i = 1; i < 4; ++i) EXPECT_EQ(out[i].kv().mod_revision(), 3);
  EXPECT_EQ(out[3].type(), mvccpb::Event::DELETE);

  out.clear();
  ASSERT_TRUE(kv_->ReadEvents(3, 4, 1, &out, &next).ok());
  EXPECT_EQ(out.size(), 3u);
  EXPECT_EQ(next, 4);

  out.clear();
  ASSERT_TRUE(kv_->ReadEvents(2, 4, 1, &out, &next).ok());
  EXPECT_EQ(out.size(), 1u);
  EXPECT_EQ(next, 3);
}

TEST_F(KvStoreTest, ReadEventsInChunksEqualsOneRead) {
  // Revisions with 1..4 events each.
  for (int rev = 0; rev < 12; ++rev) {
    TxnRequest r;
    for (int i = 0; i <= rev % 4; ++i) {
      *r.add_success() = PutOp("k" + std::to_string(i), std::to_string(rev));
    }
    TxnResponse tr;
    ASSERT_TRUE(Txn(r, &tr).ok());
  }
  const std::vector<mvccpb::Event> all = AllEvents(2);
  ASSERT_EQ(all.size(), 30u);
  for (size_t max = 1; max <= 6; ++max) {
    std::vector<mvccpb::Event> got;
    int64_t from = 2;
    int reads = 0;
    while (from <= kv_->Rev()) {
      std::vector<mvccpb::Event> chunk;
      int64_t next = 0;
      ASSERT_TRUE(kv_->ReadEvents(from, kv_->Rev(), max, &chunk, &next).ok());
      ASSERT_FALSE(chunk.empty()) << "max " << max << " from " << from;
      ASSERT_GT(next, from);
      // Whole revisions only: the chunk ends where a revision ends.
      EXPECT_EQ(chunk.front().kv().mod_revision(), from);
      EXPECT_EQ(chunk.back().kv().mod_revision(), next - 1);
      const size_t pos = got.size() + chunk.size();
      if (pos < all.size()) {
        EXPECT_NE(all[pos].kv().mod_revision(), next - 1)
            << "revision split at max " << max;
      }
      got.insert(got.end(), chunk.begin(), chunk.end());
      from = next;
      ASSERT_LT(++reads, 100);
    }
    ASSERT_EQ(got.size(), all.size()) << "max " << max;
    for (size_t i = 0; i < all.size(); ++i) {
      EXPECT_EQ(got[i].DebugString(), all[i].DebugString());
    }
  }
}

TEST_F(KvStoreTest, ReadEventsStopsAtToRevisionAndPublishedRevision) {
  Put("a", "1");  // 2
  Put("a", "2");  // 3
  Put("a", "3");  // 4
  std::vector<mvccpb::Event> out;
  int64_t next = 0;
  ASSERT_TRUE(kv_->ReadEvents(2, 3, 100, &out, &next).ok());
  EXPECT_EQ(out.size(), 2u);
  EXPECT_EQ(next, 4);
  // Staged revisions are not read.
  auto t = kv_->Write();
  PutRequest p;
  p.set_key("a");
  PutResponse pr;
  ASSERT_TRUE(t->Put(p, &pr).ok());
  t.reset();
  out.clear();
  ASSERT_TRUE(kv_->ReadEvents(4, 100, 100, &out, &next).ok());
  EXPECT_EQ(out.size(), 1u);
  EXPECT_EQ(next, 5);
  Commit();
  // from > to: nothing, next stays.
  out.clear();
  ASSERT_TRUE(kv_->ReadEvents(6, 5, 100, &out, &next).ok());
  EXPECT_TRUE(out.empty());
  EXPECT_EQ(next, 6);
}

}  // namespace
}  // namespace synod::mvcc
