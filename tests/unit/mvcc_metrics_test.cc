// etcd's mvcc counters as KvStore's write transactions count them:
// etcd_mvcc_put_total and etcd_mvcc_delete_total (and their
// etcd_debugging_mvcc_ twins) in DefaultMetrics().
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "backend/mvcc/kv_store.h"
#include "backend/storage/backend.h"
#include "common/metrics.h"
#include "gtest/gtest.h"
#include "leveldb/env.h"
#include "leveldb/helpers/memenv.h"

namespace synod::mvcc {
namespace {

// The value of the unlabelled series `name` in DefaultMetrics(); 0 before
// it exists.
uint64_t Value(const std::string& name) {
  for (absl::string_view line :
       absl::StrSplit(common::DefaultMetrics().RenderText(), '\n')) {
    uint64_t v = 0;
    if (absl::ConsumePrefix(&line, name + " ") && absl::SimpleAtoi(line, &v)) {
      return v;
    }
  }
  return 0;
}

class NoLeases : public LeaseHooks {
 public:
  bool LeaseExists(int64_t) const override { return false; }
  void Attach(int64_t, const std::string&) override {}
  void Detach(int64_t, const std::string&) override {}
};

TEST(MvccMetricsTest, PutsAndDeleteOperationsAsEtcdCountsThem) {
  std::unique_ptr<leveldb::Env> env(leveldb::NewMemEnv(leveldb::Env::Default()));
  storage::BackendOptions opts;
  opts.env = env.get();
  auto backend = storage::Backend::Open("/db", opts);
  ASSERT_TRUE(backend.ok()) << backend.status();
  auto kv = KvStore::Open(backend->get());
  ASSERT_TRUE(kv.ok()) << kv.status();
  NoLeases hooks;
  (*kv)->SetLeaseHooks(&hooks);

  const uint64_t puts = Value("etcd_mvcc_put_total");
  const uint64_t deletes = Value("etcd_mvcc_delete_total");
  auto put = [&](const std::string& k, int64_t lease = 0) {
    etcdserverpb::PutRequest r;
    r.set_key(k);
    r.set_value("v");
    r.set_lease(lease);
    etcdserverpb::PutResponse resp;
    return (*kv)->Write()->Put(r, &resp);
  };
  auto del = [&](const std::string& k, const std::string& end = "") {
    etcdserverpb::DeleteRangeRequest r;
    r.set_key(k);
    r.set_range_end(end);
    etcdserverpb::DeleteRangeResponse resp;
    return (*kv)->Write()->DeleteRange(r, &resp);
  };
  ASSERT_TRUE(put("a").ok());
  ASSERT_TRUE(put("b").ok());
  ASSERT_TRUE(put("c").ok());
  EXPECT_FALSE(put("d", /*lease=*/7).ok());  // refused: not a put
  ASSERT_TRUE(del("a").ok());
  ASSERT_TRUE(del("zz").ok());  // deletes nothing, still a delete
  {
    etcdserverpb::TxnRequest txn;  // no compares: success branch
    auto* p = txn.add_success()->mutable_request_put();
    p->set_key("e");
    p->set_value("v");
    txn.add_success()->mutable_request_delete_range()->set_key("b");
    etcdserverpb::TxnResponse resp;
    ASSERT_TRUE((*kv)->Write()->Txn(txn, &resp).ok());
  }
  ASSERT_TRUE(del("c", "f").ok());  // two keys, one operation
  // A lease revoke deletes key by key.
  EXPECT_FALSE((*kv)->Write()->DeleteKey("nope"));
  std::vector<mvccpb::Event> events;
  ASSERT_TRUE((*kv)->Commit(1, &events).ok());

  EXPECT_EQ(Value("etcd_mvcc_put_total") - puts, 4u);
  EXPECT_EQ(Value("etcd_mvcc_delete_total") - deletes, 5u);
  EXPECT_EQ(Value("etcd_debugging_mvcc_put_total"), Value("etcd_mvcc_put_total"));
  EXPECT_EQ(Value("etcd_debugging_mvcc_delete_total"),
            Value("etcd_mvcc_delete_total"));
}

}  // namespace
}  // namespace synod::mvcc
