// KeyRangeSet: the key ranges one user may read (or write), merged, so that
// a permission check costs O(log n) in the number of ranges. It stands for
// etcd 3.4's per-user interval tree (auth/range_perm_cache.go) and answers
// as its Intersects (single key) and Contains (range) do: a request passes
// when the union of the granted ranges covers all of it, so two adjacent
// grants [a, b) and [b, c) together cover [a, c).
//
// Ranges are half-open [begin, end) over byte strings, with etcd's affine
// ends: an end of "" is +infinity. Permissions and requests are given in
// etcd's wire form and converted here:
//  * range_end ""   -> the single key (etcd's point [key, key + "\0"));
//  * range_end "\0" -> every key >= key;
//  * otherwise      -> [key, range_end).
// So key "\0" with range_end "\0" is every key. A key of "" is +infinity
// to etcd's comparator too: a permission on it grants nothing and a request
// for it is refused.
//
// Not thread-safe (AuthStore guards it with its own mutex). Copyable.
#ifndef SYNOD_BACKEND_AUTH_RANGE_PERMS_H_
#define SYNOD_BACKEND_AUTH_RANGE_PERMS_H_

#include <cstddef>
#include <string>

#include "absl/container/btree_map.h"
#include "absl/strings/string_view.h"

namespace synod::auth {

class KeyRangeSet {
 public:
  // Adds a permission's range (wire form, see above). An empty or inverted
  // range (range_end <= key, other than "" and "\0") adds nothing.
  void AddPermission(absl::string_view key, absl::string_view range_end);

  // Whether the request (wire form) is covered by the union of the ranges.
  // An inverted request (range_end <= key, other than "" and "\0") selects
  // no key; as in etcd it passes only when one range spans from below
  // range_end to above key.
  bool Covers(absl::string_view key, absl::string_view range_end) const;

  // The number of disjoint ranges after merging.
  size_t size() const { return ranges_.size(); }
  bool empty() const { return ranges_.empty(); }

 private:
  // Adds [begin, end) (end "" = +infinity), merging it with the ranges it
  // overlaps or touches. REQUIRES: begin non-empty and begin < end.
  void AddRange(std::string begin, std::string end);

  // begin -> end of disjoint, non-touching ranges; end "" = +infinity.
  absl::btree_map<std::string, std::string> ranges_;
};

}  // namespace synod::auth

#endif  // SYNOD_BACKEND_AUTH_RANGE_PERMS_H_
