// Cluster: N real server processes (synod, or real etcd 3.4 when
// SYNOD_TEST_SERVER=etcd) forming one Raft cluster on 127.0.0.1, driven by
// the stock etcdctl 3.4, for the cluster and fault-injection suites.
//
// Every member gets its own ports (picked up front, kept across restarts) and
// its own sub-directory of one TestDir (data dir + server.log). Members are
// addressed by index (0-based "slots"); slots are never reused, so a member
// added later gets the next index and a removed member keeps its slot.
//
// Timing is short so that tests are fast: by default --heartbeat-interval=50
// --election-timeout=500 (ms).
//
// Thread-safety: the Cluster object is used from the test's main thread (or
// one nemesis thread) at a time. Endpoint(i)/Endpoints() read only data that
// is fixed once a slot exists, so client threads may call them while another
// thread kills or restarts members, as long as no member is being added.
#ifndef SYNOD_TESTS_INTEGRATION_CLUSTER_H_
#define SYNOD_TESTS_INTEGRATION_CLUSTER_H_

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "tests/integration/harness.h"

namespace synod::testing {

struct ClusterOptions {
  int size = 3;             // members started by Start(); 1..7
  int heartbeat_ms = 50;    // --heartbeat-interval
  int election_ms = 500;    // --election-timeout
  int snapshot_count = 0;   // --snapshot-count; 0 = server default
  bool pre_vote = false;    // --pre-vote=true when set
  std::string token = "synod-it-cluster";  // --initial-cluster-token
  std::vector<std::string> extra_flags;    // "--flag=value", every member
  // Start() (all members) and Restart()/AddMember() (one) wait this long for
  // a member to serve.
  absl::Duration ready_timeout = absl::Seconds(20);
};

// One member's `etcdctl endpoint status -w json` entry.
struct MemberStatus {
  uint64_t member_id = 0;
  uint64_t leader = 0;  // 0 when the member knows no leader
  int64_t revision = 0;
  int64_t raft_term = 0;
  int64_t raft_index = 0;
  int64_t applied_index = 0;
  bool is_learner = false;
  std::vector<std::string> errors;  // e.g. "etcdserver: no leader"
};

// One entry of `etcdctl member list -w json`.
struct MemberInfo {
  uint64_t id = 0;
  std::string name;  // empty for a member that was added but never started
  std::vector<std::string> peer_urls;
  std::vector<std::string> client_urls;
  bool is_learner = false;
};

class Cluster {
 public:
  // Creates the TestDir and picks every port; starts nothing.
  explicit Cluster(ClusterOptions options = {});
  // SIGKILLs every member still running (paused ones too).
  ~Cluster();
  Cluster(const Cluster&) = delete;
  Cluster& operator=(const Cluster&) = delete;

  // Spawns every initial member with --initial-cluster-state=new, waits until
  // each serves a linearizable get and a leader is known, and learns every
  // member ID. On failure the result carries the log tails.
  ::testing::AssertionResult Start();

  const ClusterOptions& options() const { return options_; }
  const std::string& dir() const { return dir_->path(); }
  // Number of slots (initial members + added ones, removed ones included).
  int size() const { return static_cast<int>(members_.size()); }
  // REQUIRES: 0 <= i < size().
  ServerProcess& member(int i) { return *members_[i]->process; }
  std::string Endpoint(int i) const;  // "127.0.0.1:P"
  std::string PeerUrl(int i) const;   // "http://127.0.0.1:P"
  // Comma-separated endpoints of every slot that is still a member (not
  // removed), running or not, or of `only` when it is non-empty.
  std::string Endpoints(const std::vector<int>& only = {}) const;
  // Slots that are members, running and not paused.
  std::vector<int> Live() const;
  bool Removed(int i) const { return members_[i]->removed; }
  bool IsLearner(int i) const { return members_[i]->learner; }
  // The member ID (known once the member has started, or been added).
  uint64_t MemberId(int i) const { return members_[i]->id; }
  // The slot with this member ID, or -1.
  int IndexOf(uint64_t member_id) const;

