// The Raft half of SimCluster: schedule, faults and the safety invariants.
// The KV workload is in sim_clients.cc.
#include "tests/sim/sim_cluster.h"

#include <algorithm>
#include <functional>
#include <string_view>
#include <utility>
#include <sstream>

#include "absl/strings/str_cat.h"

namespace synod::sim {

using raft::Entry;
using raft::Message;
using raft::Progress;
using raft::Raft;
using raft::Ready;
using raft::ReadState;
using raft::Role;

namespace {

uint64_t Fnv(uint64_t h, const void* p, size_t n) {
  const auto* b = static_cast<const unsigned char*>(p);
  for (size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 1099511628211ull;
  return h;
}

// std::hash of the bytes: deterministic within one binary, and only ever
// compared, never iterated.
uint64_t HashEntry(uint64_t h, const Entry& e) {
  h = Fnv(h, &e.term, sizeof(e.term));
  h = Fnv(h, &e.index, sizeof(e.index));
  uint64_t d = std::hash<std::string_view>()(e.data);
  return Fnv(h, &d, sizeof(d));
}

const char* ReadModeName(ReadMode m) {
  switch (m) {
    case ReadMode::kLog:
      return "reads through the log";
    case ReadMode::kReadIndex:
      return "ReadIndex reads";
    case ReadMode::kMixed:
      return "log and ReadIndex reads";
    case ReadMode::kUnsafeLocal:
      return "UNSAFE local reads";
  }
  return "?";
}

}  // namespace

std::string Describe(const SimOptions& o) {
  std::string s = absl::StrCat(o.nodes, " nodes");
  if (o.pre_vote) absl::StrAppend(&s, ", pre-vote");
  if (o.check_quorum) absl::StrAppend(&s, ", check-quorum");
  if (o.membership) absl::StrAppend(&s, ", membership changes");
  if (o.compact_every > 0) {
    absl::StrAppend(&s, ", snapshot every ", o.compact_every, " entries");
  }
  if (o.clients > 0) {
    absl::StrAppend(&s, ", ", o.clients, " clients, ",
                    ReadModeName(o.read_mode));
  }
  return s;
}

SimCluster::SimCluster(uint64_t seed, SimOptions o)
    : seed_(seed), opts_(o), rng_(seed) {
  for (int i = 1; i <= o.nodes; ++i) ids_.push_back(i);
  for (uint64_t id : ids_) {
    auto n = std::make_unique<Node>();
    n->random = std::make_unique<raft::Random>(seed * 7919 + id);
    nodes_[id] = std::move(n);
    Start(id);
  }
  for (int i = 1; i <= o.clients; ++i) {
    auto c = std::make_unique<Client>();
    c->id = i;
    c->target = Pick(ids_);
    clients_.push_back(std::move(c));
  }
}

SimCluster::~SimCluster() = default;

bool SimCluster::Run() {
  for (step_ = 0; step_ < opts_.steps && ok_; ++step_) {
    RandomStep();
    ClientTimeouts();
  }
  if (ok_) Settle();
  for (auto& c : clients_) {
    if (c->busy) Complete(*c, /*known=*/false);
  }
  stats_.committed = committed_.size();
  stats_.elections = leaders_.size();
  if (ok_) CheckHistory();
  return ok_;
}

void SimCluster::Fail(const std::string& what) {
  if (!ok_) return;
  ok_ = false;
  failure_ = absl::StrCat("seed ", seed_, " (", Describe(opts_), ") step ",
                          step_, ": ", what, "\n", Dump());
}

std::string SimCluster::Dump() {
  std::ostringstream o;
  for (uint64_t id : ids_) {
    Node& n = *nodes_[id];
    o << "  node " << id << ": ";
    if (!n.raw) {
      o << "down\n";
      continue;
    }
    const Raft& r = n.raw->TEST_raft();
    o << RoleName(r.role()) << " term " << r.term() << " vote " << r.vote()
      << " lead " << r.lead() << " last " << r.log().LastIndex() << "/"
      << r.log().LastTerm() << " commit " << r.log().committed()
      << " applied " << n.applied << " first " << r.log().FirstIndex();
    for (uint64_t p : ids_) {
      if (const Progress* pr = r.TEST_progress(p)) {
        o << " [" << p << " m" << pr->match << " n" << pr->next
          << (pr->state == Progress::State::kProbe ? " probe" : " repl")
          << (pr->IsPaused() ? " paused" : "") << "]";
      }
    }
    o << "\n";
  }
  return o.str();
}

void SimCluster::Start(uint64_t id) {
  Node& n = *nodes_[id];
  raft::Config c;
  c.id = id;
  if (opts_.membership) {
    // New storage: nodes 1-3 bootstrap the cluster, the others join empty.
    c.bootstrap = true;
    if (id <= 3) c.peers = {1, 2, 3};
  } else {
    c.peers = ids_;
  }
  c.election_tick = 10;
  c.heartbeat_tick = 2;
  c.storage = &n.storage;
  c.random = n.random.get();
  c.applied = n.applied;
  c.max_size_per_msg = 64;
  c.max_inflight_msgs = 4;
  c.pre_vote = opts_.pre_vote;
  c.check_quorum = opts_.check_quorum;
  auto raw = raft::RawNode::Create(c);
  if (!raw.ok()) return Fail(raw.status().ToString());
  n.raw = std::move(*raw);
}

std::vector<uint64_t> SimCluster::Live() const {
  std::vector<uint64_t> out;
  for (uint64_t id : ids_) {
    if (nodes_.at(id)->raw) out.push_back(id);
  }
  return out;
}

void SimCluster::RandomStep() {
  // Storms (crashes and partitions) alternate with calm spells, so that
  // clients also get work done and faults hit ops in flight.
  if (rng_.OneIn(calm_ ? 600 : 300)) {
    calm_ = !calm_;
    if (calm_) side_.clear();
  }
  std::vector<uint64_t> live = Live();
  uint64_t r = rng_.Uniform(1000);
  if (calm_ && ((r >= 960 && r < 970) || (r >= 985 && r < 993))) return;
  if (r < 400 && DeliverOne()) return;
  if (live.empty()) r = 960;  // only restarts make sense
  if (r < 600) {
    uint64_t id = Pick(live);
    nodes_[id]->raw->Tick();
    Check(id);
  } else if (r < 850) {
    uint64_t id = Pick(live);
    ProcessReady(id);
    Check(id);
  } else if (r < 895) {
    if (clients_.empty()) return;
    Client& c = *clients_[rng_.Uniform(clients_.size())];
    if (!c.busy) IssueOp(c);
  } else if (r < 900) {
    uint64_t id = Pick(live);
    // Half of the filler proposals are batches (one MsgProp, several
    // entries), as the server's raft thread proposes a burst.
    const std::string v = "v" + std::to_string(step_);
    if (step_ % 2 == 0) {
      (void)nodes_[id]->raw->Propose(v);
    } else {
      (void)nodes_[id]->raw->ProposeBatch({v + "a", v + "b", v + "c"});
    }
    Check(id);
  } else if (r < 930) {
    // A linearizable read must see every write committed before it
    // started (thesis §6.4).
    uint64_t id = Pick(live);
    std::string ctx = "r" + std::to_string(step_);
    uint64_t known = committed_.empty() ? 0 : committed_.rbegin()->first;
    if (nodes_[id]->raw->ReadIndex(ctx).ok()) reads_[ctx] = known;
    Check(id);
  } else if (r < 933 || (r < 935 && !opts_.membership)) {
    uint64_t id = Pick(live);
    (void)nodes_[id]->raw->TransferLeadership(Pick(ids_));
    Check(id);
  } else if (r < 935) {
    ProposeConfChange();
  } else if (r < 945) {
    if (!net_.empty()) {
      size_t i = rng_.Uniform(net_.size());
      Message m = std::move(net_[i].m);
      net_.erase(net_.begin() + i);
      ReportSnap(m, false);
    }
  } else if (r < 960) {
    if (!net_.empty()) net_.push_back(net_[rng_.Uniform(net_.size())]);
  } else if (r < 970) {
    if (!live.empty()) Crash(Pick(live));
  } else if (r < 985) {
    std::vector<uint64_t> down;
    for (uint64_t id : ids_) {
      if (!nodes_[id]->raw) down.push_back(id);
    }
    if (!down.empty()) {
      uint64_t id = Pick(down);
      nodes_[id]->restarts++;
      Start(id);
      Check(id);
    }
  } else if (r < 993) {
    // A random partition: each node on side 0 or 1.
    side_.clear();
    for (uint64_t id : ids_) side_[id] = rng_.Uniform(2);
  } else {
    side_.clear();
  }
}

bool SimCluster::Connected(uint64_t a, uint64_t b) {
  if (side_.empty()) return true;
  return side_[a] == side_[b];
}

// Delivers one random message that is due (reordering by construction).
bool SimCluster::DeliverOne() {
  std::vector<size_t> due;
  for (size_t i = 0; i < net_.size(); ++i) {
    if (net_[i].deliver_at <= step_) due.push_back(i);
  }
  if (due.empty()) return false;
  size_t i = Pick(due);
  Message m = std::move(net_[i].m);
  net_[i] = std::move(net_.back());
  net_.pop_back();
  Deliver(m);
  return true;
}

void SimCluster::Crash(uint64_t id) {
  // Everything not persisted is lost: unstable entries, unsent messages,
  // reads waiting for their index. Its clients lose their connection.
  Node& n = *nodes_[id];
  n.raw.reset();
  n.pending.reset();
  n.reads.clear();
  for (auto& c : clients_) {
    if (c->busy && c->node == id) Complete(*c, /*known=*/false);
  }
}

void SimCluster::SendAll(std::vector<Message>& msgs, bool reliable) {
  for (Message& m : msgs) {
    if (!reliable && rng_.OneIn(20)) {  // dropped
      ReportSnap(m, false);
      continue;
    }
    int delay = reliable ? 0 : static_cast<int>(rng_.Uniform(30));
    net_.push_back(InFlight{std::move(m), step_ + delay});
  }
  msgs.clear();
}

void SimCluster::ProcessReady(uint64_t id, bool reliable) {
  Node& n = *nodes_[id];
  if (!n.raw) return;
  if (n.pending) {
    // Slow disks: the write often takes a while.
    if (!reliable && !rng_.OneIn(4)) return;
    Ready rd = std::move(*n.pending);
    n.pending.reset();
    return FinishReady(id, rd, reliable);
  }
  if (!n.raw->HasReady()) return;
  Ready rd = n.raw->GetReady();
  if (!reliable && n.raw->TEST_raft().role() == Role::kLeader &&
      rng_.OneIn(4)) {
    // A leader may send before it persists (thesis §10.2.1): the node
    // keeps stepping messages meanwhile and may crash before the write.
    SendAll(rd.messages, reliable);
    n.pending = std::move(rd);
    return;
  }
  FinishReady(id, rd, reliable);
}

void SimCluster::FinishReady(uint64_t id, Ready& rd, bool reliable) {
  Node& n = *nodes_[id];
  if (!rd.snapshot.empty()) {
    absl::Status s = n.storage.ApplySnapshot(rd.snapshot);
    if (!s.ok()) return Fail("ApplySnapshot: " + s.ToString());
  }
  if (rd.hard_state) n.storage.SetHardState(*rd.hard_state);
  absl::Status s = n.storage.Append(rd.entries);
  if (!s.ok()) return Fail(s.ToString());
  SendAll(rd.messages, reliable);
  if (!rd.snapshot.empty()) InstallSnapshot(id, rd.snapshot);
  for (const Entry& e : rd.committed_entries) Apply(id, e);
  for (const ReadState& rs : rd.read_states) {
    auto it = reads_.find(rs.request_ctx);
    if (it == reads_.end()) {
      return Fail("read state for unknown ctx " + rs.request_ctx);
    }
    if (rs.index < it->second) {
      return Fail("stale read: " + rs.request_ctx + " got read index " +
                  std::to_string(rs.index) + " but " +
                  std::to_string(it->second) +
                  " was committed before it started");
    }
    stats_.reads_served++;
    OnReadState(id, rs);
  }
  ServeReads(id);
  n.raw->Advance(rd);
  MaybeCompact(id);
}

// State machine safety: "if a server has applied a log entry at a given
// index to its state machine, no other server will ever apply a different
// log entry for the same index".
void SimCluster::Apply(uint64_t id, const Entry& e) {
  Node& n = *nodes_[id];
  uint64_t want = n.applied + 1;
  if (e.index != want) {
    return Fail("node " + std::to_string(id) + " applied index " +
                std::to_string(e.index) + ", expected " +
                std::to_string(want));
  }
  auto [it, inserted] = applied_.emplace(e.index, e);
  if (!inserted && it->second != e) {
    return Fail("state machine safety: node " + std::to_string(id) +
                " applied (term " + std::to_string(e.term) + ") at index " +
                std::to_string(e.index) + ", another applied term " +
                std::to_string(it->second.term));
  }
  n.applied = e.index;
  if (e.type == raft::EntryType::kConfChange) {
    // The application applies membership changes, and persists the result
    // with its applied index.
    absl::StatusOr<raft::ConfChange> cc = raft::DecodeConfChange(e.data);
    if (!cc.ok()) return Fail(cc.status().ToString());
    raft::ConfState cs = n.raw->ApplyConfChange(*cc);
    n.storage.SetConfState(cs);
    if (e.index > conf_index_) {
      conf_index_ = e.index;
      conf_ = cs;
      stats_.conf_changes++;
    }
  }
  ApplyCommand(id, e);
  if (state_at_.count(e.index)) CheckStateAt(id, e.index);
}

// A follower replaces its state machine by the leader's snapshot.
void SimCluster::InstallSnapshot(uint64_t id, const raft::Snapshot& snap) {
  Node& n = *nodes_[id];
  if (snap.metadata.index <= n.applied) {
    return Fail("node " + std::to_string(id) + " got a snapshot at " +
                std::to_string(snap.metadata.index) + " but applied " +
                std::to_string(n.applied));
  }
  if (!RestoreState(n, snap.data)) return Fail("bad snapshot data");
  n.applied = snap.metadata.index;
  stats_.snapshots_installed++;
  CheckStateAt(id, n.applied);
}

void SimCluster::CheckStateAt(uint64_t id, uint64_t index) {
  std::string data = StateData(*nodes_[id]);
  uint64_t h = Fnv(1469598103934665603ull, data.data(), data.size());
  auto [it, inserted] = state_at_.emplace(index, h);
  if (!inserted && it->second != h) {
    Fail("state machine safety: node " + std::to_string(id) +
         " has a different state at applied index " + std::to_string(index));
  }
}

// Snapshots the state machine at the applied index and drops the log
// before it (keeping a random few entries, so some followers still catch up
// from the log and others need the snapshot).
void SimCluster::MaybeCompact(uint64_t id) {
  Node& n = *nodes_[id];
  if (opts_.compact_every <= 0 || !n.raw || !ok_) return;
  const uint64_t snap_index = n.storage.FirstIndex() - 1;
  if (n.applied < snap_index + opts_.compact_every) return;
  if (n.applied > n.storage.LastIndex()) return;  // not persisted yet
  auto snap = n.storage.CreateSnapshot(
      n.applied, n.raw->TEST_raft().conf_state(), StateData(n));
  if (!snap.ok()) return Fail("CreateSnapshot: " + snap.status().ToString());
  CheckStateAt(id, n.applied);
  uint64_t compact = n.applied - rng_.Uniform(3);
  if (compact <= snap_index) return;
  absl::Status s = n.storage.Compact(compact);
  if (!s.ok()) return Fail("Compact: " + s.ToString());
}

// One membership change through a leader: add a node (as learner or
// voter), promote a learner, or remove a voter while more than 3 remain.
void SimCluster::ProposeConfChange() {
  std::vector<uint64_t> leaders;
  for (uint64_t id : Live()) {
    if (nodes_[id]->raw->TEST_raft().role() == Role::kLeader) {
      leaders.push_back(id);
    }
  }
  if (leaders.empty()) return;
  uint64_t id = Pick(leaders);
  raft::ConfState cs = nodes_[id]->raw->TEST_raft().conf_state();
  auto in = [](const std::vector<uint64_t>& v, uint64_t x) {
    return std::find(v.begin(), v.end(), x) != v.end();
  };
  std::vector<raft::ConfChange> options;
  for (uint64_t x : ids_) {
    if (in(removed_, x)) continue;
    if (!in(cs.voters, x) && !in(cs.learners, x)) {
      options.push_back({raft::ConfChangeType::kAddLearnerNode, x, ""});
      options.push_back({raft::ConfChangeType::kAddNode, x, ""});
    } else if (in(cs.learners, x)) {
      options.push_back({raft::ConfChangeType::kAddNode, x, ""});
    } else if (cs.voters.size() > 3) {
      options.push_back({raft::ConfChangeType::kRemoveNode, x, ""});
    }
  }
  if (options.empty()) return;
  raft::ConfChange cc = options[rng_.Uniform(options.size())];
  if (nodes_[id]->raw->ProposeConfChange(cc).ok() &&
      cc.type == raft::ConfChangeType::kRemoveNode) {
    removed_.push_back(cc.node_id);
  }
  Check(id);
}

std::vector<uint64_t> SimCluster::Members() const {
  if (!opts_.membership) return ids_;
  if (conf_.empty()) return {1, 2, 3};  // nothing applied yet: the bootstrap
  std::vector<uint64_t> out = conf_.voters;
  out.insert(out.end(), conf_.learners.begin(), conf_.learners.end());
  std::sort(out.begin(), out.end());
  return out;
}

void SimCluster::ReportSnap(const Message& m, bool delivered) {
  if (m.type != raft::MessageType::kSnap) return;
  Node& from = *nodes_[m.from];
  if (from.raw) from.raw->ReportSnapshot(m.to, delivered);
}

void SimCluster::Deliver(Message& m) {
  Node& to = *nodes_[m.to];
  if (!to.raw || !Connected(m.from, m.to)) return ReportSnap(m, false);
  (void)to.raw->Step(m);
  ReportSnap(m, true);
  Check(m.to);
}

void SimCluster::Check(uint64_t id) {
  Node& n = *nodes_[id];
  if (!n.raw || !ok_) return;
  const Raft& r = n.raw->TEST_raft();
  std::vector<Entry> log = r.log().AllEntries();
  const uint64_t first = r.log().FirstIndex();

  // Log matching: "if two logs contain an entry with the same index and
  // term, then the logs are identical in all entries up through the given
  // index". Checked inductively, which survives compaction: an (index,
  // term) always has the same data and the same term before it.
  uint64_t prev_term = r.log().TermOrZero(first - 1);
  for (const Entry& e : log) {
    uint64_t key = (e.index << 20) | e.term;
    Shape shape{HashEntry(0, e), prev_term};
    auto [it, inserted] = shapes_.emplace(key, shape);
    if (!inserted && (it->second.data_hash != shape.data_hash ||
                      it->second.prev_term != shape.prev_term)) {
      return Fail("log matching: node " + std::to_string(id) +
                  " entry (index " + std::to_string(e.index) + ", term " +
                  std::to_string(e.term) + ") has a different prefix");
    }
    prev_term = e.term;
  }
  if (r.role() != Role::kLeader) return;

  // Election safety: "at most one leader can be elected in a given term".
  auto [lt, inserted] = leaders_.emplace(r.term(), id);
  if (!inserted && lt->second != id) {
    return Fail("election safety: nodes " + std::to_string(lt->second) +
                " and " + std::to_string(id) + " both lead term " +
                std::to_string(r.term()));
  }
  // Record what this leader has committed (entries before `first` were
  // recorded before anyone could compact them).
  uint64_t next = committed_.empty() ? 1 : committed_.rbegin()->first + 1;
  for (uint64_t i = std::max(next, first); i <= r.log().committed(); ++i) {
    const Entry& e = log[i - first];
    committed_.emplace(i, Committed{e.term, HashEntry(0, e), r.term()});
  }
  // Leader completeness: "if a log entry is committed in a given term,
  // then that entry will be present in the logs of the leaders for all
  // higher-numbered terms".
  // Entries in its snapshot are checked through the state machine hashes.
  for (auto it = committed_.lower_bound(first); it != committed_.end();
       ++it) {
    const auto& [i, c] = *it;
    if (c.commit_term > r.term()) continue;
    if (i - first >= log.size() || log[i - first].term != c.term ||
        HashEntry(0, log[i - first]) != c.data_hash) {
      return Fail("leader completeness: leader " + std::to_string(id) +
                  " of term " + std::to_string(r.term()) + " lacks entry " +
                  std::to_string(i) + " committed in term " +
                  std::to_string(c.commit_term));
    }
  }
}

// Heals everything and requires a leader and a new commit on every node
// within a bounded number of ticks. Clients issue nothing new, but their
// outstanding ops may still complete.
void SimCluster::Settle() {
  side_.clear();
  calm_ = true;
  for (uint64_t id : Members()) {
    if (!nodes_[id]->raw) Start(id);
  }
  // A proposal may die with a leader that loses its term: propose again
  // every few rounds until one is applied everywhere.
  std::vector<std::pair<std::string, uint64_t>> tokens;  // data, index
  for (int round = 0; round < 400 && ok_; ++round, ++step_) {
    // Removed members are shut down, as an operator would.
    std::vector<uint64_t> members = Members();
    for (uint64_t id : ids_) {
      bool member = std::find(members.begin(), members.end(), id) !=
                    members.end();
      if (!member && nodes_[id]->raw) Crash(id);
      if (member && !nodes_[id]->raw) Start(id);
    }
    for (uint64_t id : members) nodes_[id]->raw->Tick();
    for (int pass = 0; pass < 50; ++pass) {
      for (uint64_t id : members) {
        ProcessReady(id, /*reliable=*/true);
        Check(id);
      }
      if (net_.empty()) break;
      std::vector<InFlight> batch;
      batch.swap(net_);
      for (InFlight& f : batch) Deliver(f.m);
    }
    ClientTimeouts();
    if (round % 20 == 0) {
      for (uint64_t id : members) {
        if (nodes_[id]->raw->TEST_raft().role() != Role::kLeader) continue;
        std::string token = "settle-" + std::to_string(round);
        if (nodes_[id]->raw->Propose(token).ok()) {
          tokens.emplace_back(token,
                              nodes_[id]->raw->TEST_raft().log().LastIndex());
        }
      }
    }
    for (const auto& [token, index] : tokens) {
      auto it = applied_.find(index);
      if (it == applied_.end() || it->second.data != token) continue;
      bool everywhere = true;
      for (uint64_t id : members) {
        everywhere = everywhere && nodes_[id]->applied >= index;
      }
      if (everywhere) return;
    }
  }
  Fail("liveness: no commit on every node within 400 ticks after healing");
}

}  // namespace synod::sim
