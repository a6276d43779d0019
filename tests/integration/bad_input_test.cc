// Malformed, oversized and hostile input: the server rejects it with etcd's
// exact errors and keeps serving.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <random>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "tests/integration/harness.h"

namespace synod::testing {
namespace {

class BadInputTest : public ServerTest {
 protected:
  std::vector<std::string> ExtraFlags() override {
    return {"--max-request-bytes=1048576"};
  }
};

TEST_F(BadInputTest, EmptyKeyIsRejected) {
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"put", "", "v"},
        std::vector<std::string>{"get", ""},
        std::vector<std::string>{"del", ""}}) {
    CmdResult r = Ctl(args);
    EXPECT_EQ(r.exit_code, 1) << args[0];
    EXPECT_EQ(ErrorLine(r.err), "Error: etcdserver: key is not provided")
        << args[0];
  }
  EXPECT_EQ(CurrentRevision(), 1);
}

TEST_F(BadInputTest, RangeEndBeforeKeyReturnsNothing) {
  MustPut("b", "1");
  CmdResult r = Ctl({"get", "b", "a"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "");
}

TEST_F(BadInputTest, BinaryKeysAndValuesRoundTrip) {
  std::string value("a\nb\0\xff", 5);
  ASSERT_EQ(Ctl({"put", "bin"}, value).exit_code, 0);
  Json j = CtlJson({"get", "bin"});
  EXPECT_EQ(j["kvs"][0]["value"].Bytes(), value);
  EXPECT_EQ(Ctl({"get", "bin", "--hex", "--print-value-only"}).out,
            "\\x61\\x0a\\x62\\x00\\xff\n");
  ASSERT_EQ(Ctl({"put", "k\xffz", "x"}).exit_code, 0);
  EXPECT_EQ(Ctl({"get", "k", "--prefix", "--hex", "--keys-only"}).out,
            "\\x6b\\xff\\x7a\n\n");
}

TEST_F(BadInputTest, RequestOverMaxRequestBytesIsRejected) {
  int64_t before = CurrentRevision();
  CmdResult r = Ctl({"put", "big"}, std::string(1100000, 'a'));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(ErrorLine(r.err), "Error: etcdserver: request is too large");
  EXPECT_EQ(CurrentRevision(), before);
  // Just under the limit is fine.
  CmdResult ok = Ctl({"put", "big"}, std::string(1000000, 'a'));
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
}

TEST_F(BadInputTest, MessageOverGrpcReceiveLimitIsResourceExhausted) {
  // The gRPC receive limit is --max-request-bytes + 512 KiB (1572864 here);
  // beyond it the transport, not etcd, rejects the message. The PutRequest
  // for key "big" and a 1700000-byte value encodes to 1700009 bytes.
  CmdResult r = Ctl({"put", "big"}, std::string(1700000, 'a'));
  EXPECT_EQ(r.exit_code, 1);
  std::string line = ErrorLine(r.err);
  EXPECT_TRUE(absl::StartsWith(
      line, "Error: rpc error: code = ResourceExhausted desc = "))
      << line;
  EXPECT_TRUE(absl::StrContains(line, "larger than max (1700009 vs. 1572864)"))
      << line;
}

// A second server on a client port that is taken refuses to start, as etcd
// ("address already in use"); gRPC's default SO_REUSEPORT let it start and
// take half of the port's connections.
TEST_F(BadInputTest, SecondServerOnTakenClientPortRefusesToStart) {
  TestDir dir;
  ServerOptions o;
  o.name = "s2";
  o.client_port = server_->client_port();
  ServerProcess second(dir.path(), o);
  ASSERT_TRUE(second.Spawn());
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  bool exited = false;
  while (!(exited = second.ExitedByItself()) && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));  // polling, not synchronisation
  }
  ASSERT_TRUE(exited) << "a second server started on a taken port:\n"
                      << second.LogTail();
  EXPECT_NE(second.exit_code(), 0);
  // The first one still serves.
  CmdResult r = Ctl({"put", "still", "here"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

TEST_F(BadInputTest, GarbageOnClientPortDoesNotStopServing) {
  const uint32_t seed = std::random_device{}();
  SCOPED_TRACE(absl::StrCat("seed ", seed));
  std::mt19937 rng(seed);
  std::string random_bytes(4096, '\0');
  for (char& c : random_bytes) c = static_cast<char>(rng() & 0xff);
  const std::string preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
  const std::vector<std::string> payloads = {
      random_bytes,
      preface + random_bytes,
      // A frame header announcing a 16 MiB DATA frame, then nothing.
      preface + std::string("\xff\xff\xff\x00\x00\x00\x00\x00\x01", 9),
      "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
      std::string(100000, '\0'),
  };
  for (size_t i = 0; i < payloads.size(); ++i) {
    EXPECT_TRUE(SendRawTcp(server_->client_port(), payloads[i])) << i;
    CmdResult r = Ctl({"put", "alive", std::to_string(i)});
    ASSERT_EQ(r.exit_code, 0) << "after payload " << i << ": " << r.err;
  }
  // A connection that stalls mid-preface must not block other clients.
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(server_->client_port());
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(write(fd, "PRI * HTTP", 10), 10);
  CmdResult get = Ctl({"get", "alive"});
  close(fd);
  EXPECT_EQ(get.exit_code, 0) << get.err;
  EXPECT_EQ(get.out, absl::StrCat("alive\n", payloads.size() - 1, "\n"));
}

}  // namespace
}  // namespace synod::testing
