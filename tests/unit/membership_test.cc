// Membership: --initial-cluster parsing, member/cluster ID derivation, and
// the applied member record (add, promote, remove, attributes) staged into a
// Backend batch under "m/members".
#include "backend/server/membership.h"

#include <memory>
#include <string>
#include <vector>

#include "backend/storage/backend.h"
#include "gtest/gtest.h"
#include "leveldb/env.h"
#include "leveldb/helpers/memenv.h"

namespace synod::server {
namespace {

TEST(ParseInitialClusterTest, GoodInputs) {
  auto one = ParseInitialCluster("a=http://127.0.0.1:2380");
  ASSERT_TRUE(one.ok()) << one.status();
  ASSERT_EQ(one->size(), 1u);
  EXPECT_EQ((*one)[0].name, "a");
  EXPECT_EQ((*one)[0].peer_urls,
            std::vector<std::string>{"http://127.0.0.1:2380"});

  // Several URLs for one name are grouped, in flag order; members keep the
  // order of their first appearance.
  auto many = ParseInitialCluster(
      "b=http://h1:1,a=https://h2:2,b=http://h3:3,c=http://h4:4");
  ASSERT_TRUE(many.ok()) << many.status();
  ASSERT_EQ(many->size(), 3u);
  EXPECT_EQ((*many)[0].name, "b");
  EXPECT_EQ((*many)[0].peer_urls,
            (std::vector<std::string>{"http://h1:1", "http://h3:3"}));
  EXPECT_EQ((*many)[1].name, "a");
  EXPECT_EQ((*many)[1].peer_urls, std::vector<std::string>{"https://h2:2"});
  EXPECT_EQ((*many)[2].name, "c");

  // An '=' inside the URL stays in the URL; empty elements are skipped.
  auto eq = ParseInitialCluster("a=http://h:1/?x=y,,");
  ASSERT_TRUE(eq.ok()) << eq.status();
  ASSERT_EQ(eq->size(), 1u);
  EXPECT_EQ((*eq)[0].peer_urls, std::vector<std::string>{"http://h:1/?x=y"});

  // Unix socket peers, as etcd's TestEtcdUnixPeers uses.
  auto unix_peers = ParseInitialCluster("e=unix://etcd.unix:1,f=unixs://f.sock:2");
  ASSERT_TRUE(unix_peers.ok()) << unix_peers.status();
  ASSERT_EQ(unix_peers->size(), 2u);
  EXPECT_EQ((*unix_peers)[0].peer_urls, std::vector<std::string>{"unix://etcd.unix:1"});
  EXPECT_EQ((*unix_peers)[1].peer_urls, std::vector<std::string>{"unixs://f.sock:2"});
}

TEST(ParseInitialClusterTest, BadInputsAreInvalidArgumentNamingTheElement) {
  for (const std::string bad :
       {"a", "=http://h:1", "a=", "a=h:1", "a=ftp://h:1",
        "a=http://h:1,oops"}) {
    auto r = ParseInitialCluster(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(r.status().message().find("--initial-cluster"),
              std::string::npos)
        << r.status();
  }
  auto r = ParseInitialCluster("a=http://h:1,oops");
  EXPECT_NE(r.status().message().find("\"oops\""), std::string::npos)
      << r.status();
  for (const std::string empty : {"", ",", ",,,"}) {
    auto e = ParseInitialCluster(empty);
    ASSERT_FALSE(e.ok()) << "'" << empty << "'";
    EXPECT_EQ(e.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(e.status().message().find("empty"), std::string::npos)
        << e.status();
  }
}

// Golden IDs from etcd 3.4's own tests (membership/member_test.go
// TestMemberTime) and from a real etcd 3.4 cluster, so a response header
// carries the same IDs as etcd's.
TEST(ComputeIdTest, MemberIdIsEtcds) {
  const std::vector<std::string> one = {"http://10.0.0.8:2379"};
  EXPECT_EQ(ComputeMemberId("mem1", one, ""), 14544069596553697298ull);
  // The name does not enter the ID.
  EXPECT_EQ(ComputeMemberId("memfoo", one, ""), 14544069596553697298ull);
  // 1984-12-23T15:04:05Z: a member added at run time mixes in the time.
  const int64_t t = 472662245;
  EXPECT_EQ(ComputeMemberId("mem1", one, "", t), 2448790162483548276ull);
  EXPECT_EQ(ComputeMemberId("mcm1", one, "etcd", t), 6973882743191604649ull);
  EXPECT_EQ(ComputeMemberId("mem1", {"http://10.0.0.1:2379"}, "", t),
            1466075294948436910ull);
  // The peer URLs' order does not matter.
  EXPECT_EQ(ComputeMemberId("mem1", {"http://10.0.0.1:2379", "http://10.0.0.2:2379"}, ""),
            16552244735972308939ull);
  EXPECT_EQ(ComputeMemberId("mem1", {"http://10.0.0.2:2379", "http://10.0.0.1:2379"}, ""),
            16552244735972308939ull);
}

TEST(ComputeIdTest, ClusterIdIsEtcds) {
  // etcd 3.4 started as --initial-cluster-token new with
  // --initial-cluster testname0=https://localhost:30001,testname1=
  // https://localhost:30006,testname2=https://localhost:30011 reports these
  // member IDs and this cluster ID.
  std::vector<uint64_t> ids;
  for (const char* url : {"https://localhost:30001", "https://localhost:30006",
                          "https://localhost:30011"}) {
    ids.push_back(ComputeMemberId("", {url}, "new"));
  }
  EXPECT_EQ(ids, (std::vector<uint64_t>{8364611620891793163ull, 3684308329136425510ull,
                                        3599826362097180834ull}));
  EXPECT_EQ(ComputeClusterId(ids, "new"), 16471573827971693722ull);
  // The order of the IDs does not matter, nor does the token (it enters
  // only through the member IDs).
  EXPECT_EQ(ComputeClusterId({ids[2], ids[0], ids[1]}, "other"),
            16471573827971693722ull);
  // One member: etcd's e2e TestCtlV3GetFormat expects this cluster ID.
  const uint64_t solo = ComputeMemberId("", {"https://localhost:20001"}, "new");
  EXPECT_EQ(solo, 47555275972384877ull);
  EXPECT_EQ(ComputeClusterId({solo}, "new"), 0x34c21a2d427db393ull);
}

synodpb::Member M(uint64_t id, const std::string& name,
                  std::vector<std::string> peers, bool learner = false) {
  synodpb::Member m;
  m.set_id(id);
  m.set_name(name);
  for (auto& u : peers) m.add_peer_urls(u);
  m.set_is_learner(learner);
  return m;
}

class MembershipTest : public ::testing::Test {
 protected:
  void SetUp() override {
    env_.reset(leveldb::NewMemEnv(leveldb::Env::Default()));
    storage::BackendOptions opts;
    opts.env = env_.get();
    auto b = storage::Backend::Open("/db", opts);
    ASSERT_TRUE(b.ok()) << b.status();
    backend_ = std::move(*b);
  }
  void Commit(storage::Batch* b) {
    ASSERT_TRUE(backend_->Write(b, true).ok());
    b->Clear();
  }

  std::unique_ptr<leveldb::Env> env_;
  std::unique_ptr<storage::Backend> backend_;
};

TEST_F(MembershipTest, AddPromoteRemoveAndRemovedNeverReturns) {
  Membership ms;
  storage::Batch b;
  ms.Add(M(30, "c", {"http://c:1"}), &b);
  ms.Add(M(10, "a", {"http://a:1"}), &b);
  ms.Add(M(20, "", {"http://b:1"}, /*learner=*/true), &b);
  EXPECT_GT(b.Count(), 0);
  auto members = ms.Members();
  ASSERT_EQ(members.size(), 3u);
  EXPECT_EQ(members[0].id(), 10u);  // sorted by id
  EXPECT_EQ(members[1].id(), 20u);
  EXPECT_EQ(members[2].id(), 30u);
  EXPECT_TRUE(ms.Get(20)->is_learner());

  ms.Promote(20, &b);
  EXPECT_FALSE(ms.Get(20)->is_learner());
  // Adding an existing voter as a learner does not demote it.
  ms.Add(M(20, "", {"http://b:1"}, /*learner=*/true), &b);
  EXPECT_FALSE(ms.Get(20)->is_learner());
  // Re-adding a learner as a voter promotes it.
  ms.Add(M(40, "", {"http://d:1"}, /*learner=*/true), &b);
  ms.Add(M(40, "", {"http://d:1"}, /*learner=*/false), &b);
  EXPECT_FALSE(ms.Get(40)->is_learner());

  ms.Remove(30, &b);
  EXPECT_FALSE(ms.Get(30).has_value());
  EXPECT_TRUE(ms.IsRemoved(30));
  EXPECT_FALSE(ms.IsRemoved(10));
  ms.Remove(30, &b);  // idempotent: recorded once
  EXPECT_EQ(ms.Record().removed_size(), 1);
  ms.Add(M(30, "c", {"http://c:1"}), &b);
  EXPECT_FALSE(ms.Get(30).has_value()) << "a removed member came back";
  // Removing an unknown id still records it (a conf change may remove a
  // member this node never heard of).
  ms.Remove(99, &b);
  EXPECT_TRUE(ms.IsRemoved(99));
  EXPECT_EQ(ms.Members().size(), 3u);
}

TEST_F(MembershipTest, SetAttributesPeerUrlsAndFindByPeerUrl) {
  Membership ms;
  storage::Batch b;
  ms.Add(M(1, "", {"http://a:1", "http://a:2"}), &b);
  ms.Add(M(2, "b", {"http://b:1"}), &b);
  ms.SetAttributes(1, "alpha", {"http://a:2379", "http://a:2479"}, &b);
  auto a = ms.Get(1);
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->name(), "alpha");
  ASSERT_EQ(a->client_urls_size(), 2);
  EXPECT_EQ(a->client_urls(1), "http://a:2479");
  ms.SetAttributes(1, "alpha", {"http://a:9"}, &b);  // replaces, not appends
  EXPECT_EQ(ms.Get(1)->client_urls_size(), 1);
  ms.SetAttributes(77, "ghost", {"http://g:1"}, &b);  // unknown: ignored
  EXPECT_FALSE(ms.Get(77).has_value());

  EXPECT_EQ(ms.FindByPeerUrl({"http://a:2"}), std::optional<uint64_t>(1));
  EXPECT_EQ(ms.FindByPeerUrl({"http://x:1", "http://b:1"}),
            std::optional<uint64_t>(2));
  EXPECT_FALSE(ms.FindByPeerUrl({"http://x:1"}).has_value());
  EXPECT_FALSE(ms.FindByPeerUrl({}).has_value());

  ms.SetPeerUrls(2, {"http://b:9"}, &b);
  EXPECT_FALSE(ms.FindByPeerUrl({"http://b:1"}).has_value());
  EXPECT_EQ(ms.FindByPeerUrl({"http://b:9"}), std::optional<uint64_t>(2));
  EXPECT_EQ(ms.Get(2)->name(), "b");  // untouched by a peer URL update
}

TEST_F(MembershipTest, LoadRoundTripsTheStagedRecord) {
  Membership empty;
  ASSERT_TRUE(empty.Load(backend_.get()).ok());
  EXPECT_TRUE(empty.Members().empty());

  Membership ms;
  storage::Batch b;
  ms.Add(M(5, "e", {"http://e:1"}), &b);
  ms.Add(M(3, "c", {"http://c:1"}, /*learner=*/true), &b);
  ms.SetAttributes(5, "e", {"http://e:2379"}, &b);
  ms.Remove(8, &b);
  Commit(&b);

  Membership loaded;
  ASSERT_TRUE(loaded.Load(backend_.get()).ok());
  EXPECT_EQ(loaded.Record().SerializeAsString(),
            ms.Record().SerializeAsString());
  ASSERT_EQ(loaded.Members().size(), 2u);
  EXPECT_TRUE(loaded.Get(3)->is_learner());
  EXPECT_EQ(loaded.Get(5)->client_urls(0), "http://e:2379");
  EXPECT_TRUE(loaded.IsRemoved(8));

  // A later change staged into a new batch replaces the record; Load of the
  // new state drops what was removed.
  ms.Remove(3, &b);
  Commit(&b);
  ASSERT_TRUE(loaded.Load(backend_.get()).ok());
  EXPECT_FALSE(loaded.Get(3).has_value());
  EXPECT_TRUE(loaded.IsRemoved(3));

  // Reset replaces everything (bootstrap / snapshot restore).
  synodpb::MemberRecord rec;
  *rec.add_members() = M(42, "z", {"http://z:1"});
  loaded.Reset(rec);
  ASSERT_EQ(loaded.Members().size(), 1u);
  EXPECT_FALSE(loaded.IsRemoved(3));

  // A corrupt record is DataLoss.
  storage::Batch bad;
  bad.Put(kMetaMembers, "\xff\xff\xff not a proto");
  Commit(&bad);
  absl::Status st = loaded.Load(backend_.get());
  EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss) << st;
}

}  // namespace
}  // namespace synod::server