  // Per-member process control. Restart and StartMember wait (ready_timeout)
  // until the member serves: a linearizable get, or a serializable one for a
  // learner or when `serializable`.
  void Kill9(int i);
  void Stop(int i);  // SIGTERM (SIGKILL after 10 s)
  ::testing::AssertionResult StartMember(int i, bool serializable = false);
  ::testing::AssertionResult Restart(int i, bool serializable = false);
  void Pause(int i);   // SIGSTOP
  void Resume(int i);  // SIGCONT

  // etcdctl against member i (or the comma list `endpoints`).
  CmdResult Ctl(int i, const std::vector<std::string>& args,
                const std::optional<std::string>& stdin_data = std::nullopt,
                absl::Duration timeout = absl::Seconds(10)) const;
  // etcdctl ... -w json, parsed; nullopt on a non-zero exit or bad JSON.
  std::optional<Json> CtlJson(int i, const std::vector<std::string>& args,
                              absl::Duration timeout = absl::Seconds(10)) const;

  // `endpoint status -w json` of member i; nullopt when it does not answer
  // within `timeout`.
  std::optional<MemberStatus> Status(
      int i, absl::Duration timeout = absl::Seconds(3)) const;
  // Statuses of several live members in one etcdctl run; members that do not
  // answer are missing from the result. Index = slot.
  std::vector<std::optional<MemberStatus>> Statuses(
      const std::vector<int>& slots,
      absl::Duration timeout = absl::Seconds(3)) const;
  // The slot of the leader: a live member whose status names itself leader
  // (the highest term wins if several do). -1 when there is none.
  int Leader() const;
  // Polls Leader() until there is one; returns it or -1 on timeout.
  int WaitForLeader(absl::Duration timeout) const;

  // `member list -w json` via member `via`.
  std::optional<std::vector<MemberInfo>> MemberList(int via) const;
  // Polls MemberList(via) until `done` holds for it; on timeout the result
  // carries the last list. Each member answers from the membership it has
  // applied (etcd 3.4's MemberList is not linearizable), so a member that
  // lags the one that made a change, or a member that has not yet published
  // its name and client URLs, shows the change a moment later.
  ::testing::AssertionResult WaitForMemberList(
      int via, const std::function<bool(const std::vector<MemberInfo>&)>& done,
      absl::Duration timeout) const;
  // `member add <name> --peer-urls=<new peer url> [--learner]` via a live
  // member (retried for up to 15 s while etcd says "etcdserver: unhealthy
  // cluster": it refuses changes until its peers have been connected for
  // 5 s), then starts the new member with --initial-cluster-state=existing
  // and the ETCD_INITIAL_CLUSTER that etcdctl printed, and waits until it
  // serves (serializable get for a learner). Sets *index to the new slot.
  ::testing::AssertionResult AddMember(bool learner, int* index);
  // The same, without starting the new member (it stays "unstarted").
  ::testing::AssertionResult AddMemberUnstarted(bool learner, int* index);
  // `member promote <hex id>` via a live voting member.
  ::testing::AssertionResult PromoteMember(int i);
  // `member remove <hex id>` via a live member other than i (retried like
  // AddMember). The removed
  // process is left running: the server is expected to stop by itself.
  ::testing::AssertionResult RemoveMember(int i);

  // `endpoint hashkv --rev=rev -w json` of member i: {hash, compact_revision}.
  std::optional<std::pair<uint64_t, int64_t>> HashKv(int i, int64_t rev) const;
  // Polls until every slot in `slots` reports the same hashkv at `rev`
  // (members that have not applied rev yet answer "future revision").
  ::testing::AssertionResult WaitForEqualHashKv(const std::vector<int>& slots,
                                                int64_t rev,
                                                absl::Duration timeout) const;
  // Polls member i with a serializable get until its revision is >= rev.
  ::testing::AssertionResult WaitForRevision(int i, int64_t rev,
                                             absl::Duration timeout) const;

