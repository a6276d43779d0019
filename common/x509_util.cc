#include "common/x509_util.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509v3.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace synod::common {
namespace {

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;

BioPtr MemBio(absl::string_view data) {
  return BioPtr(BIO_new_mem_buf(data.data(), static_cast<int>(data.size())));
}

std::string BioContents(BIO* bio) {
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  return std::string(data, n > 0 ? static_cast<size_t>(n) : 0);
}

absl::Status OpenSslError(absl::string_view what) {
  return absl::InternalError(absl::StrCat(what, ": ", DrainOpenSslErrors()));
}

// Adds the extension `nid` = `value` (OpenSSL's config syntax) to `cert`.
absl::Status AddExtension(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  if (ext == nullptr) return OpenSslError(absl::StrCat("extension ", value));
  int ok = X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
  if (ok != 1) return OpenSslError(absl::StrCat("add extension ", value));
  return absl::OkStatus();
}

absl::Status AddSubjectAltNames(X509* cert, const CertificateSpec& spec) {
  if (spec.dns_names.empty() && spec.ip_addresses.empty()) {
    return absl::OkStatus();
  }
  GENERAL_NAMES* names = sk_GENERAL_NAME_new_null();
  if (names == nullptr) return OpenSslError("SAN list");
  absl::Status status = absl::OkStatus();
  for (const std::string& dns : spec.dns_names) {
    ASN1_IA5STRING* ia5 = ASN1_IA5STRING_new();
    GENERAL_NAME* gen = GENERAL_NAME_new();
    if (ia5 == nullptr || gen == nullptr ||
        ASN1_STRING_set(ia5, dns.data(), static_cast<int>(dns.size())) != 1) {
      ASN1_IA5STRING_free(ia5);
      GENERAL_NAME_free(gen);
      status = OpenSslError("DNS SAN");
      break;
    }
    GENERAL_NAME_set0_value(gen, GEN_DNS, ia5);
    sk_GENERAL_NAME_push(names, gen);
  }
  for (const std::string& ip : spec.ip_addresses) {
    if (!status.ok()) break;
    ASN1_OCTET_STRING* octets = a2i_IPADDRESS(ip.c_str());
    if (octets == nullptr) {
      ERR_clear_error();
      status = absl::InvalidArgumentError(
          absl::StrCat("not an IP address: \"", ip, "\""));
      break;
    }
    GENERAL_NAME* gen = GENERAL_NAME_new();
    if (gen == nullptr) {
      ASN1_OCTET_STRING_free(octets);
      status = OpenSslError("IP SAN");
      break;
    }
    GENERAL_NAME_set0_value(gen, GEN_IPADD, octets);
    sk_GENERAL_NAME_push(names, gen);
  }
  if (status.ok() &&
      X509_add1_ext_i2d(cert, NID_subject_alt_name, names, 0, X509V3_ADD_DEFAULT) !=
          1) {
    status = OpenSslError("add SAN");
  }
  GENERAL_NAMES_free(names);
  return status;
}

absl::Status SetRandomSerial(X509* cert) {
  BIGNUM* bn = BN_new();
  bool ok = bn != nullptr &&
            BN_rand(bn, 128, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) == 1 &&
            BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert)) != nullptr;
  BN_free(bn);
  return ok ? absl::OkStatus() : OpenSslError("serial number");
}

absl::Status SetName(X509_NAME* name, const CertificateSpec& spec) {
  auto add = [name](const char* field, const std::string& value) {
    return value.empty() ||
           X509_NAME_add_entry_by_txt(
               name, field, MBSTRING_UTF8,
               reinterpret_cast<const unsigned char*>(value.data()),
               static_cast<int>(value.size()), -1, 0) == 1;
  };
  if (!add("O", spec.organization) || !add("CN", spec.common_name)) {
    return OpenSslError("subject name");
  }
  return absl::OkStatus();
}

}  // namespace

std::string DrainOpenSslErrors() {
  std::vector<std::string> parts;
  char buf[256];
  for (unsigned long e = ERR_get_error(); e != 0; e = ERR_get_error()) {
    ERR_error_string_n(e, buf, sizeof(buf));
    parts.emplace_back(buf);
  }
  if (parts.empty()) return "unknown OpenSSL error";
  return absl::StrJoin(parts, "; ");
}

absl::StatusOr<EvpPkeyPtr> GenerateKey(KeyType type) {
  EVP_PKEY* key = nullptr;
  switch (type) {
    case KeyType::kEcdsaP256:
      key = EVP_EC_gen("P-256");
      break;
    case KeyType::kRsa2048:
      key = EVP_RSA_gen(2048);
      break;
  }
  if (key == nullptr) return OpenSslError("generate key");
  return EvpPkeyPtr(key);
}

