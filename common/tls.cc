// gRPC credentials from etcd's TLSInfo, and gRPC's log lines in etcd's words.
// The X.509 work (auto TLS, CRL, CN and hostname checks, cipher names) is in
// tls_x509.cc.
#include "common/tls.h"

#include <grpc/support/log.h>
#include <grpc/grpc_security_constants.h>
#include <grpcpp/security/auth_metadata_processor.h>
#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_certificate_verifier.h>
#include <grpcpp/security/tls_credentials_options.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <atomic>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/logging.h"
#include "common/tls_internal.h"
#include "common/x509_util.h"

namespace synod::common {
namespace {

// Checks that `path` holds at least one PEM certificate.
absl::Status CheckCertFile(const std::string& path, absl::string_view flag) {
  auto pem = ReadWholeFile(path);
  if (!pem.ok()) return pem.status();
  if (!ParsePemCertificates(*pem).ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, " ", path, ": tls: failed to find any PEM data in certificate input"));
  }
  return absl::OkStatus();
}

std::string HostOf(absl::string_view target) {
  // "dns:///host:port", "ipv4:1.2.3.4:5", "host:port", "[::1]:5".
  size_t slash = target.rfind('/');
  if (slash != absl::string_view::npos) target.remove_prefix(slash + 1);
  for (absl::string_view p : {"ipv4:", "ipv6:"}) absl::ConsumePrefix(&target, p);
  if (absl::StartsWith(target, "[")) {
    size_t end = target.find(']');
    return std::string(target.substr(1, end == absl::string_view::npos ? target.size() - 1 : end - 1));
  }
  size_t colon = target.rfind(':');
  if (colon != absl::string_view::npos && target.find(':') == colon) target = target.substr(0, colon);
  return std::string(target);
}

// A listener's certificate checks that end the connection: the chain
// against the trusted CA (here rather than in OpenSSL's handshake, so that a
// refusal has Go's words) and the CRL. A dialer's: the server's name, unless
// it skips verification (gRPC verifies the chain against the CA).
class EtcdVerifier final : public grpc::experimental::ExternalCertificateVerifier {
 public:
  EtcdVerifier(TlsInfo info, std::string what, bool dialer)
      : info_(std::move(info)), what_(std::move(what)), dialer_(dialer) {}

  bool Verify(grpc::experimental::TlsCustomVerificationCheckRequest* request,
              std::function<void(grpc::Status)> /*callback*/,
              grpc::Status* sync_status) override {
    const std::string chain = tls_internal::LeafFirstChain(
        absl::string_view(request->peer_cert().data(), request->peer_cert().size()),
        absl::string_view(request->peer_cert_full_chain().data(),
                          request->peer_cert_full_chain().size()));
    absl::Status st = dialer_ ? CheckServer(*request, chain) : CheckClient(chain);
    if (!st.ok()) {
      SYNOD_LOG(WARNING) << (dialer_ ? "rejected server certificate" : "rejected connection")
                         << " on " << what_ << " TLS (error \"" << st.message()
                         << "\", common name \""
                         << std::string(request->common_name().data(),
                                        request->common_name().size())
                         << "\")";
      *sync_status = grpc::Status(grpc::StatusCode::UNAUTHENTICATED, std::string(st.message()));
    } else {
      *sync_status = grpc::Status::OK;
    }
    return true;  // answered synchronously
  }

  void Cancel(grpc::experimental::TlsCustomVerificationCheckRequest*) override {}

 private:
  absl::Status CheckClient(const std::string& chain) const {
    if (!info_.RequiresClientCert()) return absl::OkStatus();  // none asked for
    if (chain.empty()) {
      return absl::PermissionDeniedError("tls: client didn't provide a certificate");
    }
    absl::Status st = tls_internal::VerifyChain(info_.trusted_ca_file, chain,
                                                tls_internal::ChainOwner::kClient);
    if (!st.ok() || info_.crl_file.empty()) return st;
    TlsInfo crl_only;
    crl_only.crl_file = info_.crl_file;
    return CheckPeerCertificate(crl_only, chain);
  }

  absl::Status CheckServer(grpc::experimental::TlsCustomVerificationCheckRequest& request,
                           const std::string& chain) const {
    if (info_.insecure_skip_verify) return absl::OkStatus();
    if (chain.empty()) return absl::PermissionDeniedError("x509: server sent no certificate");
    std::string host = info_.server_name.empty()
                           ? HostOf(std::string(request.target_name().data(),
                                                request.target_name().size()))
                           : info_.server_name;
    TlsInfo name_check;
    name_check.allowed_hostname = host;
    if (!host.empty() && !CheckPeerCertificate(name_check, chain).ok()) {
      return absl::PermissionDeniedError(
          absl::StrCat("x509: certificate is not valid for ", host));
    }
    return absl::OkStatus();
  }

  const TlsInfo info_;
  const std::string what_;
  const bool dialer_;
};

