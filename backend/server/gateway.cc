#include "backend/server/gateway.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/dynamic_message.h>
#include <google/protobuf/message.h>
#include <google/protobuf/util/json_util.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/client_callback.h>

#include <algorithm>
#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "common/logging.h"
// The generated messages and services the routes name must be linked in,
// so that the generated descriptor pool holds them.
#include "proto/rpc.grpc.pb.h"
#include "proto/v3election.grpc.pb.h"
#include "proto/v3lock.grpc.pb.h"

namespace synod::server {
namespace {

using google::protobuf::Message;
using google::protobuf::MethodDescriptor;
using Headers = std::vector<std::pair<std::string, std::string>>;

// One JSON object of a streamed request body may be at most this large.
constexpr size_t kMaxJsonObjectBytes = 8 << 20;
// Request messages of one stream waiting for gRPC to take them; beyond it
// the client is sending faster than the member reads, and the call ends.
constexpr size_t kMaxQueuedWrites = 1024;

// A gateway path (under /v3/ and /v3beta/) and the method it calls, by its
// full protobuf name.
struct RouteSpec {
  const char* path;
  const char* method;
};

// etcd 3.4's google.api.http annotations. /v3/maintenance/hash is
// annotated on both Hash and HashKV; etcd's gateway serves Hash there.
constexpr RouteSpec kRoutes[] = {
    {"kv/range", "etcdserverpb.KV.Range"},
    {"kv/put", "etcdserverpb.KV.Put"},
    {"kv/deleterange", "etcdserverpb.KV.DeleteRange"},
    {"kv/txn", "etcdserverpb.KV.Txn"},
    {"kv/compaction", "etcdserverpb.KV.Compact"},
    {"watch", "etcdserverpb.Watch.Watch"},
    {"lease/grant", "etcdserverpb.Lease.LeaseGrant"},
    {"lease/revoke", "etcdserverpb.Lease.LeaseRevoke"},
    {"kv/lease/revoke", "etcdserverpb.Lease.LeaseRevoke"},
    {"lease/keepalive", "etcdserverpb.Lease.LeaseKeepAlive"},
    {"lease/timetolive", "etcdserverpb.Lease.LeaseTimeToLive"},
    {"kv/lease/timetolive", "etcdserverpb.Lease.LeaseTimeToLive"},
    {"lease/leases", "etcdserverpb.Lease.LeaseLeases"},
    {"kv/lease/leases", "etcdserverpb.Lease.LeaseLeases"},
    {"cluster/member/add", "etcdserverpb.Cluster.MemberAdd"},
    {"cluster/member/remove", "etcdserverpb.Cluster.MemberRemove"},
    {"cluster/member/update", "etcdserverpb.Cluster.MemberUpdate"},
    {"cluster/member/list", "etcdserverpb.Cluster.MemberList"},
    {"cluster/member/promote", "etcdserverpb.Cluster.MemberPromote"},
    {"maintenance/alarm", "etcdserverpb.Maintenance.Alarm"},
    {"maintenance/status", "etcdserverpb.Maintenance.Status"},
    {"maintenance/defragment", "etcdserverpb.Maintenance.Defragment"},
    {"maintenance/hash", "etcdserverpb.Maintenance.Hash"},
    {"maintenance/snapshot", "etcdserverpb.Maintenance.Snapshot"},
    {"maintenance/transfer-leadership", "etcdserverpb.Maintenance.MoveLeader"},
    {"auth/enable", "etcdserverpb.Auth.AuthEnable"},
    {"auth/disable", "etcdserverpb.Auth.AuthDisable"},
    {"auth/authenticate", "etcdserverpb.Auth.Authenticate"},
    {"auth/user/add", "etcdserverpb.Auth.UserAdd"},
    {"auth/user/get", "etcdserverpb.Auth.UserGet"},
    {"auth/user/list", "etcdserverpb.Auth.UserList"},
    {"auth/user/delete", "etcdserverpb.Auth.UserDelete"},
    {"auth/user/changepw", "etcdserverpb.Auth.UserChangePassword"},
    {"auth/user/grant", "etcdserverpb.Auth.UserGrantRole"},
    {"auth/user/revoke", "etcdserverpb.Auth.UserRevokeRole"},
    {"auth/role/add", "etcdserverpb.Auth.RoleAdd"},
    {"auth/role/get", "etcdserverpb.Auth.RoleGet"},
    {"auth/role/list", "etcdserverpb.Auth.RoleList"},
    {"auth/role/delete", "etcdserverpb.Auth.RoleDelete"},
    {"auth/role/grant", "etcdserverpb.Auth.RoleGrantPermission"},
    {"auth/role/revoke", "etcdserverpb.Auth.RoleRevokePermission"},
    {"lock/lock", "v3lockpb.Lock.Lock"},
    {"lock/unlock", "v3lockpb.Lock.Unlock"},
    {"election/campaign", "v3electionpb.Election.Campaign"},
    {"election/proclaim", "v3electionpb.Election.Proclaim"},
    {"election/leader", "v3electionpb.Election.Leader"},
    {"election/observe", "v3electionpb.Election.Observe"},
    {"election/resign", "v3electionpb.Election.Resign"},
};

// A route resolved against the descriptor pool.
struct Route {
  std::string path;       // "kv/range", under /v3/ and /v3beta/
  std::string grpc_path;  // "/etcdserverpb.KV/Range"
  const Message* request_prototype;
  const Message* response_prototype;
  bool client_streaming;
  bool server_streaming;
  // The watch stays open after the request body ends (etcd's watch server
  // keeps a half-closed stream); other client streams are half-closed.
  bool keep_open_after_body;
};

// etcd's CORS headers (embed/serve.go addCORSHeader) for `origin`.
Headers CorsHeaders(const std::string& origin) {
  return Headers{
      {"Access-Control-Allow-Headers", "accept, content-type, authorization"},
      {"Access-Control-Allow-Methods", "POST, GET, OPTIONS, PUT, DELETE"},
      {"Access-Control-Allow-Origin", origin},
  };
}

// A successful answer's headers: `cors`, and the gRPC header metadata
// grpc-gateway forwards.
Headers AnswerHeaders(const Headers& cors) {
  Headers h = cors;
  h.emplace_back("Grpc-Metadata-Content-Type", "application/grpc");
  return h;
}

// grpc-gateway's runtime.HTTPStatusFromCode.
int HttpStatusFromCode(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return 200;
    case grpc::StatusCode::CANCELLED:
      return 408;
    case grpc::StatusCode::UNKNOWN:
      return 500;
    case grpc::StatusCode::INVALID_ARGUMENT:
      return 400;
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return 504;
    case grpc::StatusCode::NOT_FOUND:
      return 404;
    case grpc::StatusCode::ALREADY_EXISTS:
      return 409;
    case grpc::StatusCode::PERMISSION_DENIED:
      return 403;
    case grpc::StatusCode::UNAUTHENTICATED:
      return 401;
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return 429;
    case grpc::StatusCode::FAILED_PRECONDITION:
      return 412;
    case grpc::StatusCode::ABORTED:
      return 409;
    case grpc::StatusCode::OUT_OF_RANGE:
      return 400;
    case grpc::StatusCode::UNIMPLEMENTED:
      return 501;
    case grpc::StatusCode::INTERNAL:
      return 500;
    case grpc::StatusCode::UNAVAILABLE:
      return 503;
    case grpc::StatusCode::DATA_LOSS:
      return 500;
    default:
      return 500;
  }
}

// A JSON string literal as Go's encoding/json writes it (HTML-safe).
std::string JsonQuote(absl::string_view s) {
  std::string out = "\"";
  for (size_t i = 0; i < s.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '<':
      case '>':
      case '&':
        absl::StrAppendFormat(&out, "\\u%04x", c);
        break;
      default:
        if (c < 0x20) {
          absl::StrAppendFormat(&out, "\\u%04x", c);
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
  return out;
}

// grpc-gateway's DefaultHTTPError answer for `st`, with headers `cors`.
common::HttpResponse ErrorResponse(const grpc::Status& st,
                                   const Headers& cors) {
  std::string msg = JsonQuote(st.error_message());
  common::HttpResponse r;
  r.status = HttpStatusFromCode(st.error_code());
  r.content_type = "application/json";
  r.body = absl::StrCat("{\"error\":", msg, ",\"message\":", msg,
                        ",\"code\":", static_cast<int>(st.error_code()), "}");
  r.headers = cors;
  return r;
}

// The line a stream ends with when its call fails (grpc-gateway's
// streamChunk with an error).
std::string StreamErrorLine(const grpc::Status& st) {
  int http = HttpStatusFromCode(st.error_code());
  return absl::StrCat("{\"error\":{\"grpc_code\":",
                      static_cast<int>(st.error_code()),
                      ",\"http_code\":", http,
                      ",\"message\":", JsonQuote(st.error_message()),
                      ",\"http_status\":", JsonQuote(common::HttpReasonPhrase(http)),
                      "}}\n");
}

// Splits a byte stream into top-level JSON objects (as Go's json.Decoder
// reads a stream of values), without parsing them.
class JsonSplitter {
 public:
  // Appends `data`; each object it completes goes to `out`. False, with
  // `error` set, on a byte that cannot start an object or an object over
  // kMaxJsonObjectBytes; the splitter is then unusable.
  bool Add(absl::string_view data, std::vector<std::string>* out,
           std::string* error) {
    for (char c : data) {
      if (depth_ == 0) {
        if (absl::ascii_isspace(static_cast<unsigned char>(c))) continue;
        if (c != '{') {
          // Go's encoding/json message.
          *error = absl::StrFormat(
              "invalid character '%c' looking for beginning of value", c);
          return false;
        }
      }
      buf_ += c;
      if (buf_.size() > kMaxJsonObjectBytes) {
        *error = "request object too large";
        return false;
      }
      if (in_string_) {
        if (escape_) {
          escape_ = false;
        } else if (c == '\\') {
          escape_ = true;
        } else if (c == '"') {
          in_string_ = false;
        }
        continue;
      }
      if (c == '"') {
        in_string_ = true;
      } else if (c == '{' || c == '[') {
        ++depth_;
      } else if (c == '}' || c == ']') {
        if (--depth_ == 0) {
          out->push_back(std::move(buf_));
          buf_.clear();
        }
      }
    }
    return true;
  }
  // A started object is not complete yet.
  bool partial() const { return !buf_.empty(); }

 private:
  std::string buf_;
  int depth_ = 0;
  bool in_string_ = false;
  bool escape_ = false;
};

// Parses JSON object `json` into `msg` as grpc-gateway does (unknown fields
// ignored).
grpc::Status ParseJson(const std::string& json, Message* msg) {
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;
  auto st = google::protobuf::util::JsonStringToMessage(json, msg, options);
  if (!st.ok()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        std::string(st.message()));
  }
  return grpc::Status::OK;
}

// Parses a whole unary request body: its first JSON object, or an empty
// request for an empty body.
grpc::Status ParseBody(const std::string& body, Message* msg) {
  JsonSplitter splitter;
  std::vector<std::string> objects;
  std::string error;
  if (!splitter.Add(body, &objects, &error)) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, error);
  }
  if (objects.empty()) {
    if (splitter.partial()) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          "unexpected EOF");
    }
    return grpc::Status::OK;  // no body: grpc-gateway ignores io.EOF
  }
  return ParseJson(objects[0], msg);
}

