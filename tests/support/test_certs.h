// A certificate authority for tests, made at run time with OpenSSL's API (no
// shell-outs, no checked-in keys): a CA certificate and key, leaf
// certificates it signs (any CN, SANs and validity, expired ones included)
// and CRLs listing chosen leaves. Two TestPki in one directory are two
// unrelated CAs ("a peer signed by another CA").
//
//   auto pki = TestPki::Create(dir);                 // dir/ca.crt, dir/ca.key
//   auto server = pki->Issue(LeafSpec::Named("server"));  // dir/server.crt
//                                                         // and server.key
//   auto crl = pki->WriteCrl({*server});             // dir/revoke.crl
//
// Files are PEM (keys in their traditional form, as etcd's fixtures are)
// and written whole (temporary file and rename), so a process watching them
// never reads half a file. Every certificate gets a random 128-bit serial,
// so CRLs from unrelated CAs never list each other's leaves by accident.
//
// Thread safety: a TestPki is not thread-safe; use it from one thread.
// Ownership: it holds the CA's key; the files it writes belong to the
// caller's directory and outlive it.
#ifndef SYNOD_TESTS_SUPPORT_TEST_CERTS_H_
#define SYNOD_TESTS_SUPPORT_TEST_CERTS_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/x509_util.h"

namespace synod::testing {

// A leaf certificate to issue. Validity is relative to the time of Issue().
struct LeafSpec {
  std::string name;         // files <dir>/<name>.crt and <dir>/<name>.key
  std::string common_name;  // subject CN; empty: none
  std::vector<std::string> dns_names = {"localhost"};
  std::vector<std::string> ip_addresses = {"127.0.0.1"};
  absl::Duration not_before = -absl::Hours(1);
  absl::Duration not_after = absl::Hours(24 * 365);
  common::KeyType key_type = common::KeyType::kEcdsaP256;

  // The defaults, with a name and a CN.
  static LeafSpec Named(std::string name, std::string common_name = "");
  // A spec whose certificate expired a day ago (valid from 2 days ago).
  static LeafSpec Expired(std::string name, std::string common_name = "");
};

// Where an issued certificate is, and its serial as etcd prints it.
struct CertPaths {
  std::string cert_file;
  std::string key_file;
  std::string serial_hex;  // lower-case big-endian bytes, etcd's "%x"
};

// How a CRL is written.
struct CrlOptions {
  std::string name = "revoke.crl";  // file <dir>/<name>
  bool der = false;                 // DER rather than PEM
  // nextUpdate a day in the past (etcd does not enforce it).
  bool expired = false;
};

class TestPki {
 public:
  // Makes a CA named `ca_name` (its subject CN) and writes
  // <dir>/<ca_name>.crt and <dir>/<ca_name>.key. `dir` must exist.
  // Errors: Internal for an OpenSSL or file failure.
  static absl::StatusOr<TestPki> Create(std::string dir,
                                        std::string ca_name = "ca");

  TestPki(TestPki&&) = default;
  TestPki& operator=(TestPki&&) = default;

  const std::string& dir() const { return dir_; }
  // The CA certificate: the trusted-CA file for whoever verifies its leaves.
  std::string ca_file() const;
  std::string ca_key_file() const;

  // Issues a leaf (serverAuth and clientAuth) signed by this CA and writes
  // it, replacing files of the same name. Errors: InvalidArgument for an
  // empty name or a bad IP address, Internal for an OpenSSL or file failure.
  absl::StatusOr<CertPaths> Issue(const LeafSpec& spec);

  // Writes a CRL signed by this CA listing `revoked`; returns its path.
  // Errors: InvalidArgument for a bad serial, Internal otherwise.
  absl::StatusOr<std::string> WriteCrl(const std::vector<CertPaths>& revoked,
                                       const CrlOptions& options = {});

 private:
  TestPki(std::string dir, std::string ca_name, common::EvpPkeyPtr ca_key,
          common::X509Ptr ca_cert);

  std::string dir_;
  std::string ca_name_;
  common::EvpPkeyPtr ca_key_;
  common::X509Ptr ca_cert_;
};

}  // namespace synod::testing

#endif  // SYNOD_TESTS_SUPPORT_TEST_CERTS_H_
