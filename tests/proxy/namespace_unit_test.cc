// Namespace: key rewriting as etcd's clientv3/namespace does it.
#include "proxy/namespace.h"

#include "gtest/gtest.h"

namespace synod::proxy {
namespace {

TEST(NamespaceTest, IntervalsMoveIntoTheNamespace) {
  Namespace ns("t/");
  std::string k = "a", e = "";
  ns.Interval(&k, &e);
  EXPECT_EQ(k, "t/a");
  EXPECT_EQ(e, "");
  k = "a";
  e = "b";
  ns.Interval(&k, &e);
  EXPECT_EQ(e, "t/b");
  // "to the end of the keyspace" ends at the end of the namespace.
  k = std::string(1, '\0');
  e = std::string(1, '\0');
  ns.Interval(&k, &e);
  EXPECT_EQ(k, std::string("t/\0", 3));
  EXPECT_EQ(e, "t0");
  Namespace ff("\xff");
  k = "a";
  e = std::string(1, '\0');
  ff.Interval(&k, &e);
  EXPECT_EQ(e, std::string(1, '\0'));
}

TEST(NamespaceTest, TxnAndResponsesAreRewrittenRecursively) {
  Namespace ns("t/");
  etcdserverpb::TxnRequest txn;
  txn.add_compare()->set_key("c");
  txn.add_success()->mutable_request_put()->set_key("p");
  auto* inner = txn.add_failure()->mutable_request_txn();
  inner->add_success()->mutable_request_range()->set_key("r");
  ns.Request(&txn);
  EXPECT_EQ(txn.compare(0).key(), "t/c");
  EXPECT_EQ(txn.success(0).request_put().key(), "t/p");
  EXPECT_EQ(txn.failure(0).request_txn().success(0).request_range().key(),
            "t/r");

  etcdserverpb::TxnResponse resp;
  auto* rr = resp.add_responses()->mutable_response_range();
  rr->add_kvs()->set_key("t/r");
  resp.add_responses()->mutable_response_put()->mutable_prev_kv()->set_key(
      "t/p");
  ns.Response(&resp);
  EXPECT_EQ(resp.responses(0).response_range().kvs(0).key(), "r");
  EXPECT_EQ(resp.responses(1).response_put().prev_kv().key(), "p");

  mvccpb::Event ev;
  ev.mutable_kv()->set_key("t/x");
  ev.mutable_prev_kv()->set_key("t/x");
  ns.Response(&ev);
  EXPECT_EQ(ev.kv().key(), "x");
  EXPECT_EQ(ev.prev_kv().key(), "x");
}

TEST(NamespaceTest, EmptyNamespaceChangesNothing) {
  Namespace ns("");
  etcdserverpb::RangeRequest r;
  r.set_key("a");
  r.set_range_end(std::string(1, '\0'));
  ns.Request(&r);
  EXPECT_EQ(r.key(), "a");
  EXPECT_EQ(r.range_end(), std::string(1, '\0'));
}

}  // namespace
}  // namespace synod::proxy