std::string ToJson(const Message& msg) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  std::string out;
  if (!google::protobuf::util::MessageToJsonString(msg, &out, options).ok()) {
    return "{}";
  }
  return out;
}

grpc::ByteBuffer ToBuffer(const Message& msg) {
  std::string bytes = msg.SerializeAsString();
  grpc::Slice slice(bytes);
  return grpc::ByteBuffer(&slice, 1);
}

bool FromBuffer(const grpc::ByteBuffer& buf, Message* msg) {
  std::vector<grpc::Slice> slices;
  if (!buf.Dump(&slices).ok()) return false;
  std::string bytes;
  for (const grpc::Slice& s : slices) {
    bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  return msg->ParseFromString(bytes);
}

// Puts the request's Authorization header on `ctx` as the "token"
// metadata. False if the value cannot be metadata (a control character).
bool AddToken(const common::HttpRequest& req, grpc::ClientContext* ctx) {
  const std::string* auth = req.Header("authorization");
  if (auth == nullptr) return true;
  for (char c : *auth) {
    unsigned char u = static_cast<unsigned char>(c);
    if (u < 0x20 || u > 0x7e) return false;
  }
  ctx->AddMetadata("token", *auth);
  return true;
}

common::HttpResponse JsonAnswer(std::string body, const Headers& cors) {
  common::HttpResponse r;
  r.status = 200;
  r.content_type = "application/json";
  r.body = std::move(body);
  r.headers = AnswerHeaders(cors);
  return r;
}

}  // namespace

