// etcd's rules for answering a RangeRequest once the live keys of its range
// are known, written once for the member's MVCC store (mvcc::KvStore) and
// synod-proxy's range cache (proxy::RangeCache):
//   * count is the number of live keys in the range, before the revision
//     filters (etcd's RangeResponse.count);
//   * min/max mod_revision and min/max create_revision drop keys outside
//     them (0 = no bound);
//   * sort: keys come in ascending key order, so sort_target KEY with
//     ASCEND (or NONE) is the natural order and KEY DESCEND reverses it;
//     another target with sort_order NONE sorts ASCEND (etcd's "default
//     order"); ties keep key order;
//   * limit (> 0) keeps the first `limit` keys after filtering and sorting
//     and sets `more` when it dropped some;
//   * count_only answers no kvs; keys_only answers kvs without values.
//
// The helpers work on any item type so that a store can filter and sort
// index entries before it reads values: `meta(item)` gives a KvMeta and
// `value(item)` the item's value (called only when sorting by VALUE).
//
// Thread-safety: pure functions.
#ifndef SYNOD_COMMON_ETCD_RANGE_H_
#define SYNOD_COMMON_ETCD_RANGE_H_

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/strings/string_view.h"
#include "proto/kv.pb.h"
#include "proto/rpc.pb.h"

namespace synod::common {

// The revision fields of one key-value that Range filters and sorts on.
struct KvMeta {
  int64_t version = 0;
  int64_t create_revision = 0;
  int64_t mod_revision = 0;
};

// The KvMeta of a full KeyValue.
inline KvMeta MetaOf(const mvccpb::KeyValue& kv) {
  return KvMeta{kv.version(), kv.create_revision(), kv.mod_revision()};
}

// The order `r` answers in after etcd's defaulting: NONE becomes ASCEND for
// any target but KEY.
etcdserverpb::RangeRequest::SortOrder EffectiveSortOrder(
    const etcdserverpb::RangeRequest& r);

// True when the answer is sorted by value, so every value must be read
// before sorting (even for keys_only).
bool SortsByValue(const etcdserverpb::RangeRequest& r);

// True when `m` passes r's min/max mod and create revision filters.
bool PassesRevisionFilters(const etcdserverpb::RangeRequest& r,
                           const KvMeta& m);

// How many live keys, in key order, a store must collect to answer `r`:
// 0 (all of them) when `r` sorts or filters by revision, else limit + 1 so
// that `more` is known (0 without a limit).
// Differs from etcd 3.4 on purpose in one case: a sort target other than
// KEY with sort_order NONE. etcd collects limit + 1 keys in key order and
// sorts only those; this collects all of them, so the answer is the first
// `limit` keys by the sort target, as the client asked.
int64_t CollectLimit(const etcdserverpb::RangeRequest& r);

// The number of items to answer with out of `n` filtered and sorted ones;
// sets resp->more when `r`'s limit drops some.
size_t ApplyLimit(const etcdserverpb::RangeRequest& r, size_t n,
                  etcdserverpb::RangeResponse* resp);

// Drops the items of `*items` outside r's revision filters, keeping order.
template <typename T, typename Meta>
void FilterByRevision(const etcdserverpb::RangeRequest& r,
                      std::vector<T>* items, Meta meta) {
  if (r.min_mod_revision() == 0 && r.max_mod_revision() == 0 &&
      r.min_create_revision() == 0 && r.max_create_revision() == 0) {
    return;
  }
  items->erase(std::remove_if(items->begin(), items->end(),
                              [&](const T& it) {
                                return !PassesRevisionFilters(r, meta(it));
                              }),
               items->end());
}

// Sorts `*items`, given in ascending key order, as `r` asks (see above).
template <typename T, typename Meta, typename Value>
void SortRange(const etcdserverpb::RangeRequest& r, std::vector<T>* items,
               Meta meta, Value value) {
  using etcdserverpb::RangeRequest;
  const RangeRequest::SortOrder order = EffectiveSortOrder(r);
  if (order == RangeRequest::NONE) return;
  const bool descend = order == RangeRequest::DESCEND;
  switch (r.sort_target()) {
    case RangeRequest::KEY:
      if (descend) std::reverse(items->begin(), items->end());
      return;
    case RangeRequest::VALUE:
      std::stable_sort(items->begin(), items->end(),
                       [&](const T& a, const T& b) {
                         int c = absl::string_view(value(a)).compare(
                             absl::string_view(value(b)));
                         return descend ? c > 0 : c < 0;
                       });
      return;
    default:
      break;
  }
  auto field = [&](const T& it) -> int64_t {
    const KvMeta m = meta(it);
    switch (r.sort_target()) {
      case RangeRequest::VERSION: return m.version;
      case RangeRequest::CREATE: return m.create_revision;
      case RangeRequest::MOD: return m.mod_revision;
      default: return 0;
    }
  };
  std::stable_sort(items->begin(), items->end(), [&](const T& a, const T& b) {
    return descend ? field(a) > field(b) : field(a) < field(b);
  });
}

}  // namespace synod::common

#endif  // SYNOD_COMMON_ETCD_RANGE_H_
