#include "proxy/watch_range.h"

#include <algorithm>
#include <limits>
#include <utility>

namespace synod::proxy {

using etcdserverpb::ResponseHeader;
using etcdserverpb::WatchResponse;

namespace {
constexpr char kCompactedReason[] =
    "etcdserver: mvcc: required revision has been compacted";
}  // namespace

WatchRange::WatchRange(std::string key, std::string range_end,
                       Upstream* upstream, common::Clock* clock,
                       WatchRangeOptions options, ProxyMetrics* metrics)
    : key_(std::move(key)),
      range_end_(std::move(range_end)),
      upstream_(upstream),
      clock_(clock),
      options_(options),
      metrics_(metrics) {
  idle_since_ = clock_->Now();
  if (metrics_ != nullptr) metrics_->watch_ranges->Inc();
}

WatchRange::~WatchRange() {
  absl::MutexLock l(&mu_);
  FlushProgressWaitersLocked(&main_);
  if (main_open_) {
    main_.watch->Close();
    if (metrics_ != nullptr) metrics_->upstream_watches->Dec();
  }
  CloseCatchUpLocked();
  if (metrics_ != nullptr) metrics_->watch_ranges->Dec();
}

uint64_t WatchRange::Subscribe(std::shared_ptr<RangeSubscriber> sub,
                               int64_t start_revision, bool needs_fresh) {
  absl::MutexLock l(&mu_);
  if (closed_) return 0;
  const uint64_t h = next_handle_++;
  Sub& s = subs_[h];
  s.s = std::move(sub);
  s.start = std::max<int64_t>(start_revision, 0);
  s.needs_fresh = needs_fresh;
  if (needs_fresh) ++fresh_subs_;
  if (!main_open_ && !have_progress_ && retry_at_ == absl::InfinitePast()) {
    OpenMainLocked(s.start);
  }
  if (have_progress_) ResolveLocked(h, &s);
  return h;
}

void WatchRange::Unsubscribe(uint64_t handle) {
  absl::MutexLock l(&mu_);
  RemoveSubLocked(handle);
}

void WatchRange::RemoveSubLocked(uint64_t handle) {
  auto it = subs_.find(handle);
  if (it == subs_.end()) return;
  if (it->second.needs_fresh) --fresh_subs_;
  subs_.erase(it);
  if (subs_.empty()) idle_since_ = clock_->Now();
  if (catchup_open_) {
    bool lagging = false;
    for (const auto& [h, s] : subs_) {
      if (s.state == SubState::kCatchUp || s.state == SubState::kWaitCatchUp) {
        lagging = true;
      }
    }
    if (!lagging) CloseCatchUpLocked();
  }
}

void WatchRange::RequestProgress(std::function<void()> answered) {
  absl::MutexLock l(&mu_);
  if (!main_open_ || !main_.created) {
    if (answered) answered();
    return;
  }
  main_.progress_sent.emplace_back(clock_->Now(), std::move(answered));
  last_progress_request_ = clock_->Now();
  main_.watch->RequestProgress();
}

void WatchRange::FlushProgressWaitersLocked(Stream* st) {
  auto sent = std::move(st->progress_sent);
  st->progress_sent.clear();
  for (auto& [t, answered] : sent) {
    if (answered) answered();
  }
}

bool WatchRange::Tick(absl::Duration linger) {
  absl::MutexLock l(&mu_);
  if (closed_) return true;
  const absl::Time now = clock_->Now();
  if (!main_open_ && !subs_.empty() && retry_at_ != absl::InfinitePast() &&
      now >= retry_at_) {
    OpenMainLocked(have_progress_ ? last_event_rev_ + 1 : main_.start);
  }
  if (catchup_retry_ && !catchup_open_) OpenCatchUpLocked();
  // Only an ordered member's answer can tell a quiet catch-up it is done.
  if (catchup_open_ && catchup_.created && catchup_.ordered) {
    catchup_.watch->RequestProgress();
  }
  if (main_open_ && main_.created && fresh_subs_ > 0 &&
      now - last_progress_request_ >= options_.progress_interval) {
    main_.progress_sent.emplace_back(now, nullptr);
    last_progress_request_ = now;
    main_.watch->RequestProgress();
  }
  return subs_.empty() && now - idle_since_ >= linger;
}

bool WatchRange::CloseIfIdle() {
  absl::MutexLock l(&mu_);
  if (!subs_.empty()) return false;
  closed_ = true;
  FlushProgressWaitersLocked(&main_);
  if (main_open_) {
    main_.watch->Close();
    main_.watch.reset();
    main_open_ = false;
    if (metrics_ != nullptr) metrics_->upstream_watches->Dec();
  }
  CloseCatchUpLocked();
  return true;
}

RangeStatus WatchRange::Status() const {
  absl::MutexLock l(&mu_);
  return StatusLocked();
}

RangeStatus WatchRange::StatusLocked() const {
  RangeStatus st{progress_, fresh_at_, main_open_ && main_.created};
  if (answered_rev_ > progress_) st.fresh_rev = answered_rev_;
  return st;
}

int64_t WatchRange::TEST_covered_from() const {
  absl::MutexLock l(&mu_);
  return covered_from_;
}
size_t WatchRange::TEST_window_events() const {
  absl::MutexLock l(&mu_);
  return window_count_;
}
size_t WatchRange::TEST_subscribers() const {
  absl::MutexLock l(&mu_);
  return subs_.size();
}

// ---- upstream streams ----

std::shared_ptr<UpstreamWatch> WatchRange::OpenLocked(Stream* st,
                                                      int64_t start) {
  st->gen = next_gen_++;
  st->start = start;
  st->created = false;
  st->up = false;
  st->ordered = false;
  st->replay_until = 0;
  FlushProgressWaitersLocked(st);
  st->has_frag = false;
  st->frag.Clear();
  etcdserverpb::WatchCreateRequest c;
  c.set_key(key_);
  c.set_range_end(range_end_);
  c.set_start_revision(start);
  c.set_prev_kv(true);
  c.set_fragment(true);
  std::weak_ptr<WatchRange> self = weak_from_this();
  const uint64_t gen = st->gen;
  UpstreamWatchCallbacks cb;
  cb.on_metadata = [self, gen](bool ordered_progress) {
    if (auto s = self.lock()) s->OnMetadata(gen, ordered_progress);
  };
  cb.on_response = [self, gen](const WatchResponse& r) {
    if (auto s = self.lock()) s->OnResponse(gen, r);
  };
  cb.on_closed = [self, gen](const grpc::Status& status) {
    if (auto s = self.lock()) s->OnClosed(gen, status);
  };
  if (metrics_ != nullptr) metrics_->upstream_watches->Inc();
  return upstream_->Watch(c, std::move(cb));
}

void WatchRange::OpenMainLocked(int64_t start) {
  main_open_ = true;
  retry_at_ = absl::InfinitePast();
  main_.watch = OpenLocked(&main_, start);
}

void WatchRange::OpenCatchUpLocked() {
  catchup_retry_ = false;
  int64_t start = std::numeric_limits<int64_t>::max();
  for (auto& [h, s] : subs_) {
    if (s.state == SubState::kWaitCatchUp || s.state == SubState::kCatchUp) {
      start = std::min(start, s.next_rev);
    }
  }
  if (start == std::numeric_limits<int64_t>::max()) return;
  for (auto& [h, s] : subs_) {
    if (s.state == SubState::kWaitCatchUp) s.state = SubState::kCatchUp;
  }
  catchup_open_ = true;
  catchup_.progress = start - 1;
  catchup_.watch = OpenLocked(&catchup_, start);
  if (metrics_ != nullptr) metrics_->catchups->Inc();
}

void WatchRange::OnMetadata(uint64_t gen, bool ordered_progress) {
  absl::MutexLock l(&mu_);
  if (main_open_ && gen == main_.gen) main_.ordered = ordered_progress;
  if (catchup_open_ && gen == catchup_.gen) {
    catchup_.ordered = ordered_progress;
  }
}

void WatchRange::OnResponse(uint64_t gen, const WatchResponse& r) {
  absl::MutexLock l(&mu_);
  Stream* st = nullptr;
  if (main_open_ && gen == main_.gen) st = &main_;
  if (catchup_open_ && gen == catchup_.gen) st = &catchup_;
  if (st == nullptr) return;  // a stream we closed
  if (r.header().cluster_id() != 0) header_ = r.header();
  known_rev_ = std::max(known_rev_, r.header().revision());
  if (r.fragment()) {
    if (!st->has_frag) {
      st->frag = r;
      st->has_frag = true;
    } else {
      for (const auto& e : r.events()) *st->frag.add_events() = e;
    }
    return;
  }
  const WatchResponse* whole = &r;
  WatchResponse joined;
  if (st->has_frag) {
    joined = std::move(st->frag);
    for (const auto& e : r.events()) *joined.add_events() = e;
    *joined.mutable_header() = r.header();
    joined.set_fragment(false);
    st->has_frag = false;
    st->frag.Clear();
    whole = &joined;
  }
  if (st == &main_) {
    OnMainResponseLocked(*whole);
  } else {
    OnCatchUpResponseLocked(*whole);
  }
}

void WatchRange::OnClosed(uint64_t gen, const grpc::Status& s) {
  absl::MutexLock l(&mu_);
  if (main_open_ && gen == main_.gen) {
    main_open_ = false;
    main_.watch.reset();
    FlushProgressWaitersLocked(&main_);
    if (metrics_ != nullptr) metrics_->upstream_watches->Dec();
    retry_at_ = clock_->Now() + options_.retry_interval;
    BroadcastStatusLocked();
    return;
  }
  if (catchup_open_ && gen == catchup_.gen) {
    CloseCatchUpLocked();
    catchup_retry_ = true;
  }
}

std::vector<WatchRange::Batch> WatchRange::ToBatches(const WatchResponse& r,
                                                     int64_t after) {
  std::vector<Batch> out;
  for (const mvccpb::Event& e : r.events()) {
    const int64_t rev = e.kv().mod_revision();
    if (rev <= after) continue;  // already seen (e.g. after a reconnect)
    if (out.empty() || out.back().rev != rev) out.push_back(Batch{rev, {}, 0});
    out.back().events.push_back(e);
    out.back().bytes += e.ByteSizeLong();
  }
  return out;
}

void WatchRange::OnMainResponseLocked(const WatchResponse& r) {
  if (r.created()) {
    if (r.canceled()) {
      std::vector<uint64_t> all;
      for (const auto& [h, s] : subs_) all.push_back(h);
      CancelSubsLocked(all, r.compact_revision(), r.cancel_reason());
      closed_ = true;
      return;
    }
    main_.created = true;
    // A start at or before the member's revision is replayed from history
    // first: until the replay reaches that revision an unordered member's
    // answer may run far ahead of it.
    main_.replay_until =
        main_.start != 0 && main_.start <= r.header().revision()
            ? r.header().revision()
            : 0;
    if (!have_progress_) {
      const int64_t h = r.header().revision();
      if (main_.start == 0) {
        covered_from_ = h + 1;
        progress_ = h;
      } else {
        covered_from_ = main_.start;
        progress_ = std::min(main_.start - 1, h);
      }
      last_event_rev_ = covered_from_ - 1;
      have_progress_ = true;
      std::vector<uint64_t> pending;
      for (const auto& [hd, s] : subs_) {
        if (s.state == SubState::kPending) pending.push_back(hd);
      }
      for (uint64_t hd : pending) {
        auto it = subs_.find(hd);
        if (it != subs_.end()) ResolveLocked(hd, &it->second);
      }
    }
    const absl::Time now = clock_->Now();
    main_.progress_sent.emplace_back(now, nullptr);
    last_progress_request_ = now;
    main_.watch->RequestProgress();
    return;
  }
  if (r.canceled()) {
    // Compacted past our progress (after a failover), or refused: every
    // subscriber would miss events, so all are canceled.
    std::vector<uint64_t> all;
    for (const auto& [h, s] : subs_) all.push_back(h);
    CancelSubsLocked(all, r.compact_revision(),
                     r.compact_revision() > 0 ? kCompactedReason
                                              : r.cancel_reason());
    closed_ = true;
    FlushProgressWaitersLocked(&main_);
    if (main_open_) {
      main_.watch->Close();
      main_.watch.reset();
      main_open_ = false;
      if (metrics_ != nullptr) metrics_->upstream_watches->Dec();
    }
    return;
  }
  if (r.events_size() == 0) {
    std::function<void()> answered;
    if (r.watch_id() == -1 && !main_.progress_sent.empty()) {
      fresh_at_ = std::max(fresh_at_, main_.progress_sent.front().first);
      answered = std::move(main_.progress_sent.front().second);
      main_.progress_sent.pop_front();
    }
    // An unordered member's answer (etcd 3.4) moves progress only once the
    // watch is synced (then it can be ahead only of events the member had
    // already queued on the stream, as etcd's own answers to its clients);
    // while the watch replays history it is a freshness hint only.
    answered_rev_ = std::max(answered_rev_, r.header().revision());
    if (main_.ordered || main_.replay_until == 0) {
      progress_ = std::max(progress_, r.header().revision());
    }
    BroadcastStatusLocked();
    if (answered) answered();
    return;
  }
  std::vector<Batch> batches = ToBatches(r, last_event_rev_);
  if (batches.empty()) return;
  last_event_rev_ = batches.back().rev;
  if (last_event_rev_ >= main_.replay_until) main_.replay_until = 0;
  progress_ = std::max(progress_, last_event_rev_);
  const size_t first = window_.size();
  for (Batch& b : batches) {
    window_bytes_ += b.bytes;
    window_count_ += b.events.size();
    window_.push_back(std::move(b));
  }
  std::vector<const Batch*> fresh;
  for (size_t i = first; i < window_.size(); ++i) fresh.push_back(&window_[i]);
  std::vector<uint64_t> slow;
  size_t receivers = 0;
  for (auto& [h, s] : subs_) {
    if (s.state != SubState::kLive) continue;
    ++receivers;
    if (!DeliverLocked(&s, fresh, r.header())) slow.push_back(h);
  }
  if (metrics_ != nullptr && receivers > 1) {
    metrics_->events_coalescing->Inc(receivers - 1);
  }
  CancelSubsLocked(slow, 0, kSlowWatcherReason);
  TrimWindowLocked();
}

void WatchRange::OnCatchUpResponseLocked(const WatchResponse& r) {
  std::vector<uint64_t> lagging;
  for (const auto& [h, s] : subs_) {
    if (s.state == SubState::kCatchUp) lagging.push_back(h);
  }
  if (r.created() && !r.canceled()) {
    catchup_.created = true;
    if (catchup_.ordered) catchup_.watch->RequestProgress();
    return;
  }
  if (r.canceled()) {
    CancelSubsLocked(lagging, r.compact_revision(),
                     r.compact_revision() > 0 ? kCompactedReason
                                              : r.cancel_reason());
    CloseCatchUpLocked();
    OpenCatchUpLocked();  // for subscribers still waiting, if any
    return;
  }
  if (r.events_size() == 0) {
    // Only an ordered member's answer says that every event up to it was
    // sent; etcd 3.4's is the store's revision even while this watcher
    // still replays history, and may overtake its events.
    if (r.watch_id() == -1 && catchup_.ordered) {
      catchup_.progress = std::max(catchup_.progress, r.header().revision());
    }
    TryMergeCatchUpLocked();
    return;
  }
  std::vector<Batch> batches = ToBatches(r, catchup_.progress);
  if (!batches.empty()) {
    catchup_.progress = batches.back().rev;
    std::vector<const Batch*> ptrs;
    for (const Batch& b : batches) ptrs.push_back(&b);
    std::vector<uint64_t> slow;
    for (uint64_t h : lagging) {
      auto it = subs_.find(h);
      if (it == subs_.end()) continue;
      if (!DeliverLocked(&it->second, ptrs, r.header())) slow.push_back(h);
    }
    CancelSubsLocked(slow, 0, kSlowWatcherReason);
  }
  TryMergeCatchUpLocked();
}

void WatchRange::TryMergeCatchUpLocked() {
  if (!catchup_open_ || !have_progress_) return;
  if (catchup_.progress + 1 < covered_from_) return;
  // The catch-up stream reached the window: its subscribers continue from
  // the window and the live broadcast.
  const int64_t reached = catchup_.progress;
  CloseCatchUpLocked();
  std::vector<const Batch*> all;
  for (const Batch& b : window_) all.push_back(&b);
  const ResponseHeader header = HeaderLocked(std::max(progress_, known_rev_));
  const RangeStatus status = StatusLocked();
  std::vector<uint64_t> slow;
  for (auto& [h, s] : subs_) {
    if (s.state != SubState::kCatchUp) continue;
    s.next_rev = std::max(s.next_rev, reached + 1);
    s.state = SubState::kLive;
    if (!DeliverLocked(&s, all, header)) {
      slow.push_back(h);
    } else {
      s.s->OnStatus(status);
    }
  }
  CancelSubsLocked(slow, 0, kSlowWatcherReason);
  bool waiting = false;
  for (const auto& [h, s] : subs_) {
    if (s.state == SubState::kWaitCatchUp) waiting = true;
  }
  if (waiting) OpenCatchUpLocked();
}

void WatchRange::CloseCatchUpLocked() {
  if (!catchup_open_) return;
  catchup_.watch->Close();
  catchup_.watch.reset();
  catchup_open_ = false;
  if (metrics_ != nullptr) metrics_->upstream_watches->Dec();
}

// ---- subscribers ----

void WatchRange::ResolveLocked(uint64_t handle, Sub* sub) {
  const int64_t newest = std::max(progress_, known_rev_);
  const int64_t s = sub->start == 0 ? newest + 1 : sub->start;
  sub->next_rev = s;
  sub->s->OnCreated(HeaderLocked(sub->start == 0 ? s - 1 : newest));
  if (s >= covered_from_) {
    sub->state = SubState::kLive;
    std::vector<const Batch*> replay;
    for (const Batch& b : window_) {
      if (b.rev >= s) replay.push_back(&b);
    }
    if (!replay.empty()) {
      if (metrics_ != nullptr) metrics_->window_replays->Inc();
      if (!DeliverLocked(sub, replay, HeaderLocked(newest))) {
        CancelSubsLocked({handle}, 0, kSlowWatcherReason);
        return;
      }
    }
    sub->s->OnStatus(StatusLocked());
    return;
  }
  if (catchup_open_ && s > catchup_.progress) {
    sub->state = SubState::kCatchUp;
    return;
  }
  sub->state = SubState::kWaitCatchUp;
  if (catchup_open_ && !catchup_.ordered) {
    // The running catch-up is past s and, on a member without ordered
    // progress answers, may not merge before the range's next event: start
    // it again from the oldest position (each subscriber skips what it
    // already has).
    CloseCatchUpLocked();
  }
  if (!catchup_open_) OpenCatchUpLocked();
}

bool WatchRange::DeliverLocked(Sub* sub,
                               const std::vector<const Batch*>& batches,
                               const ResponseHeader& header) {
  std::vector<const mvccpb::Event*> evs;
  int64_t last = 0;
  for (const Batch* b : batches) {
    if (b->rev < sub->next_rev) continue;
    for (const mvccpb::Event& e : b->events) evs.push_back(&e);
    last = b->rev;
  }
  if (evs.empty()) return true;
  if (!sub->s->OnEvents(evs, header)) return false;
  sub->next_rev = last + 1;
  return true;
}

void WatchRange::CancelSubsLocked(const std::vector<uint64_t>& handles,
                                  int64_t compact_revision,
                                  const std::string& reason) {
  if (handles.empty()) return;
  const ResponseHeader header = HeaderLocked(std::max(progress_, known_rev_));
  for (uint64_t h : handles) {
    auto it = subs_.find(h);
    if (it == subs_.end()) continue;
    std::shared_ptr<RangeSubscriber> s = it->second.s;
    RemoveSubLocked(h);
    if (metrics_ != nullptr && reason == kSlowWatcherReason) {
      metrics_->slow_canceled->Inc();
    }
    s->OnCanceled(compact_revision, reason, header);
  }
}

void WatchRange::BroadcastStatusLocked() {
  const RangeStatus status = StatusLocked();
  for (auto& [h, s] : subs_) {
    if (s.state == SubState::kLive) s.s->OnStatus(status);
  }
}

void WatchRange::TrimWindowLocked() {
  while (!window_.empty() && (window_count_ > options_.window_events ||
                              window_bytes_ > options_.window_bytes)) {
    covered_from_ = window_.front().rev + 1;
    window_count_ -= window_.front().events.size();
    window_bytes_ -= window_.front().bytes;
    window_.pop_front();
  }
}

ResponseHeader WatchRange::HeaderLocked(int64_t revision) const {
  ResponseHeader h = header_;
  h.set_revision(revision);
  return h;
}

}  // namespace synod::proxy
