// KeepAliveFolder on a fake upstream: keep-alives for one lease fold into
// one upstream request at a time on one shared stream; failures resend.
#include "proxy/lease_proxy.h"

#include <memory>
#include <vector>

#include "gtest/gtest.h"
#include "tests/proxy/fake_upstream.h"

namespace synod::proxy {
namespace {

using testing::FakeUpstream;

class RecordingSink final : public KeepAliveSink {
 public:
  void Deliver(const etcdserverpb::LeaseKeepAliveResponse& r) override {
    got.push_back(r.ttl());
  }
  std::vector<int64_t> got;
};

TEST(KeepAliveFolderTest, ConcurrentKeepAlivesForOneLeaseFold) {
  FakeUpstream up;
  KeepAliveFolder folder(&up, nullptr);
  std::vector<std::shared_ptr<RecordingSink>> clients;
  for (int i = 0; i < 100; ++i) {
    clients.push_back(std::make_shared<RecordingSink>());
    folder.KeepAlive(42, clients.back());
  }
  folder.KeepAlive(7, std::make_shared<RecordingSink>());
  ASSERT_EQ(up.keepalives.size(), 1u);  // one shared upstream stream
  EXPECT_EQ(up.keepalives[0]->sent, (std::vector<int64_t>{42, 7}));
  up.keepalives[0]->Answer(42, 60);
  for (auto& c : clients) EXPECT_EQ(c->got, std::vector<int64_t>{60});
  // The next round sends again.
  folder.KeepAlive(42, clients[0]);
  EXPECT_EQ(up.keepalives[0]->sent, (std::vector<int64_t>{42, 7, 42}));
}

TEST(KeepAliveFolderTest, InFlightKeepAlivesAreResentAfterAFailure) {
  FakeUpstream up;
  KeepAliveFolder folder(&up, nullptr);
  auto c = std::make_shared<RecordingSink>();
  folder.KeepAlive(42, c);
  up.keepalives[0]->Fail();
  folder.Tick();
  ASSERT_EQ(up.keepalives.size(), 2u);
  EXPECT_EQ(up.keepalives[1]->sent, std::vector<int64_t>{42});
  up.keepalives[0]->Answer(42, 99);  // a stale stream is ignored
  EXPECT_TRUE(c->got.empty());
  up.keepalives[1]->Answer(42, 60);
  EXPECT_EQ(c->got, std::vector<int64_t>{60});
  folder.Tick();
  EXPECT_EQ(up.keepalives.size(), 2u);
}

TEST(KeepAliveFolderTest, ANewRequestAfterAFailureAlsoResendsTheOthers) {
  FakeUpstream up;
  KeepAliveFolder folder(&up, nullptr);
  auto a = std::make_shared<RecordingSink>();
  auto b = std::make_shared<RecordingSink>();
  folder.KeepAlive(1, a);
  up.keepalives[0]->Fail();
  folder.KeepAlive(2, b);  // reopens before any Tick
  ASSERT_EQ(up.keepalives.size(), 2u);
  EXPECT_EQ(up.keepalives[1]->sent, (std::vector<int64_t>{1, 2}));
  up.keepalives[1]->Answer(1, 10);
  up.keepalives[1]->Answer(2, 20);
  EXPECT_EQ(a->got, std::vector<int64_t>{10});
  EXPECT_EQ(b->got, std::vector<int64_t>{20});
}

}  // namespace
}  // namespace synod::proxy
