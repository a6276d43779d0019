// Random: the seeded pseudo-random source the Raft core draws its election
// timeouts from. The core never touches global randomness; whoever builds a
// node passes one in, so a seed replays a run exactly.
// Thread-safety: none; one owner at a time.
#ifndef SYNOD_BACKEND_RAFT_RANDOM_H_
#define SYNOD_BACKEND_RAFT_RANDOM_H_

#include <cstdint>

namespace synod::raft {

// splitmix64: tiny, fast, and good enough for timeouts and test schedules.
class Random {
 public:
  explicit Random(uint64_t seed) : state_(seed) {}

  uint64_t Next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Uniform in [0, n). REQUIRES: n > 0.
  uint64_t Uniform(uint64_t n) { return Next() % n; }
  // True with probability 1/n. REQUIRES: n > 0.
  bool OneIn(uint64_t n) { return Uniform(n) == 0; }

 private:
  uint64_t state_;
};

}  // namespace synod::raft

#endif  // SYNOD_BACKEND_RAFT_RANDOM_H_
