// FakeNetwork: an in-memory peer network (server/transport.h) for tests that
// run several EtcdServers in one process with no ports. Each member's
// FakeTransport is registered under its member ID and peer URLs; a message
// is handed straight to the receiver's handler on the sender's thread (the
// receiving RaftNode queues it), so delivery is immediate and in order.
// Tests cut members off with SetIsolated: their messages and calls, both
// ways, are dropped, and senders see the peer as unreachable.
// An install snapshot is produced and received on the sender's raft thread.
//
// Ownership: the network owns nothing of the servers; it must outlive every
// transport it made. Thread-safe.
#ifndef SYNOD_TESTS_SUPPORT_FAKE_NETWORK_H_
#define SYNOD_TESTS_SUPPORT_FAKE_NETWORK_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "backend/server/transport.h"

namespace synod::testing {

class FakeNetwork : public server::Network {
 public:
  FakeNetwork() = default;
  FakeNetwork(const FakeNetwork&) = delete;
  FakeNetwork& operator=(const FakeNetwork&) = delete;

  absl::StatusOr<synodpb::ClusterInfo> FetchClusterInfo(
      const std::string& peer_url, absl::Duration timeout) override;
  absl::StatusOr<etcdserverpb::HashKVResponse> FetchHashKV(
      const std::string& peer_url, int64_t revision,
      absl::Duration timeout) override;
  std::unique_ptr<server::Transport> NewTransport(
      uint64_t member_id, uint64_t cluster_id,
      const std::vector<std::string>& peer_urls,
      server::PeerHandlers handlers) override;

  // Cuts member `id` off from every other member (or heals it).
  void SetIsolated(uint64_t id, bool isolated);
  // Raft messages delivered so far.
  uint64_t delivered() const;

  struct Endpoint;

 private:
  friend class FakeTransport;
  // Runs fn(handlers of member `to`) unless `to` is unknown, stopped, or
  // either side is isolated. False when it did not run.
  bool Call(uint64_t from, uint64_t to,
            const std::function<void(const server::PeerHandlers&)>& fn);
  bool CallUrl(const std::string& url,
               const std::function<void(const server::PeerHandlers&)>& fn);
  bool Enter(const std::shared_ptr<Endpoint>& ep) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Leave(const std::shared_ptr<Endpoint>& ep);
  void Close(uint64_t id);

  mutable absl::Mutex mu_;
  absl::flat_hash_map<uint64_t, std::shared_ptr<Endpoint>> members_
      ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<uint64_t> isolated_ ABSL_GUARDED_BY(mu_);
  uint64_t delivered_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace synod::testing

#endif  // SYNOD_TESTS_SUPPORT_FAKE_NETWORK_H_
