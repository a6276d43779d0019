#include "backend/auth/range_perms.h"

#include <iterator>
#include <string>
#include <utility>

namespace synod::auth {
namespace {

// a < b, where "" is +infinity (etcd's BytesAffineComparable). Range begins
// are never "", so this also compares an end with a begin.
bool AffineLess(absl::string_view a, absl::string_view b) {
  if (a.empty()) return false;
  if (b.empty()) return true;
  return a < b;
}

// A wire-form (key, range_end) as [begin, end) with end "" = +infinity.
struct Range {
  std::string begin;
  std::string end;
};

Range FromWire(absl::string_view key, absl::string_view range_end) {
  if (range_end.empty()) {
    std::string end(key);
    end.push_back('\0');  // the key's immediate successor
    return {std::string(key), std::move(end)};
  }
  if (range_end == absl::string_view("\0", 1)) return {std::string(key), ""};
  return {std::string(key), std::string(range_end)};
}

}  // namespace

void KeyRangeSet::AddPermission(absl::string_view key,
                                absl::string_view range_end) {
  if (key.empty()) return;  // begins at +infinity: covers nothing
  Range r = FromWire(key, range_end);
  if (!AffineLess(r.begin, r.end)) return;  // empty or inverted
  AddRange(std::move(r.begin), std::move(r.end));
}

void KeyRangeSet::AddRange(std::string begin, std::string end) {
  auto it = ranges_.upper_bound(begin);
  if (it != ranges_.begin()) {
    auto prev = std::prev(it);
    if (!AffineLess(prev->second, begin)) {  // overlaps or touches
      begin = prev->first;
      if (AffineLess(end, prev->second)) end = prev->second;
      it = ranges_.erase(prev);
    }
  }
  while (it != ranges_.end() && !AffineLess(end, it->first)) {
    if (AffineLess(end, it->second)) end = it->second;
    it = ranges_.erase(it);
  }
  ranges_.emplace(std::move(begin), std::move(end));
}

bool KeyRangeSet::Covers(absl::string_view key,
                         absl::string_view range_end) const {
  if (key.empty()) return false;
  Range r = FromWire(key, range_end);
  if (!AffineLess(r.begin, r.end)) {
    // Inverted: etcd's tree visits the ranges with begin < range_end and
    // end > key and passes if there is one. Ranges are disjoint, so only
    // the last one beginning below range_end can reach past key.
    auto it = ranges_.lower_bound(r.end);
    if (it == ranges_.begin()) return false;
    --it;
    return AffineLess(r.begin, it->second);
  }
  // The one range that could hold r.begin; it must reach r.end.
  auto it = ranges_.upper_bound(r.begin);
  if (it == ranges_.begin()) return false;
  --it;
  return !AffineLess(it->second, r.end);
}

}  // namespace synod::auth
