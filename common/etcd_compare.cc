#include "common/etcd_compare.h"

#include <cstdint>

namespace synod::common {

using etcdserverpb::Compare;

namespace {
template <typename T>
int Cmp(const T& a, const T& b) {
  return a < b ? -1 : (a > b ? 1 : 0);
}
}  // namespace

bool CompareHolds(const Compare& c, const mvccpb::KeyValue& kv) {
  int result = 0;
  switch (c.target()) {
    case Compare::VALUE:
      result = Cmp(kv.value(), c.value());
      break;
    case Compare::CREATE:
      result = Cmp(kv.create_revision(), c.create_revision());
      break;
    case Compare::MOD:
      result = Cmp(kv.mod_revision(), c.mod_revision());
      break;
    case Compare::VERSION:
      result = Cmp(kv.version(), c.version());
      break;
    case Compare::LEASE:
      result = Cmp(kv.lease(), c.lease());
      break;
    default:
      break;
  }
  switch (c.result()) {
    case Compare::EQUAL: return result == 0;
    case Compare::NOT_EQUAL: return result != 0;
    case Compare::GREATER: return result > 0;
    case Compare::LESS: return result < 0;
    default: return true;
  }
}

bool CompareHoldsOnMissingKey(const Compare& c) {
  if (CompareNeedsValue(c)) return false;
  return CompareHolds(c, mvccpb::KeyValue());
}

}  // namespace synod::common
