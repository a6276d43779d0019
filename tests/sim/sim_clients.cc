// The KV half of SimCluster: commands in log entries, the per-node state
// machine, simulated clients and the history they record.
#include <algorithm>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "tests/sim/sim_cluster.h"

namespace synod::sim {

using lincheck::OpKind;
using lincheck::Operation;

namespace {

// A command in a log entry:
//   "K|<client>|<seq>|<r|w|c>|<key>|<value>|<-|=expected>"
// Keys and values never contain '|'. Other entries are not commands.
constexpr char kCommandPrefix[] = "K|";

std::string EncodeCommand(const Operation& op, uint64_t seq) {
  const char* kind =
      op.kind == OpKind::kRead ? "r" : (op.kind == OpKind::kWrite ? "w" : "c");
  return absl::StrCat(kCommandPrefix, op.client, "|", seq, "|", kind, "|",
                      op.key, "|", op.value, "|",
                      op.expected ? "=" + *op.expected : std::string("-"));
}

struct Command {
  int client = 0;
  uint64_t seq = 0;
  char kind = 'r';
  std::string key, value;
  std::optional<std::string> expected;
};

bool DecodeCommand(const std::string& data, Command* c) {
  if (data.rfind(kCommandPrefix, 0) != 0) return false;
  std::vector<std::string> f = absl::StrSplit(data, '|');
  if (f.size() != 7 || f[3].size() != 1 || f[6].empty()) return false;
  c->client = std::atoi(f[1].c_str());
  c->seq = std::strtoull(f[2].c_str(), nullptr, 10);
  c->kind = f[3][0];
  c->key = f[4];
  c->value = f[5];
  if (f[6][0] == '=') c->expected = f[6].substr(1);
  return true;
}

std::optional<std::string> Lookup(const std::map<std::string, std::string>& kv,
                                  const std::string& key) {
  auto it = kv.find(key);
  if (it == kv.end()) return std::nullopt;
  return it->second;
}

}  // namespace

// Logical time: the step, with events inside one step kept in order.
int64_t SimCluster::Now() {
  if (clock_step_ != step_) {
    clock_step_ = step_;
    clock_sub_ = 0;
  }
  return int64_t{step_} * 1000 + ++clock_sub_;
}

void SimCluster::IssueOp(Client& c) {
  std::vector<uint64_t> live = Live();
  if (live.empty()) return;
  if (!nodes_[c.target]->raw) c.target = Pick(live);
  // Follow the node's redirect to the leader it knows, mostly; sometimes
  // let a follower forward the proposal instead.
  uint64_t lead = nodes_[c.target]->raw->TEST_raft().lead();
  if (lead != raft::kNone && lead != c.target && nodes_[lead]->raw &&
      !rng_.OneIn(5)) {
    c.target = lead;
  }
  const uint64_t id = c.target;
  Node& n = *nodes_[id];

  Operation op;
  op.client = c.id;
  op.key = absl::StrCat("k", rng_.Uniform(opts_.keys));
  uint64_t r = rng_.Uniform(10);
  op.kind = r < 5 ? OpKind::kRead : (r < 8 ? OpKind::kWrite : OpKind::kCas);
  const uint64_t seq = ++c.seq;
  if (op.kind != OpKind::kRead) op.value = absl::StrCat("c", c.id, ".", seq);
  if (op.kind == OpKind::kCas) {
    auto it = c.seen.find(op.key);
    if (it != c.seen.end()) op.expected = it->second;
  }
  enum { kViaLog, kViaReadIndex, kLocal } path = kViaLog;
  if (op.kind == OpKind::kRead) {
    switch (opts_.read_mode) {
      case ReadMode::kLog:
        break;
      case ReadMode::kReadIndex:
        path = kViaReadIndex;
        break;
      case ReadMode::kMixed:
        if (rng_.OneIn(2)) path = kViaReadIndex;
        break;
      case ReadMode::kUnsafeLocal:
        path = kLocal;
        break;
    }
  }
  op.call_ns = Now();

  if (path == kLocal) {
    // BROKEN on purpose (ReadMode::kUnsafeLocal): no ReadIndex, no lease.
    if (n.raw->TEST_raft().role() == raft::Role::kLeader) {
      op.output = Lookup(n.kv, op.key);
      c.op = op;
      c.busy = true;
      c.node = id;
      Complete(c, /*known=*/true);
    } else if (lead == raft::kNone) {
      c.target = Pick(live);
    }
    return;
  }
  absl::Status s;
  std::string ctx;
  if (path == kViaReadIndex) {
    ctx = absl::StrCat("c", c.id, ".", seq);
    uint64_t known = committed_.empty() ? 0 : committed_.rbegin()->first;
    s = n.raw->ReadIndex(ctx);
    if (s.ok()) reads_[ctx] = known;
  } else {
    s = n.raw->Propose(EncodeCommand(op, seq));
  }
  Check(id);
  if (!s.ok()) {
    // Dropped before it reached any log: it never happened, so it is not
    // in the history. Try another node next time.
    c.target = Pick(live);
    return;
  }
  c.op = op;
  c.busy = true;
  c.node = id;
  c.ctx = ctx;
  c.deadline = step_ + opts_.client_timeout;
}

void SimCluster::ApplyCommand(uint64_t id, const raft::Entry& e) {
  Command cmd;
  if (e.type != raft::EntryType::kNormal || !DecodeCommand(e.data, &cmd)) {
    return;
  }
  Node& n = *nodes_[id];
  // Exactly once: a duplicated or superseded command is skipped.
  uint64_t& last = n.last_seq[cmd.client];
  if (cmd.seq <= last) return;
  last = cmd.seq;
  std::optional<std::string> cur = Lookup(n.kv, cmd.key);
  bool cas_ok = false;
  if (cmd.kind == 'w') {
    n.kv[cmd.key] = cmd.value;
  } else if (cmd.kind == 'c') {
    cas_ok = cur == cmd.expected;
    if (cas_ok) n.kv[cmd.key] = cmd.value;
  }
  if (cmd.client < 1 || cmd.client > static_cast<int>(clients_.size())) return;
  Client& c = *clients_[cmd.client - 1];
  if (c.busy && c.seq == cmd.seq && c.node == id && c.ctx.empty()) {
    if (c.op.kind == OpKind::kRead) c.op.output = cur;
    c.op.cas_succeeded = cas_ok;
    Complete(c, /*known=*/true);
  }
}

// "k\t<key>\t<value>\n" per key, then "s\t<client>\t<seq>\n" per
// client; keys and values hold no tabs nor newlines.
std::string SimCluster::StateData(const Node& n) {
  std::string out;
  for (const auto& [k, v] : n.kv) absl::StrAppend(&out, "k\t", k, "\t", v, "\n");
  for (const auto& [c, seq] : n.last_seq) {
    absl::StrAppend(&out, "s\t", c, "\t", seq, "\n");
  }
  return out;
}

bool SimCluster::RestoreState(Node& n, const std::string& data) {
  n.kv.clear();
  n.last_seq.clear();
  for (absl::string_view line : absl::StrSplit(data, '\n', absl::SkipEmpty())) {
    std::vector<std::string> f = absl::StrSplit(line, '\t');
    if (f.size() != 3) return false;
    if (f[0] == "k") {
      n.kv[f[1]] = f[2];
    } else if (f[0] == "s") {
      n.last_seq[std::atoi(f[1].c_str())] =
          std::strtoull(f[2].c_str(), nullptr, 10);
    } else {
      return false;
    }
  }
  return true;
}

void SimCluster::OnReadState(uint64_t id, const raft::ReadState& rs) {
  for (auto& c : clients_) {
    if (c->busy && c->node == id && c->ctx == rs.request_ctx) {
      nodes_[id]->reads.push_back(PendingRead{rs.index, c->id, c->ctx});
    }
  }
}

void SimCluster::ServeReads(uint64_t id) {
  Node& n = *nodes_[id];
  const uint64_t applied = n.applied;
  auto served = [&](const PendingRead& pr) {
    if (pr.index > applied) return false;
    Client& c = *clients_[pr.client - 1];
    if (c.busy && c.node == id && c.ctx == pr.ctx) {
      c.op.output = Lookup(n.kv, c.op.key);
      Complete(c, /*known=*/true);
    }
    return true;
  };
  n.reads.erase(std::remove_if(n.reads.begin(), n.reads.end(), served),
                n.reads.end());
}

void SimCluster::Complete(Client& c, bool known) {
  Operation& op = c.op;
  op.unknown = !known;
  if (known) {
    op.return_ns = Now();
    switch (op.kind) {
      case OpKind::kRead:
        c.seen[op.key] = op.output;
        break;
      case OpKind::kWrite:
        c.seen[op.key] = op.value;
        break;
      case OpKind::kCas:
        if (op.cas_succeeded) c.seen[op.key] = op.value;
        break;
    }
    stats_.ops_ok++;
  } else {
    // The connection is gone: look for another node next time.
    op.return_ns = 0;
    std::vector<uint64_t> live = Live();
    if (!live.empty()) c.target = Pick(live);
  }
  stats_.ops++;
  history_.push_back(op);
  c.busy = false;
  c.ctx.clear();
}

void SimCluster::ClientTimeouts() {
  for (auto& c : clients_) {
    if (c->busy && step_ >= c->deadline) Complete(*c, /*known=*/false);
  }
}

void SimCluster::CheckHistory() {
  if (history_.empty()) return;
  lincheck::CheckResult r = lincheck::Check(history_, absl::Seconds(30));
  if (r.verdict == lincheck::CheckResult::kTimedOut) {
    return Fail("lincheck: " + r.explanation);
  }
  if (r.verdict == lincheck::CheckResult::kNotLinearizable) {
    stats_.linearizable = false;
    stats_.lincheck_explanation = r.explanation;
    if (opts_.require_linearizable) {
      Fail("the client history is not linearizable: " + r.explanation);
    }
  }
}

}  // namespace synod::sim
