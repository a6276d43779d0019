// Test-only damage to a stopped member's data dir, so that the corruption
// checks can be shown to work. Never linked into synod.
//
// Thread-safety: the member must be stopped (LevelDB's lock is taken).
#ifndef SYNOD_TESTS_SUPPORT_CORRUPT_MEMBER_H_
#define SYNOD_TESTS_SUPPORT_CORRUPT_MEMBER_H_

#include <string>

#include "absl/status/statusor.h"

namespace synod::testing {

// Rewrites the value of the newest put in the member's MVCC history (the
// record stays well formed, so the member opens and serves; only its
// HashKV differs from its peers'). `data_dir` is the member's --data-dir.
// Returns the key whose value was changed. Errors: NotFound when the
// history holds no put; the LevelDB open error (e.g. the member still runs).
absl::StatusOr<std::string> CorruptNewestValue(const std::string& data_dir);

}  // namespace synod::testing

#endif  // SYNOD_TESTS_SUPPORT_CORRUPT_MEMBER_H_
