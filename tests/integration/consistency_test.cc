// Issue 10 end to end, with real processes driven by etcdctl 3.4 (synod, or
// etcd 3.4 with SYNOD_TEST_SERVER=etcd, whose answers these checks were
// taken from):
// - a historical read (get, a get inside a txn, hashkv of a past revision)
//   answers with the store's current revision in header.revision;
// - alarms are cluster state: filled to NOSPACE through every member, each
//   member lists the same alarms, holds the same data (HashKV) and refuses
//   writes, and one `alarm disarm` clears them everywhere;
// - a member damaged while stopped is refused at start by
//   --experimental-initial-corrupt-check and found by the leader's periodic
//   --experimental-corrupt-check-time (synod only: the damage tool writes
//   synod's LevelDB, not etcd's bbolt file);
// - --experimental-enable-lease-checkpoint is accepted.
//
// Timing: clusters run with --heartbeat-interval=50 --election-timeout=500.
#include <unistd.h>

#include <algorithm>
#include <functional>
#include <iostream>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "tests/integration/cluster.h"
#include "tests/integration/harness.h"

#ifndef SYNOD_CORRUPT_MEMBER_BINARY
#define SYNOD_CORRUPT_MEMBER_BINARY ""
#endif

namespace synod::testing {
namespace {

constexpr char kNoSpace[] = "Error: etcdserver: mvcc: database space exceeded";
constexpr char kCorrupt[] = "Error: etcdserver: corrupt cluster";
constexpr absl::Duration kPollInterval = absl::Milliseconds(100);

// ---------------------------------------------------------------------------
// 1. Historical reads answer with the current revision (issue 10, bug 1).
// Clients take header.revision as "now", e.g. to start a watch after a read.

class HistoricalReadTest : public ServerTest {
 protected:
  // k=v1 at 2, k=v2 at 3, other=x at 4.
  void SetUp() override {
    ServerTest::SetUp();
    if (HasFatalFailure()) return;
    ASSERT_EQ(MustPut("k", "v1"), 2);
    ASSERT_EQ(MustPut("k", "v2"), 3);
    ASSERT_EQ(MustPut("other", "x"), 4);
  }
};

TEST_F(HistoricalReadTest, GetAtPastRevisionAnswersWithCurrentRevision) {
  for (const bool serializable : {false, true}) {
    std::vector<std::string> args = {"get", "k", "--rev=2"};
    if (serializable) args.push_back("--consistency=s");
    Json j = CtlJson(args);
    ASSERT_EQ(j["kvs"].size(), 1u) << "serializable=" << serializable;
    EXPECT_EQ(j["kvs"][0]["value"].Bytes(), "v1");
    EXPECT_EQ(j["kvs"][0]["mod_revision"].Int(), 2);
    EXPECT_EQ(j["header"]["revision"].Int(), 4)
        << "serializable=" << serializable;
  }
  // A key that did not exist yet at the revision read.
  Json none = CtlJson({"get", "other", "--rev=3"});
  EXPECT_EQ(none["kvs"].size(), 0u);
  EXPECT_EQ(none["header"]["revision"].Int(), 4);
}

// etcdctl's txn takes get's flags, --rev included. Each sub-response header
// carries only a revision: the store's revision as the txn sees it at that
// point (the revision before the txn until its first write, the txn's own
// after it), never the revision read at.
TEST_F(HistoricalReadTest, GetAtPastRevisionInsideTxnAnswersWithTxnRevision) {
  Json ro = CtlJson({"txn"}, "\nget k --rev=2\n\n\n");
  EXPECT_TRUE(ro["succeeded"].Bool());
  EXPECT_EQ(ro["header"]["revision"].Int(), 4);
  ASSERT_EQ(ro["responses"].size(), 1u);
  const Json& r0 = ro["responses"][0]["Response"]["ResponseRange"];
  ASSERT_EQ(r0["kvs"].size(), 1u);
  EXPECT_EQ(r0["kvs"][0]["value"].Bytes(), "v1");
  EXPECT_EQ(r0["header"]["revision"].Int(), 4);

  Json rw = CtlJson({"txn"}, "\nget k --rev=2\nput k v3\nget k --rev=2\n\n\n");
  EXPECT_EQ(rw["header"]["revision"].Int(), 5);
  ASSERT_EQ(rw["responses"].size(), 3u);
  const Json& before = rw["responses"][0]["Response"]["ResponseRange"];
  const Json& put = rw["responses"][1]["Response"]["ResponsePut"];
  const Json& after = rw["responses"][2]["Response"]["ResponseRange"];
  ASSERT_EQ(before["kvs"].size(), 1u);
  EXPECT_EQ(before["kvs"][0]["value"].Bytes(), "v1");
  EXPECT_EQ(before["header"]["revision"].Int(), 4);
  EXPECT_EQ(put["header"]["revision"].Int(), 5);
  ASSERT_EQ(after["kvs"].size(), 1u);
  EXPECT_EQ(after["kvs"][0]["value"].Bytes(), "v1");
  EXPECT_EQ(after["header"]["revision"].Int(), 5);
}

// HashKV's header.revision is the store's current revision, whatever
// revision was hashed; the hash of a past revision does not change with
// later writes.
TEST_F(HistoricalReadTest, HashKvOfPastRevisionAnswersWithCurrentRevision) {
  const Json status = CtlJson({"endpoint", "status"})[0]["Status"]["header"];
  Json past = CtlJson({"endpoint", "hashkv", "--rev=2"});
  ASSERT_EQ(past.size(), 1u);
  const Json& p = past[0]["HashKV"];
  EXPECT_EQ(p["header"]["revision"].Int(), 4);
  EXPECT_EQ(p["header"]["member_id"].Uint(), status["member_id"].Uint());
  EXPECT_EQ(p["header"]["cluster_id"].Uint(), status["cluster_id"].Uint());

  Json all = CtlJson({"endpoint", "hashkv"});  // --rev=0: the current one
  EXPECT_EQ(all[0]["HashKV"]["header"]["revision"].Int(), 4);
  EXPECT_NE(all[0]["HashKV"]["hash"].Uint(), p["hash"].Uint());
  EXPECT_EQ(
      CtlJson({"endpoint", "hashkv", "--rev=4"})[0]["HashKV"]["hash"].Uint(),
      all[0]["HashKV"]["hash"].Uint());

  ASSERT_EQ(MustPut("later", "y"), 5);
  Json again = CtlJson({"endpoint", "hashkv", "--rev=2"});
  EXPECT_EQ(again[0]["HashKV"]["header"]["revision"].Int(), 5);
  EXPECT_EQ(again[0]["HashKV"]["hash"].Uint(), p["hash"].Uint());

  ASSERT_EQ(Ctl({"compaction", "3"}).exit_code, 0);
  Json compacted = CtlJson({"endpoint", "hashkv", "--rev=4"});
  EXPECT_EQ(compacted[0]["HashKV"]["header"]["revision"].Int(), 5);
  EXPECT_EQ(compacted[0]["HashKV"]["compact_revision"].Int(), 3);
}

// Before any compaction etcd's HashKV says compact_revision -1 (mvcc's
// initial compactMainRev); so does synod.
TEST_F(HistoricalReadTest, HashKvCompactRevisionIsMinusOneBeforeCompaction) {
  Json h = CtlJson({"endpoint", "hashkv", "--rev=2"});
  EXPECT_EQ(h[0]["HashKV"]["compact_revision"].Int(), -1);
  EXPECT_EQ(
      CtlJson({"endpoint", "hashkv"})[0]["HashKV"]["compact_revision"].Int(),
      -1);
}

// ---------------------------------------------------------------------------
// Cluster helpers.

class ConsistencyClusterTest : public ::testing::Test {
 protected:
  void TearDown() override {
    if (cluster_ != nullptr && HasFailure()) {
      std::cerr << cluster_->LogTails() << "\n";
    }
    cluster_.reset();
  }
  void StartCluster(std::vector<std::string> extra_flags) {
    ClusterOptions options;
    options.extra_flags = std::move(extra_flags);
    cluster_ = std::make_unique<Cluster>(std::move(options));
    ASSERT_TRUE(cluster_->Start());
  }
  std::vector<int> All() const {
    std::vector<int> all;
    for (int i = 0; i < cluster_->size(); ++i) all.push_back(i);
    return all;
  }
  // The current revision, by a linearizable get through member i.
  int64_t Revision(int i) {
    GetResult g = GetKey(cluster_->Endpoint(i), "synod-it-rev", false);
    EXPECT_TRUE(g.ok) << g.error;
    return g.revision;
  }
  // `alarm list` via member i, sorted (etcd lists alarms in Go map order);
  // nullopt when etcdctl fails.
  std::optional<std::vector<std::string>> AlarmList(int i) const {
    CmdResult r = cluster_->Ctl(i, {"alarm", "list"});
    if (r.exit_code != 0) return std::nullopt;
    std::vector<std::string> lines = SplitLines(r.out);
    std::sort(lines.begin(), lines.end());
    return lines;
  }
  // Polls `alarm list` via every member until all show the same lines and
  // `done` holds for them: an alarm is raised or cleared by a proposal that
  // each member applies a moment after the call that caused it. Sets *lines
  // to the list.
  ::testing::AssertionResult WaitForAlarmLists(
      const std::function<bool(const std::vector<std::string>&)>& done,
      absl::Duration timeout, std::vector<std::string>* lines = nullptr) {
    const absl::Time deadline = absl::Now() + timeout;
    std::string last;
    while (true) {
      std::set<std::vector<std::string>> seen;
      bool all = true;
      last.clear();
      for (int i : All()) {
        std::optional<std::vector<std::string>> l = AlarmList(i);
        if (!l.has_value()) {
          all = false;
          absl::StrAppend(&last, "\n  m", i, ": <etcdctl failed>");
          continue;
        }
        seen.insert(*l);
        absl::StrAppend(&last, "\n  m", i, ": [", absl::StrJoin(*l, "|"), "]");
      }
      if (all && seen.size() == 1 && done(*seen.begin())) {
        if (lines != nullptr) *lines = *seen.begin();
        return ::testing::AssertionSuccess();
      }
      if (absl::Now() > deadline) {
        return ::testing::AssertionFailure()
               << "alarm lists not as expected within " << timeout
               << "; last:" << last;
      }
      absl::SleepFor(kPollInterval);
    }
  }
  // The line `alarm list` prints for an alarm: the member ID in decimal
  // (etcdctl prints the AlarmMember message), then a space.
  static std::string AlarmLine(uint64_t member_id, const std::string& type) {
    return absl::StrCat("memberID:", member_id, " alarm:", type, " ");
  }
  // Polls member i's /health (on its metrics URL) until it answers `status`.
  ::testing::AssertionResult WaitForHealth(int i, int status,
                                           absl::Duration timeout) const {
    const absl::Time deadline = absl::Now() + timeout;
    while (true) {
      HttpResponse h = HttpGet(cluster_->member(i).MetricsUrl() + "/health");
      if (h.status == status) return ::testing::AssertionSuccess();
      if (absl::Now() > deadline) {
        return ::testing::AssertionFailure()
               << "/health of m" << i << " answered " << h.status << " "
               << h.body << ", not " << status << ", for " << timeout;
      }
      absl::SleepFor(kPollInterval);
    }
  }

