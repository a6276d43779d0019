// A small etcd Watch client for proxy integration tests: one gRPC stream
// carrying many watchers, recording every response. Writes go out one at a
// time from a queue.
// Thread-safety: all methods are safe to call from any thread.
#ifndef SYNOD_TESTS_PROXY_WATCH_CLIENT_H_
#define SYNOD_TESTS_PROXY_WATCH_CLIENT_H_

#include <deque>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "proto/rpc.grpc.pb.h"

namespace synod::testing {

struct WatcherLog {
  bool created = false;
  bool canceled = false;
  int64_t compact_revision = 0;
  std::string cancel_reason;
  std::vector<int64_t> revs;       // mod_revision of each event
  std::vector<std::string> keys;   // key of each event
  int64_t created_header_rev = 0;
  uint64_t cluster_id = 0;
};

class WatchClient final
    : public grpc::ClientBidiReactor<etcdserverpb::WatchRequest,
                                     etcdserverpb::WatchResponse> {
 public:
  // `token`: sent in the metadata key "token" (an auth token), if not
  // empty.
  explicit WatchClient(std::shared_ptr<grpc::Channel> channel,
                       const std::string& token = "")
      : stub_(etcdserverpb::Watch::NewStub(channel)) {
    if (!token.empty()) ctx_.AddMetadata("token", token);
    stub_->async()->Watch(&ctx_, this);
    StartRead(&resp_);
    StartCall();
  }
  ~WatchClient() override {
    ctx_.TryCancel();
    absl::MutexLock l(&mu_);
    mu_.Await(absl::Condition(&done_));
  }

  // Creates watcher `id` (> 0) on [key, end) from `start` (0 = now).
  void Watch(int64_t id, const std::string& key, const std::string& end,
             int64_t start) {
    etcdserverpb::WatchRequest r;
    auto* c = r.mutable_create_request();
    c->set_key(key);
    c->set_range_end(end);
    c->set_start_revision(start);
    c->set_watch_id(id);
    Send(std::move(r));
  }
  void RequestProgress() {
    etcdserverpb::WatchRequest r;
    r.mutable_progress_request();
    Send(std::move(r));
  }

  WatcherLog Log(int64_t id) {
    absl::MutexLock l(&mu_);
    return logs_[id];
  }
  std::vector<int64_t> ProgressRevs() {
    absl::MutexLock l(&mu_);
    return progress_;
  }
  // Events received by watcher `id`.
  size_t EventCount(int64_t id) {
    absl::MutexLock l(&mu_);
    return logs_[id].revs.size();
  }
  bool AllCreated(size_t n) {
    absl::MutexLock l(&mu_);
    size_t c = 0;
    for (const auto& [id, log] : logs_) c += log.created ? 1 : 0;
    return c >= n;
  }
  bool Done() {
    absl::MutexLock l(&mu_);
    return done_;
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock l(&mu_);
    queue_.pop_front();
    if (ok && !queue_.empty()) {
      StartWrite(&queue_.front());
    } else {
      writing_ = false;
      if (!ok) queue_.clear();
    }
  }
  void OnReadDone(bool ok) override {
    if (!ok) return;
    {
      absl::MutexLock l(&mu_);
      if (resp_.watch_id() == -1 && !resp_.created()) {
        progress_.push_back(resp_.header().revision());
      } else {
        WatcherLog& log = logs_[resp_.watch_id()];
        if (resp_.created()) {
          log.created = true;
          log.created_header_rev = resp_.header().revision();
          log.cluster_id = resp_.header().cluster_id();
        }
        if (resp_.canceled()) {
          log.canceled = true;
          log.compact_revision = resp_.compact_revision();
          log.cancel_reason = resp_.cancel_reason();
        }
        for (const auto& e : resp_.events()) {
          log.revs.push_back(e.kv().mod_revision());
          log.keys.push_back(e.kv().key());
        }
      }
    }
    StartRead(&resp_);
  }
  void OnDone(const grpc::Status&) override {
    absl::MutexLock l(&mu_);
    done_ = true;
  }

 private:
  void Send(etcdserverpb::WatchRequest r) {
    absl::MutexLock l(&mu_);
    queue_.push_back(std::move(r));
    if (!writing_) {
      writing_ = true;
      StartWrite(&queue_.front());
    }
  }

  std::unique_ptr<etcdserverpb::Watch::Stub> stub_;
  grpc::ClientContext ctx_;
  etcdserverpb::WatchResponse resp_;
  absl::Mutex mu_;
  std::deque<etcdserverpb::WatchRequest> queue_;
  bool writing_ = false;
  bool done_ = false;
  std::map<int64_t, WatcherLog> logs_;
  std::vector<int64_t> progress_;
};

// Polls `pred` every 20 ms until it holds or `timeout` passes.
template <typename Pred>
bool WaitFor(Pred pred, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    if (pred()) return true;
    absl::SleepFor(absl::Milliseconds(20));  // poll interval, bounded
  }
  return pred();
}

}  // namespace synod::testing

#endif  // SYNOD_TESTS_PROXY_WATCH_CLIENT_H_