struct JsonGateway::Impl : public std::enable_shared_from_this<Impl> {
  Impl(std::shared_ptr<grpc::Channel> ch, std::vector<std::string> origins,
       uint32_t max_concurrent_streams)
      : channel(std::move(ch)),
        stub(channel),
        cors(std::move(origins)),
        max_streams(max_concurrent_streams) {}

  // The CORS headers for `req`, as etcd's corsHandler: all origins ("*")
  // when --cors is empty or has "*", else the request's Origin if listed,
  // else none.
  Headers CorsFor(const common::HttpRequest& req) const {
    if (cors.empty() ||
        std::find(cors.begin(), cors.end(), "*") != cors.end()) {
      return CorsHeaders("*");
    }
    const std::string* origin = req.Header("origin");
    if (origin != nullptr &&
        std::find(cors.begin(), cors.end(), *origin) != cors.end()) {
      return CorsHeaders(*origin);
    }
    return {};
  }

  // Where a call stands with respect to the stream slots
  // (--max-concurrent-streams).
  enum class Slot {
    kNew,        // counted in, not yet admitted
    kQueued,     // waiting in `waiting` for a slot
    kHolding,    // running, holding a slot
    kFree,       // running without a slot (no limit, or cancelled)
    kAbandoned,  // the client left before admission
  };