  std::unique_ptr<Cluster> cluster_;
};

// ---------------------------------------------------------------------------
// 2. Alarms are cluster state (issue 10, bug 2).

constexpr int64_t kQuota = 4 << 20;  // 4 MiB
constexpr size_t kFillValueBytes = 200 << 10;
constexpr int kMaxFillPuts = 100;  // 100 x 200 KiB = 5x the quota
constexpr absl::Duration kMaxFillTime = absl::Seconds(60);

// An incompressible value (LevelDB compresses its tables with Snappy, which
// would hide a repeated byte from the quota), one per put.
std::string FillValue(std::mt19937* rng) {
  static constexpr char kAlphabet[] =
      "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  std::uniform_int_distribution<int> pick(0, sizeof(kAlphabet) - 2);
  std::string v(kFillValueBytes, ' ');
  for (char& c : v) c = kAlphabet[pick(*rng)];
  return v;
}

// Filled with 200 KiB values through every member, a 3-member cluster with a
// 4 MiB quota refuses a put with NOSPACE: synod after ~10 puts (its LevelDB
// also holds the Raft log, so each value counts about twice), etcd after
// ~14 (its bbolt file holds the data only; the WAL does not count). Then
// every member lists the same NOSPACE alarms, holds the same data (HashKV),
// refuses writes, and reports the alarms in its status and /health; one
// `alarm disarm` clears them on every member.
//
// Which members the list names depends on their sizes: etcd and synod
// raise NOSPACE for each member that refuses a write over its own quota (so
// after the refused puts through every member it lists 1 to 3 members). The
// test checks each line names a member, not how many there are.
TEST_F(ConsistencyClusterTest, NoSpaceAlarmIsClusterStateAndDisarmClearsIt) {
  StartCluster({absl::StrCat("--quota-backend-bytes=", kQuota)});
  std::mt19937 rng(10);  // the values' content does not matter, only size
  const absl::Time deadline = absl::Now() + kMaxFillTime;
  int puts = 0;
  CmdResult refused;
  int refused_via = -1;
  for (; puts < kMaxFillPuts && absl::Now() < deadline; ++puts) {
    const int via = puts % cluster_->size();
    CmdResult r = cluster_->Ctl(via, {"put", absl::StrCat("fill/", puts)},
                                FillValue(&rng));
    if (r.exit_code != 0) {
      refused = r;
      refused_via = via;
      break;
    }
  }
  ASSERT_GE(refused_via, 0) << "no put refused after " << puts << " puts";
  ASSERT_EQ(ErrorLine(refused.err), kNoSpace)
      << "put " << puts << " via m" << refused_via << ": " << refused.err;
  EXPECT_GE(puts, 5) << "the quota was hit far below 4 MiB";
  std::cerr << "[consistency] put " << puts << " refused with NOSPACE via m"
            << refused_via << "\n";

  std::set<std::string> member_lines;
  for (int i : All()) {
    member_lines.insert(AlarmLine(cluster_->MemberId(i), "NOSPACE"));
  }
  const auto nospace_of_members = [&](const std::vector<std::string>& l) {
    if (l.empty()) return false;
    for (const auto& line : l) {
      if (member_lines.count(line) == 0) return false;
    }
    return true;
  };
  ASSERT_TRUE(
      WaitForAlarmLists(nospace_of_members, absl::Seconds(20), nullptr));

  // Every member applied the same entries: the same HashKV at one revision.
  const int64_t rev = Revision(0);
  EXPECT_TRUE(cluster_->WaitForEqualHashKv(All(), rev, absl::Seconds(20)));

  for (int i : All()) {
    CmdResult r = cluster_->Ctl(i, {"put", "small", "x"});
    EXPECT_EQ(r.exit_code, 1) << "m" << i;
    EXPECT_EQ(ErrorLine(r.err), kNoSpace) << "m" << i;
  }
  // The list once the refusals above have raised what they raise.
  std::vector<std::string> alarms;
  ASSERT_TRUE(
      WaitForAlarmLists(nospace_of_members, absl::Seconds(20), &alarms));
  std::vector<std::optional<MemberStatus>> st = cluster_->Statuses(All());
  for (int i : All()) {
    ASSERT_TRUE(st[i].has_value()) << "no status from m" << i;
    std::vector<std::string> errors = st[i]->errors;
    std::sort(errors.begin(), errors.end());
    EXPECT_EQ(errors, alarms) << "endpoint status errors of m" << i;
    HttpResponse h = HttpGet(cluster_->member(i).MetricsUrl() + "/health");
    EXPECT_EQ(h.status, 503) << "/health of m" << i << ": " << h.body;
  }

  CmdResult disarm = cluster_->Ctl(1, {"alarm", "disarm"});
  ASSERT_EQ(disarm.exit_code, 0) << disarm.err;
  std::vector<std::string> disarmed = SplitLines(disarm.out);
  std::sort(disarmed.begin(), disarmed.end());
  EXPECT_EQ(disarmed, alarms);
  ASSERT_TRUE(WaitForAlarmLists(
      [](const std::vector<std::string>& l) { return l.empty(); },
      absl::Seconds(20)));
  for (int i : All()) {
    std::optional<MemberStatus> s = cluster_->Status(i);
    ASSERT_TRUE(s.has_value()) << "no status from m" << i;
    EXPECT_TRUE(s->errors.empty())
        << "m" << i << ": " << absl::StrJoin(s->errors, "|");
    EXPECT_TRUE(WaitForHealth(i, 200, absl::Seconds(10)));
  }
}

// ---------------------------------------------------------------------------
// 3. Corruption detection (synod only).

constexpr char kSkipCorruptOnEtcd[] =
    "synod-corrupt-member damages synod's LevelDB data dir; it cannot damage "
    "etcd's bbolt file";

// Runs the test-only tool on a stopped member's data dir; returns the key
// whose newest value it changed ("" on failure, with a test failure).
std::string CorruptMember(const std::string& data_dir) {
  const std::string tool = SYNOD_CORRUPT_MEMBER_BINARY;
  if (tool.empty() || access(tool.c_str(), X_OK) != 0) {
    ADD_FAILURE() << "synod-corrupt-member is not built: '" << tool << "'";
    return "";
  }
  CmdResult r = RunCommand({tool, data_dir}, std::nullopt, absl::Seconds(30));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  std::vector<std::string> lines = SplitLines(r.out);
  return r.exit_code == 0 && lines.size() == 1 ? lines[0] : "";
}

class CorruptionTest : public ConsistencyClusterTest {
 protected:
  // Puts a few keys, waits until every member holds them, stops member
  // kDamaged and damages its newest value.
  void WriteStopAndDamage() {
    for (int n = 0; n < 5; ++n) {
      CmdResult r =
          cluster_->Ctl(n % cluster_->size(),
                        {"put", absl::StrCat("c/", n), absl::StrCat("v", n)});
      ASSERT_EQ(r.exit_code, 0) << r.err;
    }
    const int64_t rev = Revision(0);
    ASSERT_TRUE(cluster_->WaitForEqualHashKv(All(), rev, absl::Seconds(20)));
    cluster_->Stop(kDamaged);
    const std::string key =
        CorruptMember(cluster_->member(kDamaged).data_dir());
    ASSERT_TRUE(absl::StartsWith(key, "c/")) << "damaged key '" << key << "'";
  }

