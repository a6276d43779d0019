// --config-file: etcd's YAML configuration file (etcd's embed.Config keys,
// which are its flag names, e.g. `name: m1`, `data-dir: /var/lib/synod`,
// `listen-client-urls: http://127.0.0.1:2379`).
//
// As in etcd, a config file replaces the command line (ResetCommandLineFlags)
// and the ETCD_* variables (main.cc does not read them then): each key that
// names a Synod flag sets that flag, the others keep their defaults. Keys Synod does not have (etcd's TLS sections,
// v2 options, ...) are reported and skipped; null values are skipped. Keys
// etcd reads as Go durations (grpc-keepalive-*, experimental-*-time and
// -interval, backend-batch-interval, ...) take etcd's integer nanoseconds as
// well as "5s"; a list is the flag's comma-separated value.
// Thread-safety: call once from main before reading flags.
#ifndef SYNOD_BACKEND_SERVER_CONFIG_FILE_H_
#define SYNOD_BACKEND_SERVER_CONFIG_FILE_H_

#include <string>
#include <vector>

#include "absl/status/status.h"

namespace synod::server {

// Applies the YAML file at `path` to the registered absl flags. Appends the
// keys that were skipped to `skipped` (may be null).
// Errors: NotFound (cannot read), InvalidArgument (not a YAML mapping, or a
// value a flag rejects, with the key and the flag's message).
absl::Status ApplyConfigFile(const std::string& path,
                             std::vector<std::string>* skipped);

// As etcd, a config file replaces the command line too: sets every flag in
// `names` (the command line's, common::ParseEtcdStyleFlags) back to its
// default, except config_file and Abseil's own, and appends the names of
// those it reset to `reset`. Call before ApplyConfigFile.
void ResetCommandLineFlags(const std::vector<std::string>& names,
                           std::vector<std::string>* reset);

}  // namespace synod::server

#endif  // SYNOD_BACKEND_SERVER_CONFIG_FILE_H_
