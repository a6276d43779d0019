#include "tests/integration/cluster.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <map>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"

namespace synod::testing {

namespace {

constexpr absl::Duration kPollInterval = absl::Milliseconds(50);

void PollSleep() { absl::SleepFor(kPollInterval); }

std::optional<MemberStatus> ParseStatus(const Json& s) {
  if (s.IsNull()) return std::nullopt;
  MemberStatus st;
  st.member_id = s["header"]["member_id"].Uint();
  st.leader = s["leader"].Uint();
  st.revision = s["header"]["revision"].Int();
  st.raft_term = s["raftTerm"].Int();
  st.raft_index = s["raftIndex"].Int();
  st.applied_index = s["raftAppliedIndex"].Int();
  st.is_learner = s["isLearner"].Bool();
  for (size_t k = 0; k < s["errors"].size(); ++k) {
    st.errors.push_back(s["errors"][k].Str());
  }
  return st;
}

// The value of `KEY="value"` in etcdctl's `member add` text output.
std::optional<std::string> EnvValue(const std::string& out,
                                    const std::string& key) {
  for (const auto& line : SplitLines(out)) {
    absl::string_view v = line;
    if (absl::ConsumePrefix(&v, key + "=\"") && absl::ConsumeSuffix(&v, "\"")) {
      return std::string(v);
    }
  }
  return std::nullopt;
}

}  // namespace

std::string HexId(uint64_t id) { return absl::StrFormat("%x", id); }

Cluster::Cluster(ClusterOptions options)
    : options_(std::move(options)), dir_(std::make_unique<TestDir>()) {
  std::vector<int> client(options_.size), peer(options_.size),
      metrics(options_.size);
  std::vector<std::string> parts;
  for (int i = 0; i < options_.size; ++i) {
    client[i] = PickFreePort();
    peer[i] = PickFreePort();
    metrics[i] = PickFreePort();
    parts.push_back(
        absl::StrCat("m", i, "=http://127.0.0.1:", peer[i]));
  }
  const std::string initial_cluster = absl::StrJoin(parts, ",");
  for (int i = 0; i < options_.size; ++i) {
    auto slot = std::make_unique<Slot>();
    const std::string name = absl::StrCat("m", i);
    const std::string sub = absl::StrCat(dir_->path(), "/", name);
    mkdir(sub.c_str(), 0755);
    slot->process = std::make_unique<ServerProcess>(
        sub, MemberOptions(name, client[i], peer[i], metrics[i],
                           initial_cluster, "new"));
    members_.push_back(std::move(slot));
  }
}

Cluster::~Cluster() {
  for (auto& m : members_) m->process->Kill9();
}

ServerOptions Cluster::MemberOptions(const std::string& name, int client_port,
                                     int peer_port, int metrics_port,
                                     const std::string& initial_cluster,
                                     const std::string& state) const {
  ServerOptions o;
  o.name = name;
  o.client_port = client_port;
  o.peer_port = peer_port;
  o.metrics_port = metrics_port;
  o.initial_cluster = initial_cluster;
  o.initial_cluster_state = state;
  o.initial_cluster_token = options_.token;
  o.extra_flags = {
      absl::StrCat("--heartbeat-interval=", options_.heartbeat_ms),
      absl::StrCat("--election-timeout=", options_.election_ms),
  };
  if (options_.snapshot_count > 0) {
    o.extra_flags.push_back(
        absl::StrCat("--snapshot-count=", options_.snapshot_count));
  }
  if (options_.pre_vote) o.extra_flags.push_back("--pre-vote=true");
  for (const auto& f : options_.extra_flags) o.extra_flags.push_back(f);
  return o;
}

::testing::AssertionResult Cluster::Start() {
  for (auto& m : members_) {
    ::testing::AssertionResult r = m->process->Spawn();
    if (!r) return r;
  }
  for (auto& m : members_) {
    ::testing::AssertionResult r =
        m->process->WaitReady(options_.ready_timeout);
    if (!r) return r << "\n" << LogTails();
  }
  if (WaitForLeader(options_.ready_timeout) < 0) {
    return ::testing::AssertionFailure() << "no leader\n" << LogTails();
  }
  for (int i = 0; i < size(); ++i) {
    std::optional<MemberStatus> st = Status(i);
    if (!st.has_value() || st->member_id == 0) {
      return ::testing::AssertionFailure()
             << "no endpoint status from member " << i << "\n"
             << LogTails();
    }
    members_[i]->id = st->member_id;
  }
  return ::testing::AssertionSuccess();
}

std::string Cluster::Endpoint(int i) const {
  return members_[i]->process->Endpoint();
}

std::string Cluster::PeerUrl(int i) const {
  return absl::StrCat("http://127.0.0.1:", members_[i]->process->peer_port());
}

std::string Cluster::Endpoints(const std::vector<int>& only) const {
  std::vector<std::string> eps;
  if (!only.empty()) {
    for (int i : only) eps.push_back(Endpoint(i));
  } else {
    for (int i = 0; i < size(); ++i) {
      if (!members_[i]->removed) eps.push_back(Endpoint(i));
    }
  }
  return absl::StrJoin(eps, ",");
}

std::vector<int> Cluster::Live() const {
  std::vector<int> live;
  for (int i = 0; i < size(); ++i) {
    const auto& m = *members_[i];
    if (!m.removed && m.process->Running() && !m.process->Paused()) {
      live.push_back(i);
    }
  }
  return live;
}

int Cluster::IndexOf(uint64_t member_id) const {
  for (int i = 0; i < size(); ++i) {
    if (member_id != 0 && members_[i]->id == member_id) return i;
  }
  return -1;
}

void Cluster::Kill9(int i) { members_[i]->process->Kill9(); }
void Cluster::Stop(int i) { members_[i]->process->Stop(); }
void Cluster::Pause(int i) { members_[i]->process->Pause(); }
void Cluster::Resume(int i) { members_[i]->process->Resume(); }

::testing::AssertionResult Cluster::StartMember(int i, bool serializable) {
  ServerProcess& p = *members_[i]->process;
  ::testing::AssertionResult r = p.Spawn();
  if (!r) return r;
  return p.WaitReady(options_.ready_timeout,
                     serializable || members_[i]->learner);
}

::testing::AssertionResult Cluster::Restart(int i, bool serializable) {
  Stop(i);
  return StartMember(i, serializable);
}

CmdResult Cluster::Ctl(int i, const std::vector<std::string>& args,
                       const std::optional<std::string>& stdin_data,
                       absl::Duration timeout) const {
  return Etcdctl(Endpoint(i), args, stdin_data, timeout);
}

std::optional<Json> Cluster::CtlJson(int i,
                                     const std::vector<std::string>& args,
                                     absl::Duration timeout) const {
  std::vector<std::string> full = args;
  full.push_back("-w");
  full.push_back("json");
  CmdResult r = Ctl(i, full, std::nullopt, timeout);
  if (r.exit_code != 0) return std::nullopt;
  return Json::Parse(r.out);
}

std::optional<MemberStatus> Cluster::Status(int i,
                                            absl::Duration timeout) const {
  std::vector<std::optional<MemberStatus>> all = Statuses({i}, timeout);
  return all[i];
}

std::vector<std::optional<MemberStatus>> Cluster::Statuses(
    const std::vector<int>& slots, absl::Duration timeout) const {
  std::vector<std::optional<MemberStatus>> out(size());
  if (slots.empty()) return out;
  // etcdctl prints the JSON array of the endpoints that answered even when
  // others fail (and then exits non-zero), so parse whatever came out.
  CmdResult r = Etcdctl(Endpoints(slots),
                        {"endpoint", "status", "-w", "json"}, std::nullopt,
                        timeout + absl::Seconds(2));
  std::optional<Json> j = Json::Parse(r.out);
  if (!j.has_value()) return out;
  for (size_t k = 0; k < j->size(); ++k) {
    const std::string& ep = (*j)[k]["Endpoint"].Str();
    for (int i : slots) {
      if (Endpoint(i) == ep) out[i] = ParseStatus((*j)[k]["Status"]);
    }
  }
  return out;
}

int Cluster::Leader() const {
  std::vector<int> live = Live();
  std::vector<std::optional<MemberStatus>> st = Statuses(live);
  int best = -1;
  int64_t best_term = -1;
  for (int i : live) {
    if (!st[i].has_value() || st[i]->leader == 0) continue;
    if (st[i]->leader != st[i]->member_id) continue;
    if (st[i]->raft_term > best_term) {
      best = i;
      best_term = st[i]->raft_term;
    }
  }
  return best;
}

int Cluster::WaitForLeader(absl::Duration timeout) const {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    int l = Leader();
    if (l >= 0 || absl::Now() > deadline) return l;
    PollSleep();
  }
}

