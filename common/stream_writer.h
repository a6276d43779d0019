// The send side of a gRPC stream, written once for member and proxy.
//
// WriteQueue<Msg>: messages waiting to go out on one stream, with at most
// one write in flight (gRPC allows one outstanding write per call). Plain
// state, no gRPC calls: its owner starts the writes it is told to start.
// Used by ServerStreamWriter and by synod-proxy's upstream client streams.
//
// ServerStreamWriter<Req, Resp>: a server bidi reactor's send side on top of
// a WriteQueue: one write in flight, a byte count of what is queued for
// the owner's bounds, gRPC's buffer hint while more responses wait, entries
// that must be prepared off-lock before they are written (the member reads
// prev_kv there), and finish-after-drain: once the read side has ended
// (ReadsDoneLocked) and every queued response is written, the stream
// finishes with OK. A failed write or a cancelled call makes the stream
// broken: what is queued is dropped, and later pushes are too.
//
// Thread-safety: WriteQueue is not thread-safe (its owner's mutex guards
// it). ServerStreamWriter is: its mu_ guards the queue, and a subclass may
// guard its own state with the same mu_ so that a check of its state and
// the push that follows are atomic.
#ifndef SYNOD_COMMON_STREAM_WRITER_H_
#define SYNOD_COMMON_STREAM_WRITER_H_

#include <grpcpp/alarm.h>
#include <grpcpp/support/server_callback.h>

#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace synod::common {

template <typename Msg>
class WriteQueue {
 public:
  // Appends `msg`, counting `bytes` (any unit its owner bounds, usually the
  // serialized size; 0 when not counted). Returns true when the queue was
  // idle: the caller now holds the send role and must start the write of
  // front() (or prepare it first).
  bool Push(Msg msg, size_t bytes = 0) {
    bytes_ += bytes;
    entries_.push_back(Entry{std::move(msg), bytes});
    if (sending_) return false;
    sending_ = true;
    return true;
  }

  // The write of front() ended; `ok` is gRPC's result. Pops it, and on
  // failure drops everything queued. Returns true while the send role goes
  // on: the caller must start the write of the new front(). Returns false
  // when the queue went idle (empty, or the write failed).
  // REQUIRES: sending(), !empty().
  bool Pop(bool ok) {
    bytes_ -= entries_.front().bytes;
    entries_.pop_front();
    if (!ok) {
      entries_.clear();
      bytes_ = 0;
    }
    sending_ = ok && !entries_.empty();
    return sending_;
  }

  // Removes the head to prepare it. The send role stays with the caller,
  // and the head's bytes (returned in *bytes) stay counted until Uncount.
  // REQUIRES: sending(), !empty().
  Msg TakeFront(size_t* bytes) {
    *bytes = entries_.front().bytes;
    Msg m = std::move(entries_.front().msg);
    entries_.pop_front();
    return m;
  }

  // Puts `msg` (what a taken head became) back at the head, counting
  // `bytes`. REQUIRES: sending().
  void PutFront(Msg msg, size_t bytes) {
    bytes_ += bytes;
    entries_.push_front(Entry{std::move(msg), bytes});
  }

  // Stops counting the `bytes` of a head taken by TakeFront.
  void Uncount(size_t bytes) { bytes_ -= bytes; }

  // The head. Stays at the same address until it is popped (a deque keeps
  // references across pushes at either end). REQUIRES: !empty().
  Msg& front() { return entries_.front().msg; }
  bool empty() const { return entries_.empty(); }
  size_t size() const { return entries_.size(); }
  size_t bytes() const { return bytes_; }
  // A write in flight, or the head being prepared.
  bool sending() const { return sending_; }

 private:
  struct Entry {
    Msg msg;
    size_t bytes;
  };
  std::deque<Entry> entries_;
  size_t bytes_ = 0;
  bool sending_ = false;
};

template <typename Req, typename Resp>
class ServerStreamWriter : public grpc::ServerBidiReactor<Req, Resp> {
 public:
  // Makes a deferred response ready: runs on a gRPC thread with no lock
  // held, while the stream holds its send role, and returns what to write
  // in its place, in order (at least one response).
  using Prepare = std::function<std::vector<Resp>(Resp)>;

  void OnWriteDone(bool ok) final {
    bool prepare = false;
    {
      absl::MutexLock l(&mu_);
      wrote_ = true;
      if (!queue_.Pop(ok)) {
        if (!ok) broken_ = true;
        MaybeFinishLocked();
      } else if (!queue_.front().prepare) {
        WriteFrontLocked();
      } else {
        prepare = true;
      }
    }
    if (prepare) SendPreparedFront();  // a gRPC thread, no lock held
    // OnDone cannot run before this reaction returns, so the stream is
    // still alive here.
    OnWritten();
  }

  // The call was cancelled: nothing more is written.
  void OnCancel() override {
    absl::MutexLock l(&mu_);
    broken_ = true;
    MaybeFinishLocked();
  }

 protected:
  ServerStreamWriter() = default;

  // A write ended and its response left the queue. Runs on a gRPC thread
  // with no lock held (a stream reports room to its producers here).
  virtual void OnWritten() {}

