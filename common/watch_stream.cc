#include "common/watch_stream.h"

#include <utility>

namespace synod::common {

using etcdserverpb::WatchResponse;

void AppendWatchFragments(WatchResponse resp, bool fragment, size_t limit,
                          std::vector<WatchResponse>* out) {
  if (!fragment || resp.ByteSizeLong() < limit || resp.events_size() < 2) {
    out->push_back(std::move(resp));
    return;
  }
  WatchResponse events;
  events.mutable_events()->Swap(resp.mutable_events());
  // `resp` is now the part every fragment shares.
  WatchResponse cur = resp;
  for (int i = 0; i < events.events_size(); ++i) {
    *cur.add_events() = events.events(i);
    if (cur.events_size() > 1 && cur.ByteSizeLong() >= limit) {
      cur.mutable_events()->RemoveLast();
      cur.set_fragment(true);
      out->push_back(std::move(cur));
      cur = resp;
      *cur.add_events() = events.events(i);
    }
  }
  cur.set_fragment(false);
  out->push_back(std::move(cur));
}

void WatchStreamReactor::OnReadDone(bool ok) {
  if (!ok) {
    StopWatching();
    absl::MutexLock l(&mu_);
    ReadsDoneLocked();
    return;
  }
  if (req_.has_create_request()) {
    Create(req_.create_request());
  } else if (req_.has_cancel_request()) {
    CancelWatch(req_.cancel_request().watch_id());
  } else if (req_.has_progress_request()) {
    RequestProgress();
  }
  StartRead(&req_);
}

void WatchStreamReactor::EnqueueLocked(WatchResponse resp, bool fragment) {
  if (ClosedLocked()) return;
  std::vector<WatchResponse> parts;
  AppendWatchFragments(std::move(resp), fragment, limits_.fragment_bytes,
                       &parts);
  for (WatchResponse& p : parts) PushLocked(std::move(p));
}

void WatchStreamReactor::EnqueueDeferredLocked(WatchResponse resp, size_t bytes,
                                              bool fragment) {
  PushDeferredLocked(std::move(resp), bytes, [this, fragment](WatchResponse r) {
    FillDeferred(&r);
    std::vector<WatchResponse> parts;
    AppendWatchFragments(std::move(r), fragment, limits_.fragment_bytes,
                         &parts);
    return parts;
  });
}

}  // namespace synod::common
