// Txn conformance via `etcdctl txn` reading its non-interactive stdin format:
//   <compares, one a line>\n\n<success ops>\n\n<failure ops>\n\n
// Expected outputs are what etcdctl 3.4 prints against real etcd 3.4.
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/integration/harness.h"

namespace synod::testing {
namespace {

constexpr char kDuplicateKey[] =
    "Error: etcdserver: duplicate key given in txn request";

class TxnTest : public ServerTest {
 protected:
  std::vector<std::string> ExtraFlags() override {
    return {"--max-txn-ops=4"};
  }
  CmdResult Txn(const std::string& script) { return Ctl({"txn"}, script); }
};

TEST_F(TxnTest, ValueCompareTrueRunsSuccessBranch) {
  MustPut("t1", "a");
  CmdResult r = Txn("value(\"t1\") = \"a\"\n\nput t2 yes\nget t1\n\nput t2 no\n\n");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "SUCCESS\n\nOK\n\nt1\na\n");
  EXPECT_EQ(Ctl({"get", "t2", "--print-value-only"}).out, "yes\n");
}

TEST_F(TxnTest, ValueCompareFalseRunsFailureBranch) {
  MustPut("t1", "a");
  CmdResult r = Txn("value(\"t1\") = \"b\"\n\nput t2 yes\n\nput t2 no\nget t2\n\n");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "FAILURE\n\nOK\n\nt2\nno\n");
  Json j = CtlJson({"txn"}, std::string("value(\"t1\") = \"b\"\n\n\n\n"));
  EXPECT_FALSE(j.Has("succeeded"));  // false is omitted
  EXPECT_FALSE(j.Has("responses"));
}

TEST_F(TxnTest, CompareOnVersionCreateAndModRevisions) {
  int64_t c = MustPut("k", "1");
  int64_t m = MustPut("k", "2");
  std::string ok_script = absl::StrCat(
      "version(\"k\") = \"2\"\ncreate(\"k\") = \"", c, "\"\nmod(\"k\") = \"", m,
      "\"\nmod(\"k\") > \"", c, "\"\n\nput r ok\n\nput r bad\n\n");
  CmdResult r = Txn(ok_script);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(SplitLines(r.out).at(0), "SUCCESS");

  for (const std::string& cmp :
       {std::string("version(\"k\") > \"2\""),
        absl::StrCat("create(\"k\") < \"", c, "\""),
        absl::StrCat("mod(\"k\") != \"", m, "\"")}) {
    CmdResult f = Txn(cmp + "\n\nput r ok\n\nput r bad\n\n");
    EXPECT_EQ(f.exit_code, 0) << f.err;
    EXPECT_EQ(SplitLines(f.out).at(0), "FAILURE") << cmp;
  }
}

TEST_F(TxnTest, MissingKeyComparesAsVersionZeroAndCreateZero) {
  CmdResult r =
      Txn("version(\"nokey\") = \"0\"\ncreate(\"nokey\") = \"0\"\n\nput x 1\n\n\n");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "SUCCESS\n\nOK\n");
  // A value compare against a missing key is false.
  CmdResult f = Txn("value(\"nokey\") > \"\"\n\n\n\n");
  EXPECT_EQ(f.out, "FAILURE\n");
}

TEST_F(TxnTest, AllWritesInOneTxnShareOneNewRevision) {
  MustPut("a", "0");
  int64_t before = CurrentRevision();
  Json j = CtlJson({"txn"},
                   std::string("\nput a 1\nput b 1\ndel c\nget a\n\n\n"));
  EXPECT_TRUE(j["succeeded"].Bool());
  EXPECT_EQ(j["header"]["revision"].Int(), before + 1);
  ASSERT_EQ(j["responses"].size(), 4u);
  EXPECT_EQ(j["responses"][0]["Response"]["ResponsePut"]["header"]["revision"]
                .Int(),
            before + 1);
  const Json& range = j["responses"][3]["Response"]["ResponseRange"];
  EXPECT_EQ(range["kvs"][0]["value"].Bytes(), "1");  // sees its own put
  EXPECT_EQ(range["kvs"][0]["mod_revision"].Int(), before + 1);
  Json a = CtlJson({"get", "a"});
  Json b = CtlJson({"get", "b"});
  EXPECT_EQ(a["kvs"][0]["mod_revision"].Int(), before + 1);
  EXPECT_EQ(b["kvs"][0]["mod_revision"].Int(), before + 1);
  EXPECT_EQ(CurrentRevision(), before + 1);
}

