// JsonGateway: etcd 3.4's JSON gateway (grpc-gateway) on a member's client
// URL: POST /v3/kv/range, /v3/watch, /v3/lease/grant, ... with JSON bodies,
// each forwarded as a gRPC call to the member's own services, so auth,
// quotas and every check apply unchanged.
//
// Paths (and the same under /v3beta/, which etcd rewrites to /v3/), as
// etcd 3.4's rpc.proto, v3lock.proto and v3election.proto annotate them:
//   /v3/kv/{range,put,deleterange,txn,compaction}
//   /v3/watch                                   (streamed both ways)
//   /v3/lease/{grant,revoke,keepalive,timetolive,leases} and
//   /v3/kv/lease/{revoke,timetolive,leases}     (keepalive streamed)
//   /v3/cluster/member/{add,remove,update,list,promote}
//   /v3/maintenance/{alarm,status,defragment,hash,snapshot,
//                    transfer-leadership}       (snapshot streamed)
//   /v3/auth/{enable,disable,authenticate}, /v3/auth/user/{add,get,list,
//     delete,changepw,grant,revoke}, /v3/auth/role/{add,get,list,delete,
//     grant,revoke}
//   /v3/lock/{lock,unlock}
//   /v3/election/{campaign,proclaim,leader,observe,resign} (observe
//     streamed)
// Every answer carries etcd's CORS headers for --cors (see the
// constructor); OPTIONS on any path answers them alone (a preflight).
//
// The JSON mapping is grpc-gateway's (protobuf's JSON utilities): field
// names as in the .proto, bytes as base64, 64-bit integers as strings,
// enums by name, default values left out; unknown request fields are
// ignored, an empty body is an empty request. A unary answer is the
// response message; a streamed one is a chunked body of lines
// {"result":<message>}, ending with {"error":{"grpc_code":..,"http_code":..,
// "message":..,"http_status":..}} if the call fails after the first. A
// request body for /v3/watch and /v3/lease/keepalive is a stream of JSON
// objects, each sent as it arrives; the watch stays open after the body
// ends (as etcd's), until the client leaves. An error is grpc-gateway's:
// HTTP status from the gRPC code (runtime.HTTPStatusFromCode) and body
// {"error":msg,"message":msg,"code":grpc_code}. The "Authorization" header
// is passed on as the call's "token" metadata (etcd's gateway passes it as
// "authorization", which etcd also takes for a token).
//
// Ownership: the gateway owns its stub and every call in flight; the
// channel is shared. Handlers installed on an HttpServer refer to the
// gateway, which must outlive that server's Stop(). Thread-safe.
#ifndef SYNOD_BACKEND_SERVER_GATEWAY_H_
#define SYNOD_BACKEND_SERVER_GATEWAY_H_

#include <grpcpp/channel.h>
#include <grpcpp/server.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/http_server.h"

namespace synod::server {

class JsonGateway {
 public:
  // `channel` reaches this member's gRPC services (see ForServer()).
  // `cors`: --cors's origins. Empty or holding "*" (etcd's default) allows
  // every origin ("Access-Control-Allow-Origin: *"); otherwise a request
  // whose Origin header is listed gets it back, and any other no CORS
  // headers, as etcd's corsHandler.
  // `max_concurrent_streams`: etcd's --max-concurrent-streams as its
  // gateway feels it (one gRPC connection to the member): at most this many
  // gateway calls, unary or streamed, run at once; the rest wait in arrival
  // order for a running one to end (a waiting call whose client leaves is
  // dropped). 0 means no limit.
  explicit JsonGateway(std::shared_ptr<grpc::Channel> channel,
                       std::vector<std::string> cors = {},
                       uint32_t max_concurrent_streams = 0);
  JsonGateway(const JsonGateway&) = delete;
  JsonGateway& operator=(const JsonGateway&) = delete;
  // Cancels every call still in flight and waits for each to end (they end
  // promptly once cancelled).
  ~JsonGateway();

  // A gateway that reaches `server`'s services through an in-process
  // channel (no socket; no message size limit on answers). `server` must
  // outlive the gateway.
  static std::unique_ptr<JsonGateway> ForServer(
      grpc::Server* server, std::vector<std::string> cors = {},
      uint32_t max_concurrent_streams = 0);

  // Serves every gateway path on `http` (POST, and OPTIONS). Call before
  // http->Start(). `http` must be stopped before the gateway is destroyed.
  void Install(common::HttpServer* http);

  // Calls waiting for a stream slot (see max_concurrent_streams) now.
  size_t WaitingCalls() const;

  struct Impl;  // internal

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace synod::server

#endif  // SYNOD_BACKEND_SERVER_GATEWAY_H_