std::optional<std::vector<MemberInfo>> Cluster::MemberList(int via) const {
  std::optional<Json> j = CtlJson(via, {"member", "list"});
  if (!j.has_value()) return std::nullopt;
  std::vector<MemberInfo> out;
  const Json& ms = (*j)["members"];
  for (size_t k = 0; k < ms.size(); ++k) {
    MemberInfo m;
    m.id = ms[k]["ID"].Uint();
    m.name = ms[k]["name"].Str();
    for (size_t u = 0; u < ms[k]["peerURLs"].size(); ++u) {
      m.peer_urls.push_back(ms[k]["peerURLs"][u].Str());
    }
    for (size_t u = 0; u < ms[k]["clientURLs"].size(); ++u) {
      m.client_urls.push_back(ms[k]["clientURLs"][u].Str());
    }
    m.is_learner = ms[k]["isLearner"].Bool();
    out.push_back(std::move(m));
  }
  return out;
}

::testing::AssertionResult Cluster::WaitForMemberList(
    int via, const std::function<bool(const std::vector<MemberInfo>&)>& done,
    absl::Duration timeout) const {
  const absl::Time deadline = absl::Now() + timeout;
  std::string last = "<no answer>";
  while (true) {
    std::optional<std::vector<MemberInfo>> list = MemberList(via);
    if (list.has_value()) {
      if (done(*list)) return ::testing::AssertionSuccess();
      last.clear();
      for (const MemberInfo& m : *list) {
        absl::StrAppend(&last, "\n  ", HexId(m.id), " name=\"", m.name,
                        "\" peers=", absl::StrJoin(m.peer_urls, ","),
                        " clients=", absl::StrJoin(m.client_urls, ","),
                        m.is_learner ? " learner" : "");
      }
    }
    if (absl::Now() > deadline) {
      return ::testing::AssertionFailure()
             << "member list via m" << via << " not as expected within "
             << timeout << "; last:" << last;
    }
    PollSleep();
  }
}

