// KV conformance: etcdctl put/get/del against a real server process. Every
// expected output below is what etcdctl 3.4 prints against real etcd 3.4.
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "tests/integration/harness.h"

namespace synod::testing {
namespace {

constexpr char kCompacted[] =
    "Error: etcdserver: mvcc: required revision has been compacted";
constexpr char kFuture[] =
    "Error: etcdserver: mvcc: required revision is a future revision";

class KvTest : public ServerTest {
 protected:
  // Puts k1..k4 = vk1..vk4 and neighbours "j" and "l" outside the prefix "k".
  void PutSampleKeys() {
    for (const char* k : {"j", "k1", "k2", "k3", "k4", "l"}) {
      MustPut(k, absl::StrCat("v", k));
    }
  }
  // Adds a lease and returns its hex ID as etcdctl prints it.
  std::string GrantLease(int ttl) {
    CmdResult r = Ctl({"lease", "grant", std::to_string(ttl)});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    // "lease 694d77aa9e38260f granted with TTL(100s)"
    std::vector<std::string> words = absl::StrSplit(r.out, ' ');
    return words.size() > 1 ? words[1] : "";
  }
};

TEST_F(KvTest, FreshServerStartsAtRevisionOne) {
  EXPECT_EQ(CurrentRevision(), 1);
}

TEST_F(KvTest, PutPrintsOkAndGetPrintsKeyThenValue) {
  CmdResult put = Ctl({"put", "foo", "bar"});
  EXPECT_EQ(put.exit_code, 0) << put.err;
  EXPECT_EQ(put.out, "OK\n");
  CmdResult get = Ctl({"get", "foo"});
  EXPECT_EQ(get.exit_code, 0) << get.err;
  EXPECT_EQ(get.out, "foo\nbar\n");
}

TEST_F(KvTest, PutReadsValueFromStdinWhenOnlyKeyGiven) {
  CmdResult put = Ctl({"put", "foo"}, std::string("from stdin"));
  EXPECT_EQ(put.exit_code, 0) << put.err;
  EXPECT_EQ(Ctl({"get", "foo", "--print-value-only"}).out, "from stdin\n");
}

TEST_F(KvTest, GetMissingKeyPrintsNothingAndSucceeds) {
  CmdResult get = Ctl({"get", "nope"});
  EXPECT_EQ(get.exit_code, 0) << get.err;
  EXPECT_EQ(get.out, "");
  Json j = CtlJson({"get", "nope"});
  EXPECT_FALSE(j.Has("kvs"));
  EXPECT_FALSE(j.Has("count"));  // count 0 is omitted by etcdctl's JSON
  EXPECT_EQ(j["header"]["revision"].Int(), 1);
}

TEST_F(KvTest, GetPrefixReturnsOnlyPrefixedKeysInByteOrder) {
  PutSampleKeys();
  CmdResult get = Ctl({"get", "k", "--prefix"});
  EXPECT_EQ(get.exit_code, 0) << get.err;
  EXPECT_EQ(get.out, "k1\nvk1\nk2\nvk2\nk3\nvk3\nk4\nvk4\n");
}

TEST_F(KvTest, GetFromKeyReturnsEveryKeyAtOrAfterIt) {
  PutSampleKeys();
  EXPECT_EQ(Ctl({"get", "k3", "--from-key", "--keys-only"}).out,
            "k3\n\nk4\n\nl\n\n");
}

TEST_F(KvTest, GetWithRangeEndIsHalfOpen) {
  PutSampleKeys();
  EXPECT_EQ(Ctl({"get", "k1", "k3"}).out, "k1\nvk1\nk2\nvk2\n");
}

TEST_F(KvTest, LimitTruncatesAndReportsMoreAndFullCount) {
  PutSampleKeys();
  Json j = CtlJson({"get", "k", "--prefix", "--limit", "2"});
  ASSERT_EQ(j["kvs"].size(), 2u);
  EXPECT_EQ(j["kvs"][0]["key"].Bytes(), "k1");
  EXPECT_EQ(j["kvs"][1]["key"].Bytes(), "k2");
  EXPECT_TRUE(j["more"].Bool());
  EXPECT_EQ(j["count"].Int(), 4);

  Json all = CtlJson({"get", "k", "--prefix", "--limit", "4"});
  EXPECT_EQ(all["kvs"].size(), 4u);
  EXPECT_FALSE(all.Has("more"));
  EXPECT_EQ(all["count"].Int(), 4);
}

TEST_F(KvTest, SortByKeyDescendReversesOrder) {
  PutSampleKeys();
  EXPECT_EQ(Ctl({"get", "k", "--prefix", "--keys-only", "--sort-by=KEY",
                 "--order=DESCEND"})
                .out,
            "k4\n\nk3\n\nk2\n\nk1\n\n");
}

TEST_F(KvTest, SortByModifyAndValueAndVersion) {
  MustPut("a", "3");
  MustPut("b", "1");
  MustPut("c", "2");
  MustPut("a", "3");  // a: version 2, newest mod revision
  EXPECT_EQ(Ctl({"get", "", "--from-key", "--keys-only", "--sort-by=MODIFY"})
                .out,
            "b\n\nc\n\na\n\n");
  EXPECT_EQ(Ctl({"get", "", "--from-key", "--print-value-only",
                 "--sort-by=VALUE", "--order=DESCEND"})
                .out,
            "3\n2\n1\n");
  EXPECT_EQ(Ctl({"get", "", "--from-key", "--keys-only", "--sort-by=CREATE",
                 "--order=DESCEND"})
                .out,
            "c\n\nb\n\na\n\n");
  CmdResult by_version = Ctl({"get", "", "--from-key", "--keys-only",
                              "--sort-by=VERSION", "--order=DESCEND"});
  EXPECT_EQ(SplitLines(by_version.out).at(0), "a");
}

TEST_F(KvTest, KeysOnlyOmitsValues) {
  PutSampleKeys();
  EXPECT_EQ(Ctl({"get", "k1", "k3", "--keys-only"}).out, "k1\n\nk2\n\n");
  Json j = CtlJson({"get", "k1", "--keys-only"});
  EXPECT_EQ(j["kvs"][0]["key"].Bytes(), "k1");
  EXPECT_FALSE(j["kvs"][0].Has("value"));
}

TEST_F(KvTest, PrintValueOnlyPrintsOnlyValues) {
  PutSampleKeys();
  EXPECT_EQ(Ctl({"get", "k", "--prefix", "--print-value-only"}).out,
            "vk1\nvk2\nvk3\nvk4\n");
}

TEST_F(KvTest, SerializableGetReadsCommittedWrite) {
  MustPut("s", "v");
  CmdResult get = Ctl({"get", "s", "--consistency=s"});
  EXPECT_EQ(get.exit_code, 0) << get.err;
  EXPECT_EQ(get.out, "s\nv\n");
}

TEST_F(KvTest, RevReadsHistoricalValues) {
  int64_t r1 = MustPut("h", "1");
  int64_t r2 = MustPut("h", "2");
  MustPut("h", "3");
  EXPECT_EQ(Ctl({"get", "h", "--rev", std::to_string(r1)}).out, "h\n1\n");
  EXPECT_EQ(Ctl({"get", "h", "--rev", std::to_string(r2)}).out, "h\n2\n");
  EXPECT_EQ(Ctl({"get", "h"}).out, "h\n3\n");
  // Before the key existed: nothing.
  EXPECT_EQ(Ctl({"get", "h", "--rev", std::to_string(r1 - 1)}).out, "");
}

TEST_F(KvTest, PutPrevKvPrintsPreviousPair) {
  EXPECT_EQ(Ctl({"put", "p", "1", "--prev-kv"}).out, "OK\n");
  EXPECT_EQ(Ctl({"put", "p", "2", "--prev-kv"}).out, "OK\np\n1\n");
  Json j = CtlJson({"put", "p", "3", "--prev-kv"});
  EXPECT_EQ(j["prev_kv"]["key"].Bytes(), "p");
  EXPECT_EQ(j["prev_kv"]["value"].Bytes(), "2");
  EXPECT_EQ(j["prev_kv"]["version"].Int(), 2);
  // Without --prev-kv the response carries only the header.
  Json plain = CtlJson({"put", "p", "4"});
  EXPECT_FALSE(plain.Has("prev_kv"));
  EXPECT_EQ(plain.size(), 1u);
}

TEST_F(KvTest, PutIgnoreValueKeepsValueAndBumpsVersion) {
  MustPut("iv", "orig");
  std::string lease = GrantLease(100);
  CmdResult r = Ctl({"put", "iv", "--ignore-value", "--lease=" + lease});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "OK\n");
  Json j = CtlJson({"get", "iv"});
  EXPECT_EQ(j["kvs"][0]["value"].Bytes(), "orig");
  EXPECT_EQ(j["kvs"][0]["version"].Int(), 2);
  EXPECT_EQ(absl::StrFormat("%016x", j["kvs"][0]["lease"].Uint()), lease);
}

TEST_F(KvTest, PutIgnoreValueOnMissingKeyFailsWithKeyNotFound) {
  CmdResult r = Ctl({"put", "missing", "--ignore-value"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(ErrorLine(r.err), "Error: etcdserver: key not found");
  EXPECT_EQ(CurrentRevision(), 1);
}

TEST_F(KvTest, PutIgnoreLeaseKeepsAttachedLease) {
  std::string lease = GrantLease(100);
  EXPECT_EQ(Ctl({"put", "il", "1", "--lease=" + lease}).exit_code, 0);
  CmdResult r = Ctl({"put", "il", "2", "--ignore-lease"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  Json j = CtlJson({"get", "il"});
  EXPECT_EQ(j["kvs"][0]["value"].Bytes(), "2");
  EXPECT_EQ(absl::StrFormat("%016x", j["kvs"][0]["lease"].Uint()), lease);
  // A plain put detaches the lease.
  MustPut("il", "3");
  EXPECT_FALSE(CtlJson({"get", "il"})["kvs"][0].Has("lease"));
}

TEST_F(KvTest, PutIgnoreLeaseOnMissingKeyFailsWithKeyNotFound) {
  CmdResult r = Ctl({"put", "missing", "v", "--ignore-lease"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(ErrorLine(r.err), "Error: etcdserver: key not found");
}

TEST_F(KvTest, DeletePrintsCountAndPrevKvPairs) {
  PutSampleKeys();
  CmdResult r = Ctl({"del", "k1", "k3", "--prev-kv"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "2\nk1\nvk1\nk2\nvk2\n");
  EXPECT_EQ(Ctl({"del", "k3"}).out, "1\n");
  EXPECT_EQ(Ctl({"get", "k", "--prefix", "--keys-only"}).out, "k4\n\n");
}

TEST_F(KvTest, DeletePrefixRemovesOnlyPrefixedKeys) {
  PutSampleKeys();
  Json j = CtlJson({"del", "k", "--prefix"});
  EXPECT_EQ(j["deleted"].Int(), 4);
  EXPECT_FALSE(j.Has("prev_kvs"));
  EXPECT_EQ(Ctl({"get", "", "--from-key", "--keys-only"}).out, "j\n\nl\n\n");
}

TEST_F(KvTest, DeleteMissingKeyPrintsZeroAndDoesNotAdvanceRevision) {
  int64_t before = MustPut("x", "1");
  CmdResult r = Ctl({"del", "nope"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "0\n");
  Json j = CtlJson({"del", "nope"});
  EXPECT_FALSE(j.Has("deleted"));
  EXPECT_EQ(j["header"]["revision"].Int(), before);
}

TEST_F(KvTest, CreateModRevisionAndVersionTrackHistoryAndResetAfterDelete) {
  int64_t r1 = MustPut("x", "a");
  Json j = CtlJson({"get", "x"});
  EXPECT_EQ(j["kvs"][0]["create_revision"].Int(), r1);
  EXPECT_EQ(j["kvs"][0]["mod_revision"].Int(), r1);
  EXPECT_EQ(j["kvs"][0]["version"].Int(), 1);
  EXPECT_EQ(j["kvs"][0]["value"].Bytes(), "a");
  EXPECT_EQ(j["count"].Int(), 1);

  int64_t r2 = MustPut("x", "b");
  j = CtlJson({"get", "x"});
  EXPECT_EQ(j["kvs"][0]["create_revision"].Int(), r1);
  EXPECT_EQ(j["kvs"][0]["mod_revision"].Int(), r2);
  EXPECT_EQ(j["kvs"][0]["version"].Int(), 2);

  Json del = CtlJson({"del", "x"});
  int64_t r3 = del["header"]["revision"].Int();
  EXPECT_EQ(r3, r2 + 1);
  int64_t r4 = MustPut("x", "c");
  j = CtlJson({"get", "x"});
  EXPECT_EQ(j["kvs"][0]["create_revision"].Int(), r4);
  EXPECT_EQ(j["kvs"][0]["mod_revision"].Int(), r4);
  EXPECT_EQ(j["kvs"][0]["version"].Int(), 1);
}

TEST_F(KvTest, EachWriteAdvancesHeaderRevisionByExactlyOne) {
  int64_t rev = CurrentRevision();
  for (int i = 0; i < 5; ++i) {
    int64_t got = MustPut(absl::StrCat("w", i % 2), absl::StrCat(i));
    EXPECT_EQ(got, rev + 1) << "put #" << i;
    rev = got;
  }
  EXPECT_EQ(CtlJson({"del", "w0"})["header"]["revision"].Int(), rev + 1);
  EXPECT_EQ(CtlJson({"del", "w", "--prefix"})["header"]["revision"].Int(),
            rev + 2);
  // Reads do not advance it.
  EXPECT_EQ(CurrentRevision(), rev + 2);
  EXPECT_EQ(CurrentRevision(), rev + 2);
}

TEST_F(KvTest, CompactPrintsRevisionAndHidesOlderRevisions) {
  int64_t r1 = MustPut("c", "1");
  int64_t r2 = MustPut("c", "2");
  MustPut("c", "3");
  CmdResult compact = Ctl({"compact", std::to_string(r2)});
  EXPECT_EQ(compact.exit_code, 0) << compact.err;
  EXPECT_EQ(compact.out, absl::StrCat("compacted revision ", r2, "\n"));

  CmdResult old = Ctl({"get", "c", "--rev", std::to_string(r1)});
  EXPECT_EQ(old.exit_code, 1);
  EXPECT_EQ(old.out, "");
  EXPECT_EQ(ErrorLine(old.err), kCompacted);
  // The compaction revision itself stays readable.
  EXPECT_EQ(Ctl({"get", "c", "--rev", std::to_string(r2)}).out, "c\n2\n");
  EXPECT_EQ(Ctl({"get", "c"}).out, "c\n3\n");
}

TEST_F(KvTest, GetAtFutureRevisionFails) {
  int64_t rev = MustPut("f", "1");
  CmdResult r = Ctl({"get", "f", "--rev", std::to_string(rev + 1)});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(ErrorLine(r.err), kFuture);
}

TEST_F(KvTest, CompactAtOrBelowCompactedRevisionFails) {
  MustPut("c", "1");
  int64_t r2 = MustPut("c", "2");
  ASSERT_EQ(Ctl({"compact", std::to_string(r2)}).exit_code, 0);
  CmdResult same = Ctl({"compact", std::to_string(r2)});
  EXPECT_EQ(same.exit_code, 1);
  EXPECT_EQ(ErrorLine(same.err), kCompacted);
  CmdResult older = Ctl({"compact", std::to_string(r2 - 1)});
  EXPECT_EQ(older.exit_code, 1);
  EXPECT_EQ(ErrorLine(older.err), kCompacted);
}

TEST_F(KvTest, CompactFutureRevisionFails) {
  int64_t rev = MustPut("c", "1");
  CmdResult r = Ctl({"compact", std::to_string(rev + 100)});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(ErrorLine(r.err), kFuture);
  // Nothing was compacted.
  EXPECT_EQ(Ctl({"get", "c", "--rev", std::to_string(rev)}).out, "c\n1\n");
}

TEST_F(KvTest, PhysicalCompactSucceeds) {
  MustPut("c", "1");
  int64_t r2 = MustPut("c", "2");
  CmdResult r = Ctl({"compact", std::to_string(r2), "--physical"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, absl::StrCat("compacted revision ", r2, "\n"));
}

}  // namespace
}  // namespace synod::testing
