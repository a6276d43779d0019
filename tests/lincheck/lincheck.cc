#include "tests/lincheck/lincheck.h"

#include <algorithm>
#include <chrono>
#include <functional>
#include <limits>
#include <map>
#include <unordered_set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace synod::lincheck {
namespace {

constexpr int64_t kInfinity = std::numeric_limits<int64_t>::max();
// Register states and values are interned: 0 is "absent", 1 stands for
// every value that no read returns and no CAS expects (they are
// indistinguishable to every op of the key).
constexpr int kAbsent = 0;
constexpr int kUnobserved = 1;
// How many ops of a failing key the explanation lists at most.
constexpr size_t kMaxListed = 24;

std::string Quote(const std::optional<std::string>& v) {
  return v ? absl::StrCat("\"", *v, "\"") : std::string("<absent>");
}

// One operation of one key, with values interned.
struct KeyOp {
  const Operation* op;
  OpKind kind;
  int value = kAbsent;     // write/cas: new value
  int expected = kAbsent;  // cas
  int output = kAbsent;    // read
  bool cas_succeeded = false;
  bool unknown = false;
  // For an unknown write or CAS of an unobserved value: the previous op by
  // call time (-1 for the first) among those with the same kind and
  // expected value. They have the same effect and are optional, so any
  // linearization that uses m of them can use the m earliest-called
  // instead; the search only takes them in call order, which turns 2^m
  // subsets into m + 1.
  int pool_prev = -1;
  // When the search must have linearized the op: its return, or +infinity
  // for an unknown outcome. An unknown write or CAS that is the only op
  // writing its value, and whose value a known op observed (a read that
  // returned it, a CAS that succeeded expecting it), must precede that
  // observer, so it must be linearized by the observer's return.
  int64_t deadline = 0;
};

// Applies op to state; returns false if op cannot take effect in `state`
// with the outcome the client saw.
bool StepModel(const KeyOp& op, int state, int* next) {
  switch (op.kind) {
    case OpKind::kRead:
      *next = state;
      return op.unknown || op.output == state;
    case OpKind::kWrite:
      *next = op.value;
      return true;
    case OpKind::kCas:
      if (op.unknown) {
        *next = state == op.expected ? op.value : state;
        return true;
      }
      if (op.cas_succeeded) {
        *next = op.value;
        return state == op.expected;
      }
      *next = state;
      return state != op.expected;
  }
  return false;
}

struct CacheKey {
  std::vector<uint64_t> bits;
  int state;
  bool operator==(const CacheKey& o) const {
    return state == o.state && bits == o.bits;
  }
};
struct CacheKeyHash {
  size_t operator()(const CacheKey& k) const {
    uint64_t h = 1469598103934665603ull ^ static_cast<uint64_t>(k.state);
    for (uint64_t w : k.bits) {
      h ^= w + 0x9E3779B97F4A7C15ull + (h << 6) + (h >> 2);
    }
    return static_cast<size_t>(h);
  }
};

// An event of the doubly linked list the search walks (Lowe's "entries").
struct Event {
  int op;        // index into the key's ops
  bool call;     // call or return
  int64_t time;  // kInfinity for the return of an unknown op
  int match = -1;  // for a call: the index of its return event
  int prev = -1;
  int next = -1;
};

class KeyChecker {
 public:
  KeyChecker(std::string key, std::vector<const Operation*> ops)
      : key_(std::move(key)) {
    std::map<std::string, int> ids;
    for (const Operation* o : ops) {
      if (o->kind == OpKind::kRead && o->output) ids.emplace(*o->output, 0);
      if (o->kind == OpKind::kCas && o->expected) {
        ids.emplace(*o->expected, 0);
      }
    }
    int next_id = kUnobserved + 1;
    for (auto& [value, id] : ids) id = next_id++;
    auto intern = [&ids](const std::optional<std::string>& v) {
      if (!v) return kAbsent;
      auto it = ids.find(*v);
      return it == ids.end() ? kUnobserved : it->second;
    };
    for (const Operation* o : ops) {
      KeyOp k;
      k.op = o;
      k.kind = o->kind;
      k.unknown = o->unknown;
      k.cas_succeeded = o->cas_succeeded;
      if (o->kind != OpKind::kRead) k.value = intern(o->value);
      if (o->kind == OpKind::kCas) k.expected = intern(o->expected);
      if (o->kind == OpKind::kRead) k.output = intern(o->output);
      ops_.push_back(k);
    }
    // Deadlines (see KeyOp::deadline).
    std::map<int, int> writers;         // value id -> ops writing it
    std::map<int, int64_t> first_seen;  // value id -> earliest observer return
    for (const KeyOp& k : ops_) {
      if (k.kind != OpKind::kRead) writers[k.value]++;
      if (k.unknown) continue;
      int seen = -1;
      if (k.kind == OpKind::kRead) seen = k.output;
      if (k.kind == OpKind::kCas && k.cas_succeeded) seen = k.expected;
      if (seen <= kUnobserved) continue;
      auto [it, inserted] = first_seen.emplace(seen, k.op->return_ns);
      if (!inserted) it->second = std::min(it->second, k.op->return_ns);
    }
    for (KeyOp& k : ops_) {
      k.deadline = k.unknown ? kInfinity : k.op->return_ns;
      if (!k.unknown || k.kind == OpKind::kRead || writers[k.value] != 1) {
        continue;
      }
      auto it = first_seen.find(k.value);
      if (it != first_seen.end()) {
        k.deadline = std::max(it->second, k.op->call_ns);
      }
    }
    // Pools (see KeyOp::pool_prev), keyed by (kind, expected).
    std::map<std::pair<int, int>, std::vector<int>> pools;
    for (size_t i = 0; i < ops_.size(); ++i) {
      const KeyOp& k = ops_[i];
      if (k.unknown && k.kind != OpKind::kRead && k.value == kUnobserved &&
          k.deadline == kInfinity) {
        int expected = k.kind == OpKind::kCas ? k.expected : -1;
        pools[{static_cast<int>(k.kind), expected}].push_back(
            static_cast<int>(i));
      }
    }
    for (auto& [unused, pool] : pools) {
      std::stable_sort(pool.begin(), pool.end(), [this](int a, int b) {
        return ops_[a].op->call_ns < ops_[b].op->call_ns;
      });
      for (size_t i = 1; i < pool.size(); ++i) {
        ops_[pool[i]].pool_prev = pool[i - 1];
      }
    }
  }

