#include "backend/server/config_file.h"

#include <fstream>

#include <yaml-cpp/yaml.h>

#include "absl/flags/reflection.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"

namespace synod::server {

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
  for (const auto& kv : root) {
    const std::string key = kv.first.as<std::string>("");
    const YAML::Node& value = kv.second;
    if (value.IsNull()) continue;
    absl::CommandLineFlag* flag =
        absl::FindCommandLineFlag(absl::StrReplaceAll(key, {{"-", "_"}}));
    if (flag == nullptr || key == "config-file" || !value.IsScalar()) {
      if (skipped != nullptr) skipped->push_back(key);
      continue;
    }
    std::string error;
    if (!flag->ParseFrom(value.Scalar(), &error)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "config file ", path, ": ", key, ": ", value.Scalar(), ": ", error));
    }
  }
  return absl::OkStatus();
}

}  // namespace synod::server
