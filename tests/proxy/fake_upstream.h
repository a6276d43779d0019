// A fake Upstream for proxy unit tests: records every watch stream opened
// and lets the test play the member (created, events, progress, cancel,
// failure) synchronously on the test thread. Watch streams say, before
// their first response, that progress answers are ordered (a synod member)
// unless FakeUpstream::ordered_progress is false (etcd 3.4: the test then
// plays answers that overtake events). Quorum reads, ranges (with
// whose credentials they were made) and auth status polls wait in queues
// until the test answers them.
// Thread-safety: single-threaded (the test thread).
#ifndef SYNOD_TESTS_PROXY_FAKE_UPSTREAM_H_
#define SYNOD_TESTS_PROXY_FAKE_UPSTREAM_H_

#include <deque>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "proxy/upstream.h"

namespace synod::proxy::testing {

inline etcdserverpb::ResponseHeader Header(int64_t rev) {
  etcdserverpb::ResponseHeader h;
  h.set_cluster_id(7);
  h.set_member_id(9);
  h.set_raft_term(1);
  h.set_revision(rev);
  return h;
}

inline mvccpb::Event Put(const std::string& key, const std::string& value,
                         int64_t rev) {
  mvccpb::Event e;
  e.set_type(mvccpb::Event::PUT);
  e.mutable_kv()->set_key(key);
  e.mutable_kv()->set_value(value);
  e.mutable_kv()->set_mod_revision(rev);
  e.mutable_kv()->set_create_revision(rev);
  e.mutable_kv()->set_version(1);
  return e;
}

inline mvccpb::Event Del(const std::string& key, int64_t rev) {
  mvccpb::Event e;
  e.set_type(mvccpb::Event::DELETE);
  e.mutable_kv()->set_key(key);
  e.mutable_kv()->set_mod_revision(rev);
  return e;
}

class FakeWatch final : public UpstreamWatch {
 public:
  void RequestProgress() override { ++progress_requests; }
  void Close() override { closed = true; }

  // ---- the member's side ----
  void Created(int64_t rev) {
    etcdserverpb::WatchResponse r;
    r.set_created(true);
    r.set_watch_id(0);
    *r.mutable_header() = Header(rev);
    Send(r);
  }
  void Events(std::vector<mvccpb::Event> events, int64_t header_rev = 0,
              bool fragment = false) {
    etcdserverpb::WatchResponse r;
    r.set_watch_id(0);
    r.set_fragment(fragment);
    int64_t last = 0;
    for (auto& e : events) {
      last = e.kv().mod_revision();
      *r.add_events() = std::move(e);
    }
    *r.mutable_header() = Header(header_rev > 0 ? header_rev : last);
    Send(r);
  }
  // The answer to a progress request.
  void Progress(int64_t rev) {
    etcdserverpb::WatchResponse r;
    r.set_watch_id(-1);
    *r.mutable_header() = Header(rev);
    Send(r);
  }
  void Compacted(int64_t compact_rev) {
    etcdserverpb::WatchResponse r;
    r.set_watch_id(0);
    r.set_canceled(true);
    r.set_compact_revision(compact_rev);
    *r.mutable_header() = Header(compact_rev);
    Send(r);
  }
  // Any response; the stream's metadata goes first.
  void Send(const etcdserverpb::WatchResponse& r) {
    if (!metadata_sent) {
      metadata_sent = true;
      if (cb.on_metadata) cb.on_metadata(ordered_progress);
    }
    cb.on_response(r);
  }
  void Fail() {
    failed = true;
    cb.on_closed(grpc::Status(grpc::StatusCode::UNAVAILABLE, "gone"));
  }
  bool open() const { return !closed && !failed; }

  etcdserverpb::WatchCreateRequest create;
  UpstreamWatchCallbacks cb;
  int progress_requests = 0;
  bool closed = false;
  bool failed = false;
  bool ordered_progress = true;  // what the stream's metadata says
  bool metadata_sent = false;
};

class FakeKeepAlive final : public UpstreamKeepAlive {
 public:
  void Send(int64_t lease_id) override { sent.push_back(lease_id); }
  void Close() override { closed = true; }
  void Answer(int64_t lease_id, int64_t ttl) {
    etcdserverpb::LeaseKeepAliveResponse r;
    r.set_id(lease_id);
    r.set_ttl(ttl);
    *r.mutable_header() = Header(1);
    cb.on_response(r);
  }
  void Fail() {
    failed = true;
    cb.on_closed(grpc::Status(grpc::StatusCode::UNAVAILABLE, "gone"));
  }

  UpstreamKeepAliveCallbacks cb;
  std::vector<int64_t> sent;
  bool closed = false, failed = false;
};

class FakeUpstream final : public Upstream {
 public:
  std::shared_ptr<UpstreamKeepAlive> KeepAlive(
      UpstreamKeepAliveCallbacks callbacks) override {
    auto k = std::make_shared<FakeKeepAlive>();
    k->cb = std::move(callbacks);
    keepalives.push_back(k);
    return k;
  }
  std::shared_ptr<UpstreamWatch> Watch(
      const etcdserverpb::WatchCreateRequest& create,
      UpstreamWatchCallbacks callbacks) override {
    auto w = std::make_shared<FakeWatch>();
    w->create = create;
    w->ordered_progress = ordered_progress;
    w->cb = std::move(callbacks);
    watches.push_back(w);
    return w;
  }
  void CurrentRevision(
      const std::string& key,
      std::function<void(absl::StatusOr<int64_t>)> done) override {
    quorum_reads.push_back(std::move(done));
  }
  void Range(const etcdserverpb::RangeRequest& req, const CallAs& as,
             RangeDone done) override {
    ranges.push_back(RangeCall{req, as, std::move(done)});
  }
  void AuthStatus(
      std::function<void(absl::StatusOr<UpstreamAuthState>)> done) override {
    statuses.push_back(std::move(done));
  }

  // Watch streams neither closed by the proxy nor failed.
  int OpenWatches() const {
    int n = 0;
    for (const auto& w : watches) n += w->open() ? 1 : 0;
    return n;
  }
  FakeWatch* Last() { return watches.back().get(); }

  // What new watch streams say of their progress answers: ordered (synod),
  // or not (etcd 3.4).
  bool ordered_progress = true;

  std::vector<std::shared_ptr<FakeWatch>> watches;
  std::vector<std::shared_ptr<FakeKeepAlive>> keepalives;
  std::deque<std::function<void(absl::StatusOr<int64_t>)>> quorum_reads;
  struct RangeCall {
    etcdserverpb::RangeRequest req;
    CallAs as;
    RangeDone done;
  };
  std::deque<RangeCall> ranges;
  std::deque<std::function<void(absl::StatusOr<UpstreamAuthState>)>> statuses;
};

}  // namespace synod::proxy::testing

#endif  // SYNOD_TESTS_PROXY_FAKE_UPSTREAM_H_
