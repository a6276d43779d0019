// Watch conformance via `etcdctl watch`. Simple-format events are
//   PUT|DELETE \n [prev key \n prev value \n] key \n value \n
// Tests that must not miss events start the watch at an explicit --rev, so
// they do not depend on when the watch reaches the server.
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/integration/harness.h"

namespace synod::testing {
namespace {

using Lines = std::vector<std::string>;

class WatchTest : public ServerTest {
 protected:
  std::vector<std::string> ExtraFlags() override {
    return {"--experimental-watch-progress-notify-interval=1s"};
  }
};

TEST_F(WatchTest, WatchWithoutRevStreamsLiveEventsForTheKey) {
  auto watch = Background({"watch", "w"});
  // The watch starts at "now", so probe until it demonstrably is registered.
  bool synced = false;
  for (int i = 0; i < 50 && !synced; ++i) {
    MustPut("w", absl::StrCat("probe", i));
    synced = watch->WaitForOutput("probe", absl::Milliseconds(100));
  }
  ASSERT_TRUE(synced) << "watch never saw a probe put; stderr: "
                      << watch->Err();
  // Let the in-flight probe events land: every probe is 3 lines.
  ASSERT_TRUE(watch->WaitForLines(3, absl::Seconds(5)));
  MustPut("other", "x");  // a different key: not reported
  MustPut("w", "live1");
  ASSERT_EQ(Ctl({"del", "w"}).exit_code, 0);
  ASSERT_TRUE(watch->WaitForOutput("DELETE\nw\n\n", absl::Seconds(5)))
      << watch->Out();
  Lines lines = watch->Lines();
  ASSERT_GE(lines.size(), 6u);
  Lines tail(lines.end() - 6, lines.end());
  EXPECT_EQ(tail, (Lines{"PUT", "w", "live1", "DELETE", "w", ""}));
  for (const auto& l : lines) EXPECT_NE(l, "other");
}

TEST_F(WatchTest, WatchRevReplaysHistoryThenGoesLiveWithoutGapOrDuplicate) {
  int64_t first = MustPut("w", "1");
  MustPut("w", "2");
  ASSERT_EQ(Ctl({"del", "w"}).exit_code, 0);
  MustPut("w", "3");
  auto watch = Background({"watch", "w", "--rev", std::to_string(first)});
  ASSERT_TRUE(watch->WaitForLines(12, absl::Seconds(5))) << watch->Out();
  MustPut("w", "4");
  MustPut("w", "5");
  ASSERT_TRUE(watch->WaitForLines(18, absl::Seconds(5))) << watch->Out();
  EXPECT_EQ(watch->Lines(),
            (Lines{"PUT", "w", "1", "PUT", "w", "2", "DELETE", "w", "",
                   "PUT", "w", "3", "PUT", "w", "4", "PUT", "w", "5"}));
}

TEST_F(WatchTest, WatchPrefixReportsOnlyKeysUnderThePrefix) {
  int64_t start = CurrentRevision() + 1;
  auto watch = Background(
      {"watch", "p", "--prefix", "--rev", std::to_string(start)});
  MustPut("p1", "a");
  MustPut("q1", "b");
  MustPut("p2", "c");
  MustPut("o", "d");
  ASSERT_EQ(Ctl({"del", "p1"}).exit_code, 0);
  ASSERT_TRUE(watch->WaitForLines(9, absl::Seconds(5))) << watch->Out();
  EXPECT_EQ(watch->Lines(), (Lines{"PUT", "p1", "a", "PUT", "p2", "c",
                                   "DELETE", "p1", ""}));
}

TEST_F(WatchTest, WatchFromFutureRevisionSkipsEarlierEvents) {
  int64_t now = CurrentRevision();
  auto watch = Background({"watch", "w", "--rev", std::to_string(now + 2)});
  MustPut("w", "skipped");  // now + 1
  MustPut("w", "seen");     // now + 2
  ASSERT_TRUE(watch->WaitForLines(3, absl::Seconds(5))) << watch->Out();
  EXPECT_EQ(watch->Lines(), (Lines{"PUT", "w", "seen"}));
}

TEST_F(WatchTest, EventsOfOneTxnArriveInOperationOrder) {
  int64_t start = CurrentRevision() + 1;
  auto watch =
      Background({"watch", "z", "--prefix", "--rev", std::to_string(start)});
  CmdResult txn = Ctl({"txn"}, std::string("\nput zb 1\nput za 2\ndel zc\n\n\n"));
  ASSERT_EQ(txn.exit_code, 0) << txn.err;
  ASSERT_TRUE(watch->WaitForLines(6, absl::Seconds(5))) << watch->Out();
  EXPECT_EQ(watch->Lines(), (Lines{"PUT", "zb", "1", "PUT", "za", "2"}));
  auto json_watch = Background(
      {"watch", "z", "--prefix", "--rev", std::to_string(start), "-w", "json"});
  ASSERT_TRUE(json_watch->WaitForLines(1, absl::Seconds(5)));
  Json j = Json::Parse(json_watch->Lines().at(0)).value_or(Json());
  ASSERT_EQ(j["Events"].size(), 2u);
  EXPECT_EQ(j["Events"][0]["kv"]["mod_revision"].Int(), start);
  EXPECT_EQ(j["Events"][1]["kv"]["mod_revision"].Int(), start);
}

TEST_F(WatchTest, PrevKvPrintsPreviousPairBeforeEachEvent) {
  int64_t start = CurrentRevision() + 1;
  auto watch =
      Background({"watch", "pk", "--prev-kv", "--rev", std::to_string(start)});
  MustPut("pk", "a");
  MustPut("pk", "b");
  ASSERT_EQ(Ctl({"del", "pk"}).exit_code, 0);
  ASSERT_TRUE(watch->WaitForLines(13, absl::Seconds(5))) << watch->Out();
  EXPECT_EQ(watch->Lines(),
            (Lines{"PUT", "pk", "a",                    // no previous pair
                   "PUT", "pk", "a", "pk", "b",         // prev, then new
                   "DELETE", "pk", "b", "pk", ""}));
}

TEST_F(WatchTest, WatchFromCompactedRevisionIsCanceledWithCompactRevision) {
  MustPut("c", "1");
  MustPut("c", "2");
  int64_t compact_rev = MustPut("c", "3");
  ASSERT_EQ(Ctl({"compact", std::to_string(compact_rev)}).exit_code, 0);

  CmdResult r = Etcdctl(server_->Endpoint(), {"watch", "c", "--rev", "1"},
                        std::nullopt, absl::Seconds(10));
  EXPECT_FALSE(r.timed_out) << "the canceled watch should end etcdctl";
  EXPECT_EQ(r.exit_code, 5);
  EXPECT_EQ(r.out, "");
  EXPECT_TRUE(absl::StrContains(
      r.err,
      "watch was canceled (etcdserver: mvcc: required revision has been "
      "compacted)\n"))
      << r.err;
  EXPECT_EQ(ErrorLine(r.err), "Error: watch is canceled by the server");

  CmdResult j = Etcdctl(server_->Endpoint(),
                        {"watch", "c", "--rev", "1", "-w", "json"},
                        std::nullopt, absl::Seconds(10));
  EXPECT_EQ(j.exit_code, 5);
  std::optional<Json> resp = Json::Parse(j.out);
  ASSERT_TRUE(resp.has_value()) << j.out;
  EXPECT_TRUE((*resp)["Canceled"].Bool());
  EXPECT_EQ((*resp)["CompactRevision"].Int(), compact_rev);
  EXPECT_EQ((*resp)["Events"].size(), 0u);
}

TEST_F(WatchTest, ProgressRequestGetsHeaderOnlyNotificationAtCurrentRevision) {
  // etcdctl 3.4 has no --progress-notify flag; its interactive "progress"
  // command sends a WatchProgressRequest on the watch stream.
  MustPut("x", "1");
  int64_t rev = MustPut("x", "2");
  auto watch = Background({"watch", "-i", "-w", "json"});
  watch->WriteStdin("watch pn\n");
  bool notified = false;
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (!notified && absl::Now() < deadline) {
    watch->WriteStdin("progress\n");
    notified = watch->WaitForOutput("progress notify: ", absl::Seconds(1));
  }
  ASSERT_TRUE(notified) << "out: " << watch->Out() << "\nerr: " << watch->Err();
  ASSERT_TRUE(watch->WaitForLines(2, absl::Seconds(5))) << watch->Out();
  Lines lines = watch->Lines();
  EXPECT_EQ(lines[0], absl::StrCat("progress notify: ", rev));
  std::optional<Json> resp = Json::Parse(lines[1]);
  ASSERT_TRUE(resp.has_value()) << lines[1];
  EXPECT_EQ((*resp)["Header"]["revision"].Int(), rev);
  EXPECT_EQ((*resp)["Events"].size(), 0u);
  EXPECT_FALSE((*resp)["Canceled"].Bool());
}

}  // namespace
}  // namespace synod::testing
