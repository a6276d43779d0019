#include "common/tcp_relay.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <unordered_set>
#include <utility>
#include <vector>

#include <uv.h>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/uv_loop_thread.h"

namespace synod::common {
namespace {
constexpr size_t kReadBytes = 64 << 10;
}  // namespace

class TcpRelay::Impl {
 public:
  absl::Status Start(const std::string& host, int port);
  void Relay(int fd);
  void Stop();
  size_t open_connections() const {
    return open_.load(std::memory_order_relaxed);
  }

 private:
  // One relayed connection: side[0] the accepted client, side[1] the
  // connection to the target. Touched only on the loop thread.
  struct Pair;
  struct Side {
    uv_tcp_t tcp;
    Pair* pair = nullptr;
    int index = 0;
    bool reading = false;
    bool paused = false;   // reading stopped for back-pressure
    bool eof = false;      // this side sent EOF (its direction is over)
    bool shut = false;     // shutdown of writes towards this side issued
    uv_shutdown_t shutdown_req;
  };
  struct Pair {
    Impl* relay = nullptr;
    Side side[2];
    uv_connect_t connect_req;
    bool connected = false;
    bool closing = false;
    int open_handles = 2;
    int directions_done = 0;  // shutdowns completed
  };
  struct WriteReq {
    uv_write_t req;
    Side* to;
    char* data;
  };

  static void OnAsync(uv_async_t* async);
  static void OnConnected(uv_connect_t* req, int status);
  static void OnAlloc(uv_handle_t* handle, size_t suggested, uv_buf_t* buf);
  static void OnRead(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf);
  static void OnWrite(uv_write_t* req, int status);
  static void OnShutdown(uv_shutdown_t* req, int status);
  static void OnClosed(uv_handle_t* handle);

  void Adopt(int fd);
  void StartReading(Side* s);
  void ClosePair(Pair* p);
  static Side* Other(Side* s) { return &s->pair->side[1 - s->index]; }
  static uv_stream_t* Stream(Side* s) {
    return reinterpret_cast<uv_stream_t*>(&s->tcp);
  }

