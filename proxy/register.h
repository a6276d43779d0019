// Registrar: registers the proxy's own endpoint in the cluster (etcd
// grpc-proxy's --resolver-prefix / --resolver-ttl): the key
// "<prefix>/<advertise address>" holds grpc-naming's JSON update
// {"Op":0,"Addr":"<address>","Metadata":...} under a lease of `ttl`
// seconds, kept alive every ttl/3. If the lease is lost (the cluster was
// unreachable for longer than ttl) it registers again; Stop() revokes the
// lease, which removes the key.
//
// Thread-safety: Start/Stop from one thread; the work runs on its own
// thread. Its waits (the keep-alive period, the retry pause) go through the
// injected Clock; RPC deadlines are relative (common::GrpcDeadlineAfter).
#ifndef SYNOD_PROXY_REGISTER_H_
#define SYNOD_PROXY_REGISTER_H_

#include <cstdint>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "proxy/upstream.h"

namespace synod::proxy {

class Registrar {
 public:
  // REQUIRES: ttl_seconds >= 1. `endpoints` outlives the registrar, and so
  // does `clock` (nullptr = common::RealClock::Get()).
  Registrar(Endpoints* endpoints, std::string prefix, std::string addr,
            int64_t ttl_seconds, common::Clock* clock = nullptr);
  ~Registrar();  // Stop()

  void Start();
  // Revokes the registration and joins the thread. Idempotent.
  void Stop();

  // The registered key and value.
  std::string Key() const;
  std::string Value() const;

 private:
  void Loop();
  // One registration: grant, put, then keep alive until it fails or Stop.
  // Returns the lease id in *lease (0 if none was granted).
  void RegisterOnce(int64_t* lease);
  // Waits up to `d` for Stop(); returns true once it was called.
  bool WaitForStop(absl::Duration d) ABSL_LOCKS_EXCLUDED(mu_);
  bool Stopping() ABSL_LOCKS_EXCLUDED(mu_);

  Endpoints* const endpoints_;
  const std::string prefix_, addr_;
  const int64_t ttl_;
  common::Clock* const clock_;
  absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace synod::proxy

#endif  // SYNOD_PROXY_REGISTER_H_
