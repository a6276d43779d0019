// StartUvLoopThread: the thread that runs one libuv loop (HttpServer's,
// TcpRelay's). libuv writes with write()/writev(), so a write to a
// connection the peer reset raises SIGPIPE; the thread keeps SIGPIPE
// blocked (pending and harmless: libuv sees EPIPE), rather than changing
// the process-wide disposition.
//
// Thread safety: call from the loop's owner, before anything else runs the
// loop; the loop belongs to the returned thread until it is joined.
#ifndef SYNOD_COMMON_UV_LOOP_THREAD_H_
#define SYNOD_COMMON_UV_LOOP_THREAD_H_

#include <pthread.h>
#include <signal.h>

#include <thread>

#include <uv.h>

namespace synod::common {

// Runs uv_run(loop, UV_RUN_DEFAULT) on a new thread (until the loop has no
// active handles left); the caller joins it.
inline std::thread StartUvLoopThread(uv_loop_t* loop) {
  return std::thread([loop] {
    sigset_t pipe;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe, nullptr);
    uv_run(loop, UV_RUN_DEFAULT);
  });
}

}  // namespace synod::common

#endif  // SYNOD_COMMON_UV_LOOP_THREAD_H_