absl::StatusOr<X509Ptr> IssueCertificate(const CertificateSpec& spec,
                                         EVP_PKEY* key, X509* issuer,
                                         EVP_PKEY* issuer_key) {
  X509Ptr cert(X509_new());
  if (cert == nullptr) return OpenSslError("X509_new");
  X509* x = cert.get();
  if (X509_set_version(x, X509_VERSION_3) != 1) return OpenSslError("version");
  if (absl::Status st = SetRandomSerial(x); !st.ok()) return st;
  if (ASN1_TIME_set(X509_getm_notBefore(x), absl::ToTimeT(spec.not_before)) ==
          nullptr ||
      ASN1_TIME_set(X509_getm_notAfter(x), absl::ToTimeT(spec.not_after)) ==
          nullptr) {
    return OpenSslError("validity");
  }
  if (absl::Status st = SetName(X509_get_subject_name(x), spec); !st.ok()) {
    return st;
  }
  X509* signer_cert = issuer == nullptr ? x : issuer;
  EVP_PKEY* signer_key = issuer == nullptr ? key : issuer_key;
  if (X509_set_issuer_name(x, X509_get_subject_name(signer_cert)) != 1 ||
      X509_set_pubkey(x, key) != 1) {
    return OpenSslError("issuer or key");
  }
  const char* constraints = spec.is_ca ? "critical,CA:TRUE" : "critical,CA:FALSE";
  const char* usage = spec.is_ca ? "critical,keyCertSign,cRLSign"
                                 : "critical,digitalSignature,keyEncipherment";
  for (auto [nid, value] : {std::pair<int, const char*>{NID_basic_constraints,
                                                        constraints},
                            {NID_key_usage, usage},
                            {NID_subject_key_identifier, "hash"}}) {
    if (absl::Status st = AddExtension(x, signer_cert, nid, value); !st.ok()) {
      return st;
    }
  }
  if (!spec.is_ca) {
    if (absl::Status st =
            AddExtension(x, signer_cert, NID_ext_key_usage, "serverAuth,clientAuth");
        !st.ok()) {
      return st;
    }
  }
  if (issuer != nullptr) {
    if (absl::Status st = AddExtension(x, issuer, NID_authority_key_identifier,
                                       "keyid:always");
        !st.ok()) {
      return st;
    }
  }
  if (absl::Status st = AddSubjectAltNames(x, spec); !st.ok()) return st;
  if (X509_sign(x, signer_key, EVP_sha256()) == 0) return OpenSslError("sign");
  return cert;
}

absl::StatusOr<std::vector<X509Ptr>> ParsePemCertificates(absl::string_view pem) {
  ERR_clear_error();
  BioPtr bio = MemBio(pem);
  std::vector<X509Ptr> certs;
  while (true) {
    X509* x = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr);
    if (x == nullptr) break;
    certs.emplace_back(x);
  }
  // The loop ends on "no start line" at the end of the input; anything else
  // is a block that did not parse.
  unsigned long err = ERR_peek_last_error();
  bool clean_end = err == 0 || (ERR_GET_LIB(err) == ERR_LIB_PEM &&
                                ERR_GET_REASON(err) == PEM_R_NO_START_LINE);
  std::string detail = err == 0 ? "" : DrainOpenSslErrors();
  if (certs.empty()) {
    return absl::InvalidArgumentError(
        "tls: failed to find any PEM data in certificate input");
  }
  if (!clean_end) {
    return absl::InvalidArgumentError(
        absl::StrCat("x509: malformed certificate: ", detail));
  }
  return certs;
}

absl::StatusOr<X509CrlPtr> ParseCrl(absl::string_view pem_or_der) {
  ERR_clear_error();
  X509_CRL* crl = nullptr;
  if (absl::StartsWith(pem_or_der, "-----BEGIN X509 CRL")) {
    BioPtr bio = MemBio(pem_or_der);
    crl = PEM_read_bio_X509_CRL(bio.get(), nullptr, nullptr, nullptr);
  } else {
    const unsigned char* p =
        reinterpret_cast<const unsigned char*>(pem_or_der.data());
    crl = d2i_X509_CRL(nullptr, &p, static_cast<long>(pem_or_der.size()));
  }
  if (crl == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("x509: malformed crl: ", DrainOpenSslErrors()));
  }
  return X509CrlPtr(crl);
}

absl::StatusOr<std::string> CertificateToPem(X509* cert) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (bio == nullptr || PEM_write_bio_X509(bio.get(), cert) != 1) {
    return OpenSslError("certificate PEM");
  }
  return BioContents(bio.get());
}

