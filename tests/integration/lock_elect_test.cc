// Distributed lock and election via `etcdctl lock` / `etcdctl elect`
// (client-side clientv3/concurrency recipes over sessions = leases, txn and
// watch). Keys are "<name>/<lease ID as %x, not zero padded>".
#include <unistd.h>

#include <regex>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/integration/harness.h"

namespace synod::testing {
namespace {

using Lines = std::vector<std::string>;

class LockElectTest : public ServerTest {
 protected:
  // Polls until `n` keys exist under `prefix`; false after 10 s.
  bool WaitForKeyCount(const std::string& prefix, size_t n) {
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    while (absl::Now() < deadline) {
      Json j = CtlJson({"get", prefix, "--prefix", "--keys-only"});
      if (j["kvs"].size() == n) return true;
      usleep(50 * 1000);  // polling interval
    }
    return false;
  }
};

TEST_F(LockElectTest, LockPrintsOwnedKeyAndSecondLockerWaitsForRelease) {
  auto first = Background({"lock", "mylock"});
  ASSERT_TRUE(first->WaitForLines(2, absl::Seconds(10))) << first->Err();
  Lines first_lines = first->Lines();
  EXPECT_TRUE(std::regex_match(first_lines[0],
                               std::regex("^mylock/[0-9a-f]{1,16}$")))
      << first_lines[0];
  EXPECT_EQ(first_lines[1], "");  // the key's (empty) value

  auto second = Background({"lock", "mylock"});
  // The second locker has queued its own key behind the holder's.
  ASSERT_TRUE(WaitForKeyCount("mylock/", 2));
  EXPECT_FALSE(second->WaitForOutput("mylock/", absl::Milliseconds(500)))
      << "second locker acquired while the first still holds the lock";

  first->Terminate();  // etcdctl unlocks and closes its session on SIGTERM
  ASSERT_TRUE(second->WaitForLines(2, absl::Seconds(10))) << second->Err();
  Lines second_lines = second->Lines();
  EXPECT_TRUE(absl::StartsWith(second_lines[0], "mylock/"));
  EXPECT_NE(second_lines[0], first_lines[0]);
  // Only the new holder's key is left.
  Json keys = CtlJson({"get", "mylock/", "--prefix", "--keys-only"});
  ASSERT_EQ(keys["kvs"].size(), 1u);
  EXPECT_EQ(keys["kvs"][0]["key"].Bytes(), second_lines[0]);
}

TEST_F(LockElectTest, LockRunsCommandWhileHoldingLockThenReleases) {
  CmdResult r = Ctl({"lock", "mylock", "echo", "hello", "world"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "hello world\n");
  EXPECT_EQ(Ctl({"get", "mylock", "--prefix"}).out, "");  // released

  CmdResult env = Ctl({"lock", "mylock", "--", "env"});
  EXPECT_EQ(env.exit_code, 0) << env.err;
  EXPECT_TRUE(std::regex_search(
      env.out, std::regex("(^|\n)ETCD_LOCK_KEY=mylock/[0-9a-f]{1,16}\n")))
      << env.out;
  EXPECT_TRUE(std::regex_search(env.out,
                                std::regex("(^|\n)ETCD_LOCK_REV=[0-9]+\n")))
      << env.out;
}

TEST_F(LockElectTest, LockCommandFailureIsReported) {
  CmdResult r = Ctl({"lock", "mylock", "--", "sh", "-c", "exit 3"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(ErrorLine(r.err), "Error: exit status 3");
  EXPECT_EQ(Ctl({"get", "mylock", "--prefix"}).out, "");
}

TEST_F(LockElectTest, ElectedProposalIsObservedByListener) {
  auto candidate = Background({"elect", "myel", "alice"});
  ASSERT_TRUE(candidate->WaitForLines(2, absl::Seconds(10)))
      << candidate->Err();
  Lines won = candidate->Lines();
  EXPECT_TRUE(std::regex_match(won[0], std::regex("^myel/[0-9a-f]{1,16}$")))
      << won[0];
  EXPECT_EQ(won[1], "alice");

  auto listener = Background({"elect", "-l", "myel"});
  ASSERT_TRUE(listener->WaitForLines(2, absl::Seconds(10))) << listener->Err();
  EXPECT_EQ(listener->Lines(), (Lines{won[0], "alice"}));
}

TEST_F(LockElectTest, NextCandidateLeadsAfterLeaderResigns) {
  auto alice = Background({"elect", "myel", "alice"});
  ASSERT_TRUE(alice->WaitForLines(2, absl::Seconds(10))) << alice->Err();
  auto bob = Background({"elect", "myel", "bob"});
  ASSERT_TRUE(WaitForKeyCount("myel/", 2));
  auto listener = Background({"elect", "-l", "myel"});
  ASSERT_TRUE(listener->WaitForLines(2, absl::Seconds(10)));
  EXPECT_EQ(listener->Lines().at(1), "alice");
  EXPECT_TRUE(bob->Lines().empty()) << "bob leads while alice still does";

  alice->Terminate();  // resigns
  ASSERT_TRUE(bob->WaitForLines(2, absl::Seconds(10))) << bob->Err();
  EXPECT_EQ(bob->Lines().at(1), "bob");
  ASSERT_TRUE(listener->WaitForLines(4, absl::Seconds(10))) << listener->Out();
  Lines seen = listener->Lines();
  EXPECT_EQ(seen[2], bob->Lines().at(0));
  EXPECT_EQ(seen[3], "bob");
}

}  // namespace
}  // namespace synod::testing
