#include "proxy/forwarder.h"

#include <deque>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/generic/generic_stub.h>

#include "absl/base/thread_annotations.h"
#include "absl/strings/match.h"
#include "absl/synchronization/mutex.h"
#include "proxy/unary_forward.h"

namespace synod::proxy {
namespace {

// Requests kept for a replay on another endpoint, at most this many bytes.
constexpr size_t kMaxReplayBytes = 4 << 20;

class Pipe;

// Calls that change nothing, so a replay on another member is always safe.
bool IsReadOnly(const std::string& method) {
  static const char* const kReadOnly[] = {
      "/etcdserverpb.KV/Range",
      "/etcdserverpb.Maintenance/Status",
      "/etcdserverpb.Maintenance/Hash",
      "/etcdserverpb.Maintenance/HashKV",
      "/etcdserverpb.Cluster/MemberList",
      "/etcdserverpb.Lease/LeaseTimeToLive",
      "/etcdserverpb.Lease/LeaseLeases",
      "/etcdserverpb.Auth/UserGet",
      "/etcdserverpb.Auth/UserList",
      "/etcdserverpb.Auth/RoleGet",
      "/etcdserverpb.Auth/RoleList",
  };
  for (const char* m : kReadOnly) {
    if (method == m) return true;
  }
  return false;
}

// The member side of a pipe. Owned by its Pipe (deleted in Pipe::UpDone,
// from this call's OnDone). Holds itself (AddHold) from StartCall until its
// read side has ended; see Pipe::up_open_.
class UpstreamCall final
    : public grpc::ClientBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
 public:
  UpstreamCall(Pipe* pipe, size_t index) : pipe_(pipe), index_(index) {}
  void OnWriteDone(bool ok) override;
  void OnWritesDoneDone(bool ok) override {}
  void OnReadDone(bool ok) override;
  void OnDone(const grpc::Status& s) override;

  grpc::ClientContext ctx;
  grpc::ByteBuffer out;  // the message being written
  grpc::ByteBuffer in;   // the message being read

 private:
  Pipe* pipe_;
  size_t index_;
};

// One forwarded call: the client's server-side reactor plus the current
// UpstreamCall, which it owns. Deletes itself when both sides are done
// (its own OnDone and the last UpstreamCall's OnDone, whichever is later).
//
// The hold rule: upstream operations are started from the client side's
// reactions (a client message to write, a client write done so the next
// member message can be read), i.e. from outside the UpstreamCall's own
// reactions. gRPC may finish and free a client call as soon as nothing is
// pending and nothing holds it, so the UpstreamCall is held from before
// StartCall until its read side ends: its read fails (the call is over),
// or a write back to the client fails (no further upstream read will be
// started). `up_open_` is true exactly while the hold is held, and an
// upstream StartRead/StartWrite/StartWritesDone is started only under
// `mu_` with `up_open_` true. The hold is removed outside `mu_`, after
// `up_open_` was cleared (RemoveHold may lead to OnDone, which takes `mu_`).
class Pipe final : public grpc::ServerGenericBidiReactor {
 public:
  Pipe(Endpoints* endpoints, grpc::GenericCallbackServerContext* ctx)
      : endpoints_(endpoints), sctx_(ctx) {
    absl::MutexLock l(&mu_);
    StartUpstreamLocked();
    StartRead(&req_);
  }

  // ---- client side ----
  void OnReadDone(bool ok) override {
    absl::MutexLock l(&mu_);
    if (!ok) {
      client_writes_done_ = true;
      PumpUpstreamLocked();
      return;
    }
    if (replay_ok_) {
      replay_bytes_ += req_.Length();
      if (replay_bytes_ > kMaxReplayBytes) {
        replay_ok_ = false;
        sent_.clear();
      } else {
        sent_.push_back(req_);
      }
    }
    pending_.push_back(std::move(req_));
    req_.Clear();
    PumpUpstreamLocked();
  }

  void OnWriteDone(bool ok) override {
    UpstreamCall* release = nullptr;
    {
      absl::MutexLock l(&mu_);
      client_writing_ = false;
      if (up_ == nullptr || !up_open_) return;
      if (ok) {
        up_->StartRead(&up_->in);
        return;
      }
      // The client is gone: no further upstream read, so the upstream
      // read side ends here.
      up_->ctx.TryCancel();
      up_open_ = false;
      release = up_;
    }
    // `release` lives until its OnDone, which needs this hold removed.
    release->RemoveHold();
  }

  void OnCancel() override {
    absl::MutexLock l(&mu_);
    if (up_ != nullptr) up_->ctx.TryCancel();
  }

  void OnDone() override {
    bool del;
    {
      absl::MutexLock l(&mu_);
      server_done_ = true;
      del = up_ == nullptr;
    }
    if (del) delete this;
  }

  // ---- upstream side (called by UpstreamCall) ----
  void UpWriteDone(bool ok) {
    absl::MutexLock l(&mu_);
    up_writing_ = false;
    if (!ok) return;  // the call failed; UpDone follows
    if (pending_.empty() && !replaying_ && !client_writes_done_) {
      StartRead(&req_);
    }
    PumpUpstreamLocked();
  }

