// Distributed lock and election via `etcdctl lock` / `etcdctl elect`
// (client-side clientv3/concurrency recipes over sessions = leases, txn and
// watch). Keys are "<name>/<lease ID as %x, not zero padded>".
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <memory>
#include <regex>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "proto/rpc.grpc.pb.h"
#include "proto/v3election.grpc.pb.h"
#include "proto/v3lock.grpc.pb.h"
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


// The number of threads of process `pid` (/proc/PID/status), or -1.
int ThreadCount(pid_t pid) {
  std::ifstream f(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(f, line)) {
    int n = 0;
    if (absl::StartsWith(line, "Threads:") &&
        absl::SimpleAtoi(absl::StripAsciiWhitespace(line.substr(8)), &n)) {
      return n;
    }
  }
  return -1;
}

// A thousand Lock calls wait at once on one member: they cost no thread
// each, every one is granted exactly once in the order its key was created
// as its predecessors unlock, and the waiters whose clients cancel give up
// their place (their keys are deleted).
TEST_F(LockElectTest, ThousandWaitingLocksAreGrantedInOrderAndCanceledOnesLeave) {
  // Against real etcd 3.4 the same test runs with 200 waiters: with 500 or
  // more, etcd stopped granting the lock in our runs (not analysed; its
  // Lock service runs clientv3's Mutex per call through an in-process
  // client).
  const int kWaiters = UsingRealEtcd() ? 200 : 1000;
  const int kCanceled = kWaiters / 10;  // every 10th waiter
  auto channel = grpc::CreateChannel(server_->Endpoint(),
                                     grpc::InsecureChannelCredentials());
  auto leases = etcdserverpb::Lease::NewStub(channel);
  auto locks = v3lockpb::Lock::NewStub(channel);
  auto kv = etcdserverpb::KV::NewStub(channel);
  auto grant = [&]() -> int64_t {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    etcdserverpb::LeaseGrantRequest req;
    req.set_ttl(300);
    etcdserverpb::LeaseGrantResponse resp;
    grpc::Status st = leases->LeaseGrant(&ctx, req, &resp);
    EXPECT_TRUE(st.ok()) << st.error_message();
    return resp.id();
  };
  auto count = [&](const std::string& prefix) -> int64_t {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    etcdserverpb::RangeRequest req;
    req.set_key(prefix);
    std::string end = prefix;
    end.back()++;
    req.set_range_end(end);
    req.set_count_only(true);
    etcdserverpb::RangeResponse resp;
    grpc::Status st = kv->Range(&ctx, req, &resp);
    EXPECT_TRUE(st.ok()) << st.error_message();
    return resp.count();
  };

  // The holder.
  v3lockpb::LockResponse held;
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    v3lockpb::LockRequest req;
    req.set_name("many");
    req.set_lease(grant());
    ASSERT_TRUE(locks->Lock(&ctx, req, &held).ok());
  }
  const int threads_before = ThreadCount(server_->pid());

  struct Waiter {
    int index = 0;
    grpc::ClientContext ctx;
    v3lockpb::LockRequest req;
    v3lockpb::LockResponse resp;
    grpc::Status status;
    std::unique_ptr<grpc::ClientAsyncResponseReader<v3lockpb::LockResponse>> rpc;
  };
  grpc::CompletionQueue cq;
  std::vector<std::unique_ptr<Waiter>> waiters;
  for (int i = 0; i < kWaiters; ++i) {
    auto w = std::make_unique<Waiter>();
    w->index = i;
    w->req.set_name("many");
    w->req.set_lease(grant());
    w->ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
    w->rpc = locks->AsyncLock(&w->ctx, w->req, &cq);
    w->rpc->Finish(&w->resp, &w->status, w.get());
    waiters.push_back(std::move(w));
    // Queue in a known order: wait for each key before the next Lock.
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    while (count("many/") < i + 2 && absl::Now() < deadline) {
    }
    ASSERT_EQ(count("many/"), i + 2) << "waiter " << i << " has no key";
  }
  const int threads_waiting = ThreadCount(server_->pid());
  std::cerr << "[lock] threads: " << threads_before << " with one holder, "
            << threads_waiting << " with " << kWaiters << " more waiting\n";
  if (!UsingRealEtcd()) {  // etcd waits on goroutines, not threads
    EXPECT_LT(threads_waiting, threads_before + 20);
  }

  for (int i = 0; i < kWaiters; i += kWaiters / kCanceled) waiters[i]->ctx.TryCancel();
  auto unlock = [&](const std::string& key) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    v3lockpb::UnlockRequest req;
    req.set_key(key);
    v3lockpb::UnlockResponse resp;
    ASSERT_TRUE(locks->Unlock(&ctx, req, &resp).ok());
  };
  unlock(held.key());

  // Grants come one at a time, each after the previous holder unlocks.
  int next = 0;  // the lowest waiter that may hold the lock next
  int granted = 0, canceled = 0;
  for (int done = 0; done < kWaiters; ++done) {
    void* tag = nullptr;
    bool ok = false;
    ASSERT_TRUE(cq.Next(&tag, &ok));
    Waiter* w = static_cast<Waiter*>(tag);
    if (w->index % (kWaiters / kCanceled) == 0) {
      EXPECT_EQ(w->status.error_code(), grpc::StatusCode::CANCELLED) << w->index;
      ++canceled;
      continue;
    }
    ASSERT_TRUE(w->status.ok()) << w->index << ": " << w->status.error_message();
    while (next % (kWaiters / kCanceled) == 0) ++next;
    ASSERT_EQ(w->index, next) << "granted out of order";
    EXPECT_EQ(w->resp.key(), absl::StrCat("many/", absl::Hex(w->req.lease())));
    ++next;
    ++granted;
    unlock(w->resp.key());
  }
  EXPECT_EQ(granted, kWaiters - kCanceled);
  EXPECT_EQ(canceled, kCanceled);
  EXPECT_EQ(count("many/"), 0) << "a canceled waiter left its key";
}


