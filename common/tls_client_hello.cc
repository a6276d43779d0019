#include "common/tls_client_hello.h"

#include <cstdint>

namespace synod::common {
namespace {

// A bounds-checked reader over one byte string; any short read sets bad().
class Reader {
 public:
  explicit Reader(absl::string_view s) : s_(s) {}
  uint32_t Uint(int n) {
    uint32_t v = 0;
    if (bad_ || s_.size() < static_cast<size_t>(n)) {
      bad_ = true;
      return 0;
    }
    for (int i = 0; i < n; ++i) v = (v << 8) | static_cast<uint8_t>(s_[i]);
    s_.remove_prefix(n);
    return v;
  }
  absl::string_view Bytes(size_t n) {
    if (bad_ || s_.size() < n) {
      bad_ = true;
      return {};
    }
    absl::string_view out = s_.substr(0, n);
    s_.remove_prefix(n);
    return out;
  }
  // A vector with an n-byte length prefix.
  absl::string_view Vector(int n) { return Bytes(Uint(n)); }
  bool bad() const { return bad_; }
  bool empty() const { return s_.empty(); }

 private:
  absl::string_view s_;
  bool bad_ = false;
};

constexpr uint8_t kHandshakeRecord = 22;
constexpr uint8_t kClientHello = 1;
constexpr uint16_t kAlpnExtension = 16;

ClientHelloRoute RouteByAlpn(absl::string_view protocol_list) {
  Reader list(protocol_list);
  bool h2 = false;
  bool http1 = false;
  while (!list.empty()) {
    absl::string_view name = list.Vector(1);
    if (list.bad()) return ClientHelloRoute::kOther;
    h2 = h2 || name == "h2";
    http1 = http1 || name == "http/1.1";
  }
  return h2 && !http1 ? ClientHelloRoute::kHttp2Only : ClientHelloRoute::kOther;
}

}  // namespace

ClientHelloRoute ClassifyClientHello(absl::string_view bytes) {
  // The record header: type, legacy version (3, x), payload length.
  if (!bytes.empty() && static_cast<uint8_t>(bytes[0]) != kHandshakeRecord) {
    return ClientHelloRoute::kOther;
  }
  if (bytes.size() >= 2 && bytes[1] != 3) return ClientHelloRoute::kOther;
  if (bytes.size() < 5) return ClientHelloRoute::kNeedMore;
  Reader record(bytes);
  record.Uint(3);
  const uint32_t record_len = record.Uint(2);
  if (record_len == 0 || record_len > (1u << 14)) return ClientHelloRoute::kOther;
  if (bytes.size() < 5 + record_len) return ClientHelloRoute::kNeedMore;
  Reader hs(bytes.substr(5, record_len));
  if (hs.Uint(1) != kClientHello) return ClientHelloRoute::kOther;
  const uint32_t hello_len = hs.Uint(3);
  // A ClientHello longer than its first record (fragmented) is routed as
  // "other" rather than waited for: no gRPC client sends one that large.
  absl::string_view body = hs.Bytes(hello_len);
  if (hs.bad()) return ClientHelloRoute::kOther;
  Reader hello(body);
  hello.Bytes(2 + 32);  // legacy_version, random
  hello.Vector(1);      // legacy_session_id
  hello.Vector(2);      // cipher_suites
  hello.Vector(1);      // legacy_compression_methods
  if (hello.bad() || hello.empty()) return ClientHelloRoute::kOther;
  Reader extensions(hello.Vector(2));
  if (hello.bad()) return ClientHelloRoute::kOther;
  while (!extensions.empty()) {
    const uint32_t type = extensions.Uint(2);
    absl::string_view data = extensions.Vector(2);
    if (extensions.bad()) return ClientHelloRoute::kOther;
    if (type == kAlpnExtension) {
      Reader alpn(data);
      absl::string_view list = alpn.Vector(2);
      if (alpn.bad() || !alpn.empty()) return ClientHelloRoute::kOther;
      return RouteByAlpn(list);
    }
  }
  return ClientHelloRoute::kOther;
}

}  // namespace synod::common
