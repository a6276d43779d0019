#include "tests/support/test_certs.h"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace synod::testing {
namespace {

using common::DrainOpenSslErrors;

absl::Status OpenSslError(absl::string_view what) {
  return absl::InternalError(absl::StrCat(what, ": ", DrainOpenSslErrors()));
}

// Writes a certificate to `cert_file` and its key (mode 0600) to `key_file`.
absl::Status WritePair(const std::string& cert_file, const std::string& key_file,
                       X509* cert, EVP_PKEY* key) {
  absl::StatusOr<std::string> cert_pem = common::CertificateToPem(cert);
  if (!cert_pem.ok()) return cert_pem.status();
  absl::StatusOr<std::string> key_pem = common::PrivateKeyToPem(key);
  if (!key_pem.ok()) return key_pem.status();
  if (absl::Status st = common::WriteFileAtomically(key_file, *key_pem, 0600);
      !st.ok()) {
    return st;
  }
  return common::WriteFileAtomically(cert_file, *cert_pem, 0644);
}

// The CRL's DER or PEM text.
absl::StatusOr<std::string> EncodeCrl(X509_CRL* crl, bool der) {
  if (der) {
    unsigned char* out = nullptr;
    int n = i2d_X509_CRL(crl, &out);
    if (n <= 0) return OpenSslError("CRL DER");
    std::string bytes(reinterpret_cast<char*>(out), static_cast<size_t>(n));
    OPENSSL_free(out);
    return bytes;
  }
  BIO* bio = BIO_new(BIO_s_mem());
  if (bio == nullptr || PEM_write_bio_X509_CRL(bio, crl) != 1) {
    BIO_free(bio);
    return OpenSslError("CRL PEM");
  }
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  std::string text(data, n > 0 ? static_cast<size_t>(n) : 0);
  BIO_free(bio);
  return text;
}

// Adds one revoked entry (serial in SerialHex form, revoked at `when`).
absl::Status AddRevoked(X509_CRL* crl, const std::string& serial_hex,
                        const ASN1_TIME* when) {
  BIGNUM* bn = nullptr;
  if (serial_hex.empty() || BN_hex2bn(&bn, serial_hex.c_str()) !=
                                static_cast<int>(serial_hex.size())) {
    BN_free(bn);
    return absl::InvalidArgumentError(
        absl::StrCat("bad serial \"", serial_hex, "\""));
  }
  ASN1_INTEGER* serial = BN_to_ASN1_INTEGER(bn, nullptr);
  BN_free(bn);
  X509_REVOKED* revoked = X509_REVOKED_new();
  bool ok = serial != nullptr && revoked != nullptr &&
            X509_REVOKED_set_serialNumber(revoked, serial) == 1 &&
            X509_REVOKED_set_revocationDate(revoked,
                                            const_cast<ASN1_TIME*>(when)) == 1 &&
            X509_CRL_add0_revoked(crl, revoked) == 1;
  ASN1_INTEGER_free(serial);
  if (!ok) {
    X509_REVOKED_free(revoked);
    return OpenSslError("CRL entry");
  }
  return absl::OkStatus();
}

}  // namespace

LeafSpec LeafSpec::Named(std::string name, std::string common_name) {
  LeafSpec spec;
  spec.name = std::move(name);
  spec.common_name = std::move(common_name);
  return spec;
}

LeafSpec LeafSpec::Expired(std::string name, std::string common_name) {
  LeafSpec spec = Named(std::move(name), std::move(common_name));
  spec.not_before = -absl::Hours(48);
  spec.not_after = -absl::Hours(24);
  return spec;
}

TestPki::TestPki(std::string dir, std::string ca_name,
                 common::EvpPkeyPtr ca_key, common::X509Ptr ca_cert)
    : dir_(std::move(dir)),
      ca_name_(std::move(ca_name)),
      ca_key_(std::move(ca_key)),
      ca_cert_(std::move(ca_cert)) {}