absl::StatusOr<std::string> PrivateKeyToPem(EVP_PKEY* key) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (bio == nullptr ||
      PEM_write_bio_PrivateKey_traditional(bio.get(), key, nullptr, nullptr, 0,
                                           nullptr, nullptr) != 1) {
    return OpenSslError("private key PEM");
  }
  return BioContents(bio.get());
}

std::string SerialHex(const ASN1_INTEGER* serial) {
  BIGNUM* bn = ASN1_INTEGER_to_BN(serial, nullptr);
  if (bn == nullptr) {
    ERR_clear_error();
    return "";
  }
  std::string bytes(static_cast<size_t>(BN_num_bytes(bn)), '\0');
  BN_bn2bin(bn, reinterpret_cast<unsigned char*>(bytes.data()));
  BN_free(bn);
  return absl::BytesToHexString(bytes);
}

std::string SubjectCommonName(X509* cert) {
  X509_NAME* name = X509_get_subject_name(cert);
  int last = -1;
  for (int i = X509_NAME_get_index_by_NID(name, NID_commonName, -1); i >= 0;
       i = X509_NAME_get_index_by_NID(name, NID_commonName, i)) {
    last = i;
  }
  if (last < 0) return "";
  ASN1_STRING* data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, last));
  unsigned char* utf8 = nullptr;
  int n = ASN1_STRING_to_UTF8(&utf8, data);
  if (n < 0) {
    ERR_clear_error();
    return "";
  }
  std::string cn(reinterpret_cast<char*>(utf8), static_cast<size_t>(n));
  OPENSSL_free(utf8);
  return cn;
}

absl::Status WriteFileAtomically(const std::string& path,
                                 absl::string_view contents, int mode) {
  std::string tmp = absl::StrCat(path, ".tmp.", getpid());
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) {
    return absl::InternalError(absl::StrCat("open ", tmp, ": ", strerror(errno)));
  }
  size_t done = 0;
  while (done < contents.size()) {
    ssize_t n = write(fd, contents.data() + done, contents.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      std::string err = strerror(errno);
      close(fd);
      unlink(tmp.c_str());
      return absl::InternalError(absl::StrCat("write ", tmp, ": ", err));
    }
    done += static_cast<size_t>(n);
  }
  // open() applies the umask; the mode asked for is the mode meant.
  if (fchmod(fd, static_cast<mode_t>(mode)) != 0 || fsync(fd) != 0) {
    std::string err = strerror(errno);
    close(fd);
    unlink(tmp.c_str());
    return absl::InternalError(absl::StrCat("sync ", tmp, ": ", err));
  }
  close(fd);
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    std::string err = strerror(errno);
    unlink(tmp.c_str());
    return absl::InternalError(absl::StrCat("rename ", tmp, " to ", path, ": ", err));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::string err = strerror(errno);
    if (errno == ENOENT) {
      return absl::NotFoundError(absl::StrCat("open ", path, ": ", err));
    }
    return absl::InternalError(absl::StrCat("open ", path, ": ", err));
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

namespace {

// An ASN1_TIME as Go's time.RFC3339 in UTC.
std::string Rfc3339(const ASN1_TIME* t) {
  struct tm tm = {};
  if (t == nullptr || ASN1_TIME_to_tm(t, &tm) != 1) return "?";
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::FromTM(tm, absl::UTCTimeZone()),
                          absl::UTCTimeZone());
}

}  // namespace

std::string GoVerifyError(long err, X509* cert) {
  std::string now =
      absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::Now(), absl::UTCTimeZone());
  if (cert == nullptr &&
      (err == X509_V_ERR_CERT_HAS_EXPIRED || err == X509_V_ERR_CERT_NOT_YET_VALID)) {
    return "x509: certificate has expired or is not yet valid";
  }
  switch (err) {
    case X509_V_ERR_CERT_HAS_EXPIRED:
      return absl::StrCat(
          "x509: certificate has expired or is not yet valid: current time ",
          now, " is after ", Rfc3339(X509_get0_notAfter(cert)));
    case X509_V_ERR_CERT_NOT_YET_VALID:
      return absl::StrCat(
          "x509: certificate has expired or is not yet valid: current time ",
          now, " is before ", Rfc3339(X509_get0_notBefore(cert)));
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_CERT_SIGNATURE_FAILURE:
      return "x509: certificate signed by unknown authority";
    case X509_V_ERR_INVALID_PURPOSE:
      return "x509: certificate specifies an incompatible key usage";
    default:
      return absl::StrCat("x509: ", X509_verify_cert_error_string(err));
  }
}

}  // namespace synod::common
