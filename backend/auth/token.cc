#include "backend/auth/token.h"

#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "backend/auth/jwt_token.h"
#include "backend/auth/simple_token.h"

namespace synod::auth {

absl::StatusOr<std::unique_ptr<TokenProvider>> NewTokenProvider(
    absl::string_view spec, absl::Duration simple_ttl, common::Clock* clock) {
  // etcd's decomposeOpts: "type,key=value,...", each key once.
  std::vector<absl::string_view> parts = absl::StrSplit(spec, ',');
  const absl::string_view type = parts[0];
  absl::flat_hash_map<std::string, std::string> options;
  for (size_t i = 1; i < parts.size(); ++i) {
    std::vector<absl::string_view> kv = absl::StrSplit(parts[i], '=');
    if (kv.size() != 2) {
      return absl::InvalidArgumentError(
          absl::StrCat("auth: invalid token option \"", parts[i], "\""));
    }
    if (!options.emplace(kv[0], kv[1]).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("auth: duplicate token option \"", kv[0], "\""));
    }
  }
  if (type == "simple" || type.empty()) {
    return std::make_unique<SimpleTokenProvider>(simple_ttl, clock);
  }
  if (type == "jwt") return NewJwtTokenProvider(options, clock);
  return absl::InvalidArgumentError(
      absl::StrCat("auth: unknown token type \"", type, "\""));
}

}  // namespace synod::auth