// Election over gRPC: Observe streams the leader, each value it proclaims,
// and its successor after it resigns; a waiting Campaign returns once the
// leader resigns; a canceled Observe ends.
TEST_F(LockElectTest, ObserveFollowsProclaimAndResignToTheNextLeader) {
  auto channel = grpc::CreateChannel(server_->Endpoint(),
                                     grpc::InsecureChannelCredentials());
  auto leases = etcdserverpb::Lease::NewStub(channel);
  auto election = v3electionpb::Election::NewStub(channel);
  auto deadline = [] {
    return std::chrono::system_clock::now() + std::chrono::seconds(10);
  };
  auto grant = [&]() -> int64_t {
    grpc::ClientContext ctx;
    ctx.set_deadline(deadline());
    etcdserverpb::LeaseGrantRequest req;
    req.set_ttl(300);
    etcdserverpb::LeaseGrantResponse resp;
    EXPECT_TRUE(leases->LeaseGrant(&ctx, req, &resp).ok());
    return resp.id();
  };

  v3electionpb::CampaignResponse alice;
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(deadline());
    v3electionpb::CampaignRequest req;
    req.set_name("el");
    req.set_lease(grant());
    req.set_value("alice");
    ASSERT_TRUE(election->Campaign(&ctx, req, &alice).ok());
  }
  grpc::ClientContext observe_ctx;
  observe_ctx.set_deadline(deadline());
  v3electionpb::LeaderRequest observe_req;
  observe_req.set_name("el");
  auto observe = election->Observe(&observe_ctx, observe_req);
  v3electionpb::LeaderResponse seen;
  ASSERT_TRUE(observe->Read(&seen));
  EXPECT_EQ(seen.kv().value(), "alice");
  EXPECT_EQ(seen.kv().key(), alice.leader().key());

  {
    grpc::ClientContext ctx;
    ctx.set_deadline(deadline());
    v3electionpb::ProclaimRequest req;
    *req.mutable_leader() = alice.leader();
    req.set_value("alice-2");
    v3electionpb::ProclaimResponse resp;
    ASSERT_TRUE(election->Proclaim(&ctx, req, &resp).ok());
  }
  ASSERT_TRUE(observe->Read(&seen));
  EXPECT_EQ(seen.kv().value(), "alice-2");

  // Bob waits behind alice until she resigns.
  grpc::CompletionQueue cq;
  grpc::ClientContext bob_ctx;
  bob_ctx.set_deadline(deadline());
  v3electionpb::CampaignRequest bob_req;
  bob_req.set_name("el");
  bob_req.set_lease(grant());
  bob_req.set_value("bob");
  v3electionpb::CampaignResponse bob;
  grpc::Status bob_status;
  auto bob_rpc = election->AsyncCampaign(&bob_ctx, bob_req, &cq);
  bob_rpc->Finish(&bob, &bob_status, &bob);
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(deadline());
    v3electionpb::ResignRequest req;
    *req.mutable_leader() = alice.leader();
    v3electionpb::ResignResponse resp;
    ASSERT_TRUE(election->Resign(&ctx, req, &resp).ok());
  }
  void* tag = nullptr;
  bool ok = false;
  ASSERT_TRUE(cq.Next(&tag, &ok));
  ASSERT_TRUE(bob_status.ok()) << bob_status.error_message();
  EXPECT_EQ(bob.leader().key(), absl::StrCat("el/", absl::Hex(bob_req.lease())));
  ASSERT_TRUE(observe->Read(&seen));
  EXPECT_EQ(seen.kv().value(), "bob");
  EXPECT_EQ(seen.kv().key(), bob.leader().key());

  // A proclaim by a leader that has resigned is refused.
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(deadline());
    v3electionpb::ProclaimRequest req;
    *req.mutable_leader() = alice.leader();
    req.set_value("alice-3");
    v3electionpb::ProclaimResponse resp;
    grpc::Status st = election->Proclaim(&ctx, req, &resp);
    EXPECT_FALSE(st.ok());
    EXPECT_EQ(st.error_message(), "election: not leader");
  }
  observe_ctx.TryCancel();
  while (observe->Read(&seen)) {
  }
  EXPECT_EQ(observe->Finish().error_code(), grpc::StatusCode::CANCELLED);
}

}  // namespace
}  // namespace synod::testing
