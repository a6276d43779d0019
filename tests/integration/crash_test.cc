// Durability under kill -9: every write etcdctl acknowledged survives a crash,
// and restarts reproduce the same state (hashkv) and revision sequence.
#include <unistd.h>

#include <atomic>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "gtest/gtest.h"
#include "tests/integration/harness.h"

namespace synod::testing {
namespace {

class CrashTest : public ServerTest {
 protected:
  uint64_t HashKv(int64_t* revision) {
    Json j = CtlJson({"endpoint", "hashkv"});
    *revision = j[0]["HashKV"]["header"]["revision"].Int();
    return j[0]["HashKV"]["hash"].Uint();
  }
  // All keys under `prefix` with their values.
  std::map<std::string, std::string> Dump(const std::string& prefix) {
    Json j = CtlJson({"get", prefix, "--prefix"});
    std::map<std::string, std::string> out;
    for (size_t i = 0; i < j["kvs"].size(); ++i) {
      out[j["kvs"][i]["key"].Bytes()] = j["kvs"][i]["value"].Bytes();
    }
    return out;
  }
};

TEST_F(CrashTest, AcknowledgedPutsSurviveKill9DuringWriteLoop) {
  constexpr int kMaxPuts = 300;
  constexpr int kKillAfterAcks = 60;
  const std::string endpoint = server_->Endpoint();
  std::mutex mu;
  std::map<std::string, std::string> acked;  // guarded by mu
  std::string unacked_key;                   // guarded by mu
  std::atomic<int> ack_count{0};
  std::atomic<bool> stop{false};

  std::thread writer([&] {
    for (int i = 0; i < kMaxPuts && !stop; ++i) {
      std::string key = absl::StrFormat("crash/%04d", i);
      std::string value = absl::StrCat("value-", i);
      CmdResult r =
          Etcdctl(endpoint, {"put", key, value}, std::nullopt, absl::Seconds(4));
      std::lock_guard<std::mutex> lock(mu);
      if (r.exit_code != 0) {
        unacked_key = key;  // in flight at the crash: may or may not exist
        return;
      }
      acked[key] = value;
      ++ack_count;
    }
  });
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (ack_count < kKillAfterAcks && absl::Now() < deadline) {
    usleep(5 * 1000);  // polling interval, bounded by the deadline
  }
  server_->Kill9();
  stop = true;
  writer.join();
  ASSERT_GE(ack_count.load(), kKillAfterAcks) << "writes too slow";

  ASSERT_TRUE(server_->Start());
  std::map<std::string, std::string> present = Dump("crash/");
  std::lock_guard<std::mutex> lock(mu);
  for (const auto& [key, value] : acked) {
    auto it = present.find(key);
    ASSERT_NE(it, present.end()) << "acknowledged put lost: " << key;
    EXPECT_EQ(it->second, value) << key;
  }
  // Nothing appears that was never written.
  for (const auto& [key, value] : present) {
    EXPECT_TRUE(acked.count(key) == 1 || key == unacked_key) << key;
  }
  // Revisions: one per put, starting at 2.
  int64_t rev = CurrentRevision();
  EXPECT_GE(rev, 1 + static_cast<int64_t>(acked.size()));
  EXPECT_LE(rev, 2 + static_cast<int64_t>(acked.size()));
}

TEST_F(CrashTest, RevisionSequenceContinuesAfterKill9) {
  int64_t last = 0;
  for (int i = 0; i < 10; ++i) last = MustPut(absl::StrCat("r", i), "v");
  server_->Kill9();
  ASSERT_TRUE(server_->Start());
  EXPECT_EQ(CurrentRevision(), last);
  EXPECT_EQ(MustPut("after", "crash"), last + 1);
  Json j = CtlJson({"get", "r9"});
  EXPECT_EQ(j["kvs"][0]["mod_revision"].Int(), last);
}

TEST_F(CrashTest, HashKvIsEqualAcrossTwoRestarts) {
  for (int i = 0; i < 40; ++i) {
    MustPut(absl::StrCat("h", i % 15), absl::StrCat("v", i));
  }
  ASSERT_EQ(Ctl({"del", "h3"}).exit_code, 0);
  int64_t compact_at = MustPut("h0", "again");
  for (int i = 0; i < 5; ++i) MustPut(absl::StrCat("late", i), "x");
  ASSERT_EQ(Ctl({"compact", std::to_string(compact_at)}).exit_code, 0);

  int64_t rev0 = 0, rev1 = 0, rev2 = 0;
  uint64_t hash0 = HashKv(&rev0);
  server_->Kill9();
  ASSERT_TRUE(server_->Start());
  uint64_t hash1 = HashKv(&rev1);
  ASSERT_TRUE(server_->Restart());  // graceful this time
  uint64_t hash2 = HashKv(&rev2);
  EXPECT_EQ(hash1, hash0);
  EXPECT_EQ(hash2, hash0);
  EXPECT_EQ(rev1, rev0);
  EXPECT_EQ(rev2, rev0);
  // The compaction survived too.
  CmdResult old = Ctl({"get", "h0", "--rev", std::to_string(compact_at - 1)});
  EXPECT_EQ(ErrorLine(old.err),
            "Error: etcdserver: mvcc: required revision has been compacted");
}

TEST_F(CrashTest, PausedServerTimesOutClientsThenRecoversOnResume) {
  MustPut("p", "1");
  server_->Pause();
  CmdResult stalled =
      Etcdctl(server_->Endpoint(), {"get", "p"}, std::nullopt, absl::Seconds(4));
  server_->Resume();
  EXPECT_NE(stalled.exit_code, 0) << "a stopped server answered: "
                                  << stalled.out;
  CmdResult get = Ctl({"get", "p"});
  EXPECT_EQ(get.exit_code, 0) << get.err;
  EXPECT_EQ(get.out, "p\n1\n");
}

}  // namespace
}  // namespace synod::testing
