#include "tests/integration/json.h"

#include <cctype>
#include <cstdlib>
#include <string>

#include "absl/strings/escaping.h"

namespace synod::testing {

namespace {
const Json& NullJson() {
  static const Json* const kNull = new Json();
  return *kNull;
}
}  // namespace

class JsonParser {
 public:
  explicit JsonParser(const std::string& s) : s_(s) {}

  bool ParseValue(Json* out, int depth) {
    if (depth > 64) return false;
    SkipWs();
    if (pos_ >= s_.size()) return false;
    char c = s_[pos_];
    if (c == '{') return ParseObject(out, depth);
    if (c == '[') return ParseArray(out, depth);
    if (c == '"') {
      out->type_ = Json::Type::kString;
      return ParseString(&out->text_);
    }
    if (Consume("true")) {
      out->type_ = Json::Type::kBool;
      out->bool_ = true;
      return true;
    }
    if (Consume("false")) {
      out->type_ = Json::Type::kBool;
      return true;
    }
    if (Consume("null")) return true;
    return ParseNumber(out);
  }

  bool AtEnd() {
    SkipWs();
    return pos_ == s_.size();
  }

 private:
  void SkipWs() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\n' ||
                                s_[pos_] == '\r' || s_[pos_] == '\t')) {
      ++pos_;
    }
  }
  bool Consume(const char* lit) {
    size_t n = std::char_traits<char>::length(lit);
    if (s_.compare(pos_, n, lit) != 0) return false;
    pos_ += n;
    return true;
  }
  bool ParseNumber(Json* out) {
    size_t start = pos_;
    while (pos_ < s_.size() &&
           (isdigit(static_cast<unsigned char>(s_[pos_])) || s_[pos_] == '-' ||
            s_[pos_] == '+' || s_[pos_] == '.' || s_[pos_] == 'e' ||
            s_[pos_] == 'E')) {
      ++pos_;
    }
    if (pos_ == start) return false;
    out->type_ = Json::Type::kNumber;
    out->text_ = s_.substr(start, pos_ - start);
    return true;
  }
  bool ParseString(std::string* out) {
    ++pos_;  // opening quote
    while (pos_ < s_.size()) {
      char c = s_[pos_++];
      if (c == '"') return true;
      if (c != '\\') {
        out->push_back(c);
        continue;
      }
      if (pos_ >= s_.size()) return false;
      char e = s_[pos_++];
      switch (e) {
        case 'n': out->push_back('\n'); break;
        case 't': out->push_back('\t'); break;
        case 'r': out->push_back('\r'); break;
        case 'b': out->push_back('\b'); break;
        case 'f': out->push_back('\f'); break;
        case 'u': {
          if (pos_ + 4 > s_.size()) return false;
          unsigned cp = std::strtoul(s_.substr(pos_, 4).c_str(), nullptr, 16);
          pos_ += 4;
          if (cp < 0x80) {
            out->push_back(static_cast<char>(cp));
          } else if (cp < 0x800) {
            out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
            out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
          } else {
            out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
            out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
            out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
          }
          break;
        }
        default: out->push_back(e); break;
      }
    }
    return false;
  }
  bool ParseArray(Json* out, int depth) {
    out->type_ = Json::Type::kArray;
    ++pos_;
    SkipWs();
    if (pos_ < s_.size() && s_[pos_] == ']') {
      ++pos_;
      return true;
    }
    while (true) {
      Json elem;
      if (!ParseValue(&elem, depth + 1)) return false;
      out->array_.push_back(std::move(elem));
      SkipWs();
      if (pos_ >= s_.size()) return false;
      if (s_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (s_[pos_] == ']') {
        ++pos_;
        return true;
      }
      return false;
    }
  }
  bool ParseObject(Json* out, int depth) {
    out->type_ = Json::Type::kObject;
    ++pos_;
    SkipWs();
    if (pos_ < s_.size() && s_[pos_] == '}') {
      ++pos_;
      return true;
    }
    while (true) {
      SkipWs();
      if (pos_ >= s_.size() || s_[pos_] != '"') return false;
      std::string key;
      if (!ParseString(&key)) return false;
      SkipWs();
      if (pos_ >= s_.size() || s_[pos_] != ':') return false;
      ++pos_;
      Json val;
      if (!ParseValue(&val, depth + 1)) return false;
      out->object_[key] = std::move(val);
      SkipWs();
      if (pos_ >= s_.size()) return false;
      if (s_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (s_[pos_] == '}') {
        ++pos_;
        return true;
      }
      return false;
    }
  }

  const std::string& s_;
  size_t pos_ = 0;
};

std::optional<Json> Json::Parse(const std::string& text) {
  JsonParser p(text);
  Json out;
  if (!p.ParseValue(&out, 0) || !p.AtEnd()) return std::nullopt;
  return out;
}

bool Json::Has(const std::string& key) const {
  return type_ == Type::kObject && object_.count(key) > 0;
}

int64_t Json::Int() const {
  if (type_ != Type::kNumber) return 0;
  return std::strtoll(text_.c_str(), nullptr, 10);
}

uint64_t Json::Uint() const {
  if (type_ != Type::kNumber) return 0;
  return std::strtoull(text_.c_str(), nullptr, 10);
}

std::string Json::Bytes() const {
  std::string out;
  if (type_ != Type::kString || !absl::Base64Unescape(text_, &out)) return "";
  return out;
}

size_t Json::size() const {
  if (type_ == Type::kArray) return array_.size();
  if (type_ == Type::kObject) return object_.size();
  return 0;
}

const Json& Json::operator[](size_t i) const {
  if (type_ != Type::kArray || i >= array_.size()) return NullJson();
  return array_[i];
}

const Json& Json::operator[](const std::string& key) const {
  if (type_ != Type::kObject) return NullJson();
  auto it = object_.find(key);
  return it == object_.end() ? NullJson() : it->second;
}

}  // namespace synod::testing