  // Counts a call in; false once the gateway is going away.
  bool Begin(grpc::ClientContext* ctx) {
    absl::MutexLock l(&mu);
    if (closing) return false;
    live.emplace(ctx, Slot::kNew);
    return true;
  }

  // Starts the call on `ctx` (counted in by Begin) through `start` once it
  // holds a stream slot: now if one is free, else after the calls queued
  // before it (FIFO), when a slot frees. As etcd's gateway, whose one gRPC
  // connection is subject to --max-concurrent-streams. A call whose client
  // has left (Abandon) or that comes during Shutdown starts without a slot:
  // its context is cancelled, so it ends at once. `start` runs on this
  // thread or on the one that frees the slot; it must not block.
  void Admit(grpc::ClientContext* ctx, std::function<void()> start) {
    {
      absl::MutexLock l(&mu);
      Slot& slot = live[ctx];
      if (slot == Slot::kAbandoned || closing || max_streams == 0) {
        slot = Slot::kFree;
      } else if (holding < max_streams) {
        ++holding;
        slot = Slot::kHolding;
      } else {
        slot = Slot::kQueued;
        waiting.emplace_back(ctx, std::move(start));
        return;
      }
    }
    start();
  }

  // The client of the call on `ctx` left (its context is cancelled): a
  // queued call leaves the queue and starts without a slot, ending at once.
  void Abandon(grpc::ClientContext* ctx) {
    std::function<void()> start;
    {
      absl::MutexLock l(&mu);
      auto it = live.find(ctx);
      if (it == live.end()) return;
      if (it->second == Slot::kNew) {
        it->second = Slot::kAbandoned;
        return;
      }
      if (it->second != Slot::kQueued) return;
      it->second = Slot::kFree;
      for (auto w = waiting.begin(); w != waiting.end(); ++w) {
        if (w->first == ctx) {
          start = std::move(w->second);
          waiting.erase(w);
          break;
        }
      }
    }
    if (start) start();
  }

  // Counts a call out; the slot it held passes to the first queued call.
  void End(grpc::ClientContext* ctx) {
    std::function<void()> next;
    {
      absl::MutexLock l(&mu);
      auto it = live.find(ctx);
      if (it == live.end()) return;
      const bool held = it->second == Slot::kHolding;
      live.erase(it);
      if (!held) return;
      if (waiting.empty()) {
        --holding;
        return;
      }
      live[waiting.front().first] = Slot::kHolding;
      next = std::move(waiting.front().second);
      waiting.pop_front();
    }
    next();
  }