absl::StatusOr<TestPki> TestPki::Create(std::string dir, std::string ca_name) {
  absl::StatusOr<common::EvpPkeyPtr> key =
      common::GenerateKey(common::KeyType::kEcdsaP256);
  if (!key.ok()) return key.status();
  common::CertificateSpec spec;
  spec.common_name = ca_name;
  spec.organization = "synod-test";
  spec.not_before = absl::Now() - absl::Hours(24 * 3);
  spec.not_after = absl::Now() + absl::Hours(24 * 3650);
  spec.is_ca = true;
  absl::StatusOr<common::X509Ptr> cert =
      common::IssueCertificate(spec, key->get(), nullptr, nullptr);
  if (!cert.ok()) return cert.status();
  TestPki pki(std::move(dir), std::move(ca_name), *std::move(key),
              *std::move(cert));
  if (absl::Status st = WritePair(pki.ca_file(), pki.ca_key_file(),
                                  pki.ca_cert_.get(), pki.ca_key_.get());
      !st.ok()) {
    return st;
  }
  return pki;
}

std::string TestPki::ca_file() const {
  return absl::StrCat(dir_, "/", ca_name_, ".crt");
}

std::string TestPki::ca_key_file() const {
  return absl::StrCat(dir_, "/", ca_name_, ".key");
}

absl::StatusOr<CertPaths> TestPki::Issue(const LeafSpec& spec) {
  if (spec.name.empty()) {
    return absl::InvalidArgumentError("LeafSpec.name is empty");
  }
  absl::StatusOr<common::EvpPkeyPtr> key = common::GenerateKey(spec.key_type);
  if (!key.ok()) return key.status();
  absl::Time now = absl::Now();
  common::CertificateSpec cert_spec;
  cert_spec.common_name = spec.common_name;
  cert_spec.organization = "synod-test";
  cert_spec.dns_names = spec.dns_names;
  cert_spec.ip_addresses = spec.ip_addresses;
  cert_spec.not_before = now + spec.not_before;
  cert_spec.not_after = now + spec.not_after;
  absl::StatusOr<common::X509Ptr> cert = common::IssueCertificate(
      cert_spec, key->get(), ca_cert_.get(), ca_key_.get());
  if (!cert.ok()) return cert.status();
  CertPaths paths;
  paths.cert_file = absl::StrCat(dir_, "/", spec.name, ".crt");
  paths.key_file = absl::StrCat(dir_, "/", spec.name, ".key");
  paths.serial_hex = common::SerialHex(X509_get0_serialNumber(cert->get()));
  if (absl::Status st =
          WritePair(paths.cert_file, paths.key_file, cert->get(), key->get());
      !st.ok()) {
    return st;
  }
  return paths;
}

absl::StatusOr<std::string> TestPki::WriteCrl(
    const std::vector<CertPaths>& revoked, const CrlOptions& options) {
  common::X509CrlPtr crl(X509_CRL_new());
  if (crl == nullptr) return OpenSslError("X509_CRL_new");
  time_t now = absl::ToTimeT(absl::Now());
  time_t last = options.expired ? now - 2 * 86400 : now - 3600;
  time_t next = options.expired ? now - 86400 : now + 86400;
  ASN1_TIME* last_update = ASN1_TIME_set(nullptr, last);
  ASN1_TIME* next_update = ASN1_TIME_set(nullptr, next);
  absl::Status status = absl::OkStatus();
  if (last_update == nullptr || next_update == nullptr ||
      X509_CRL_set_version(crl.get(), 1) != 1 ||  // v2
      X509_CRL_set_issuer_name(crl.get(),
                               X509_get_subject_name(ca_cert_.get())) != 1 ||
      X509_CRL_set1_lastUpdate(crl.get(), last_update) != 1 ||
      X509_CRL_set1_nextUpdate(crl.get(), next_update) != 1) {
    status = OpenSslError("CRL fields");
  }
  for (const CertPaths& cert : revoked) {
    if (!status.ok()) break;
    status = AddRevoked(crl.get(), cert.serial_hex, last_update);
  }
  ASN1_TIME_free(last_update);
  ASN1_TIME_free(next_update);
  if (!status.ok()) return status;
  if (X509_CRL_sort(crl.get()) != 1 ||
      X509_CRL_sign(crl.get(), ca_key_.get(), EVP_sha256()) == 0) {
    return OpenSslError("CRL sign");
  }
  absl::StatusOr<std::string> bytes = EncodeCrl(crl.get(), options.der);
  if (!bytes.ok()) return bytes.status();
  std::string path = absl::StrCat(dir_, "/", options.name);
  if (absl::Status st = common::WriteFileAtomically(path, *bytes, 0644);
      !st.ok()) {
    return st;
  }
  return path;
}

}  // namespace synod::testing