  absl::Mutex mu_;
  bool running_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<int> incoming_ ABSL_GUARDED_BY(mu_);
  std::atomic<size_t> open_{0};
  sockaddr_storage target_;
  std::thread thread_;
  // Owned by the loop thread while it runs.
  uv_loop_t loop_;
  uv_async_t async_;
  std::unordered_set<Pair*> pairs_;
};

absl::Status TcpRelay::Impl::Start(const std::string& host, int port) {
  absl::MutexLock l(&mu_);
  if (running_ || stopping_) {
    return absl::FailedPreconditionError("TcpRelay: already started");
  }
  std::memset(&target_, 0, sizeof(target_));
  if (port < 1 || port > 65535 ||
      (uv_ip4_addr(host.c_str(), port,
                   reinterpret_cast<sockaddr_in*>(&target_)) != 0 &&
       uv_ip6_addr(host.c_str(), port,
                   reinterpret_cast<sockaddr_in6*>(&target_)) != 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("TcpRelay: bad target ", host, ":", port));
  }
  int rc = uv_loop_init(&loop_);
  if (rc == 0) {
    rc = uv_async_init(&loop_, &async_, &OnAsync);
    if (rc != 0) uv_loop_close(&loop_);
  }
  if (rc != 0) {
    return absl::InternalError(
        absl::StrCat("TcpRelay: libuv: ", uv_strerror(rc)));
  }
  async_.data = this;
  running_ = true;
  thread_ = StartUvLoopThread(&loop_);
  return absl::OkStatus();
}

void TcpRelay::Impl::Relay(int fd) {
  {
    absl::MutexLock l(&mu_);
    if (running_ && !stopping_) {
      incoming_.push_back(fd);
      uv_async_send(&async_);
      return;
    }
  }
  close(fd);
}

void TcpRelay::Impl::Stop() {
  {
    absl::MutexLock l(&mu_);
    if (!running_ || stopping_) return;
    stopping_ = true;
    uv_async_send(&async_);
  }
  thread_.join();
  uv_loop_close(&loop_);
  absl::MutexLock l(&mu_);
  running_ = false;
  for (int fd : incoming_) close(fd);
  incoming_.clear();
}

void TcpRelay::Impl::OnAsync(uv_async_t* async) {
  Impl* self = static_cast<Impl*>(async->data);
  std::vector<int> fds;
  bool stopping;
  {
    absl::MutexLock l(&self->mu_);
    fds.swap(self->incoming_);
    stopping = self->stopping_;
  }
  if (stopping) {
    for (int fd : fds) close(fd);
    std::vector<Pair*> pairs(self->pairs_.begin(), self->pairs_.end());
    for (Pair* p : pairs) self->ClosePair(p);
    uv_close(reinterpret_cast<uv_handle_t*>(async), nullptr);
    return;
  }
  for (int fd : fds) self->Adopt(fd);
}

void TcpRelay::Impl::Adopt(int fd) {
  auto* p = new Pair();
  p->relay = this;
  for (int i = 0; i < 2; ++i) {
    p->side[i].pair = p;
    p->side[i].index = i;
    p->side[i].tcp.data = &p->side[i];
    uv_tcp_init(&loop_, &p->side[i].tcp);
  }
  pairs_.insert(p);
  open_.fetch_add(1, std::memory_order_relaxed);
  p->connect_req.data = p;
  if (uv_tcp_open(&p->side[0].tcp, fd) != 0) {
    close(fd);
    ClosePair(p);
    return;
  }
  uv_tcp_nodelay(&p->side[0].tcp, 1);
  if (uv_tcp_connect(&p->connect_req, &p->side[1].tcp,
                     reinterpret_cast<const sockaddr*>(&target_),
                     &OnConnected) != 0) {
    ClosePair(p);
  }
}

void TcpRelay::Impl::OnConnected(uv_connect_t* req, int status) {
  Pair* p = static_cast<Pair*>(req->data);
  if (p->closing) return;
  if (status != 0) {
    p->relay->ClosePair(p);
    return;
  }
  p->connected = true;
  uv_tcp_nodelay(&p->side[1].tcp, 1);
  p->relay->StartReading(&p->side[0]);
  p->relay->StartReading(&p->side[1]);
}

void TcpRelay::Impl::StartReading(Side* s) {
  if (s->pair->closing || s->eof || s->reading) return;
  if (uv_read_start(Stream(s), &OnAlloc, &OnRead) != 0) {
    ClosePair(s->pair);
    return;
  }
  s->reading = true;
  s->paused = false;
}

void TcpRelay::Impl::OnAlloc(uv_handle_t* /*handle*/, size_t /*suggested*/,
                             uv_buf_t* buf) {
  buf->base = static_cast<char*>(std::malloc(kReadBytes));
  buf->len = buf->base == nullptr ? 0 : kReadBytes;
}

void TcpRelay::Impl::OnRead(uv_stream_t* stream, ssize_t nread,
                            const uv_buf_t* buf) {
  Side* from = static_cast<Side*>(stream->data);
  Pair* p = from->pair;
  Impl* self = p->relay;
  if (nread == 0 || p->closing) {
    std::free(buf->base);
    return;
  }
  Side* to = Other(from);
  if (nread < 0) {
    std::free(buf->base);
    if (nread != UV_EOF) {
      self->ClosePair(p);
      return;
    }
    // Pass the half-close on once what was read before it is written.
    uv_read_stop(stream);
    from->reading = false;
    from->eof = true;
    to->shut = true;
    to->shutdown_req.data = to;
    if (uv_shutdown(&to->shutdown_req, Stream(to), &OnShutdown) != 0) {
      self->ClosePair(p);
    }
    return;
  }
  auto* w = new WriteReq();
  w->to = to;
  w->data = buf->base;
  w->req.data = w;
  uv_buf_t out = uv_buf_init(buf->base, static_cast<unsigned>(nread));
  if (uv_write(&w->req, Stream(to), &out, 1, &OnWrite) != 0) {
    std::free(w->data);
    delete w;
    self->ClosePair(p);
    return;
  }
  if (to->tcp.write_queue_size > kRelayHighWaterBytes) {
    uv_read_stop(stream);
    from->reading = false;
    from->paused = true;
  }
}

void TcpRelay::Impl::OnWrite(uv_write_t* req, int status) {
  auto* w = static_cast<WriteReq*>(req->data);
  Side* to = w->to;
  std::free(w->data);
  delete w;
  Pair* p = to->pair;
  if (p->closing) return;
  if (status != 0) {
    p->relay->ClosePair(p);
    return;
  }
  Side* from = Other(to);
  if (from->paused && to->tcp.write_queue_size < kRelayHighWaterBytes / 2) {
    p->relay->StartReading(from);
  }
}

void TcpRelay::Impl::OnShutdown(uv_shutdown_t* req, int status) {
  Side* to = static_cast<Side*>(req->data);
  Pair* p = to->pair;
  if (p->closing) return;
  if (status != 0 || ++p->directions_done == 2) p->relay->ClosePair(p);
}

void TcpRelay::Impl::ClosePair(Pair* p) {
  if (p->closing) return;
  p->closing = true;
  pairs_.erase(p);
  for (Side& s : p->side) {
    uv_close(reinterpret_cast<uv_handle_t*>(&s.tcp), &OnClosed);
  }
}

void TcpRelay::Impl::OnClosed(uv_handle_t* handle) {
  Pair* p = static_cast<Side*>(handle->data)->pair;
  if (--p->open_handles == 0) {
    p->relay->open_.fetch_sub(1, std::memory_order_relaxed);
    delete p;
  }
}

TcpRelay::TcpRelay() : impl_(std::make_unique<Impl>()) {}
TcpRelay::~TcpRelay() { Stop(); }
absl::Status TcpRelay::Start(const std::string& host, int port) {
  return impl_->Start(host, port);
}
void TcpRelay::Relay(int fd) { impl_->Relay(fd); }
void TcpRelay::Stop() { impl_->Stop(); }
size_t TcpRelay::open_connections() const { return impl_->open_connections(); }

}  // namespace synod::common
