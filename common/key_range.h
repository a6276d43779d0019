// Key-range helpers with etcd's conventions (etcd API docs, RangeRequest):
//   range_end empty     -> the single key `key`;
//   range_end == "\0"   -> every key >= key;
//   otherwise           -> [key, range_end).
// A key of "\0" with range_end "\0" therefore means every key.
// Thread-safe: pure functions.
#ifndef SYNOD_COMMON_KEY_RANGE_H_
#define SYNOD_COMMON_KEY_RANGE_H_

#include <string>

#include "absl/strings/string_view.h"

namespace synod::common {

// True when range_end means "no upper bound".
inline bool IsOpenEnd(absl::string_view range_end) {
  return range_end.size() == 1 && range_end[0] == '\0';
}

// True when `k` lies in the range (key, range_end) per the rules above.
inline bool InRange(absl::string_view k, absl::string_view key,
                    absl::string_view range_end) {
  if (range_end.empty()) return k == key;
  if (k < key) return false;
  return IsOpenEnd(range_end) || k < range_end;
}

// The smallest key greater than every key with `prefix` (etcd's
// clientv3.GetPrefixRangeEnd); "\0" (everything) if no such key exists.
inline std::string PrefixEnd(absl::string_view prefix) {
  std::string end(prefix);
  while (!end.empty()) {
    unsigned char c = static_cast<unsigned char>(end.back());
    if (c < 0xff) {
      end.back() = static_cast<char>(c + 1);
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\0');
}

}  // namespace synod::common

#endif  // SYNOD_COMMON_KEY_RANGE_H_
