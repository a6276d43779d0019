// synod-corrupt-member DATA_DIR: test-only tool. Rewrites the newest value
// in a stopped member's MVCC history so that its HashKV differs from its
// peers' (see corrupt_member.h). Prints the key it changed.
#include <cstdio>

#include "tests/support/corrupt_member.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: synod-corrupt-member DATA_DIR\n");
    return 2;
  }
  auto key = synod::testing::CorruptNewestValue(argv[1]);
  if (!key.ok()) {
    std::fprintf(stderr, "synod-corrupt-member: %s\n",
                 key.status().ToString().c_str());
    return 1;
  }
  std::printf("%s\n", key->c_str());
  return 0;
}
