#include "tests/support/corrupt_member.h"

#include "backend/storage/backend.h"
#include "backend/storage/schema.h"
#include "proto/kv.pb.h"

namespace synod::testing {

absl::StatusOr<std::string> CorruptNewestValue(const std::string& data_dir) {
  auto backend = storage::Backend::Open(data_dir + "/member/db");
  if (!backend.ok()) return backend.status();
  std::string rev_key, record;
  {
    auto it = (*backend)->NewIterator();
    for (it->Seek(std::string(1, storage::kRevPrefix)); it->Valid();
         it->Next()) {
      int64_t main, sub;
      if (!storage::DecodeRevisionKey(it->key(), &main, &sub)) break;
      if (!it->value().empty() && it->value()[0] == storage::kPut) {
        rev_key = std::string(it->key());
        record = std::string(it->value());
      }
    }
  }
  if (rev_key.empty()) return absl::NotFoundError("no put in the history");
  mvccpb::KeyValue kv;
  if (!kv.ParseFromString(record.substr(1))) {
    return absl::DataLossError("newest revision record does not decode");
  }
  kv.set_value(kv.value() + "<corrupted>");
  std::string rewritten(1, storage::kPut);
  rewritten += kv.SerializeAsString();
  storage::Batch b;
  b.Put(rev_key, rewritten);
  absl::Status st = (*backend)->Write(&b, /*sync=*/true);
  if (!st.ok()) return st;
  return kv.key();
}

}  // namespace synod::testing