  // Returns kLinearizable, kNotLinearizable (explanation_ set) or kTimedOut.
  CheckResult::Verdict Run(absl::Time deadline) {
    const int n = static_cast<int>(ops_.size());
    if (n == 0) return CheckResult::kLinearizable;
    // Events sorted by time; at equal times calls come first (concurrent),
    // then by op index so the order is deterministic.
    std::vector<Event> ev;
    ev.reserve(2 * n + 1);
    for (int i = 0; i < n; ++i) {
      const Operation& o = *ops_[i].op;
      ev.push_back(Event{i, true, o.call_ns});
      ev.push_back(Event{i, false, ops_[i].deadline});
    }
    std::sort(ev.begin(), ev.end(), [](const Event& a, const Event& b) {
      if (a.time != b.time) return a.time < b.time;
      if (a.call != b.call) return a.call;
      return a.op < b.op;
    });
    // Node 0 is the head sentinel; events are 1..2n.
    ev.insert(ev.begin(), Event{-1, false, 0});
    std::vector<int> ret_of(n, -1);
    for (int i = 1; i <= 2 * n; ++i) {
      if (!ev[i].call) ret_of[ev[i].op] = i;
    }
    for (int i = 0; i <= 2 * n; ++i) {
      ev[i].prev = i - 1;
      ev[i].next = i < 2 * n ? i + 1 : -1;
      if (i > 0 && ev[i].call) ev[i].match = ret_of[ev[i].op];
    }
    auto unlink = [&ev](int i) {
      ev[ev[i].prev].next = ev[i].next;
      if (ev[i].next >= 0) ev[ev[i].next].prev = ev[i].prev;
    };
    auto relink = [&ev](int i) {
      ev[ev[i].prev].next = i;
      if (ev[i].next >= 0) ev[ev[i].next].prev = i;
    };

    std::unordered_set<CacheKey, CacheKeyHash> cache;
    CacheKey cur{std::vector<uint64_t>((n + 63) / 64, 0), kAbsent};
    struct Frame {
      int event;
      int state_before;
    };
    std::vector<Frame> stack;
    // Ops of unknown outcome with no deadline are optional: the search ends
    // once every other op is linearized.
    auto required = [this](int op) { return ops_[op].deadline != kInfinity; };
    int required_left = 0;
    for (int i = 0; i < n; ++i) required_left += required(i);
    int state = kAbsent;
    int entry = ev[0].next;
    uint64_t iterations = 0;
    while (required_left > 0) {
      if (++iterations % 4096 == 0 && absl::Now() > deadline) {
        return CheckResult::kTimedOut;
      }
      const Event& e = ev[entry];
      if (e.call) {
        int next_state;
        const int prev = ops_[e.op].pool_prev;
        const bool in_order =
            prev < 0 || (cur.bits[prev / 64] >> (prev % 64)) & 1;
        // An optional op that would change nothing is as good as never
        // happening: do not branch on it.
        if (in_order && StepModel(ops_[e.op], state, &next_state) &&
            (required(e.op) || next_state != state)) {
          cur.bits[e.op / 64] |= uint64_t{1} << (e.op % 64);
          cur.state = next_state;
          if (cache.insert(cur).second) {
            stack.push_back(Frame{entry, state});
            state = next_state;
            required_left -= required(e.op);
            unlink(entry);
            unlink(e.match);
            if (stack.size() > longest_.size()) {
              longest_.clear();
              for (const Frame& f : stack) longest_.push_back(ev[f.event].op);
            }
            entry = ev[0].next;
            continue;
          }
          cur.bits[e.op / 64] &= ~(uint64_t{1} << (e.op % 64));
        }
        entry = e.next;
      } else {
        // A return reached before its call was linearized: backtrack.
        if (stack.empty()) {
          Explain();
          return CheckResult::kNotLinearizable;
        }
        Frame f = stack.back();
        stack.pop_back();
        const Event& c = ev[f.event];
        cur.bits[c.op / 64] &= ~(uint64_t{1} << (c.op % 64));
        state = f.state_before;
        required_left += required(c.op);
        relink(c.match);
        relink(f.event);
        entry = c.next;
      }
    }
    return CheckResult::kLinearizable;
  }

