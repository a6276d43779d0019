#include "common/keep_alive_stream.h"

#include <utility>

namespace synod::common {

using etcdserverpb::LeaseKeepAliveResponse;

// The renewer's handle on the stream; detached when the stream ends.
// Lock order: Sink::mu_ -> KeepAliveStream::mu_.
class KeepAliveStream::Sink final : public KeepAliveSink {
 public:
  explicit Sink(KeepAliveStream* s) : s_(s) {}
  void Deliver(const LeaseKeepAliveResponse& r) override {
    absl::MutexLock l(&mu_);
    if (s_ != nullptr) s_->Answer(r);
  }
  void Detach() {
    absl::MutexLock l(&mu_);
    s_ = nullptr;
  }

 private:
  absl::Mutex mu_;
  KeepAliveStream* s_ ABSL_GUARDED_BY(mu_);
};

KeepAliveStream::KeepAliveStream(Renew renew)
    : renew_(std::move(renew)), sink_(std::make_shared<Sink>(this)) {
  StartRead(&req_);
}

void KeepAliveStream::OnReadDone(bool ok) {
  if (!ok) {
    absl::MutexLock l(&mu_);
    ReadsDoneLocked();
    return;
  }
  {
    // Counted before the renewer may answer (on another thread).
    absl::MutexLock l(&mu_);
    ++unanswered_;
  }
  renew_(req_.id(), sink_);
  StartRead(&req_);
}

void KeepAliveStream::Answer(const LeaseKeepAliveResponse& r) {
  absl::MutexLock l(&mu_);
  if (unanswered_ > 0) --unanswered_;
  PushLocked(r);
  MaybeFinishLocked();
}

void KeepAliveStream::OnDone() {
  sink_->Detach();
  delete this;
}

}  // namespace synod::common
