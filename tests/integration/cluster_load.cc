#include "tests/integration/cluster_load.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "proto/rpc.grpc.pb.h"

namespace synod::testing {

std::string BulkValueFor(const std::string& prefix, int64_t i) {
  return absl::StrCat("bulk-", prefix, "-", i);
}

BulkPutResult BulkPut(const std::string& endpoint, const std::string& prefix,
                      int64_t count, int threads, absl::Duration deadline) {
  threads = std::clamp(threads, 1, 64);
  const absl::Time stop_at = absl::Now() + deadline;
  std::shared_ptr<grpc::Channel> channel =
      grpc::CreateChannel(endpoint, grpc::InsecureChannelCredentials());
  std::unique_ptr<etcdserverpb::KV::Stub> stub =
      etcdserverpb::KV::NewStub(channel);
  std::atomic<int64_t> next{0}, acked{0}, failed{0}, last_rev{0};
  std::mutex mu;
  std::string first_error;  // guarded by mu
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&] {
      while (absl::Now() < stop_at) {
        const int64_t i = next.fetch_add(1);
        if (i >= count) return;
        etcdserverpb::PutRequest req;
        req.set_key(absl::StrFormat("%s%06d", prefix, i));
        req.set_value(BulkValueFor(prefix, i));
        etcdserverpb::PutResponse resp;
        grpc::ClientContext ctx;
        ctx.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::seconds(5));
        grpc::Status s = stub->Put(&ctx, req, &resp);
        if (s.ok()) {
          ++acked;
          int64_t rev = resp.header().revision();
          int64_t cur = last_rev.load();
          while (rev > cur && !last_rev.compare_exchange_weak(cur, rev)) {
          }
        } else {
          ++failed;
          std::lock_guard<std::mutex> lock(mu);
          if (first_error.empty()) first_error = s.error_message();
        }
      }
    });
  }
  for (auto& w : workers) w.join();
  BulkPutResult r;
  r.acked = acked;
  r.failed = failed;
  r.last_revision = last_rev;
  r.first_error = first_error;
  return r;
}

}  // namespace synod::testing
