// A minimal JSON reader for etcdctl's `-w json` output. Numbers keep their
// source text so that 64-bit IDs (cluster_id, lease IDs) lose no precision.
// Missing members read as null, so `j["header"]["revision"].Int()` is safe.
// Not thread-safe to mutate; immutable after Parse.
#ifndef SYNOD_TESTS_INTEGRATION_JSON_H_
#define SYNOD_TESTS_INTEGRATION_JSON_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace synod::testing {

class Json {
 public:
  enum class Type { kNull, kBool, kNumber, kString, kArray, kObject };

  // Returns nullopt on malformed input or trailing garbage.
  static std::optional<Json> Parse(const std::string& text);

  Type type() const { return type_; }
  bool IsNull() const { return type_ == Type::kNull; }
  bool Has(const std::string& key) const;

  // Accessors return a zero value when the type does not match.
  bool Bool() const { return type_ == Type::kBool && bool_; }
  int64_t Int() const;
  uint64_t Uint() const;
  const std::string& Str() const { return text_; }  // string or number text
  // Base64-decoded string value (etcd encodes keys and values in base64).
  std::string Bytes() const;
  size_t size() const;  // array or object size
  const Json& operator[](size_t i) const;
  const Json& operator[](const std::string& key) const;
  const std::map<std::string, Json>& members() const { return object_; }

 private:
  friend class JsonParser;
  Type type_ = Type::kNull;
  bool bool_ = false;
  std::string text_;
  std::vector<Json> array_;
  std::map<std::string, Json> object_;
};

}  // namespace synod::testing

#endif  // SYNOD_TESTS_INTEGRATION_JSON_H_