TEST_F(TxnTest, ReadOnlyOrFailedTxnDoesNotAdvanceRevision) {
  MustPut("a", "0");
  int64_t before = CurrentRevision();
  EXPECT_EQ(Txn("\nget a\n\n\n").out, "SUCCESS\n\na\n0\n");
  EXPECT_EQ(Txn("value(\"a\") = \"9\"\n\nput a 1\n\n\n").out, "FAILURE\n");
  EXPECT_EQ(CurrentRevision(), before);
}

TEST_F(TxnTest, DeleteResultsPrintDeletedCounts) {
  MustPut("a", "0");
  CmdResult r = Txn("\ndel a\ndel a\n\n\n");  // deleting twice is allowed
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "SUCCESS\n\n1\n\n0\n");
}

TEST_F(TxnTest, SameKeyPutTwiceIsRejected) {
  int64_t before = CurrentRevision();
  CmdResult r = Txn("\nput d 1\nput d 2\n\n\n");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(ErrorLine(r.err), kDuplicateKey);
  EXPECT_EQ(CurrentRevision(), before);
  EXPECT_EQ(Ctl({"get", "d"}).out, "");
}

TEST_F(TxnTest, PutAndDeleteOfOverlappingKeysAreRejected) {
  MustPut("a", "0");
  CmdResult same = Txn("\nput a 2\ndel a\n\n\n");
  EXPECT_EQ(same.exit_code, 1);
  EXPECT_EQ(ErrorLine(same.err), kDuplicateKey);
  CmdResult range = Txn("\nput a 2\ndel a b\n\n\n");
  EXPECT_EQ(range.exit_code, 1);
  EXPECT_EQ(ErrorLine(range.err), kDuplicateKey);
  // The check covers the failure branch too, even though it would not run.
  CmdResult failure_branch = Txn("\n\nput b 1\ndel b\n\n");
  EXPECT_EQ(failure_branch.exit_code, 1);
  EXPECT_EQ(ErrorLine(failure_branch.err), kDuplicateKey);
  EXPECT_EQ(Ctl({"get", "a", "--print-value-only"}).out, "0\n");
}

TEST_F(TxnTest, MoreOpsThanMaxTxnOpsAreRejected) {
  CmdResult at_limit = Txn("\nput a1 1\nput a2 1\nput a3 1\nput a4 1\n\n\n");
  EXPECT_EQ(at_limit.exit_code, 0) << at_limit.err;
  int64_t before = CurrentRevision();
  CmdResult over =
      Txn("\nput b1 1\nput b2 1\nput b3 1\nput b4 1\nput b5 1\n\n\n");
  EXPECT_EQ(over.exit_code, 1);
  EXPECT_EQ(ErrorLine(over.err),
            "Error: etcdserver: too many operations in txn request");
  EXPECT_EQ(CurrentRevision(), before);
}

TEST_F(TxnTest, InvalidCompareIsRejectedByEtcdctl) {
  // Client-side parse error: the request never reaches the server.
  CmdResult r = Txn("mod(\"a\") = \"bad\"\n\n\n\n");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_EQ(ErrorLine(r.err),
            "Error: invalid txn compare request: mod(\"a\") = \"bad\"");
}

}  // namespace
}  // namespace synod::testing
