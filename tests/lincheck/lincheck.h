// A linearizability checker for histories of register operations (read,
// write, compare-and-set) on string keys, for tests that record what their
// clients saw: the deterministic cluster simulation (tests/sim) and the
// multi-process fault tests.
//
// Algorithm: Wing & Gong's search as improved by Lowe (WGL): the history is
// a time-ordered list of call and return events; the search linearizes one
// pending call at a time, remembers every (set of linearized ops, register
// state) it has seen so it never explores it twice, and backtracks when a
// return event is reached before its call was linearized. Registers are
// independent (P-compositionality), so every key is checked on its own.
//
// Operations whose outcome is unknown (the client timed out or lost its
// connection) are handled as in Knossos and Porcupine: they return at
// +infinity and may or may not have taken effect. A write or CAS with an
// unknown outcome may be linearized anywhere after its call, or never; a
// read with an unknown outcome says nothing and is dropped.
//
// Reductions that keep the search small with many unknown outcomes, each
// exact (a unit test compares the checker with brute force):
//  - every value no read returns and no CAS expects is one and the same
//    value to the model;
//  - unknown ops are optional, and one that would change nothing is never
//    tried;
//  - unknown writes (or CASes with the same expected value) of such
//    unobserved values are interchangeable: they are tried in call order;
//  - an unknown write or CAS that alone writes a value some known op
//    observed must be linearized by that op's return.
//
// Real-time order: op A precedes op B only if A.return_ns < B.call_ns
// (equal times count as concurrent).
//
// Thread-safety: Check() is a pure function, safe to call concurrently.
// HistoryRecorder is thread-safe.
#ifndef SYNOD_TESTS_LINCHECK_LINCHECK_H_
#define SYNOD_TESTS_LINCHECK_LINCHECK_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace synod::lincheck {

enum class OpKind { kRead, kWrite, kCas };

struct Operation {
  int client = 0;  // for messages only
  OpKind kind = OpKind::kRead;
  std::string key;
  // kWrite: value written. kCas: new value.
  std::string value;
  // kCas: the value compared against; std::nullopt = "key absent".
  std::optional<std::string> expected;
  // kRead: value observed (nullopt = key absent). kCas: unused.
  std::optional<std::string> output;
  bool cas_succeeded = false;  // kCas with known outcome
  // Outcome unknown (timeout/error): may or may not have happened.
  bool unknown = false;
  int64_t call_ns = 0;    // invocation time (any monotonic clock)
  int64_t return_ns = 0;  // response time; ignored when unknown
};

// One line describing op, e.g. "client 3 write(k1, \"v7\") [10, 14]".
std::string Describe(const Operation& op);

struct CheckResult {
  enum Verdict { kLinearizable, kNotLinearizable, kTimedOut } verdict;
  std::string key;          // the first key that failed (or timed out)
  std::string explanation;  // human-readable: the ops of that key that
                            // could not be linearized, with times
  bool ok() const { return verdict == kLinearizable; }
};

// Checks the whole history; the initial state of every key is "absent".
// Keys are checked in sorted order; the first failing key is reported.
// `timeout` bounds the total search time (kTimedOut past it; the verdict
// then says nothing either way). Operations with return_ns < call_ns (and
// known outcome) make the history malformed: reported as kNotLinearizable
// with an explanation saying so.
CheckResult Check(const std::vector<Operation>& history, absl::Duration timeout);

// Collects the operations of concurrent clients while they run.
class HistoryRecorder {
 public:
  // Steady clock, in nanoseconds: use it for call_ns and return_ns.
  int64_t Now() const;
  void Record(Operation op) ABSL_LOCKS_EXCLUDED(mu_);
  // Returns every operation recorded so far and forgets them.
  std::vector<Operation> Take() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  absl::Mutex mu_;
  std::vector<Operation> ops_ ABSL_GUARDED_BY(mu_);
};

}  // namespace synod::lincheck

#endif  // SYNOD_TESTS_LINCHECK_LINCHECK_H_