  // Cancels every call (queued ones start, cancelled) and waits until each
  // has ended.
  void Shutdown() {
    std::deque<std::pair<grpc::ClientContext*, std::function<void()>>> queued;
    {
      absl::MutexLock l(&mu);
      closing = true;
      for (auto& [ctx, slot] : live) {
        ctx->TryCancel();
        if (slot == Slot::kQueued) slot = Slot::kFree;
      }
      queued.swap(waiting);
    }
    for (auto& [ctx, start] : queued) start();
    absl::MutexLock l(&mu);
    mu.Await(absl::Condition(
        +[](absl::flat_hash_map<grpc::ClientContext*, Slot>* s) {
          return s->empty();
        },
        &live));
  }

  // Parses the body into `msg` (unless null: a streamed body), puts the
  // token on `ctx` and counts the call in. False if it answered instead.
  bool Prepare(const common::HttpRequest& req, Message* msg,
               grpc::ClientContext* ctx, const Headers& cors,
               common::HttpResponder* resp);
  void Unary(const Route* route, const common::HttpRequest& req,
             common::HttpResponder resp);
  void ServerStream(const Route* route, const common::HttpRequest& req,
                    common::HttpResponder resp);
  common::HttpBodyReader ClientStream(const Route* route,
                                      const common::HttpRequest& req,
                                      common::HttpResponder resp);

  std::shared_ptr<grpc::Channel> channel;
  grpc::GenericStub stub;
  const std::vector<std::string> cors;  // --cors
  const uint32_t max_streams;           // 0: no limit
  std::vector<std::unique_ptr<Route>> routes;

  absl::Mutex mu;
  bool closing ABSL_GUARDED_BY(mu) = false;
  absl::flat_hash_map<grpc::ClientContext*, Slot> live ABSL_GUARDED_BY(mu);
  uint32_t holding ABSL_GUARDED_BY(mu) = 0;  // calls in Slot::kHolding
  std::deque<std::pair<grpc::ClientContext*, std::function<void()>>> waiting
      ABSL_GUARDED_BY(mu);
};

namespace {

// One unary call; shared by its completion callback and the responder's
// OnClose (which cancels it).
struct UnaryCall {
  grpc::ClientContext ctx;
  grpc::ByteBuffer request;
  grpc::ByteBuffer response;
};

// One streamed call (watch, keepalive, observe, snapshot): request
// messages from the body (or the one of a server-streaming call) go out in
// order, each answer becomes a {"result":...} line as the client takes the
// one before. Deletes itself in OnDone.
class StreamCall final
    : public grpc::ClientBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
 public:
  // The part the responder's OnClose shares: the context (which outlives
  // the call) and whether the body still holds the call open.
  struct Shared {
    grpc::ClientContext ctx;
    absl::Mutex mu;
    StreamCall* body_holder ABSL_GUARDED_BY(mu) = nullptr;
  };

  StreamCall(std::shared_ptr<JsonGateway::Impl> gw, const Route* route,
             common::HttpResponder resp, std::shared_ptr<Shared> shared,
             Headers cors)
      : gw_(std::move(gw)),
        route_(route),
        resp_(std::move(resp)),
        shared_(std::move(shared)),
        cors_(std::move(cors)) {}

  // Prepares the call; StartCall() (once admitted) starts it. `only`: the
  // one request of a server-streaming call, sent before the half-close.
  // Else request messages come through Send() and BodyEnd(), which the
  // call waits for (or the connection's close). Once StartCall() returns,
  // the call may have ended (and deleted itself) unless it waits for the
  // body.
  void Prepare(const Message* only) {
    gw_->stub.PrepareBidiStreamingCall(&shared_->ctx, route_->grpc_path,
                                       grpc::StubOptions(), this);
    if (only != nullptr) {
      Queue(ToBuffer(*only));
      HalfClose();
    } else {
      AddHold();
      absl::MutexLock l(&shared_->mu);
      shared_->body_holder = this;
    }
    StartRead(&in_);
  }

  // A request message, as a JSON object (server thread).
  void Send(const std::string& json) {
    std::unique_ptr<Message> msg(route_->request_prototype->New());
    grpc::Status st = ParseJson(json, msg.get());
    if (!st.ok()) {
      BadRequest(st);
      return;
    }
    Queue(ToBuffer(*msg));
  }

