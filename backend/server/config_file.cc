#include "backend/server/config_file.h"

#include <fstream>

#include <yaml-cpp/yaml.h>

#include "absl/flags/reflection.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"

namespace synod::server {
namespace {

// etcd's embed.Config keys of Go type time.Duration: in etcd's YAML (turned
// into JSON) they are integers of nanoseconds.
constexpr absl::string_view kGoDurationKeys[] = {
    "backend-batch-interval",
    "grpc-keepalive-min-time",
    "grpc-keepalive-interval",
    "grpc-keepalive-timeout",
    "experimental-corrupt-check-time",
    "experimental-watch-progress-notify-interval",
    "experimental-warning-apply-duration",
    "experimental-lease-checkpoint-interval",
};

// A bare integer for one of kGoDurationKeys is nanoseconds, as etcd reads
// it; Synod's flags want a unit. Other values are kept ("5s" works too).
std::string FlagText(absl::string_view key, std::string text) {
  absl::string_view number = text;
  absl::ConsumePrefix(&number, "-");
  bool digits = !number.empty();
  for (char c : number) digits = digits && absl::ascii_isdigit(static_cast<unsigned char>(c));
  if (!digits || number == "0") return text;
  for (absl::string_view k : kGoDurationKeys) {
    if (k == key) return text + "ns";
  }
  return text;
}

}  // namespace

void ResetCommandLineFlags(const std::vector<std::string>& names,
                           std::vector<std::string>* reset) {
  for (std::string name : names) {
    absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
    if (flag == nullptr && absl::StartsWith(name, "no")) {  // Abseil's --nofoo
      name = name.substr(2);
      flag = absl::FindCommandLineFlag(name);
    }
    if (flag == nullptr || name == "config_file" ||
        absl::StrContains(flag->Filename(), "absl/flags")) {
      continue;
    }
    std::string error;
    if (flag->ParseFrom(flag->DefaultValue(), &error)) reset->push_back(name);
  }
}

absl::Status ApplyConfigFile(const std::string& path,
                             std::vector<std::string>* skipped) {
  std::ifstream f(path);
  if (!f) return absl::NotFoundError(absl::StrCat("cannot read config file ", path));
  YAML::Node root;
  try {
    root = YAML::Load(f);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("config file ", path, ": ", e.what()));
  }
  if (root.IsNull()) return absl::OkStatus();
  if (!root.IsMap()) {
    return absl::InvalidArgumentError(
        absl::StrCat("config file ", path, ": not a mapping of keys to values"));
  }
  // etcd's securityConfig sections: each key is a flag, prefixed.
  auto transport_key = [](const std::string& section,
                          const std::string& key) -> std::string {
    const std::string prefix = section == "peer-transport-security" ? "peer-" : "";
    if (key == "cert-file" || key == "key-file" || key == "client-cert-auth" ||
        key == "trusted-ca-file" || key == "auto-tls" || key == "crl-file" ||
        key == "allowed-cn" || key == "allowed-hostname") {
      if (key == "crl-file") return prefix.empty() ? "client-crl-file" : "peer-crl-file";
      if (key == "allowed-cn") return prefix.empty() ? "" : "peer-cert-allowed-cn";
      if (key == "allowed-hostname") {
        return prefix.empty() ? "client-cert-allowed-hostname" : "peer-cert-allowed-hostname";
      }
      return prefix + key;
    }
    return "";
  };
  std::vector<std::pair<std::string, YAML::Node>> entries;
  for (const auto& kv : root) {
    const std::string key = kv.first.as<std::string>("");
    if ((key == "client-transport-security" || key == "peer-transport-security") &&
        kv.second.IsMap()) {
      for (const auto& inner : kv.second) {
        const std::string k = inner.first.as<std::string>("");
        std::string flag = transport_key(key, k);
        entries.emplace_back(flag.empty() ? key + "." + k : flag, inner.second);
      }
      continue;
    }
    entries.emplace_back(key, kv.second);
  }
  for (const auto& [key, value] : entries) {
    if (value.IsNull()) continue;
    absl::CommandLineFlag* flag =
        absl::FindCommandLineFlag(absl::StrReplaceAll(key, {{"-", "_"}}));
    // A list (etcd's cipher-suites) is the flag's comma-separated form.
    std::string text;
    bool usable = value.IsScalar();
    if (value.IsScalar()) {
      text = value.Scalar();
    } else if (value.IsSequence()) {
      usable = true;
      for (const auto& item : value) {
        if (!item.IsScalar()) usable = false;
        if (usable) absl::StrAppend(&text, text.empty() ? "" : ",", item.Scalar());
      }
    }
    if (flag == nullptr || key == "config-file" || !usable) {
      if (skipped != nullptr) skipped->push_back(key);
      continue;
    }
    std::string error;
    text = FlagText(key, std::move(text));
    if (!flag->ParseFrom(text, &error)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "config file ", path, ": ", key, ": ", text, ": ", error));
    }
  }
  return absl::OkStatus();
}

}  // namespace synod::server