  // The tail of every member's log, for failure messages.
  std::string LogTails(size_t max_bytes_each = 2500) const;

 private:
  struct Slot {
    std::unique_ptr<ServerProcess> process;
    uint64_t id = 0;
    bool removed = false;
    bool learner = false;
  };
  ServerOptions MemberOptions(const std::string& name, int client_port,
                              int peer_port, int metrics_port,
                              const std::string& initial_cluster,
                              const std::string& state) const;
  ::testing::AssertionResult AddSlot(bool learner, bool start, int* index);
  int VotingLiveMember(int except) const;
  // etcdctl `member add/remove`, retried (15 s) while etcd refuses the
  // change because its peers have not been connected long enough.
  CmdResult CtlReconfigure(int via, const std::vector<std::string>& args) const;

  ClusterOptions options_;
  std::unique_ptr<TestDir> dir_;
  std::vector<std::unique_ptr<Slot>> members_;
};

// A member ID in hex, as `member promote/remove` take it ("7421176ae5d9a2a1").
std::string HexId(uint64_t id);

// ---------------------------------------------------------------------------
// Client helpers shared by the cluster suites.

// One `etcdctl get <key> -w json [--consistency=s]`.
struct GetResult {
  bool ok = false;                   // etcdctl exited 0 with valid JSON
  std::optional<std::string> value;  // nullopt: key absent
  int64_t revision = 0;              // header.revision
  std::string error;                 // ErrorLine() when !ok
  std::string err;                   // full stderr when !ok
};
GetResult GetKey(const std::string& endpoints, const std::string& key,
                 bool serializable,
                 absl::Duration timeout = absl::Seconds(10));

// Every key under `prefix` with its value (`get --prefix -w json`); nullopt
// when etcdctl fails.
std::optional<std::map<std::string, std::string>> Dump(
    const std::string& endpoint, const std::string& prefix, bool serializable,
    absl::Duration timeout = absl::Seconds(10));

// A background loop of `etcdctl put <prefix>%06d v<seq>`, one put per key,
// round-robin over its endpoints, bounded by `max_puts` and `max_time`. Each
// put has a 4 s limit (etcdctl --command-timeout=2s). A failed put is an
// unknown outcome: the key may or may not exist afterwards.
// Thread-safety: all methods may be called while the loop runs.
class WriteLoop {
 public:
  WriteLoop(std::vector<std::string> endpoints, std::string prefix,
            int max_puts, absl::Duration max_time);
  ~WriteLoop();  // Stop()
  WriteLoop(const WriteLoop&) = delete;
  WriteLoop& operator=(const WriteLoop&) = delete;

  // Replaces the endpoints used from the next put on (e.g. to skip a member
  // that was killed: etcdctl waits its whole timeout on a dead endpoint).
  void SetEndpoints(std::vector<std::string> endpoints);
  // Stops after the put in flight and joins. Idempotent.
  void Stop();
  // Waits until at least `n` puts were acknowledged; false on timeout or if
  // the loop ended first.
  bool WaitForAcked(int n, absl::Duration timeout);
  int acked() const;
  int failed() const;
  bool done() const;
  std::map<std::string, std::string> Acked() const;  // key -> value
  std::vector<std::string> Unknown() const;          // keys of failed puts
  std::vector<std::string> Errors() const;           // their error lines

 private:
  void Run(int max_puts, absl::Duration max_time);

  const std::string prefix_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::string> endpoints_;         // guarded by mu_
  std::map<std::string, std::string> acked_;   // guarded by mu_
  std::vector<std::string> unknown_, errors_;  // guarded by mu_
  bool stop_ = false;                          // guarded by mu_
  bool done_ = false;                          // guarded by mu_
  std::thread thread_;
};

}  // namespace synod::testing

#endif  // SYNOD_TESTS_INTEGRATION_CLUSTER_H_