  const std::string& explanation() const { return explanation_; }

 private:
  void Explain() {
    std::vector<bool> done(ops_.size(), false);
    for (int i : longest_) done[i] = true;
    std::string s = absl::StrFormat(
        "key \"%s\": %d ops, no linearization exists. The longest "
        "linearizable prefix has %d ops",
        key_, ops_.size(), longest_.size());
    size_t from = longest_.size() > kMaxListed / 2
                      ? longest_.size() - kMaxListed / 2
                      : 0;
    absl::StrAppend(&s, from > 0 ? absl::StrFormat(" (last %d shown)",
                                                   longest_.size() - from)
                                 : std::string(),
                    ":\n");
    for (size_t i = from; i < longest_.size(); ++i) {
      absl::StrAppend(&s, "    ", Describe(*ops_[longest_[i]].op), "\n");
    }
    // The ops left over, by call time: one of the first of them would have
    // had to come next, and none can.
    std::vector<int> rest;
    for (size_t i = 0; i < ops_.size(); ++i) {
      if (!done[i]) rest.push_back(static_cast<int>(i));
    }
    std::sort(rest.begin(), rest.end(), [this](int a, int b) {
      return ops_[a].op->call_ns < ops_[b].op->call_ns;
    });
    absl::StrAppend(&s, "  then none of these can be linearized next (",
                    rest.size(), " ops left, by call time):\n");
    for (size_t i = 0; i < rest.size() && i < kMaxListed; ++i) {
      absl::StrAppend(&s, "    ", Describe(*ops_[rest[i]].op), "\n");
    }
    explanation_ = std::move(s);
  }

  const std::string key_;
  std::vector<KeyOp> ops_;
  std::vector<int> longest_;  // op indices of the deepest linearization
  std::string explanation_;
};

}  // namespace

std::string Describe(const Operation& op) {
  std::string what;
  switch (op.kind) {
    case OpKind::kRead:
      what = absl::StrCat("read(", op.key, ")");
      if (!op.unknown) absl::StrAppend(&what, " -> ", Quote(op.output));
      break;
    case OpKind::kWrite:
      what = absl::StrCat("write(", op.key, ", \"", op.value, "\")");
      break;
    case OpKind::kCas:
      what = absl::StrCat("cas(", op.key, ", ", Quote(op.expected), " => \"",
                          op.value, "\")");
      if (!op.unknown) {
        absl::StrAppend(&what, op.cas_succeeded ? " ok" : " failed");
      }
      break;
  }
  std::string ret =
      op.unknown ? std::string("?, outcome unknown") : absl::StrCat(op.return_ns);
  return absl::StrCat("client ", op.client, " ", what, " [", op.call_ns, ", ",
                      ret, "]");
}

CheckResult Check(const std::vector<Operation>& history,
                  absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  std::map<std::string, std::vector<const Operation*>> by_key;
  for (const Operation& op : history) {
    if (!op.unknown && op.return_ns < op.call_ns) {
      return CheckResult{CheckResult::kNotLinearizable, op.key,
                         "malformed history: returns before its call: " +
                             Describe(op)};
    }
    // A read with an unknown outcome constrains nothing.
    if (op.kind == OpKind::kRead && op.unknown) continue;
    by_key[op.key].push_back(&op);
  }
  for (auto& [key, ops] : by_key) {
    KeyChecker checker(key, std::move(ops));
    switch (checker.Run(deadline)) {
      case CheckResult::kLinearizable:
        break;
      case CheckResult::kNotLinearizable:
        return CheckResult{CheckResult::kNotLinearizable, key,
                           checker.explanation()};
      case CheckResult::kTimedOut:
        return CheckResult{
            CheckResult::kTimedOut, key,
            absl::StrCat("search for key \"", key, "\" timed out after ",
                         absl::FormatDuration(timeout))};
    }
  }
  return CheckResult{CheckResult::kLinearizable, "", ""};
}

int64_t HistoryRecorder::Now() const {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

void HistoryRecorder::Record(Operation op) {
  absl::MutexLock l(&mu_);
  ops_.push_back(std::move(op));
}

std::vector<Operation> HistoryRecorder::Take() {
  absl::MutexLock l(&mu_);
  std::vector<Operation> out;
  out.swap(ops_);
  return out;
}

}  // namespace synod::lincheck