  // A body object that does not parse: before any answer, the call fails
  // with it (grpc-gateway's first decode); later, sending stops.
  void BadRequest(const grpc::Status& st) {
    bool first;
    {
      absl::MutexLock l(&mu_);
      first = !started_ && !sent_any_;
      send_stopped_ = true;
    }
    if (first) {
      resp_.Respond(ErrorResponse(st, cors_));
      shared_->ctx.TryCancel();
    } else if (!route_->keep_open_after_body) {
      HalfClose();
    }
  }

  // The body ended (server thread).
  void BodyEnd() {
    if (!route_->keep_open_after_body) HalfClose();
    ReleaseBody();
  }

  // The body can no longer call in: lets the call end.
  void ReleaseBody() {
    bool release = false;
    {
      absl::MutexLock l(&shared_->mu);
      if (shared_->body_holder == this) {
        shared_->body_holder = nullptr;
        release = true;
      }
    }
    if (release) RemoveHold();
  }

  void OnWriteDone(bool ok) override {
    const grpc::ByteBuffer* next = nullptr;
    bool writes_done = false;
    {
      absl::MutexLock l(&mu_);
      writes_.pop_front();
      if (!ok) {
        writes_.clear();
        send_stopped_ = true;
      }
      if (!writes_.empty()) {
        next = &writes_.front();
      } else {
        writing_ = false;
        writes_done = half_close_ && !writes_done_sent_ && ok;
        if (writes_done) writes_done_sent_ = true;
      }
    }
    if (next != nullptr) StartWrite(next);
    if (writes_done) StartWritesDone();
  }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // OnDone follows
    std::unique_ptr<Message> msg(route_->response_prototype->New());
    if (!FromBuffer(in_, msg.get())) {
      shared_->ctx.TryCancel();
      return;
    }
    bool start = false;
    {
      absl::MutexLock l(&mu_);
      start = !started_;
      started_ = true;
    }
    if (start) resp_.StartStream(200, "application/json", AnswerHeaders(cors_));
    // The next read waits until the client has taken this line.
    AddHold();
    if (!resp_.Write(absl::StrCat("{\"result\":", ToJson(*msg), "}\n"),
                     [this] {
                       StartRead(&in_);
                       RemoveHold();
                     })) {
      RemoveHold();  // the client left; its close cancelled the call
    }
  }

  void OnDone(const grpc::Status& st) override {
    bool started;
    {
      absl::MutexLock l(&mu_);
      started = started_;
    }
    if (!started) {
      if (st.ok()) {
        resp_.StartStream(200, "application/json", AnswerHeaders(cors_));
        resp_.Finish();
      } else {
        resp_.Respond(ErrorResponse(st, cors_));
      }
    } else {
      if (!st.ok()) resp_.Write(StreamErrorLine(st));
      resp_.Finish();
    }
    gw_->End(&shared_->ctx);
    delete this;
  }

 private:
  void Queue(grpc::ByteBuffer buf) {
    const grpc::ByteBuffer* first = nullptr;
    bool overflow = false;
    {
      absl::MutexLock l(&mu_);
      if (send_stopped_ || half_close_) return;
      if (writes_.size() >= kMaxQueuedWrites) {
        overflow = true;
        send_stopped_ = true;
      } else {
        sent_any_ = true;
        writes_.push_back(std::move(buf));
        if (!writing_) {
          writing_ = true;
          first = &writes_.front();
        }
      }
    }
    if (overflow) shared_->ctx.TryCancel();
    if (first != nullptr) StartWrite(first);
  }

  void HalfClose() {
    bool now = false;
    {
      absl::MutexLock l(&mu_);
      if (half_close_) return;
      half_close_ = true;
      if (!writing_ && !send_stopped_) {
        writes_done_sent_ = true;
        now = true;
      }
    }
    if (now) StartWritesDone();
  }

  const std::shared_ptr<JsonGateway::Impl> gw_;
  const Route* const route_;
  common::HttpResponder resp_;
  const std::shared_ptr<Shared> shared_;
  const Headers cors_;  // CORS headers for every answer
  grpc::ByteBuffer in_;

  absl::Mutex mu_;
  std::deque<grpc::ByteBuffer> writes_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool half_close_ ABSL_GUARDED_BY(mu_) = false;
  bool writes_done_sent_ ABSL_GUARDED_BY(mu_) = false;
  bool send_stopped_ ABSL_GUARDED_BY(mu_) = false;
  bool sent_any_ ABSL_GUARDED_BY(mu_) = false;
  bool started_ ABSL_GUARDED_BY(mu_) = false;  // the answer stream began
};

}  // namespace

