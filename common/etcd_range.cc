#include "common/etcd_range.h"

namespace synod::common {

using etcdserverpb::RangeRequest;
using etcdserverpb::RangeResponse;

RangeRequest::SortOrder EffectiveSortOrder(const RangeRequest& r) {
  if (r.sort_target() != RangeRequest::KEY &&
      r.sort_order() == RangeRequest::NONE) {
    return RangeRequest::ASCEND;
  }
  return r.sort_order();
}

bool SortsByValue(const RangeRequest& r) {
  return r.sort_target() == RangeRequest::VALUE &&
         EffectiveSortOrder(r) != RangeRequest::NONE;
}

bool PassesRevisionFilters(const RangeRequest& r, const KvMeta& m) {
  if (r.max_mod_revision() != 0 && m.mod_revision > r.max_mod_revision()) {
    return false;
  }
  if (r.min_mod_revision() != 0 && m.mod_revision < r.min_mod_revision()) {
    return false;
  }
  if (r.max_create_revision() != 0 &&
      m.create_revision > r.max_create_revision()) {
    return false;
  }
  if (r.min_create_revision() != 0 &&
      m.create_revision < r.min_create_revision()) {
    return false;
  }
  return true;
}

int64_t CollectLimit(const RangeRequest& r) {
  if (r.sort_order() != RangeRequest::NONE ||
      r.sort_target() != RangeRequest::KEY || r.min_mod_revision() != 0 ||
      r.max_mod_revision() != 0 || r.min_create_revision() != 0 ||
      r.max_create_revision() != 0) {
    return 0;
  }
  return r.limit() > 0 ? r.limit() + 1 : 0;
}

size_t ApplyLimit(const RangeRequest& r, size_t n, RangeResponse* resp) {
  if (r.limit() > 0 && n > static_cast<size_t>(r.limit())) {
    resp->set_more(true);
    return static_cast<size_t>(r.limit());
  }
  return n;
}

}  // namespace synod::common
