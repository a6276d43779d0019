// Members whose peer URLs are Unix sockets (etcd's unix:// peer URLs, as
// etcd 3.4's e2e TestEtcdUnixPeers uses them): "unix://name" is a socket
// file called "name" in the member's working directory. Three such members
// form a cluster, replicate a put, and list each other with those URLs.
#include <sys/stat.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gtest/gtest.h"
#include "tests/integration/cluster.h"
#include "tests/integration/harness.h"
#include "tests/support/free_port.h"

namespace synod::testing {
namespace {

TEST(UnixPeerTest, ThreeMembersOnUnixSocketPeerUrlsReplicate) {
  TestDir dir;
  // Socket names in the working directory (members inherit it), unique to
  // this run; the colon is part of the name, as in etcd's "etcd.unix:1".
  std::vector<std::string> urls, parts, files;
  for (int i = 0; i < 3; ++i) {
    const std::string file = absl::StrCat("synod-it-", getpid(), "-m", i, ".unix:1");
    files.push_back(file);
    urls.push_back("unix://" + file);
    parts.push_back(absl::StrCat("m", i, "=", urls.back()));
  }
  std::vector<std::unique_ptr<ServerProcess>> members;
  for (int i = 0; i < 3; ++i) {
    ServerOptions o;
    o.name = absl::StrCat("m", i);
    o.client_port = PickFreePort();
    o.metrics_port = PickFreePort();
    o.initial_cluster = absl::StrJoin(parts, ",");
    o.initial_cluster_state = "new";
    o.initial_cluster_token = "unix-peers";
    // After the harness's own http:// peer flags: the last value counts.
    o.extra_flags = {"--listen-peer-urls=" + urls[i],
                     "--initial-advertise-peer-urls=" + urls[i]};
    const std::string sub = absl::StrCat(dir.path(), "/", o.name);
    ASSERT_EQ(mkdir(sub.c_str(), 0755), 0);
    members.push_back(std::make_unique<ServerProcess>(sub, o));
  }
  for (auto& m : members) ASSERT_TRUE(m->Spawn());
  for (auto& m : members) ASSERT_TRUE(m->WaitReady(absl::Seconds(20)));

  CmdResult put = Etcdctl(members[0]->Endpoint(), {"put", "k", "over-unix"});
  ASSERT_EQ(put.exit_code, 0) << put.err;
  for (auto& m : members) {
    GetResult g = GetKey(m->Endpoint(), "k", /*serializable=*/false);
    ASSERT_TRUE(g.ok) << g.err;
    EXPECT_EQ(g.value.value_or("<absent>"), "over-unix");
  }
  CmdResult list = Etcdctl(members[2]->Endpoint(), {"member", "list"});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  for (const std::string& u : urls) {
    EXPECT_NE(list.out.find(u), std::string::npos) << list.out;
  }
  for (auto& m : members) m->Kill9();
  for (const std::string& f : files) unlink(f.c_str());
}

}  // namespace
}  // namespace synod::testing