int Cluster::VotingLiveMember(int except) const {
  for (int i : Live()) {
    if (i != except && !members_[i]->learner) return i;
  }
  return -1;
}

CmdResult Cluster::CtlReconfigure(int via,
                                  const std::vector<std::string>& args) const {
  // etcd's --strict-reconfig-check (on by default) refuses membership
  // changes until the member has been connected to its peers for 5 s
  // (etcdserver.HealthInterval), e.g. right after the cluster started or a
  // member restarted: "etcdserver: unhealthy cluster", or "etcdserver:
  // re-configuration failed due to not enough started members".
  const absl::Time deadline = absl::Now() + absl::Seconds(15);
  while (true) {
    CmdResult r = Ctl(via, args);
    const std::string e = ErrorLine(r.err);
    const bool not_yet =
        e == "Error: etcdserver: unhealthy cluster" ||
        e == "Error: etcdserver: re-configuration failed due to not enough "
             "started members";
    if (r.exit_code == 0 || !not_yet || absl::Now() > deadline) return r;
    absl::SleepFor(absl::Milliseconds(200));  // polling interval
  }
}

::testing::AssertionResult Cluster::AddMember(bool learner, int* index) {
  return AddSlot(learner, /*start=*/true, index);
}

::testing::AssertionResult Cluster::AddMemberUnstarted(bool learner,
                                                       int* index) {
  return AddSlot(learner, /*start=*/false, index);
}

