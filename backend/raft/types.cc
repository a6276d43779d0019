// The ConfChange codec and the small helpers declared in types.h.
#include "backend/raft/types.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace synod::raft {

namespace {

constexpr uint8_t kConfChangeVersion = 1;
// version + type + node id + context length.
constexpr size_t kConfChangeHeader = 1 + 1 + 8 + 4;

void PutLE(std::string* out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) {
    out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  }
}

uint64_t GetLE(std::string_view in, size_t pos, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) {
    v |= static_cast<uint64_t>(static_cast<uint8_t>(in[pos + i])) << (8 * i);
  }
  return v;
}

absl::Status Malformed(const std::string& why) {
  return absl::InvalidArgumentError(
      absl::StrCat("raft: malformed conf change: ", why));
}

}  // namespace

std::string EncodeConfChange(const ConfChange& cc) {
  std::string out;
  out.reserve(kConfChangeHeader + cc.context.size());
  out.push_back(static_cast<char>(kConfChangeVersion));
  out.push_back(static_cast<char>(cc.type));
  PutLE(&out, cc.node_id, 8);
  PutLE(&out, cc.context.size(), 4);
  out.append(cc.context);
  return out;
}

absl::StatusOr<ConfChange> DecodeConfChange(std::string_view data) {
  if (data.size() < kConfChangeHeader) return Malformed("too short");
  if (static_cast<uint8_t>(data[0]) != kConfChangeVersion) {
    return Malformed(
        absl::StrCat("unknown version ", static_cast<uint8_t>(data[0])));
  }
  uint8_t type = static_cast<uint8_t>(data[1]);
  if (type > static_cast<uint8_t>(ConfChangeType::kAddLearnerNode)) {
    return Malformed(absl::StrCat("unknown type ", type));
  }
  uint64_t len = GetLE(data, 10, 4);
  if (len != data.size() - kConfChangeHeader) {
    return Malformed("context length does not match the data");
  }
  ConfChange cc;
  cc.type = static_cast<ConfChangeType>(type);
  cc.node_id = GetLE(data, 2, 8);
  cc.context = std::string(data.substr(kConfChangeHeader));
  return cc;
}

const char* ConfChangeTypeName(ConfChangeType t) {
  switch (t) {
    case ConfChangeType::kAddNode:
      return "ConfChangeAddNode";
    case ConfChangeType::kRemoveNode:
      return "ConfChangeRemoveNode";
    case ConfChangeType::kUpdateNode:
      return "ConfChangeUpdateNode";
    case ConfChangeType::kAddLearnerNode:
      return "ConfChangeAddLearnerNode";
  }
  return "ConfChangeUnknown";
}

bool IsLocalMessage(MessageType t) {
  return t == MessageType::kHup || t == MessageType::kSnapStatus ||
         t == MessageType::kUnreachable;
}

}  // namespace synod::raft
