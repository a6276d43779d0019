// The X.509 half of common/tls.h: etcd's cipher-suite names, auto TLS
// (SelfCert) and the checks etcd adds after a chain is verified (CRL,
// allowed CN, allowed hostname). gRPC credentials are in tls.cc.
#include <arpa/inet.h>
#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <optional>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/tls.h"
#include "common/tls_internal.h"
#include "common/x509_util.h"

namespace synod::common {
namespace {

// ---- Cipher suites ---------------------------------------------------------

struct CipherName {
  const char* go;
  const char* openssl;  // nullptr: a TLS 1.3 suite, fixed as in Go
};

// Every name Go 1.19's tls.CipherSuites() and tls.InsecureCipherSuites()
// know, plus the two CHACHA20 aliases etcd's tlsutil.GetCipherSuite accepts.
constexpr CipherName kCipherNames[] = {
    {"TLS_RSA_WITH_RC4_128_SHA", "RC4-SHA"},
    {"TLS_RSA_WITH_3DES_EDE_CBC_SHA", "DES-CBC3-SHA"},
    {"TLS_RSA_WITH_AES_128_CBC_SHA", "AES128-SHA"},
    {"TLS_RSA_WITH_AES_256_CBC_SHA", "AES256-SHA"},
    {"TLS_RSA_WITH_AES_128_CBC_SHA256", "AES128-SHA256"},
    {"TLS_RSA_WITH_AES_128_GCM_SHA256", "AES128-GCM-SHA256"},
    {"TLS_RSA_WITH_AES_256_GCM_SHA384", "AES256-GCM-SHA384"},
    {"TLS_ECDHE_ECDSA_WITH_RC4_128_SHA", "ECDHE-ECDSA-RC4-SHA"},
    {"TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", "ECDHE-ECDSA-AES128-SHA"},
    {"TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA", "ECDHE-ECDSA-AES256-SHA"},
    {"TLS_ECDHE_RSA_WITH_RC4_128_SHA", "ECDHE-RSA-RC4-SHA"},
    {"TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA", "ECDHE-RSA-DES-CBC3-SHA"},
    {"TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", "ECDHE-RSA-AES128-SHA"},
    {"TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA", "ECDHE-RSA-AES256-SHA"},
    {"TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256", "ECDHE-ECDSA-AES128-SHA256"},
    {"TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256", "ECDHE-RSA-AES128-SHA256"},
    {"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "ECDHE-RSA-AES128-GCM-SHA256"},
    {"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "ECDHE-ECDSA-AES128-GCM-SHA256"},
    {"TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", "ECDHE-RSA-AES256-GCM-SHA384"},
    {"TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", "ECDHE-ECDSA-AES256-GCM-SHA384"},
    {"TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", "ECDHE-RSA-CHACHA20-POLY1305"},
    {"TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
     "ECDHE-ECDSA-CHACHA20-POLY1305"},
    {"TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305", "ECDHE-RSA-CHACHA20-POLY1305"},
    {"TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305", "ECDHE-ECDSA-CHACHA20-POLY1305"},
    {"TLS_AES_128_GCM_SHA256", nullptr},
    {"TLS_AES_256_GCM_SHA384", nullptr},
    {"TLS_CHACHA20_POLY1305_SHA256", nullptr},
};

struct SslCtxFree {
  void operator()(SSL_CTX* ctx) const { SSL_CTX_free(ctx); }
};

std::atomic<bool> credentials_created{false};

struct CipherState {
  absl::Mutex mu;
  std::optional<std::string> list ABSL_GUARDED_BY(mu);
};

CipherState& Ciphers() {
  static CipherState* state = new CipherState;
  return *state;
}

// ---- CRL cache -------------------------------------------------------------

// The serial numbers (SerialHex) a CRL file lists, re-read when the file's
// identity, size or modification time changes.
class CrlCache {
 public:
  absl::StatusOr<std::shared_ptr<const absl::flat_hash_set<std::string>>>
  Revoked(const std::string& path) ABSL_LOCKS_EXCLUDED(mu_) {
    struct stat st;
    if (stat(path.c_str(), &st) != 0) {
      return absl::NotFoundError(
          absl::StrCat("open ", path, ": ", strerror(errno)));
    }
    absl::MutexLock lock(&mu_);
    auto it = entries_.find(path);
    if (it != entries_.end() && SameFile(it->second.stat, st)) {
      return it->second.serials;
    }
    absl::StatusOr<std::string> data = ReadWholeFile(path);
    if (!data.ok()) return data.status();
    absl::StatusOr<X509CrlPtr> crl = ParseCrl(*data);
    if (!crl.ok()) return crl.status();
    auto serials = std::make_shared<absl::flat_hash_set<std::string>>();
    STACK_OF(X509_REVOKED)* revoked = X509_CRL_get_REVOKED(crl->get());
    for (int i = 0; i < sk_X509_REVOKED_num(revoked); ++i) {
      serials->insert(SerialHex(
          X509_REVOKED_get0_serialNumber(sk_X509_REVOKED_value(revoked, i))));
    }
    entries_[path] = Entry{st, serials};
    return serials;
  }

 private:
  struct Entry {
    struct stat stat;
    std::shared_ptr<const absl::flat_hash_set<std::string>> serials;
  };

  static bool SameFile(const struct stat& a, const struct stat& b) {
    return a.st_dev == b.st_dev && a.st_ino == b.st_ino &&
           a.st_size == b.st_size && a.st_mtim.tv_sec == b.st_mtim.tv_sec &&
           a.st_mtim.tv_nsec == b.st_mtim.tv_nsec;
  }

  absl::Mutex mu_;
  absl::flat_hash_map<std::string, Entry> entries_ ABSL_GUARDED_BY(mu_);
};

CrlCache& Crls() {
  static CrlCache* cache = new CrlCache;
  return *cache;
}

// ---- Names -----------------------------------------------------------------

bool IsIpLiteral(const std::string& s) {
  unsigned char buf[sizeof(struct in6_addr)];
  return inet_pton(AF_INET, s.c_str(), buf) == 1 ||
         inet_pton(AF_INET6, s.c_str(), buf) == 1;
}

// "host:port", "[v6]:port", "[v6]", "host" or a bare IPv6 literal => host.
std::string StripPort(absl::string_view host) {
  if (absl::StartsWith(host, "[")) {
    size_t end = host.find(']');
    return std::string(host.substr(1, end == absl::string_view::npos
                                          ? absl::string_view::npos
                                          : end - 1));
  }
  size_t colon = host.find(':');
  if (colon != absl::string_view::npos && host.rfind(':') == colon) {
    return std::string(host.substr(0, colon));
  }
  return std::string(host);
}

// Go 1.19's x509.Certificate.VerifyHostname: an IP literal (brackets
// allowed) against the IP SANs, a name against the DNS SANs (wildcards as a
// whole left-most label only, case-insensitive, a trailing dot ignored),
// never the subject's common name.
bool MatchesHostname(X509* leaf, absl::string_view hostname) {
  std::string host(hostname);
  if (absl::StartsWith(host, "[") && absl::EndsWith(host, "]")) {
    host = host.substr(1, host.size() - 2);
  }
  if (IsIpLiteral(host)) return X509_check_ip_asc(leaf, host.c_str(), 0) == 1;
  if (absl::EndsWith(host, ".")) host.pop_back();
  if (host.empty()) return false;
  return X509_check_host(leaf, host.data(), host.size(),
                         X509_CHECK_FLAG_NEVER_CHECK_SUBJECT |
                             X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS,
                         nullptr) == 1;
}

// ---- Chain verification in Go's words -------------------------------------

struct StoreFree {
  void operator()(X509_STORE* s) const { X509_STORE_free(s); }
};
struct StoreCtxFree {
  void operator()(X509_STORE_CTX* c) const { X509_STORE_CTX_free(c); }
};
// Frees the stack only: its certificates are borrowed.
struct UntrustedFree {
  void operator()(STACK_OF(X509) * s) const { sk_X509_free(s); }
};


absl::Status MakeDirAll(const std::string& dir) {
  for (size_t pos = dir.find('/', 1);; pos = dir.find('/', pos + 1)) {
    std::string prefix = dir.substr(0, pos);
    if (!prefix.empty() && mkdir(prefix.c_str(), 0700) != 0 &&
        errno != EEXIST) {
      return absl::InternalError(absl::StrCat(
          "cannot create cert directory ", prefix, ": ", strerror(errno)));
    }
    if (pos == std::string::npos) break;
  }
  struct stat st;
  if (stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return absl::InternalError(
        absl::StrCat("cannot create cert directory ", dir, ": not a directory"));
  }
  return absl::OkStatus();
}

bool Exists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

}  // namespace

namespace tls_internal {

void NoteCredentialsCreated() { credentials_created.store(true); }

absl::Status VerifyChain(const std::string& ca_file,
                         absl::string_view chain_pem, ChainOwner owner) {
  absl::StatusOr<std::vector<X509Ptr>> chain = ParsePemCertificates(chain_pem);
  if (!chain.ok()) return chain.status();
  absl::StatusOr<std::string> ca_pem = ReadWholeFile(ca_file);
  if (!ca_pem.ok()) return ca_pem.status();
  absl::StatusOr<std::vector<X509Ptr>> cas = ParsePemCertificates(*ca_pem);
  if (!cas.ok()) return cas.status();

  std::unique_ptr<X509_STORE, StoreFree> store(X509_STORE_new());
  std::unique_ptr<STACK_OF(X509), UntrustedFree> untrusted(sk_X509_new_null());
  std::unique_ptr<X509_STORE_CTX, StoreCtxFree> ctx(X509_STORE_CTX_new());
  if (store == nullptr || untrusted == nullptr || ctx == nullptr) {
    return absl::InternalError(
        absl::StrCat("X509 store: ", DrainOpenSslErrors()));
  }
  for (const X509Ptr& ca : *cas) X509_STORE_add_cert(store.get(), ca.get());
  for (size_t i = 1; i < chain->size(); ++i) {
    sk_X509_push(untrusted.get(), (*chain)[i].get());  // borrowed
  }
  X509* leaf = chain->front().get();
  bool client = owner == ChainOwner::kClient;
  if (X509_STORE_CTX_init(ctx.get(), store.get(), leaf, untrusted.get()) != 1 ||
      X509_STORE_CTX_set_purpose(ctx.get(), client ? X509_PURPOSE_SSL_CLIENT
                                                   : X509_PURPOSE_SSL_SERVER) !=
          1) {
    return absl::InternalError(
        absl::StrCat("X509 store: ", DrainOpenSslErrors()));
  }
  int ok = X509_verify_cert(ctx.get());
  int err = X509_STORE_CTX_get_error(ctx.get());
  X509* failed = X509_STORE_CTX_get_current_cert(ctx.get());
  ERR_clear_error();
  if (ok == 1) return absl::OkStatus();
  std::string why = GoVerifyError(err, failed == nullptr ? leaf : failed);
  return absl::PermissionDeniedError(
      client ? absl::StrCat("tls: failed to verify client certificate: ", why)
             : why);
}

std::string LeafFirstChain(absl::string_view leaf_pem,
                           absl::string_view chain_pem) {
  absl::StatusOr<std::vector<X509Ptr>> leaf = ParsePemCertificates(leaf_pem);
  absl::StatusOr<std::vector<X509Ptr>> chain = ParsePemCertificates(chain_pem);
  if (!leaf.ok()) return std::string(chain_pem);
  if (!chain.ok()) return std::string(leaf_pem);
  if (X509_cmp(leaf->front().get(), chain->front().get()) == 0) {
    return std::string(chain_pem);
  }
  std::string out(leaf_pem);
  if (!out.empty() && out.back() != '\n') out.push_back('\n');
  return absl::StrCat(out, chain_pem);
}

}  // namespace tls_internal

absl::StatusOr<std::string> OpenSslCipherList(
    const std::vector<std::string>& go_names) {
  std::unique_ptr<SSL_CTX, SslCtxFree> probe(SSL_CTX_new(TLS_method()));
  if (probe == nullptr) {
    return absl::InternalError(
        absl::StrCat("SSL_CTX_new: ", DrainOpenSslErrors()));
  }
  std::vector<std::string> out;
  for (const std::string& go : go_names) {
    const CipherName* found = std::find_if(
        std::begin(kCipherNames), std::end(kCipherNames),
        [&go](const CipherName& c) { return go == c.go; });
    bool offered = found != std::end(kCipherNames) &&
                   (found->openssl == nullptr ||
                    SSL_CTX_set_cipher_list(probe.get(), found->openssl) == 1);
    ERR_clear_error();
    if (!offered) {
      return absl::InvalidArgumentError(
          absl::StrCat("unexpected TLS cipher suite \"", go, "\""));
    }
    if (found->openssl != nullptr &&
        std::find(out.begin(), out.end(), found->openssl) == out.end()) {
      out.emplace_back(found->openssl);
    }
  }
  return absl::StrJoin(out, ":");
}

absl::Status SetProcessCipherSuites(const std::string& openssl_list) {
  CipherState& state = Ciphers();
  absl::MutexLock lock(&state.mu);
  if (state.list.has_value()) {
    if (*state.list == openssl_list) return absl::OkStatus();
    return absl::FailedPreconditionError(absl::StrCat(
        "TLS cipher suites are already set (to \"", *state.list, "\")"));
  }
  if (credentials_created.load()) {
    return absl::FailedPreconditionError(
        "TLS cipher suites must be set before any TLS credentials are created");
  }
  // Empty (only TLS 1.3 names were given): gRPC keeps its own TLS 1.2 list.
  if (!openssl_list.empty() &&
      setenv("GRPC_SSL_CIPHER_SUITES", openssl_list.c_str(), 1) != 0) {
    return absl::InternalError(
        absl::StrCat("setenv GRPC_SSL_CIPHER_SUITES: ", strerror(errno)));
  }
  state.list = openssl_list;
  return absl::OkStatus();
}

absl::StatusOr<TlsInfo> SelfCert(const std::string& dir,
                                 const std::vector<std::string>& hosts,
                                 int validity_days) {
  if (validity_days < 1 || validity_days > 36500) {
    return absl::InvalidArgumentError(absl::StrCat(
        "self-signed certificate validity must be 1..36500 days, got ",
        validity_days));
  }
  if (absl::Status st = MakeDirAll(dir); !st.ok()) return st;
  TlsInfo info;
  info.cert_file = absl::StrCat(dir, "/cert.pem");
  info.key_file = absl::StrCat(dir, "/key.pem");
  info.self_cert = true;
  info.insecure_skip_verify = true;
  if (Exists(info.cert_file) && Exists(info.key_file)) return info;

  CertificateSpec spec;
  spec.organization = "etcd";
  spec.not_before = absl::Now();
  spec.not_after = spec.not_before + absl::Hours(24) * validity_days;
  std::vector<std::string> names = hosts;
  names.push_back("localhost");
  names.push_back("127.0.0.1");
  for (const std::string& h : names) {
    std::string host = StripPort(h);
    if (host.empty()) continue;
    std::vector<std::string>& list =
        IsIpLiteral(host) ? spec.ip_addresses : spec.dns_names;
    if (std::find(list.begin(), list.end(), host) == list.end()) {
      list.push_back(host);
    }
  }
  absl::StatusOr<EvpPkeyPtr> key = GenerateKey(KeyType::kEcdsaP256);
  if (!key.ok()) return key.status();
  absl::StatusOr<X509Ptr> cert =
      IssueCertificate(spec, key->get(), nullptr, nullptr);
  if (!cert.ok()) return absl::InternalError(cert.status().message());
  absl::StatusOr<std::string> cert_pem = CertificateToPem(cert->get());
  if (!cert_pem.ok()) return cert_pem.status();
  absl::StatusOr<std::string> key_pem = PrivateKeyToPem(key->get());
  if (!key_pem.ok()) return key_pem.status();
  // The key first: a crash between the two leaves no certificate, and the
  // next start makes both again.
  if (absl::Status st = WriteFileAtomically(info.key_file, *key_pem, 0600);
      !st.ok()) {
    return st;
  }
  if (absl::Status st = WriteFileAtomically(info.cert_file, *cert_pem, 0600);
      !st.ok()) {
    return st;
  }
  return info;
}

absl::Status CheckPeerCertificate(const TlsInfo& info,
                                  absl::string_view chain_pem) {
  absl::StatusOr<std::vector<X509Ptr>> chain = ParsePemCertificates(chain_pem);
  if (!chain.ok()) return chain.status();
  X509* leaf = chain->front().get();
  // etcd checks CN or hostname in VerifyPeerCertificate, during the
  // handshake, and the CRL after it.
  if (!info.allowed_cn.empty() && SubjectCommonName(leaf) != info.allowed_cn) {
    return absl::PermissionDeniedError(
        "client certificate authentication failed");
  }
  if (!info.allowed_hostname.empty() &&
      !MatchesHostname(leaf, info.allowed_hostname)) {
    return absl::PermissionDeniedError(
        "client certificate authentication failed");
  }
  if (!info.crl_file.empty()) {
    auto revoked = Crls().Revoked(info.crl_file);
    if (!revoked.ok()) return revoked.status();
    for (const X509Ptr& cert : *chain) {
      std::string serial = SerialHex(X509_get0_serialNumber(cert.get()));
      if ((*revoked)->contains(serial)) {
        return absl::PermissionDeniedError(
            absl::StrCat("transport: certificate serial ", serial, " revoked"));
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace synod::common