bool JsonGateway::Impl::Prepare(const common::HttpRequest& req, Message* msg,
                                grpc::ClientContext* ctx, const Headers& cors,
                                common::HttpResponder* resp) {
  grpc::Status st =
      msg == nullptr ? grpc::Status::OK : ParseBody(req.body, msg);
  if (st.ok() && !AddToken(req, ctx)) {
    st = grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                      "invalid authorization header");
  }
  if (st.ok() && !Begin(ctx)) {
    st = grpc::Status(grpc::StatusCode::UNAVAILABLE, "gateway is stopping");
  }
  if (!st.ok()) resp->Respond(ErrorResponse(st, cors));
  return st.ok();
}

void JsonGateway::Impl::Unary(const Route* route,
                              const common::HttpRequest& req,
                              common::HttpResponder resp) {
  auto call = std::make_shared<UnaryCall>();
  std::unique_ptr<Message> msg(route->request_prototype->New());
  Headers cors = CorsFor(req);
  if (!Prepare(req, msg.get(), &call->ctx, cors, &resp)) return;
  call->request = ToBuffer(*msg);
  std::shared_ptr<Impl> self = shared_from_this();
  resp.OnClose([self, call] {
    call->ctx.TryCancel();
    self->Abandon(&call->ctx);
  });
  Admit(&call->ctx, [self, call, route, resp, cors] {
    self->stub.UnaryCall(
        &call->ctx, route->grpc_path, grpc::StubOptions(), &call->request,
        &call->response,
        [self, call, route, resp, cors](grpc::Status status) mutable {
          std::unique_ptr<Message> out(route->response_prototype->New());
          if (status.ok() && !FromBuffer(call->response, out.get())) {
            status = grpc::Status(grpc::StatusCode::INTERNAL, "bad response");
          }
          resp.Respond(status.ok() ? JsonAnswer(ToJson(*out), cors)
                                   : ErrorResponse(status, cors));
          self->End(&call->ctx);
        });
  });
}

void JsonGateway::Impl::ServerStream(const Route* route,
                                     const common::HttpRequest& req,
                                     common::HttpResponder resp) {
  auto shared = std::make_shared<StreamCall::Shared>();
  std::unique_ptr<Message> msg(route->request_prototype->New());
  Headers cors = CorsFor(req);
  if (!Prepare(req, msg.get(), &shared->ctx, cors, &resp)) return;
  std::shared_ptr<Impl> self = shared_from_this();
  resp.OnClose([self, shared] {
    shared->ctx.TryCancel();
    self->Abandon(&shared->ctx);
  });
  auto* call = new StreamCall(self, route, resp, shared, std::move(cors));
  call->Prepare(msg.get());
  Admit(&shared->ctx, [call] { call->StartCall(); });
}

common::HttpBodyReader JsonGateway::Impl::ClientStream(
    const Route* route, const common::HttpRequest& req,
    common::HttpResponder resp) {
  auto shared = std::make_shared<StreamCall::Shared>();
  Headers cors = CorsFor(req);
  if (!Prepare(req, nullptr, &shared->ctx, cors, &resp)) return {};
  std::shared_ptr<Impl> self = shared_from_this();
  auto* call = new StreamCall(self, route, resp, shared, std::move(cors));
  call->Prepare(nullptr);
  // On close: cancel, leave the slot queue, and let go of the call if the
  // body still held it.
  resp.OnClose([self, shared] {
    StreamCall* holder;
    {
      absl::MutexLock l(&shared->mu);
      holder = shared->body_holder;
    }
    shared->ctx.TryCancel();
    self->Abandon(&shared->ctx);
    if (holder != nullptr) holder->ReleaseBody();
  });
  // The body holds the call, so `call` outlives a start made at once.
  Admit(&shared->ctx, [call] { call->StartCall(); });
  // The reader runs on the server thread, before the close, while the body
  // holds the call: `call` is alive for it.
  auto splitter = std::make_shared<JsonSplitter>();
  auto failed = std::make_shared<bool>(false);
  common::HttpBodyReader reader;
  reader.on_data = [call, splitter, failed](absl::string_view data) {
    if (*failed) return;
    std::vector<std::string> objects;
    std::string error;
    bool ok = splitter->Add(data, &objects, &error);
    for (const std::string& o : objects) call->Send(o);
    if (!ok) {
      *failed = true;
      call->BadRequest(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, error));
    }
  };
  reader.on_end = [call] { call->BodyEnd(); };
  return reader;
}

