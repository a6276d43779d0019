// etcd's rules for a Txn compare (etcdserverpb::Compare), written once for
// every place that evaluates one (today the member's mvcc::KvStore):
//   * the target (VERSION, CREATE, MOD, VALUE, LEASE) of each live key in
//     [key, range_end) (range_end as in common/key_range.h) is compared
//     with the compare's value: EQUAL, NOT_EQUAL, GREATER or LESS; values
//     compare as bytes;
//   * a compare over a range holds only if it holds for every key in it;
//   * with no live key, a VALUE compare fails and any other target compares
//     the zero KeyValue (version 0, revisions 0, lease 0).
//
// Thread-safety: pure functions.
#ifndef SYNOD_COMMON_ETCD_COMPARE_H_
#define SYNOD_COMMON_ETCD_COMPARE_H_

#include "proto/kv.pb.h"
#include "proto/rpc.pb.h"

namespace synod::common {

// True when `c` holds for the live key-value `kv`. `kv`'s value is read only
// for a VALUE target. An unknown target compares equal; an unknown result
// holds.
bool CompareHolds(const etcdserverpb::Compare& c, const mvccpb::KeyValue& kv);

// True when `c` holds for a key (or range) with no live key.
bool CompareHoldsOnMissingKey(const etcdserverpb::Compare& c);

// True when evaluating `c` needs the keys' values (a VALUE target).
inline bool CompareNeedsValue(const etcdserverpb::Compare& c) {
  return c.target() == etcdserverpb::Compare::VALUE;
}

}  // namespace synod::common

#endif  // SYNOD_COMMON_ETCD_COMPARE_H_