::testing::AssertionResult Cluster::AddSlot(bool learner, bool start,
                                            int* index) {
  const int i = size();
  const std::string name = absl::StrCat("m", i);
  const int client = PickFreePort(), peer = PickFreePort(),
            metrics = PickFreePort();
  const std::string peer_url = absl::StrCat("http://127.0.0.1:", peer);
  const int via = VotingLiveMember(-1);
  if (via < 0) return ::testing::AssertionFailure() << "no live member";
  std::vector<std::string> args = {"member", "add", name,
                                   "--peer-urls=" + peer_url};
  if (learner) args.push_back("--learner");
  CmdResult r = CtlReconfigure(via, args);
  if (r.exit_code != 0) {
    return ::testing::AssertionFailure()
           << absl::StrJoin(args, " ") << ": " << ErrorLine(r.err);
  }
  // "Member 7421176ae5d9a2a1 added to cluster 64d937c925e41b58" (etcdctl
  // pads the IDs to 16 columns with spaces).
  uint64_t id = 0;
  for (const auto& line : SplitLines(r.out)) {
    absl::string_view v = line;
    if (!absl::ConsumePrefix(&v, "Member ")) continue;
    v = absl::StripLeadingAsciiWhitespace(v);
    size_t sp = v.find(' ');
    if (sp != absl::string_view::npos) {
      if (!absl::SimpleHexAtoi(v.substr(0, sp), &id)) id = 0;
    }
  }
  std::optional<std::string> initial = EnvValue(r.out, "ETCD_INITIAL_CLUSTER");
  std::optional<std::string> state =
      EnvValue(r.out, "ETCD_INITIAL_CLUSTER_STATE");
  if (id == 0 || !initial.has_value() || !state.has_value()) {
    return ::testing::AssertionFailure()
           << "unexpected `member add` output:\n" << r.out;
  }
  auto slot = std::make_unique<Slot>();
  const std::string sub = absl::StrCat(dir_->path(), "/", name);
  mkdir(sub.c_str(), 0755);
  slot->process = std::make_unique<ServerProcess>(
      sub, MemberOptions(name, client, peer, metrics, *initial, *state));
  slot->id = id;
  slot->learner = learner;
  members_.push_back(std::move(slot));
  *index = i;
  if (!start) return ::testing::AssertionSuccess();
  ::testing::AssertionResult started = StartMember(i);
  if (!started) return started << "\n" << LogTails();
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult Cluster::PromoteMember(int i) {
  const int via = VotingLiveMember(i);
  if (via < 0) return ::testing::AssertionFailure() << "no live member";
  CmdResult r = Ctl(via, {"member", "promote", HexId(MemberId(i))});
  if (r.exit_code != 0) {
    return ::testing::AssertionFailure()
           << "member promote " << HexId(MemberId(i)) << ": "
           << ErrorLine(r.err);
  }
  members_[i]->learner = false;
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult Cluster::RemoveMember(int i) {
  const int via = VotingLiveMember(i);
  if (via < 0) return ::testing::AssertionFailure() << "no live member";
  CmdResult r = CtlReconfigure(via, {"member", "remove", HexId(MemberId(i))});
  if (r.exit_code != 0) {
    return ::testing::AssertionFailure()
           << "member remove " << HexId(MemberId(i)) << ": "
           << ErrorLine(r.err);
  }
  members_[i]->removed = true;
  return ::testing::AssertionSuccess();
}

std::optional<std::pair<uint64_t, int64_t>> Cluster::HashKv(
    int i, int64_t rev) const {
  std::optional<Json> j = CtlJson(
      i, {"endpoint", "hashkv", absl::StrCat("--rev=", rev)},
      absl::Seconds(5));
  if (!j.has_value() || j->size() != 1) return std::nullopt;
  const Json& h = (*j)[0]["HashKV"];
  if (h["header"]["revision"].Int() < rev) return std::nullopt;
  return std::make_pair(h["hash"].Uint(), h["compact_revision"].Int());
}

::testing::AssertionResult Cluster::WaitForEqualHashKv(
    const std::vector<int>& slots, int64_t rev,
    absl::Duration timeout) const {
  const absl::Time deadline = absl::Now() + timeout;
  std::string last;
  while (true) {
    std::map<uint64_t, std::vector<int>> by_hash;
    bool all = true;
    last.clear();
    for (int i : slots) {
      auto h = HashKv(i, rev);
      if (!h.has_value()) {
        all = false;
        absl::StrAppend(&last, " m", i, "=<none>");
        continue;
      }
      by_hash[h->first].push_back(i);
      absl::StrAppend(&last, " m", i, "=", h->first);
    }
    if (all && by_hash.size() == 1) return ::testing::AssertionSuccess();
    // Once every member answered, differing hashes at one revision are final.
    if (all) {
      return ::testing::AssertionFailure()
             << "hashkv at rev " << rev << " differs:" << last;
    }
    if (absl::Now() > deadline) {
      return ::testing::AssertionFailure()
             << "hashkv at rev " << rev << " not available on all members "
             << "within " << timeout << ":" << last;
    }
    PollSleep();
  }
}

::testing::AssertionResult Cluster::WaitForRevision(
    int i, int64_t rev, absl::Duration timeout) const {
  const absl::Time deadline = absl::Now() + timeout;
  int64_t seen = -1;
  while (true) {
    std::optional<Json> j = CtlJson(
        i, {"get", "synod-it-no-such-key", "--consistency=s"},
        absl::Seconds(3));
    if (j.has_value()) {
      seen = (*j)["header"]["revision"].Int();
      if (seen >= rev) return ::testing::AssertionSuccess();
    }
    if (absl::Now() > deadline) {
      return ::testing::AssertionFailure()
             << "member " << i << " at revision " << seen << ", wanted "
             << rev << " within " << timeout;
    }
    PollSleep();
  }
}

std::string Cluster::LogTails(size_t max_bytes_each) const {
  std::string out;
  for (int i = 0; i < size(); ++i) {
    absl::StrAppend(&out, "--- m", i, " log tail ---\n",
                    members_[i]->process->LogTail(max_bytes_each), "\n");
  }
  return out;
}

}  // namespace synod::testing

namespace synod::testing {

GetResult GetKey(const std::string& endpoints, const std::string& key,
                 bool serializable, absl::Duration timeout) {
  std::vector<std::string> args = {"get", key, "-w", "json"};
  if (serializable) args.push_back("--consistency=s");
  CmdResult r = Etcdctl(endpoints, args, std::nullopt, timeout);
  GetResult g;
  std::optional<Json> j;
  if (r.exit_code == 0) j = Json::Parse(r.out);
  if (!j.has_value()) {
    g.error = r.timed_out ? "(etcdctl timed out)" : ErrorLine(r.err);
    g.err = r.err;
    return g;
  }
  g.ok = true;
  g.revision = (*j)["header"]["revision"].Int();
  if ((*j)["kvs"].size() > 0) g.value = (*j)["kvs"][0]["value"].Bytes();
  return g;
}

std::optional<std::map<std::string, std::string>> Dump(
    const std::string& endpoint, const std::string& prefix, bool serializable,
    absl::Duration timeout) {
  std::vector<std::string> args = {"get", prefix, "--prefix", "-w", "json"};
  if (serializable) args.push_back("--consistency=s");
  CmdResult r = Etcdctl(endpoint, args, std::nullopt, timeout);
  if (r.exit_code != 0) return std::nullopt;
  std::optional<Json> j = Json::Parse(r.out);
  if (!j.has_value()) return std::nullopt;
  std::map<std::string, std::string> out;
  const Json& kvs = (*j)["kvs"];
  for (size_t k = 0; k < kvs.size(); ++k) {
    out[kvs[k]["key"].Bytes()] = kvs[k]["value"].Bytes();
  }
  return out;
}

WriteLoop::WriteLoop(std::vector<std::string> endpoints, std::string prefix,
                     int max_puts, absl::Duration max_time)
    : prefix_(std::move(prefix)), endpoints_(std::move(endpoints)) {
  thread_ = std::thread([this, max_puts, max_time] { Run(max_puts, max_time); });
}

WriteLoop::~WriteLoop() { Stop(); }

void WriteLoop::Run(int max_puts, absl::Duration max_time) {
  const absl::Time deadline = absl::Now() + max_time;
  for (int seq = 0; seq < max_puts && absl::Now() < deadline; ++seq) {
    std::string endpoint;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stop_ || endpoints_.empty()) break;
      endpoint = endpoints_[seq % endpoints_.size()];
    }
    const std::string key = absl::StrFormat("%s%06d", prefix_, seq);
    const std::string value = absl::StrCat("v", seq);
    CmdResult r =
        Etcdctl(endpoint, {"put", key, value}, std::nullopt, absl::Seconds(4));
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (r.exit_code == 0) {
        acked_[key] = value;
      } else {
        unknown_.push_back(key);
        errors_.push_back(absl::StrCat(endpoint, ": ", ErrorLine(r.err)));
      }
    }
    cv_.notify_all();
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    done_ = true;
  }
  cv_.notify_all();
}

void WriteLoop::SetEndpoints(std::vector<std::string> endpoints) {
  std::lock_guard<std::mutex> lock(mu_);
  endpoints_ = std::move(endpoints);
}

void WriteLoop::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

bool WriteLoop::WaitForAcked(int n, absl::Duration timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, absl::ToChronoNanoseconds(timeout), [&] {
    return static_cast<int>(acked_.size()) >= n || done_;
  });
  return static_cast<int>(acked_.size()) >= n;
}

int WriteLoop::acked() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int>(acked_.size());
}

int WriteLoop::failed() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int>(unknown_.size());
}

bool WriteLoop::done() const {
  std::lock_guard<std::mutex> lock(mu_);
  return done_;
}

std::map<std::string, std::string> WriteLoop::Acked() const {
  std::lock_guard<std::mutex> lock(mu_);
  return acked_;
}

std::vector<std::string> WriteLoop::Unknown() const {
  std::lock_guard<std::mutex> lock(mu_);
  return unknown_;
}

std::vector<std::string> WriteLoop::Errors() const {
  std::lock_guard<std::mutex> lock(mu_);
  return errors_;
}

}  // namespace synod::testing
