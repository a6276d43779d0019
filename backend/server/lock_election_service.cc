#include "backend/server/services.h"

namespace synod::server {
void RegisterLockElection(grpc::ServerBuilder*, EtcdServer*) {}
}  // namespace synod::server
