// Tests for the WGL linearizability checker: it must accept what an atomic
// register can produce and reject each classic anomaly.
#include "tests/lincheck/lincheck.h"

#include <cstdlib>
#include <map>
#include <random>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace synod::lincheck {
namespace {

constexpr absl::Duration kTimeout = absl::Seconds(30);

Operation W(int client, std::string key, std::string v, int64_t call,
            int64_t ret) {
  Operation o;
  o.client = client;
  o.kind = OpKind::kWrite;
  o.key = std::move(key);
  o.value = std::move(v);
  o.call_ns = call;
  o.return_ns = ret;
  return o;
}
Operation R(int client, std::string key, std::optional<std::string> out,
            int64_t call, int64_t ret) {
  Operation o;
  o.client = client;
  o.kind = OpKind::kRead;
  o.key = std::move(key);
  o.output = std::move(out);
  o.call_ns = call;
  o.return_ns = ret;
  return o;
}
Operation Cas(int client, std::string key, std::optional<std::string> expected,
              std::string v, bool ok, int64_t call, int64_t ret) {
  Operation o;
  o.client = client;
  o.kind = OpKind::kCas;
  o.key = std::move(key);
  o.expected = std::move(expected);
  o.value = std::move(v);
  o.cas_succeeded = ok;
  o.call_ns = call;
  o.return_ns = ret;
  return o;
}
Operation Unknown(Operation o) {
  o.unknown = true;
  o.return_ns = 0;
  return o;
}

void ExpectOk(const std::vector<Operation>& h) {
  CheckResult r = Check(h, kTimeout);
  EXPECT_EQ(r.verdict, CheckResult::kLinearizable) << r.explanation;
}
CheckResult ExpectBad(const std::vector<Operation>& h) {
  CheckResult r = Check(h, kTimeout);
  EXPECT_EQ(r.verdict, CheckResult::kNotLinearizable);
  EXPECT_FALSE(r.explanation.empty());
  return r;
}

TEST(Lincheck, EmptyHistoryIsLinearizable) { ExpectOk({}); }

TEST(Lincheck, AcceptsSequentialHistory) {
  ExpectOk({R(1, "k", std::nullopt, 0, 1), W(1, "k", "a", 2, 3),
            R(2, "k", "a", 4, 5), Cas(1, "k", "a", "b", true, 6, 7),
            Cas(2, "k", "a", "c", false, 8, 9), R(2, "k", "b", 10, 11),
            Cas(1, "k", "b", "d", true, 12, 13), R(1, "k", "d", 14, 15)});
}

TEST(Lincheck, AcceptsConcurrentOverlappingHistory) {
  // Two overlapping writes may take effect in either order; a read
  // overlapping a write may see the old or the new value.
  ExpectOk({W(1, "k", "a", 0, 10), W(2, "k", "b", 1, 11),
            R(3, "k", "a", 12, 13), R(1, "k", "a", 14, 20),
            W(2, "k", "c", 15, 30), R(3, "k", "c", 16, 17),
            R(1, "k", "c", 31, 32)});
  // A read that overlaps a write and sees it, and a later read that also
  // sees it: the write took effect within the first read.
  ExpectOk({W(1, "k", "a", 0, 1), W(2, "k", "b", 2, 20),
            R(3, "k", "a", 3, 4), R(3, "k", "b", 5, 6),
            R(1, "k", "b", 7, 8)});
  // A CAS racing a write.
  ExpectOk({W(1, "k", "a", 0, 1), Cas(2, "k", "a", "b", true, 2, 10),
            W(3, "k", "c", 3, 9), R(1, "k", "c", 11, 12)});
  ExpectOk({W(1, "k", "a", 0, 1), Cas(2, "k", "a", "b", false, 2, 10),
            W(3, "k", "c", 3, 9), R(1, "k", "c", 11, 12)});
  // ...but it cannot both succeed and be overwritten by nothing.
  ExpectBad({W(1, "k", "a", 0, 1), Cas(2, "k", "a", "b", true, 2, 10),
             W(3, "k", "c", 3, 9), R(1, "k", "a", 11, 12)});
}

TEST(Lincheck, RejectsStaleRead) {
  // The write of b completed before the read began; the read saw a.
  CheckResult r = ExpectBad({W(1, "k", "a", 0, 1), W(1, "k", "b", 2, 3),
                             R(2, "k", "a", 4, 5)});
  EXPECT_EQ(r.key, "k");
  EXPECT_NE(r.explanation.find("read(k) -> \"a\""), std::string::npos)
      << r.explanation;
  EXPECT_NE(r.explanation.find("[4, 5]"), std::string::npos) << r.explanation;
}

TEST(Lincheck, RejectsLostWrite) {
  // b was acknowledged, but a later read sees a (which b overwrote) and
  // never b; the read of the absent key afterwards is equally impossible.
  ExpectBad({W(1, "k", "a", 0, 1), W(2, "k", "b", 2, 3),
             R(1, "k", "a", 10, 11), R(2, "k", "a", 12, 13)});
  ExpectBad({W(1, "k", "a", 0, 1), R(2, "k", std::nullopt, 2, 3)});
}

TEST(Lincheck, RejectsReadOfValueNeverWritten) {
  ExpectBad({W(1, "k", "a", 0, 1), R(2, "k", "zzz", 0, 5)});
  ExpectBad({R(2, "k", "", 0, 5)});  // empty string is not "absent"
}

TEST(Lincheck, RejectsCasAgainstValueThatCouldNotBeCurrent) {
  ExpectBad({W(1, "k", "a", 0, 1), W(1, "k", "b", 2, 3),
             Cas(2, "k", "a", "c", true, 4, 5)});
  // Failing a CAS whose expected value was surely current is as bad.
  ExpectBad({W(1, "k", "a", 0, 1), Cas(2, "k", "a", "c", false, 4, 5)});
  // CAS against "absent" succeeds only on an absent key.
  ExpectOk({Cas(1, "k", std::nullopt, "a", true, 0, 1), R(1, "k", "a", 2, 3)});
  ExpectBad({W(1, "k", "x", 0, 1),
             Cas(1, "k", std::nullopt, "a", true, 2, 3)});
}

TEST(Lincheck, UnknownWriteMayTakeEffectLater) {
  // The unknown write of b took effect long after its client gave up.
  ExpectOk({W(1, "k", "a", 0, 1), Unknown(W(2, "k", "b", 2, 0)),
            R(3, "k", "a", 10, 11), R(3, "k", "b", 100, 101),
            R(1, "k", "b", 200, 201)});
  // ...but not before it was called.
  ExpectBad({W(1, "k", "a", 0, 1), R(3, "k", "b", 2, 3),
             Unknown(W(2, "k", "b", 10, 0))});
  // ...and once visible it cannot vanish again.
  ExpectBad({W(1, "k", "a", 0, 1), Unknown(W(2, "k", "b", 2, 0)),
             R(3, "k", "b", 10, 11), R(3, "k", "a", 12, 13)});
}

TEST(Lincheck, UnknownWriteMayNeverTakeEffect) {
  ExpectOk({W(1, "k", "a", 0, 1), Unknown(W(2, "k", "b", 2, 0)),
            R(3, "k", "a", 10, 11), R(3, "k", "a", 1000, 1001)});
  // An unknown CAS likewise; and an unknown read constrains nothing.
  ExpectOk({W(1, "k", "a", 0, 1), Unknown(Cas(2, "k", "a", "c", false, 2, 0)),
            R(3, "k", "a", 10, 11), Unknown(R(3, "k", "zzz", 12, 0)),
            R(3, "k", "c", 20, 21)});
}

TEST(Lincheck, UnknownOpsThatMustHaveHappened) {
  // The failed CAS needs some write between a and it; only an unknown
  // write called before the CAS returned can be that write.
  ExpectOk({W(1, "k", "a", 0, 1), Unknown(W(2, "k", "x", 20, 0)),
            Unknown(W(3, "k", "y", 2, 0)),
            Cas(4, "k", "a", "b", false, 10, 11)});
  ExpectBad({W(1, "k", "a", 0, 1), Unknown(W(2, "k", "x", 20, 0)),
             Cas(4, "k", "a", "b", false, 10, 11)});
  // An unknown CAS that a read saw succeed happened before that read.
  ExpectOk({W(1, "k", "a", 0, 1), Unknown(Cas(2, "k", "a", "b", false, 2, 0)),
            R(3, "k", "b", 5, 6)});
  ExpectBad({W(1, "k", "a", 0, 1), Unknown(Cas(2, "k", "a", "b", false, 2, 0)),
             R(3, "k", "b", 5, 6), R(3, "k", "a", 7, 8)});
  // Two unknown CASes from the same expected value: at most one can win.
  ExpectOk({W(1, "k", "a", 0, 1), Unknown(Cas(2, "k", "a", "b", false, 2, 0)),
            Unknown(Cas(3, "k", "a", "c", false, 2, 0)),
            R(4, "k", "c", 10, 11)});
  ExpectBad({W(1, "k", "a", 0, 1), Unknown(Cas(2, "k", "a", "b", false, 2, 0)),
             Unknown(Cas(3, "k", "a", "c", false, 2, 0)),
             R(4, "k", "c", 10, 11), R(4, "k", "b", 12, 13)});
}

TEST(Lincheck, ChecksEachKeyOnItsOwn) {
  // Fine per key although a single register could not do it.
  ExpectOk({W(1, "x", "a", 0, 1), W(1, "y", "b", 2, 3),
            R(2, "x", "a", 4, 5)});
  CheckResult r =
      ExpectBad({W(1, "x", "a", 0, 1), W(1, "y", "b", 2, 3),
                 R(2, "x", "a", 4, 5), W(2, "y", "c", 6, 7),
                 R(3, "y", "b", 8, 9), R(3, "z", std::nullopt, 10, 11)});
  EXPECT_EQ(r.key, "y");
  EXPECT_NE(r.explanation.find("key \"y\""), std::string::npos)
      << r.explanation;
}

TEST(Lincheck, MalformedHistoryIsReported) {
  CheckResult r = Check({W(1, "k", "a", 5, 4)}, kTimeout);
  EXPECT_EQ(r.verdict, CheckResult::kNotLinearizable);
  EXPECT_NE(r.explanation.find("malformed"), std::string::npos);
}

// A random history from an atomic register: each op takes effect at a
// point strictly inside [call, return]; clients run one op at a time.
struct Generated {
  std::vector<Operation> ops;
  std::vector<int64_t> lin;  // linearization point of each op
};

// One write or CAS in `unknown_one_in` has an unknown outcome (0: none);
// such an op takes effect or not, at random.
Generated GenerateAtomic(uint64_t seed, int clients, int ops_per_client,
                         int keys, int unknown_one_in) {
  std::mt19937_64 rng(seed);
  auto uniform = [&rng](int64_t n) {
    return static_cast<int64_t>(rng() % static_cast<uint64_t>(n));
  };
  Generated g;
  struct Pending {
    Operation op;
    int64_t lin;
    bool takes_effect;
  };
  std::vector<Pending> all;
  for (int c = 0; c < clients; ++c) {
    int64_t t = uniform(10);
    for (int i = 0; i < ops_per_client; ++i) {
      Operation o;
      o.client = c;
      o.key = absl::StrCat("k", uniform(keys));
      int64_t kind = uniform(10);
      o.kind = kind < 5 ? OpKind::kRead
                        : (kind < 8 ? OpKind::kWrite : OpKind::kCas);
      o.value = absl::StrCat("c", c, "-", i);
      // Times are multiples of clients*4 plus the client, so no two
      // linearization points coincide.
      int64_t unit = clients * 4;
      o.call_ns = t * unit + c;
      int64_t lin_t = t + 1 + uniform(6);
      int64_t ret_t = lin_t + 1 + uniform(6);
      o.return_ns = ret_t * unit + c;
      bool effect = true;
      if (o.kind != OpKind::kRead && unknown_one_in > 0 &&
          uniform(unknown_one_in) == 0) {
        o.unknown = true;  // the client gave up; maybe it happened
        effect = uniform(2) == 0;
      }
      all.push_back(Pending{o, lin_t * unit + c, effect});
      t = ret_t + uniform(4);
    }
  }
  std::sort(all.begin(), all.end(), [](const Pending& a, const Pending& b) {
    return a.lin < b.lin;
  });
  std::map<std::string, std::string> reg;
  for (Pending& p : all) {
    Operation& o = p.op;
    auto it = reg.find(o.key);
    std::optional<std::string> cur;
    if (it != reg.end()) cur = it->second;
    if (o.kind == OpKind::kRead) {
      o.output = cur;
    } else if (o.kind == OpKind::kWrite) {
      if (p.takes_effect) reg[o.key] = o.value;
    } else {
      // Half the CASes expect the current value, the others a stale one.
      if (rng() % 2 == 0) {
        o.expected = cur;
      } else {
        o.expected = absl::StrCat("c", uniform(clients), "-", uniform(5));
      }
      o.cas_succeeded = o.expected == cur;
      if (p.takes_effect && o.cas_succeeded) reg[o.key] = o.value;
    }
    g.ops.push_back(o);
    g.lin.push_back(p.lin);
  }
  return g;
}

uint64_t TestSeed() {
  if (const char* s = std::getenv("SYNOD_LINCHECK_SEED")) {
    return std::strtoull(s, nullptr, 10);
  }
  return 20261201;
}

struct RandomCase {
  int clients, ops_per_client, keys, unknown_one_in;
};
// 3,000 ops with known outcomes; 600 and 3,000 ops with about 1 in 20
// writes unknown (each op of unknown outcome stays concurrent with
// everything after it, so they cost the search most).
const RandomCase kRandomCases[] = {
    {5, 600, 3, 0}, {5, 120, 3, 20}, {5, 600, 3, 20}};

void PrintSeed(uint64_t seed) {
  printf("seed %llu (replay: SYNOD_LINCHECK_SEED=%llu)\n",
         static_cast<unsigned long long>(seed),
         static_cast<unsigned long long>(seed));
}

TEST(Lincheck, AcceptsLargeRandomAtomicHistory) {
  const uint64_t seed = TestSeed();
  PrintSeed(seed);
  for (const RandomCase& c : kRandomCases) {
    for (uint64_t s = seed; s < seed + 5; ++s) {
      Generated g = GenerateAtomic(s, c.clients, c.ops_per_client, c.keys,
                                   c.unknown_one_in);
      ASSERT_EQ(g.ops.size(), size_t(c.clients * c.ops_per_client));
      CheckResult r = Check(g.ops, kTimeout);
      ASSERT_EQ(r.verdict, CheckResult::kLinearizable)
          << "seed " << s << ": " << r.explanation;
    }
  }
}

// Makes one read R return the value of a write W1 that a later write W2
// surely overwrote before R began (W1 -> W2 -> R in real time; values are
// unique, so nothing can restore it). Returns false if there is none.
bool MakeOneReadStale(std::vector<Operation>* history) {
  std::vector<Operation>& h = *history;
  for (size_t r = h.size() / 2; r < h.size(); ++r) {
    if (h[r].kind != OpKind::kRead) continue;
    for (size_t w2 = 0; w2 < h.size(); ++w2) {
      const Operation& b = h[w2];
      if (b.kind != OpKind::kWrite || b.unknown || b.key != h[r].key ||
          b.return_ns >= h[r].call_ns) {
        continue;
      }
      for (size_t w1 = 0; w1 < h.size(); ++w1) {
        const Operation& a = h[w1];
        if (a.kind == OpKind::kWrite && !a.unknown && a.key == b.key &&
            a.return_ns < b.call_ns && a.value != h[r].output) {
          h[r].output = a.value;
          return true;
        }
      }
    }
  }
  return false;
}

TEST(Lincheck, RejectsLargeRandomHistoryWithOneStaleRead) {
  const uint64_t seed = TestSeed();
  PrintSeed(seed);
  for (const RandomCase& c : kRandomCases) {
    for (uint64_t s = seed; s < seed + 5; ++s) {
      Generated g = GenerateAtomic(s, c.clients, c.ops_per_client, c.keys,
                                   c.unknown_one_in);
      ASSERT_TRUE(MakeOneReadStale(&g.ops));
      CheckResult r = Check(g.ops, kTimeout);
      EXPECT_EQ(r.verdict, CheckResult::kNotLinearizable) << "seed " << s;
    }
  }
}

// The definition, by brute force: some order of all known ops and any
// subset of the unknown ones respects real time and register semantics.
bool BruteForce(const std::vector<Operation>& h, std::vector<bool>& used,
                std::optional<std::string> state) {
  bool all_known_used = true;
  for (size_t i = 0; i < h.size(); ++i) {
    all_known_used = all_known_used && (used[i] || h[i].unknown);
  }
  if (all_known_used) return true;
  for (size_t i = 0; i < h.size(); ++i) {
    if (used[i]) continue;
    const Operation& o = h[i];
    // Every known op that returned before o was called must come first.
    bool ready = true;
    for (size_t j = 0; j < h.size() && ready; ++j) {
      ready = used[j] || h[j].unknown || h[j].return_ns >= o.call_ns;
    }
    if (!ready) continue;
    std::optional<std::string> next = state;
    bool ok = true;
    if (o.kind == OpKind::kRead) {
      ok = o.unknown || o.output == state;
    } else if (o.kind == OpKind::kWrite) {
      next = o.value;
    } else {
      bool match = state == o.expected;
      if (o.unknown) {
        if (match) next = o.value;
      } else {
        ok = match == o.cas_succeeded;
        if (match && ok) next = o.value;
      }
    }
    if (!ok) continue;
    used[i] = true;
    bool found = BruteForce(h, used, next);
    used[i] = false;
    if (found) return true;
  }
  return false;
}

TEST(Lincheck, AgreesWithBruteForceOnSmallHistories) {
  const uint64_t seed = TestSeed();
  PrintSeed(seed);
  std::mt19937_64 rng(seed);
  auto pick = [&rng](int n) { return static_cast<int>(rng() % n); };
  const char* values[] = {"a", "b", "c"};
  int accepted = 0, rejected = 0;
  for (int iter = 0; iter < 20000; ++iter) {
    std::vector<Operation> h;
    int n = 2 + pick(6);
    for (int i = 0; i < n; ++i) {
      Operation o;
      o.client = i;
      o.key = "k";
      o.kind = static_cast<OpKind>(pick(3));
      o.value = values[pick(3)];
      if (pick(4) > 0) o.expected = values[pick(3)];
      if (pick(4) > 0) o.output = values[pick(3)];
      o.cas_succeeded = pick(2) == 0;
      o.call_ns = pick(20);
      o.return_ns = o.call_ns + pick(8);
      o.unknown = pick(4) == 0;
      if (o.unknown) o.return_ns = 0;
      h.push_back(o);
    }
    std::vector<bool> used(h.size(), false);
    bool want = BruteForce(h, used, std::nullopt);
    CheckResult r = Check(h, kTimeout);
    ASSERT_NE(r.verdict, CheckResult::kTimedOut);
    std::string dump;
    for (const Operation& o : h) dump += Describe(o) + "\n";
    ASSERT_EQ(r.verdict == CheckResult::kLinearizable, want)
        << "iteration " << iter << ":\n" << dump << r.explanation;
    (want ? accepted : rejected)++;
  }
  // Both verdicts must be well represented for the comparison to matter.
  EXPECT_GT(accepted, 2000);
  EXPECT_GT(rejected, 2000);
}

TEST(Lincheck, TimesOutOnPathologicalHistory) {
  // Many fully concurrent writes of distinct values and reads that pin
  // them in an impossible order: the search space is exponential.
  std::vector<Operation> h;
  for (int i = 0; i < 40; ++i) {
    h.push_back(W(i, "k", absl::StrCat("v", i), 0, 1000));
    h.push_back(R(100 + i, "k", absl::StrCat("v", (i * 7) % 40), 1, 999));
  }
  h.push_back(R(999, "k", "never", 1, 999));
  CheckResult r = Check(h, absl::Milliseconds(5));
  EXPECT_EQ(r.verdict, CheckResult::kTimedOut) << r.explanation;
  EXPECT_EQ(r.key, "k");
}

TEST(HistoryRecorder, RecordsFromManyThreads) {
  HistoryRecorder rec;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&rec, t] {
      for (int i = 0; i < 100; ++i) {
        Operation o = W(t, "k", absl::StrCat(t, "-", i), rec.Now(), 0);
        o.return_ns = rec.Now();
        rec.Record(o);
      }
    });
  }
  for (auto& th : threads) th.join();
  std::vector<Operation> h = rec.Take();
  EXPECT_EQ(h.size(), 400u);
  for (const Operation& o : h) EXPECT_LE(o.call_ns, o.return_ns);
  EXPECT_TRUE(rec.Take().empty());
  EXPECT_EQ(Check(h, kTimeout).verdict, CheckResult::kLinearizable);
}

}  // namespace
}  // namespace synod::lincheck