JsonGateway::JsonGateway(std::shared_ptr<grpc::Channel> channel,
                         std::vector<std::string> cors,
                         uint32_t max_concurrent_streams)
    : impl_(std::make_shared<Impl>(std::move(channel), std::move(cors),
                                   max_concurrent_streams)) {
  const auto* pool = google::protobuf::DescriptorPool::generated_pool();
  auto* factory = google::protobuf::MessageFactory::generated_factory();
  // Force the generated files in: their descriptors register on first use.
  (void)etcdserverpb::KV::service_full_name();
  (void)etcdserverpb::RangeRequest::descriptor();
  (void)v3lockpb::LockRequest::descriptor();
  (void)v3electionpb::CampaignRequest::descriptor();
  for (const RouteSpec& spec : kRoutes) {
    const MethodDescriptor* m = pool->FindMethodByName(spec.method);
    if (m == nullptr) {
      SYNOD_LOG(ERROR) << "gateway: no method " << spec.method;
      continue;
    }
    auto route = std::make_unique<Route>();
    route->path = spec.path;
    route->grpc_path =
        absl::StrCat("/", m->service()->full_name(), "/", m->name());
    route->request_prototype = factory->GetPrototype(m->input_type());
    route->response_prototype = factory->GetPrototype(m->output_type());
    route->client_streaming = m->client_streaming();
    route->server_streaming = m->server_streaming();
    route->keep_open_after_body = m->full_name() == "etcdserverpb.Watch.Watch";
    impl_->routes.push_back(std::move(route));
  }
}

JsonGateway::~JsonGateway() { impl_->Shutdown(); }

size_t JsonGateway::WaitingCalls() const {
  absl::MutexLock l(&impl_->mu);
  return impl_->waiting.size();
}

std::unique_ptr<JsonGateway> JsonGateway::ForServer(
    grpc::Server* server, std::vector<std::string> cors,
    uint32_t max_concurrent_streams) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(-1);
  args.SetMaxSendMessageSize(-1);
  return std::make_unique<JsonGateway>(server->InProcessChannel(args),
                                       std::move(cors), max_concurrent_streams);
}

void JsonGateway::Install(common::HttpServer* http) {
  for (const std::unique_ptr<Route>& r : impl_->routes) {
    const Route* route = r.get();
    std::shared_ptr<Impl> impl = impl_;
    for (const char* prefix : {"/v3/", "/v3beta/"}) {
      std::string path = absl::StrCat(prefix, route->path);
      http->HandleAsync(path, "OPTIONS",
                        [impl](const common::HttpRequest& req,
                               common::HttpResponder resp) {
                          common::HttpResponse r;
                          r.status = 200;
                          r.headers = impl->CorsFor(req);
                          resp.Respond(std::move(r));
                        });
      if (route->client_streaming) {
        http->HandleStream(
            path, "POST",
            [impl, route](const common::HttpRequest& req,
                          common::HttpResponder resp) {
              return impl->ClientStream(route, req, std::move(resp));
            });
      } else if (route->server_streaming) {
        http->HandleAsync(path, "POST",
                          [impl, route](const common::HttpRequest& req,
                                        common::HttpResponder resp) {
                            impl->ServerStream(route, req, std::move(resp));
                          });
      } else {
        http->HandleAsync(path, "POST",
                          [impl, route](const common::HttpRequest& req,
                                        common::HttpResponder resp) {
                            impl->Unary(route, req, std::move(resp));
                          });
      }
    }
  }
}

}  // namespace synod::server