  // Queues `resp` and starts writing it if the stream was idle. Dropped
  // once the stream is broken or finished (never a write after Finish).
  void PushLocked(Resp resp) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (ClosedLocked()) return;
    const size_t n = resp.ByteSizeLong();
    if (queue_.Push(Entry{std::move(resp), nullptr}, n)) WriteFrontLocked();
  }

  // Queues `resp` to be passed through `prepare` before it is written,
  // counting `bytes` (an estimate of its prepared size) until then. Safe to
  // call while holding locks prepare must not run under: if the stream was
  // idle, prepare runs on a thread of gRPC's executor, otherwise on the
  // thread whose write ends before it. Responses queued after it stay
  // behind it. Dropped once the stream is broken or finished.
  void PushDeferredLocked(Resp resp, size_t bytes, Prepare prepare)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (ClosedLocked()) return;
    if (!queue_.Push(Entry{std::move(resp), std::move(prepare)}, bytes)) {
      return;
    }
    // A new alarm each time: the previous one has fired (its
    // SendPreparedFront started the write that ended before the stream
    // went idle), and re-arming an alarm whose callback may still be
    // returning is not safe.
    kick_ = std::make_unique<grpc::Alarm>();
    kick_->Set(gpr_inf_past(GPR_CLOCK_MONOTONIC),
               [this](bool) { SendPreparedFront(); });
  }

  // The read side has ended (the client half-closed, or the call failed):
  // the stream finishes once the queue is drained and no answer is due.
  void ReadsDoneLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    reads_done_ = true;
    MaybeFinishLocked();
  }

  // Finishes the stream with OK if its read side has ended, nothing is
  // being written, and (unless broken) no answer is due. Call again when
  // AnswersDueLocked() may have turned false.
  void MaybeFinishLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    // A broken stream still waits for its read side to end (it will, as
    // gRPC cancels the call) before finishing.
    if (finished_ || !reads_done_ || queue_.sending()) return;
    if (!broken_ && AnswersDueLocked()) return;
    finished_ = true;
    this->Finish(grpc::Status::OK);
  }

  // Whether the subclass still owes the client responses it has not queued
  // yet (the stream then outlives the half-close until they are queued and
  // written). Called with mu_ held.
  virtual bool AnswersDueLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return false;
  }

  // Broken or finished: pushes are dropped.
  bool ClosedLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return broken_ || finished_;
  }
  // Responses queued, and their bytes (estimates for deferred ones), the
  // one being written or prepared included.
  size_t QueuedLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return queue_.size();
  }
  size_t QueuedBytesLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return queue_.bytes();
  }

  absl::Mutex mu_;

 private:
  struct Entry {
    Resp resp;
    Prepare prepare;  // empty: ready to write
  };

  // Holding the send role, on a gRPC thread, with no lock held: prepares
  // the head of the queue, puts what it became back at the head, and
  // starts its write. Nothing else takes from the head meanwhile (only the
  // send role does), and responses queued meanwhile stay behind it. After
  // StartWrite `this` is not touched: the write may end, and the stream
  // with it, before StartWrite returns.
  void SendPreparedFront() ABSL_LOCKS_EXCLUDED(mu_) {
    size_t taken_bytes = 0;
    Entry e;
    {
      absl::MutexLock l(&mu_);
      e = queue_.TakeFront(&taken_bytes);
    }
    std::vector<Resp> parts = e.prepare(std::move(e.resp));
    absl::MutexLock l(&mu_);
    queue_.Uncount(taken_bytes);
    for (auto p = parts.rbegin(); p != parts.rend(); ++p) {
      const size_t n = p->ByteSizeLong();
      queue_.PutFront(Entry{std::move(*p), nullptr}, n);
    }
    WriteFrontLocked();
  }

  // Writes the head of the queue. While more responses wait behind it (one
  // revision fanned out to a stream's many watchers), gRPC may hold it in
  // its buffer (buffer hint) so that they leave in a few frames and TCP
  // sends instead of one each; the last one, written without the hint,
  // flushes them all. Never on the stream's first write: a hinted write
  // that carries the initial metadata is never sent, and never completes
  // (grpc/grpc#12975).
  void WriteFrontLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    grpc::WriteOptions options;
    if (wrote_ && queue_.size() > 1) options.set_buffer_hint();
    this->StartWrite(&queue_.front().resp, options);
  }

  WriteQueue<Entry> queue_ ABSL_GUARDED_BY(mu_);
  // Wakes SendPreparedFront on gRPC's executor when an idle stream is
  // handed a deferred response. Replaced per use.
  std::unique_ptr<grpc::Alarm> kick_ ABSL_GUARDED_BY(mu_);
  bool wrote_ ABSL_GUARDED_BY(mu_) = false;  // a write has completed
  bool reads_done_ ABSL_GUARDED_BY(mu_) = false;
  bool broken_ ABSL_GUARDED_BY(mu_) = false;  // write failed or cancelled
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace synod::common

#endif  // SYNOD_COMMON_STREAM_WRITER_H_