  static constexpr int kDamaged = 2;
};

// A member started with --experimental-initial-corrupt-check compares its
// HashKV with its peers' before serving, and refuses to start on a mismatch.
TEST_F(CorruptionTest, DamagedMemberRefusesToStartWithInitialCheck) {
  if (UsingRealEtcd()) GTEST_SKIP() << kSkipCorruptOnEtcd;
  StartCluster({});
  ASSERT_NO_FATAL_FAILURE(WriteStopAndDamage());

  ServerProcess& damaged = cluster_->member(kDamaged);
  damaged.AddFlags({"--experimental-initial-corrupt-check=true"});
  ASSERT_TRUE(damaged.Spawn());
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (!damaged.ExitedByItself() && absl::Now() < deadline) {
    absl::SleepFor(kPollInterval);
  }
  ASSERT_TRUE(damaged.ExitedByItself())
      << "the damaged member still runs 30 s after its start";
  EXPECT_NE(damaged.exit_code(), 0);
  const std::string log = damaged.LogTail(20000);
  EXPECT_TRUE(absl::StrContains(
      log, absl::StrCat(HexId(cluster_->MemberId(kDamaged)),
                        " found data inconsistency with peers")))
      << log;
  // The healthy members go on serving, without an alarm.
  for (int i : {0, 1}) {
    std::optional<std::vector<std::string>> alarms = AlarmList(i);
    ASSERT_TRUE(alarms.has_value()) << "m" << i;
    EXPECT_TRUE(alarms->empty())
        << "m" << i << ": " << absl::StrJoin(*alarms, "|");
  }
}

// With --experimental-corrupt-check-time the leader compares HashKV at its
// revision with every follower and raises CORRUPT (through Raft) for the
// member off the majority's hash; the cluster then refuses writes.
TEST_F(CorruptionTest, PeriodicCheckRaisesCorruptForDamagedMember) {
  if (UsingRealEtcd()) GTEST_SKIP() << kSkipCorruptOnEtcd;
  StartCluster({"--experimental-corrupt-check-time=1s"});
  ASSERT_NO_FATAL_FAILURE(WriteStopAndDamage());
  ASSERT_TRUE(cluster_->StartMember(kDamaged));

  const std::string expected =
      AlarmLine(cluster_->MemberId(kDamaged), "CORRUPT");
  ASSERT_TRUE(WaitForAlarmLists(
      [&](const std::vector<std::string>& l) {
        return l == std::vector<std::string>{expected};
      },
      absl::Seconds(30)));
  for (int i : All()) {
    CmdResult r = cluster_->Ctl(i, {"put", "after", "x"});
    EXPECT_EQ(r.exit_code, 1) << "m" << i;
    EXPECT_EQ(ErrorLine(r.err), kCorrupt) << "m" << i;
  }
}

// ---------------------------------------------------------------------------
// 4. Lease checkpoints (issue 10, bug 6): the flag is accepted. What it does
// (a remaining TTL that survives a leader change) is covered by unit tests;
// etcd 3.4 checkpoints every 5 minutes, too slow for this suite.

class LeaseCheckpointFlagTest : public ServerTest {
 protected:
  std::vector<std::string> ExtraFlags() override {
    return {"--experimental-enable-lease-checkpoint=true"};
  }
};

TEST_F(LeaseCheckpointFlagTest, MemberStartsAndServesLeases) {
  Json grant = CtlJson({"lease", "grant", "60"});
  ASSERT_NE(grant["ID"].Uint(), 0u);
  const std::string id = absl::StrFormat("%016x", grant["ID"].Uint());
  Json ttl = CtlJson({"lease", "timetolive", id});
  EXPECT_EQ(ttl["granted-ttl"].Int(), 60);
  EXPECT_GT(ttl["ttl"].Int(), 0);
  EXPECT_LE(ttl["ttl"].Int(), 60);
}

}  // namespace
}  // namespace synod::testing