// --peer-cert-allowed-cn / --*-cert-allowed-hostname, checked on every call
// rather than in the handshake: a refused call carries its reason back to
// the dialer (UNAUTHENTICATED "client certificate authentication failed"),
// where a refused handshake would only close the connection, so the
// refused member can log what etcd's does ("remote error: tls: bad
// certificate"). Not blocking: it runs inline on the call's thread.
class AllowedNameProcessor final : public grpc::AuthMetadataProcessor {
 public:
  AllowedNameProcessor(TlsInfo info, std::string what) : what_(std::move(what)) {
    names_.allowed_cn = info.allowed_cn;
    names_.allowed_hostname = info.allowed_hostname;
  }
  bool IsBlocking() const override { return false; }
  grpc::Status Process(const InputMetadata&, grpc::AuthContext* context, OutputMetadata*,
                       OutputMetadata*) override {
    std::vector<grpc::string_ref> pem =
        context->FindPropertyValues(GRPC_X509_PEM_CERT_PROPERTY_NAME);
    absl::Status st = pem.empty()
                          ? absl::PermissionDeniedError("client certificate authentication failed")
                          : CheckPeerCertificate(
                                names_, absl::string_view(pem.front().data(), pem.front().size()));
    if (st.ok()) return grpc::Status::OK;
    std::vector<grpc::string_ref> cn = context->FindPropertyValues("x509_common_name");
    SYNOD_LOG(WARNING) << "rejected connection on " << what_ << " TLS (error \"" << st.message()
                       << "\", common name \""
                       << (cn.empty() ? "" : std::string(cn.front().data(), cn.front().size()))
                       << "\")";
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, std::string(st.message()));
  }

 private:
  TlsInfo names_;
  const std::string what_;
};

// gRPC's handshake errors, as etcd (Go's crypto/tls) words them.
struct Rewrite {
  const char* grpc_text;
  const char* etcd_text;
};
constexpr Rewrite kHandshakeRewrites[] = {
    {"wrong version number", "tls: first record does not look like a TLS handshake"},
    {"http request", "tls: first record does not look like a TLS handshake"},
    {"packet length too long", "tls: first record does not look like a TLS handshake"},
    {"peer did not return a certificate", "tls: client didn't provide a certificate"},
    {"alert bad certificate", "remote error: tls: bad certificate"},
    {"alert certificate required", "remote error: tls: bad certificate"},
    {"alert unknown ca", "remote error: tls: bad certificate"},
    {"alert certificate expired", "remote error: tls: bad certificate"},
    {"alert certificate revoked", "remote error: tls: bad certificate"},
    {"certificate has expired", "x509: certificate has expired or is not yet valid"},
    {"certificate is not yet valid", "x509: certificate has expired or is not yet valid"},
    {"unable to get local issuer certificate", "x509: certificate signed by unknown authority"},
    {"self-signed certificate", "x509: certificate signed by unknown authority"},
    {"self signed certificate", "x509: certificate signed by unknown authority"},
    {"certificate verify failed", "x509: certificate signed by unknown authority"},
};

void GrpcLogToSynod(gpr_log_func_args* args) {
  absl::string_view msg = args->message == nullptr ? "" : args->message;
  if (absl::StrContains(msg, "Handshake failed")) {
    for (const Rewrite& r : kHandshakeRewrites) {
      if (absl::StrContains(msg, r.grpc_text)) {
        SYNOD_LOG(WARNING) << "rejected connection: " << r.etcd_text << " (gRPC: " << msg << ")";
        return;
      }
    }
    SYNOD_LOG(WARNING) << "rejected connection: " << msg;
    return;
  }
  switch (args->severity) {
    case GPR_LOG_SEVERITY_ERROR:
      SYNOD_LOG(ERROR) << "grpc " << args->file << ":" << args->line << ": " << msg;
      break;
    case GPR_LOG_SEVERITY_INFO:
      SYNOD_LOG(INFO) << "grpc " << args->file << ":" << args->line << ": " << msg;
      break;
    default:
      SYNOD_LOG(DEBUG) << "grpc " << args->file << ":" << args->line << ": " << msg;
      break;
  }
}

}  // namespace

std::string TlsInfo::ToString() const {
  return absl::StrCat("cert = ", cert_file, ", key = ", key_file,
                      ", client-cert-auth = ", client_cert_auth ? "true" : "false",
                      ", trusted-ca = ", trusted_ca_file, ", crl-file = ", crl_file);
}