  // Returns true when the upstream read side has ended and the caller must
  // remove the UpstreamCall's hold.
  bool UpReadDone(bool ok) {
    absl::MutexLock l(&mu_);
    if (!ok) {
      // The call is over; UpDone follows once the hold is removed.
      up_open_ = false;
      return true;
    }
    got_response_ = true;
    replay_ok_ = false;
    sent_.clear();
    client_writing_ = true;
    resp_ = std::move(up_->in);
    up_->in.Clear();
    StartWrite(&resp_);
    return false;
  }

  void UpDone(const grpc::Status& s, size_t index) {
    bool del = false;
    UpstreamCall* old;
    {
      absl::MutexLock l(&mu_);
      old = up_;
      up_ = nullptr;
      if (s.error_code() == grpc::StatusCode::UNAVAILABLE) {
        endpoints_->ReportFailure(index);
        if (!got_response_ && replay_ok_ && client_writes_done_ &&
            (idempotent_ || !was_ready_) &&
            ++attempts_ < endpoints_->size() && !server_done_) {
          // Replay the whole request on the next endpoint.
          pending_.assign(sent_.begin(), sent_.end());
          StartUpstreamLocked();
          delete old;
          return;
        }
      }
      if (!server_done_) {
        Finish(s);
      } else {
        del = true;
      }
    }
    delete old;
    if (del) delete this;
  }

 private:
  void StartUpstreamLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    size_t index = 0;
    auto channel = endpoints_->Current(&index);
    was_ready_ = channel->GetState(true) == GRPC_CHANNEL_READY;
    up_ = new UpstreamCall(this, index);
    writes_done_sent_for_current_ = false;
    PrepareUpstreamContext(*sctx_, &up_->ctx);
    grpc::GenericStub stub(channel);
    stub.PrepareBidiStreamingCall(&up_->ctx, sctx_->method(),
                                  grpc::StubOptions(), up_);
    up_->StartRead(&up_->in);
    up_->AddHold();  // removed when the read side ends (see up_open_)
    up_open_ = true;
    up_->StartCall();
    replaying_ = !pending_.empty();
    PumpUpstreamLocked();
  }

  // Writes the next pending message upstream, or half-closes when the
  // client has.
  void PumpUpstreamLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (up_ == nullptr || !up_open_ || up_writing_) return;
    if (!pending_.empty()) {
      up_writing_ = true;
      up_->out = std::move(pending_.front());
      pending_.pop_front();
      up_->StartWrite(&up_->out);
      return;
    }
    if (replaying_) replaying_ = false;
    if (client_writes_done_ && !writes_done_sent_for_current_) {
      writes_done_sent_for_current_ = true;
      up_->StartWritesDone();
    }
  }

  Endpoints* const endpoints_;
  grpc::GenericCallbackServerContext* const sctx_;
  absl::Mutex mu_;
  grpc::ByteBuffer req_ ABSL_GUARDED_BY(mu_);   // client -> proxy, in a read
  grpc::ByteBuffer resp_ ABSL_GUARDED_BY(mu_);  // proxy -> client, in a write
  UpstreamCall* up_ ABSL_GUARDED_BY(mu_) = nullptr;
  // True while `up_` is held: operations may be started on it.
  bool up_open_ ABSL_GUARDED_BY(mu_) = false;
  std::deque<grpc::ByteBuffer> pending_ ABSL_GUARDED_BY(mu_);
  std::vector<grpc::ByteBuffer> sent_ ABSL_GUARDED_BY(mu_);
  size_t replay_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  size_t attempts_ ABSL_GUARDED_BY(mu_) = 0;
  bool replay_ok_ ABSL_GUARDED_BY(mu_) = true;
  bool replaying_ ABSL_GUARDED_BY(mu_) = false;
  bool up_writing_ ABSL_GUARDED_BY(mu_) = false;
  bool client_writing_ ABSL_GUARDED_BY(mu_) = false;
  bool client_writes_done_ ABSL_GUARDED_BY(mu_) = false;
  bool writes_done_sent_for_current_ ABSL_GUARDED_BY(mu_) = false;
  bool got_response_ ABSL_GUARDED_BY(mu_) = false;
  bool server_done_ ABSL_GUARDED_BY(mu_) = false;
  bool was_ready_ ABSL_GUARDED_BY(mu_) = false;
  const bool idempotent_ = IsReadOnly(sctx_->method());
};

void UpstreamCall::OnWriteDone(bool ok) { pipe_->UpWriteDone(ok); }
void UpstreamCall::OnReadDone(bool ok) {
  if (pipe_->UpReadDone(ok)) RemoveHold();
}
void UpstreamCall::OnDone(const grpc::Status& s) { pipe_->UpDone(s, index_); }

}  // namespace

void PrepareUpstreamContext(const grpc::ServerContextBase& sctx,
                            grpc::ClientContext* ctx) {
  for (const auto& [k, v] : sctx.client_metadata()) {
    std::string key(k.data(), k.size());
    if (absl::StartsWith(key, ":") || absl::StartsWith(key, "grpc-") ||
        key == "user-agent" || key == "content-type" || key == "te") {
      continue;
    }
    ctx->AddMetadata(key, std::string(v.data(), v.size()));
  }
  if (sctx.deadline() != std::chrono::system_clock::time_point::max()) {
    ctx->set_deadline(sctx.deadline());
  }
}

grpc::ServerGenericBidiReactor* ForwardingService::CreateReactor(
    grpc::GenericCallbackServerContext* ctx) {
  return new Pipe(endpoints_, ctx);
}

}  // namespace synod::proxy
