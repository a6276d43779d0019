// Failover end to end: a 3-member synod cluster behind one synod-proxy.
// The member the proxy uses is killed; client watches carry on from the
// last delivered revision on another member (no event lost or repeated),
// and reads and writes through the proxy keep working.
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gtest/gtest.h"
#include "proto/rpc.grpc.pb.h"
#include "tests/integration/harness.h"
#include "tests/proxy/proxy_process.h"
#include "tests/proxy/watch_client.h"

namespace synod::testing {
namespace {

class ProxyFailoverItTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::make_unique<TestDir>();
    std::vector<ServerOptions> opts(3);
    std::vector<std::string> peers;
    for (int i = 0; i < 3; ++i) {
      opts[i].name = absl::StrCat("m", i);
      opts[i].client_port = PickFreePort();
      opts[i].peer_port = PickFreePort();
      opts[i].metrics_port = PickFreePort();
      peers.push_back(absl::StrCat(opts[i].name, "=http://127.0.0.1:",
                                   opts[i].peer_port));
    }
    for (int i = 0; i < 3; ++i) {
      opts[i].initial_cluster = absl::StrJoin(peers, ",");
      const std::string d = absl::StrCat(dir_->path(), "/m", i);
      std::filesystem::create_directories(d);
      members_.push_back(std::make_unique<ServerProcess>(d, opts[i]));
      ASSERT_TRUE(members_.back()->Spawn());
    }
    for (auto& m : members_) ASSERT_TRUE(m->WaitReady(absl::Seconds(20)));
    std::vector<std::string> eps;
    for (auto& m : members_) eps.push_back(m->Endpoint());
    proxy_ = std::make_unique<ProxyProcess>(eps);
    ASSERT_TRUE(proxy_->Start());
  }
  void TearDown() override {
    if (HasFailure() && proxy_) {
      std::string log = proxy_->Log();
      if (log.size() > 4000) log = log.substr(log.size() - 4000);
      std::cerr << "--- proxy log ---\n" << log << "\n";
    }
    clients_.clear();
    proxy_.reset();
    members_.clear();
    dir_.reset();
  }
  // A put on member `m`, retried while the cluster elects a new leader.
  int64_t PutOn(int m, const std::string& k, const std::string& v) {
    auto stub = etcdserverpb::KV::NewStub(grpc::CreateChannel(
        members_[m]->Endpoint(), grpc::InsecureChannelCredentials()));
    const absl::Time deadline = absl::Now() + absl::Seconds(20);
    while (absl::Now() < deadline) {
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::seconds(3));
      etcdserverpb::PutRequest req;
      req.set_key(k);
      req.set_value(v);
      etcdserverpb::PutResponse resp;
      if (stub->Put(&ctx, req, &resp).ok()) return resp.header().revision();
      absl::SleepFor(absl::Milliseconds(50));  // election in progress
    }
    ADD_FAILURE() << "put " << k << " on m" << m << " failed";
    return -1;
  }

  std::unique_ptr<TestDir> dir_;
  std::vector<std::unique_ptr<ServerProcess>> members_;
  std::unique_ptr<ProxyProcess> proxy_;
  std::vector<std::unique_ptr<WatchClient>> clients_;
};

TEST_F(ProxyFailoverItTest, WatchesAndReadsSurviveTheLossOfTheProxysMember) {
  auto channel = grpc::CreateChannel(proxy_->Endpoint(),
                                     grpc::InsecureChannelCredentials());
  constexpr int kStreams = 20, kPerStream = 10, kRanges = 2;
  for (int s = 0; s < kStreams; ++s) {
    clients_.push_back(std::make_unique<WatchClient>(channel));
    for (int w = 1; w <= kPerStream; ++w) {
      const int r = w % kRanges;
      clients_.back()->Watch(w, absl::StrCat("f", r, "/"),
                             absl::StrCat("f", r, "0"), 0);
    }
  }
  ASSERT_TRUE(WaitFor(
      [&] {
        for (auto& c : clients_) {
          if (!c->AllCreated(kPerStream)) return false;
        }
        return true;
      },
      absl::Seconds(20)));
  std::vector<std::vector<int64_t>> want(kRanges);
  auto write = [&](int member, int n, int base) {
    for (int i = 0; i < n; ++i) {
      const int r = i % kRanges;
      want[r].push_back(
          PutOn(member, absl::StrCat("f", r, "/", base + i), "v"));
    }
  };
  auto check = [&](const char* phase) {
    EXPECT_TRUE(WaitFor(
        [&] {
          for (auto& c : clients_) {
            for (int w = 1; w <= kPerStream; ++w) {
              if (c->EventCount(w) < want[w % kRanges].size()) return false;
            }
          }
          return true;
        },
        absl::Seconds(30)))
        << phase;
    for (size_t s = 0; s < clients_.size(); ++s) {
      for (int w = 1; w <= kPerStream; ++w) {
        ASSERT_EQ(clients_[s]->Log(w).revs, want[w % kRanges])
            << phase << " stream " << s << " watcher " << w;
      }
    }
  };
  write(1, 20, 0);
  check("before the failover");
  ASSERT_EQ(Etcdctl(proxy_->Endpoint(), {"put", "cfg", "a"}).exit_code, 0);
  ASSERT_EQ(Etcdctl(proxy_->Endpoint(), {"get", "cfg"}).exit_code, 0);

  members_[0]->Kill9();  // the proxy's first (current) endpoint
  write(1, 20, 100);
  write(2, 20, 200);
  check("after the proxy's member was killed");

  // Reads and writes through the proxy go to the survivors.
  CmdResult r = Etcdctl(proxy_->Endpoint(), {"put", "cfg", "b"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  PutOn(2, "cfg", "c");
  r = Etcdctl(proxy_->Endpoint(), {"get", "cfg", "--print-value-only"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "c\n");
}

}  // namespace
}  // namespace synod::testing