absl::Status ValidateTlsInfo(const TlsInfo& info) {
  if (info.cert_file.empty() != info.key_file.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("KeyFile and CertFile must both be present[key: ", info.key_file,
                     ", cert: ", info.cert_file, "]"));
  }
  if (!info.allowed_cn.empty() && !info.allowed_hostname.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "AllowedCN and AllowedHostname are mutually exclusive (cn=\"", info.allowed_cn,
        "\", hostname=\"", info.allowed_hostname, "\")"));
  }
  if (!info.cert_file.empty()) {
    if (absl::Status st = CheckCertFile(info.cert_file, "cert"); !st.ok()) return st;
    auto key_pem = ReadWholeFile(info.key_file);
    if (!key_pem.ok()) return key_pem.status();
    auto cert_pem = ReadWholeFile(info.cert_file);
    if (!cert_pem.ok()) return cert_pem.status();
    auto certs = ParsePemCertificates(*cert_pem);
    std::unique_ptr<BIO, decltype(&BIO_free)> kb(
        BIO_new_mem_buf(key_pem->data(), static_cast<int>(key_pem->size())), &BIO_free);
    EvpPkeyPtr key(PEM_read_bio_PrivateKey(kb.get(), nullptr, nullptr, nullptr));
    const bool match = key != nullptr && certs.ok() &&
                       X509_check_private_key(certs->front().get(), key.get()) == 1;
    DrainOpenSslErrors();
    if (key == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(
          "key ", info.key_file, ": tls: failed to find any PEM data in key input"));
    }
    if (!match) {
      return absl::InvalidArgumentError(absl::StrCat(
          "cert ", info.cert_file, ", key ", info.key_file,
          ": tls: private key does not match public key"));
    }
  }
  if (!info.trusted_ca_file.empty()) {
    if (absl::Status st = CheckCertFile(info.trusted_ca_file, "trusted-ca"); !st.ok()) return st;
  }
  if (!info.crl_file.empty()) {
    auto crl = ReadWholeFile(info.crl_file);
    if (!crl.ok()) return crl.status();
    if (!ParseCrl(*crl).ok()) {
      return absl::InvalidArgumentError(absl::StrCat("crl-file ", info.crl_file,
                                                     ": not a certificate revocation list"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> NewServerCredentials(
    const TlsInfo& info, absl::string_view what) {
  if (info.Empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cannot listen on TLS for ", what, ": KeyFile and CertFile are not presented"));
  }
  if (absl::Status st = ValidateTlsInfo(info); !st.ok()) return st;
  if (info.client_cert_auth && info.trusted_ca_file.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, " client-cert-auth needs a trusted CA file to verify clients with"));
  }
  tls_internal::NoteCredentialsCreated();
  grpc::experimental::TlsServerCredentialsOptions options(
      std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
          info.key_file, info.cert_file, kCertRefreshSeconds));
  options.watch_identity_key_cert_pairs();
  // The verifier checks the chain against the CA file itself (VerifyChain).
  options.set_cert_request_type(
      info.RequiresClientCert() ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_BUT_DONT_VERIFY
                                : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  options.set_certificate_verifier(
      grpc::experimental::ExternalCertificateVerifier::Create<EtcdVerifier>(
          info, std::string(what), /*dialer=*/false));
  std::shared_ptr<grpc::ServerCredentials> creds =
      grpc::experimental::TlsServerCredentials(options);
  if (creds == nullptr) return absl::InternalError("gRPC refused the TLS server options");
  if (!info.allowed_cn.empty() || !info.allowed_hostname.empty()) {
    creds->SetAuthMetadataProcessor(
        std::make_shared<AllowedNameProcessor>(info, std::string(what)));
  }
  return creds;
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> NewChannelCredentials(
    const TlsInfo& info) {
  if (absl::Status st = ValidateTlsInfo(info); !st.ok()) return st;
  tls_internal::NoteCredentialsCreated();
  std::shared_ptr<grpc::experimental::CertificateProviderInterface> provider;
  if (!info.cert_file.empty() && !info.trusted_ca_file.empty()) {
    provider = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
        info.key_file, info.cert_file, info.trusted_ca_file, kCertRefreshSeconds);
  } else if (!info.cert_file.empty()) {
    provider = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
        info.key_file, info.cert_file, kCertRefreshSeconds);
  } else if (!info.trusted_ca_file.empty()) {
    provider = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
        info.trusted_ca_file, kCertRefreshSeconds);
  }
  grpc::experimental::TlsChannelCredentialsOptions options;
  if (provider != nullptr) options.set_certificate_provider(provider);
  if (!info.cert_file.empty()) options.watch_identity_key_cert_pairs();
  if (!info.trusted_ca_file.empty()) options.watch_root_certs();
  // Host names are checked by the verifier (server_name or the target's host).
  options.set_check_call_host(false);
  options.set_verify_server_certs(!info.insecure_skip_verify);
  options.set_certificate_verifier(
      grpc::experimental::ExternalCertificateVerifier::Create<EtcdVerifier>(
          info, "dial", /*dialer=*/true));
  std::shared_ptr<grpc::ChannelCredentials> creds = grpc::experimental::TlsCredentials(options);
  if (creds == nullptr) return absl::InternalError("gRPC refused the TLS channel options");
  return creds;
}

std::string PeerCommonName(const grpc::ServerContextBase& context) {
  std::shared_ptr<const grpc::AuthContext> auth = context.auth_context();
  if (auth == nullptr) return "";
  std::vector<grpc::string_ref> cn = auth->FindPropertyValues("x509_common_name");
  if (cn.empty()) return "";
  return std::string(cn.front().data(), cn.front().size());
}

bool IsTlsUrl(absl::string_view url) {
  return absl::StartsWith(url, "https://") || absl::StartsWith(url, "unixs://");
}

void InstallGrpcLogBridge() { gpr_set_log_function(&GrpcLogToSynod); }

}  // namespace synod::common
