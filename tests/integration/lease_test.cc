// Lease conformance via `etcdctl lease ...` and `put --lease`. Lease IDs are
// printed as 16 lowercase hex digits.
#include <unistd.h>

#include <regex>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "gtest/gtest.h"
#include "tests/integration/harness.h"

namespace synod::testing {
namespace {

constexpr char kLeaseNotFound[] =
    "Error: etcdserver: requested lease not found";

class LeaseTest : public ServerTest {
 protected:
  // Grants a lease and returns its ID as printed ("%016x").
  std::string Grant(int ttl) {
    CmdResult r = Ctl({"lease", "grant", std::to_string(ttl)});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    std::smatch m;
    static const std::regex kGranted(
        "^lease ([0-9a-f]{16}) granted with TTL\\((\\d+)s\\)\n$");
    if (!std::regex_match(r.out, m, kGranted)) {
      ADD_FAILURE() << "unexpected grant output: " << r.out;
      return "";
    }
    return m[1];
  }
};

TEST_F(LeaseTest, GrantPrintsHexIdAndTtl) {
  CmdResult r = Ctl({"lease", "grant", "5"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(std::regex_match(
      r.out, std::regex("^lease [0-9a-f]{16} granted with TTL\\(5s\\)\n$")))
      << r.out;
  Json j = CtlJson({"lease", "grant", "7"});
  EXPECT_EQ(j["TTL"].Int(), 7);
  EXPECT_NE(j["ID"].Uint(), 0u);
  EXPECT_EQ(j["Error"].Str(), "");
}

TEST_F(LeaseTest, GrantBelowMinimumTtlIsRaisedToTwoSeconds) {
  // etcd's minimum lease TTL is 1.5 election timeouts (1 s default), rounded
  // up: 2 s.
  EXPECT_EQ(CtlJson({"lease", "grant", "1"})["TTL"].Int(), 2);
}

TEST_F(LeaseTest, GrantAboveMaximumTtlFails) {
  CmdResult r = Ctl({"lease", "grant", "9000000001"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(ErrorLine(r.err),
            "Error: failed to grant lease (etcdserver: too large lease TTL)");
}

TEST_F(LeaseTest, TimeToLiveWithKeysListsAttachedKeys) {
  std::string id = Grant(100);
  ASSERT_EQ(Ctl({"put", "lk1", "v", "--lease=" + id}).exit_code, 0);
  ASSERT_EQ(Ctl({"put", "lk2", "v", "--lease=" + id}).exit_code, 0);
  CmdResult r = Ctl({"lease", "timetolive", id, "--keys"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(std::regex_match(
      r.out, std::regex("^lease " + id +
                        " granted with TTL\\(100s\\), remaining\\((9[0-9]|100)s\\),"
                        " attached keys\\(\\[(lk1 lk2|lk2 lk1)\\]\\)\n$")))
      << r.out;
  Json j = CtlJson({"lease", "timetolive", id, "--keys"});
  EXPECT_EQ(j["granted-ttl"].Int(), 100);
  EXPECT_GE(j["ttl"].Int(), 90);
  EXPECT_LE(j["ttl"].Int(), 100);
  ASSERT_EQ(j["keys"].size(), 2u);
  // etcd lists attached keys in no particular order.
  EXPECT_EQ((std::set<std::string>{j["keys"][0].Bytes(), j["keys"][1].Bytes()}),
            (std::set<std::string>{"lk1", "lk2"}));
  // The key carries the lease ID.
  EXPECT_EQ(absl::StrFormat("%016x", CtlJson({"get", "lk1"})["kvs"][0]["lease"]
                                         .Uint()),
            id);
  // Without --keys: no key list.
  CmdResult plain = Ctl({"lease", "timetolive", id});
  EXPECT_TRUE(std::regex_match(
      plain.out, std::regex("^lease " + id +
                            " granted with TTL\\(100s\\), "
                            "remaining\\((9[0-9]|100)s\\)\n$")))
      << plain.out;
}

TEST_F(LeaseTest, LeaseListShowsEveryGrantedLease) {
  std::string a = Grant(100);
  std::string b = Grant(100);
  CmdResult r = Ctl({"lease", "list"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  std::vector<std::string> lines = SplitLines(r.out);
  ASSERT_EQ(lines.size(), 3u) << r.out;
  EXPECT_EQ(lines[0], "found 2 leases");
  EXPECT_EQ(std::set<std::string>(lines.begin() + 1, lines.end()),
            (std::set<std::string>{a, b}));
}

TEST_F(LeaseTest, RevokeDeletesAttachedKeys) {
  std::string id = Grant(100);
  ASSERT_EQ(Ctl({"put", "rk1", "v", "--lease=" + id}).exit_code, 0);
  ASSERT_EQ(Ctl({"put", "rk2", "v", "--lease=" + id}).exit_code, 0);
  MustPut("rk3", "no lease");
  int64_t before = CurrentRevision();
  CmdResult r = Ctl({"lease", "revoke", id});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, absl::StrCat("lease ", id, " revoked\n"));
  EXPECT_EQ(Ctl({"get", "rk", "--prefix", "--keys-only"}).out, "rk3\n\n");
  // Both deletions happen in one revision.
  EXPECT_EQ(CurrentRevision(), before + 1);
  EXPECT_EQ(Ctl({"lease", "timetolive", id}).out,
            absl::StrCat("lease ", id, " already expired\n"));
  EXPECT_EQ(Ctl({"lease", "list"}).out, "found 0 leases\n");
}

TEST_F(LeaseTest, RevokeUnknownLeaseFails) {
  CmdResult r = Ctl({"lease", "revoke", "123"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(ErrorLine(r.err),
            "Error: failed to revoke lease (etcdserver: requested lease not "
            "found)");
}

TEST_F(LeaseTest, TimeToLiveOfUnknownLeaseSaysAlreadyExpired) {
  CmdResult r = Ctl({"lease", "timetolive", "123"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "lease 0000000000000123 already expired\n");
  Json j = CtlJson({"lease", "timetolive", "123"});
  EXPECT_EQ(j["ttl"].Int(), -1);
  EXPECT_EQ(j["granted-ttl"].Int(), 0);
}

TEST_F(LeaseTest, KeepAliveOnceRenewsTheLease) {
  std::string id = Grant(100);
  CmdResult r = Ctl({"lease", "keep-alive", "--once", id});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, absl::StrCat("lease ", id, " keepalived with TTL(100)\n"));
  Json j = CtlJson({"lease", "keep-alive", "--once", id});
  EXPECT_EQ(j["TTL"].Int(), 100);
  EXPECT_EQ(absl::StrFormat("%016x", j["ID"].Uint()), id);
}

TEST_F(LeaseTest, KeepAliveOnceOfUnknownLeaseFails) {
  CmdResult r = Ctl({"lease", "keep-alive", "--once", "123"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_EQ(ErrorLine(r.err), kLeaseNotFound);
}

TEST_F(LeaseTest, ShortLeaseExpiresAndDeletesItsKey) {
  const absl::Time start = absl::Now();
  std::string id = Grant(2);
  ASSERT_EQ(Ctl({"put", "ek", "v", "--lease=" + id}).exit_code, 0);
  EXPECT_EQ(Ctl({"get", "ek"}).out, "ek\nv\n");
  const absl::Time deadline = start + absl::Seconds(15);
  bool gone = false;
  while (!gone && absl::Now() < deadline) {
    CmdResult g = Ctl({"get", "ek"});
    ASSERT_EQ(g.exit_code, 0) << g.err;
    gone = g.out.empty();
    if (!gone) usleep(100 * 1000);  // polling interval, bounded above
  }
  EXPECT_TRUE(gone) << "key still present 15s after a 2s lease was granted";
  // It must not vanish before the TTL has (nearly) elapsed.
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(1500));
  EXPECT_EQ(Ctl({"lease", "timetolive", id}).out,
            absl::StrCat("lease ", id, " already expired\n"));
}

TEST_F(LeaseTest, PutWithUnknownLeaseFails) {
  CmdResult r = Ctl({"put", "k", "v", "--lease=1234"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(ErrorLine(r.err), kLeaseNotFound);
  EXPECT_EQ(Ctl({"get", "k"}).out, "");
  EXPECT_EQ(CurrentRevision(), 1);
}

TEST_F(LeaseTest, LeasesAndAttachmentsSurviveRestart) {
  std::string id = Grant(100);
  ASSERT_EQ(Ctl({"put", "sk", "v", "--lease=" + id}).exit_code, 0);
  ASSERT_TRUE(server_->Restart());
  CmdResult ttl = Ctl({"lease", "timetolive", id, "--keys"});
  EXPECT_EQ(ttl.exit_code, 0) << ttl.err;
  EXPECT_TRUE(std::regex_match(
      ttl.out, std::regex("^lease " + id +
                          " granted with TTL\\(100s\\), remaining\\(\\d+s\\),"
                          " attached keys\\(\\[sk\\]\\)\n$")))
      << ttl.out;
  EXPECT_EQ(Ctl({"lease", "list"}).out,
            absl::StrCat("found 1 leases\n", id, "\n"));
  // Still fully functional: revoking deletes the key.
  EXPECT_EQ(Ctl({"lease", "revoke", id}).exit_code, 0);
  EXPECT_EQ(Ctl({"get", "sk"}).out, "");
}

}  // namespace
}  // namespace synod::testing
