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

TEST(ComputeIdTest, MemberIdIsDeterministicAndOrderInsensitive) {
  const std::vector<std::string> urls = {"http://a:1", "http://b:2"};
  const std::vector<std::string> reversed = {"http://b:2", "http://a:1"};
  const uint64_t id = ComputeMemberId("m1", urls, "tok");
  EXPECT_NE(id, 0u);
  EXPECT_EQ(id, ComputeMemberId("m1", urls, "tok"));
  EXPECT_EQ(id, ComputeMemberId("m1", reversed, "tok"));
  EXPECT_NE(id, ComputeMemberId("m1", urls, "tok2"));
  EXPECT_NE(id, ComputeMemberId("m2", urls, "tok"));
  EXPECT_NE(id, ComputeMemberId("m1", {"http://a:1"}, "tok"));
  EXPECT_NE(id, ComputeMemberId("m1", urls, "tok", /*salt=*/12345));
}

TEST(ComputeIdTest, ClusterIdIsOrderInsensitiveAndTokenSensitive) {
  const uint64_t c = ComputeClusterId({3, 1, 2}, "tok");
  EXPECT_NE(c, 0u);
  EXPECT_EQ(c, ComputeClusterId({1, 2, 3}, "tok"));
  EXPECT_NE(c, ComputeClusterId({1, 2, 3}, "other"));
  EXPECT_NE(c, ComputeClusterId({1, 2}, "tok"));
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
