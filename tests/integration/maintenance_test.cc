// Maintenance, cluster and HTTP endpoints: endpoint status/hashkv, snapshot,
// defrag, alarms (NOSPACE quota), member list, /health, /version, /metrics.
#include <sys/stat.h>

#include <cstdlib>
#include <optional>
#include <regex>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "tests/integration/harness.h"

namespace synod::testing {
namespace {

constexpr char kNoSpace[] = "Error: etcdserver: mvcc: database space exceeded";

class MaintenanceTest : public ServerTest {
 protected:
  // The member ID from `endpoint status`.
  uint64_t MemberId() {
    return CtlJson({"endpoint", "status"})[0]["Status"]["header"]["member_id"]
        .Uint();
  }
  // Polls `member list` until this one member has published its name and
  // client URLs (10 s). synod serves clients as soon as it has a leader and
  // publishes its attributes through Raft a moment later; etcd 3.4 serves
  // only after publishing, so there the first poll succeeds.
  ::testing::AssertionResult WaitForPublishedAttributes() {
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    std::string last;
    while (true) {
      CmdResult r = Ctl({"member", "list", "-w", "json"});
      std::optional<Json> j = Json::Parse(r.out);
      if (r.exit_code == 0 && j.has_value() &&
          (*j)["members"].size() == 1u &&
          (*j)["members"][0]["name"].Str() == server_->name() &&
          (*j)["members"][0]["clientURLs"].size() == 1u) {
        return ::testing::AssertionSuccess();
      }
      last = r.out + r.err;
      if (absl::Now() > deadline) break;
      absl::SleepFor(absl::Milliseconds(50));  // polling interval
    }
    return ::testing::AssertionFailure()
           << "the member never published its name and client URLs: " << last;
  }
  uint64_t HashKv(int64_t* revision = nullptr) {
    Json j = CtlJson({"endpoint", "hashkv"});
    if (revision != nullptr) {
      *revision = j[0]["HashKV"]["header"]["revision"].Int();
    }
    return j[0]["HashKV"]["hash"].Uint();
  }
};

TEST_F(MaintenanceTest, EndpointStatusJsonReportsSelfAsLeader) {
  MustPut("a", "1");
  Json j = CtlJson({"endpoint", "status"});
  ASSERT_EQ(j.size(), 1u);
  EXPECT_EQ(j[0]["Endpoint"].Str(), server_->Endpoint());
  const Json& st = j[0]["Status"];
  EXPECT_NE(st["header"]["cluster_id"].Uint(), 0u);
  EXPECT_NE(st["header"]["member_id"].Uint(), 0u);
  EXPECT_EQ(st["leader"].Uint(), st["header"]["member_id"].Uint());
  EXPECT_EQ(st["header"]["revision"].Int(), 2);
  EXPECT_GE(st["raftTerm"].Int(), 1);
  EXPECT_EQ(st["header"]["raft_term"].Int(), st["raftTerm"].Int());
  EXPECT_GE(st["raftIndex"].Int(), 1);
  EXPECT_GE(st["raftAppliedIndex"].Int(), 1);
  EXPECT_LE(st["raftAppliedIndex"].Int(), st["raftIndex"].Int());
  EXPECT_GT(st["dbSize"].Int(), 0);
  EXPECT_GT(st["dbSizeInUse"].Int(), 0);
  EXPECT_NE(st["version"].Str(), "");
  EXPECT_FALSE(st.Has("errors"));
  EXPECT_FALSE(st["isLearner"].Bool());
}

TEST_F(MaintenanceTest, EndpointStatusSimpleFormat) {
  uint64_t id = MemberId();
  CmdResult r = Ctl({"endpoint", "status"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  // endpoint, id, version, db size, is leader, is learner, term, index,
  // applied index, errors
  std::regex re(absl::StrCat("^", server_->Endpoint(), ", ",
                             absl::StrFormat("%x", id),
                             ", [^,]+, [0-9.]+ [kMG]?B, true, false, "
                             "[0-9]+, [0-9]+, [0-9]+, \n$"));
  EXPECT_TRUE(std::regex_match(r.out, re)) << r.out;
}

TEST_F(MaintenanceTest, HashKvChangesWithWritesAndIsStableAcrossRestart) {
  uint64_t empty_hash = HashKv();
  for (int i = 0; i < 20; ++i) MustPut(absl::StrCat("h", i), std::to_string(i));
  ASSERT_EQ(Ctl({"del", "h1"}).exit_code, 0);
  int64_t rev_before = 0, rev_after = 0;
  uint64_t before = HashKv(&rev_before);
  EXPECT_NE(before, empty_hash);
  EXPECT_EQ(HashKv(), before);  // deterministic
  ASSERT_TRUE(server_->Restart());
  uint64_t after = HashKv(&rev_after);
  EXPECT_EQ(after, before);
  EXPECT_EQ(rev_after, rev_before);
  CmdResult simple = Ctl({"endpoint", "hashkv"});
  EXPECT_EQ(simple.out,
            absl::StrCat(server_->Endpoint(), ", ", before, "\n"));
}

TEST_F(MaintenanceTest, SnapshotSaveWritesNonEmptyFile) {
  MustPut("a", "1");
  std::string path = dir_->path() + "/snap.db";
  CmdResult r = Ctl({"snapshot", "save", path});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, absl::StrCat("Snapshot saved at ", path, "\n"));
  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_GT(st.st_size, 0);
}

TEST_F(MaintenanceTest, DefragSucceedsAndKeepsData) {
  for (int i = 0; i < 10; ++i) MustPut("d", std::to_string(i));
  int64_t rev = CurrentRevision();
  CmdResult r = Ctl({"defrag"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, absl::StrCat("Finished defragmenting etcd member[",
                                server_->Endpoint(), "]\n"));
  EXPECT_EQ(Ctl({"get", "d"}).out, "d\n9\n");
  EXPECT_EQ(CurrentRevision(), rev);
}

TEST_F(MaintenanceTest, AlarmListIsEmptyOnHealthyServer) {
  CmdResult r = Ctl({"alarm", "list"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "");
}

TEST_F(MaintenanceTest, MemberListShowsOneStartedMember) {
  ASSERT_TRUE(WaitForPublishedAttributes());
  uint64_t id = MemberId();
  CmdResult r = Ctl({"member", "list"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out,
            absl::StrFormat("%x, started, %s, http://127.0.0.1:%d, %s, false\n",
                            id, server_->name(), server_->peer_port(),
                            server_->ClientUrl()));
  Json j = CtlJson({"member", "list"});
  ASSERT_EQ(j["members"].size(), 1u);
  EXPECT_EQ(j["members"][0]["ID"].Uint(), id);
  EXPECT_EQ(j["members"][0]["name"].Str(), server_->name());
  EXPECT_EQ(j["members"][0]["clientURLs"][0].Str(), server_->ClientUrl());
}

// A member serves clients only once it has published its name and client
// URLs (etcd's ReadyNotify), so the first answer it gives already lists them:
// no waiting here. The fixture's server has just become ready.
TEST_F(MaintenanceTest, MemberServesClientsOnlyAfterPublishingItsAttributes) {
  Json j = CtlJson({"member", "list"});
  ASSERT_EQ(j["members"].size(), 1u);
  EXPECT_EQ(j["members"][0]["name"].Str(), server_->name());
  ASSERT_EQ(j["members"][0]["clientURLs"].size(), 1u);
  EXPECT_EQ(j["members"][0]["clientURLs"][0].Str(), server_->ClientUrl());
}

TEST_F(MaintenanceTest, HealthEndpointReturnsTrue) {
  HttpResponse r = HttpGet(server_->MetricsUrl() + "/health");
  EXPECT_EQ(r.status, 200) << r.headers;
  EXPECT_EQ(r.body, "{\"health\":\"true\"}");
  // Counted as etcd counts it (etcd_server_health_success), a series that
  // only etcd 3.4's /health handler moves.
  HttpResponse m = HttpGet(server_->MetricsUrl() + "/metrics");
  const std::string series = "\netcd_server_health_success ";
  const size_t at = m.body.find(series);
  ASSERT_NE(at, std::string::npos) << m.body.substr(0, 2000);
  EXPECT_GE(std::atof(m.body.c_str() + at + series.size()), 1.0);
}

TEST_F(MaintenanceTest, VersionEndpointReportsServerAndClusterVersion) {
  HttpResponse r = HttpGet(server_->MetricsUrl() + "/version");
  if (r.status == 404) {
    // etcd 3.4 serves /version only on the client URL (HTTP and gRPC share
    // the port); synod may serve it on the metrics URL instead.
    r = HttpGet(server_->ClientUrl() + "/version");
  }
  ASSERT_EQ(r.status, 200) << r.headers << r.body;
  std::optional<Json> j = Json::Parse(r.body);
  ASSERT_TRUE(j.has_value()) << r.body;
  EXPECT_NE((*j)["etcdserver"].Str(), "");
  EXPECT_TRUE(absl::StartsWith((*j)["etcdcluster"].Str(), "3."))
      << r.body;
}

TEST_F(MaintenanceTest, MetricsEndpointExposesHasLeader) {
  HttpResponse r = HttpGet(server_->MetricsUrl() + "/metrics");
  EXPECT_EQ(r.status, 200) << r.headers;
  EXPECT_TRUE(absl::StrContains(r.body, "\netcd_server_has_leader 1\n"))
      << r.body.substr(0, 2000);
  EXPECT_TRUE(absl::StrContains(r.body, "# TYPE etcd_server_has_leader gauge"));
}

class QuotaTest : public MaintenanceTest {
 protected:
  std::vector<std::string> ExtraFlags() override {
    return {"--quota-backend-bytes=200000"};
  }
};

TEST_F(QuotaTest, WritesFailWithNoSpaceAndAlarmIsRaisedButReadsAndDeletesWork) {
  const std::string value(16000, 'x');
  int ok_puts = 0;
  CmdResult failed;
  for (int i = 0; i < 100; ++i) {  // 100 * 16 kB is far beyond the quota
    CmdResult r = Ctl({"put", absl::StrCat("q", i), value});
    if (r.exit_code != 0) {
      failed = r;
      break;
    }
    ++ok_puts;
  }
  ASSERT_NE(failed.exit_code, -1) << "quota never hit after 100 puts";
  EXPECT_EQ(failed.exit_code, 1);
  EXPECT_EQ(ErrorLine(failed.err), kNoSpace);
  ASSERT_GE(ok_puts, 1);

  uint64_t id = MemberId();
  const std::string alarm = absl::StrCat("memberID:", id, " alarm:NOSPACE ");
  EXPECT_EQ(Ctl({"alarm", "list"}).out, alarm + "\n");
  Json st = CtlJson({"endpoint", "status"})[0]["Status"];
  ASSERT_EQ(st["errors"].size(), 1u);
  EXPECT_EQ(st["errors"][0].Str(), alarm);

  // Every write is refused while the alarm is active, even a small one.
  CmdResult small = Ctl({"put", "small", "x"});
  EXPECT_EQ(small.exit_code, 1);
  EXPECT_EQ(ErrorLine(small.err), kNoSpace);
  // Reads and deletes still work.
  EXPECT_EQ(Ctl({"get", "q0", "--keys-only"}).out, "q0\n\n");
  CmdResult del = Ctl({"del", "q0"});
  EXPECT_EQ(del.exit_code, 0) << del.err;
  EXPECT_EQ(del.out, "1\n");
  EXPECT_EQ(Ctl({"get", "q0"}).out, "");

  // /health reports the alarm.
  HttpResponse h = HttpGet(server_->MetricsUrl() + "/health");
  EXPECT_EQ(h.status, 503);
  EXPECT_EQ(h.body, "{\"health\":\"false\"}\n");
}

}  // namespace
}  // namespace synod::testing
