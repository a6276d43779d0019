#include "backend/auth/range_perms.h"

#include <algorithm>
#include <cstdint>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"

namespace synod::auth {
namespace {

const std::string kNul("\0", 1);

TEST(KeyRangeSetTest, EmptyCoversNothing) {
  KeyRangeSet s;
  EXPECT_TRUE(s.empty());
  EXPECT_FALSE(s.Covers("a", ""));
  EXPECT_FALSE(s.Covers("a", "b"));
  EXPECT_FALSE(s.Covers("a", kNul));
}

TEST(KeyRangeSetTest, SingleKeyPermission) {
  KeyRangeSet s;
  s.AddPermission("foo", "");
  EXPECT_TRUE(s.Covers("foo", ""));
  EXPECT_FALSE(s.Covers("fo", ""));
  EXPECT_FALSE(s.Covers("foo0", ""));
  EXPECT_FALSE(s.Covers("foo" + kNul, ""));
  // The range [foo, foo\0) is the single key foo too.
  EXPECT_TRUE(s.Covers("foo", "foo" + kNul));
  EXPECT_FALSE(s.Covers("foo", "fop"));
  EXPECT_FALSE(s.Covers("foo", kNul));
}

TEST(KeyRangeSetTest, PrefixPermission) {
  KeyRangeSet s;
  s.AddPermission("foo", "fop");  // the prefix "foo"
  EXPECT_TRUE(s.Covers("foo", ""));
  EXPECT_TRUE(s.Covers("foo/bar", ""));
  EXPECT_TRUE(s.Covers("foo", "fop"));
  EXPECT_TRUE(s.Covers("foo/a", "foo/b"));
  EXPECT_FALSE(s.Covers("fop", ""));
  EXPECT_FALSE(s.Covers("fo", ""));
  EXPECT_FALSE(s.Covers("foo", "fop0"));
  EXPECT_FALSE(s.Covers("fon", "foo/"));
  EXPECT_FALSE(s.Covers("foo", kNul));
}

TEST(KeyRangeSetTest, FromKeyPermission) {
  KeyRangeSet s;
  s.AddPermission("m", kNul);
  EXPECT_TRUE(s.Covers("m", ""));
  EXPECT_TRUE(s.Covers("zzzz", ""));
  EXPECT_TRUE(s.Covers("m", kNul));
  EXPECT_TRUE(s.Covers("q", kNul));
  EXPECT_TRUE(s.Covers("q", "z"));
  EXPECT_FALSE(s.Covers("l", kNul));
  EXPECT_FALSE(s.Covers("l", ""));
}

TEST(KeyRangeSetTest, EveryKeyPermission) {
  KeyRangeSet s;
  s.AddPermission(kNul, kNul);
  EXPECT_TRUE(s.Covers(kNul, ""));
  EXPECT_TRUE(s.Covers("a", ""));
  EXPECT_TRUE(s.Covers(kNul, kNul));
  EXPECT_TRUE(s.Covers("a", "b"));
  // The empty key is +infinity to etcd's comparator: never covered.
  EXPECT_FALSE(s.Covers("", ""));
  EXPECT_FALSE(s.Covers("", kNul));
}

TEST(KeyRangeSetTest, EmptyKeyPermissionGrantsNothing) {
  KeyRangeSet s;
  s.AddPermission("", kNul);
  s.AddPermission("", "");
  s.AddPermission("", "z");
  EXPECT_TRUE(s.empty());
}

TEST(KeyRangeSetTest, InvertedOrEmptyPermissionGrantsNothing) {
  KeyRangeSet s;
  s.AddPermission("b", "a");
  s.AddPermission("b", "b");
  EXPECT_TRUE(s.empty());
  EXPECT_FALSE(s.Covers("a", ""));
  EXPECT_FALSE(s.Covers("b", ""));
}

TEST(KeyRangeSetTest, AdjacentRangesCoverTheirUnion) {
  KeyRangeSet s;
  s.AddPermission("a", "c");
  s.AddPermission("c", "e");
  EXPECT_EQ(s.size(), 1u);
  EXPECT_TRUE(s.Covers("a", "e"));
  EXPECT_TRUE(s.Covers("b", "d"));
  EXPECT_FALSE(s.Covers("a", "e0"));
}

TEST(KeyRangeSetTest, GapIsNotCovered) {
  KeyRangeSet s;
  s.AddPermission("a", "c");
  s.AddPermission("d", "f");
  EXPECT_EQ(s.size(), 2u);
  EXPECT_TRUE(s.Covers("a", "c"));
  EXPECT_TRUE(s.Covers("d", "f"));
  EXPECT_FALSE(s.Covers("a", "f"));
  EXPECT_FALSE(s.Covers("c", ""));
  EXPECT_FALSE(s.Covers("b", "d"));
  // Filling the gap joins them.
  s.AddPermission("c", "d");
  EXPECT_EQ(s.size(), 1u);
  EXPECT_TRUE(s.Covers("a", "f"));
}

TEST(KeyRangeSetTest, SingleKeysNextToEachOtherJoin) {
  KeyRangeSet s;
  s.AddPermission("a", "");
  s.AddPermission("a" + kNul, "");
  EXPECT_EQ(s.size(), 1u);
  EXPECT_TRUE(s.Covers("a", "a" + kNul + kNul));
  EXPECT_FALSE(s.Covers("a", "a" + kNul + "x"));
}

TEST(KeyRangeSetTest, MergeSwallowsContainedAndOverlapping) {
  KeyRangeSet s;
  s.AddPermission("b", "c");
  s.AddPermission("d", "e");
  s.AddPermission("g", "h");
  s.AddPermission("a", "f");  // swallows [b,c) and [d,e), not [g,h)
  EXPECT_EQ(s.size(), 2u);
  EXPECT_TRUE(s.Covers("a", "f"));
  s.AddPermission("e", kNul);  // joins everything up to +infinity
  EXPECT_EQ(s.size(), 1u);
  EXPECT_TRUE(s.Covers("a", kNul));
  s.AddPermission("x", "y");  // inside: no change
  EXPECT_EQ(s.size(), 1u);
}

// etcd's tree passes an inverted request (no key selected) only when one
// granted range spans from below range_end to above key.
TEST(KeyRangeSetTest, InvertedRequest) {
  KeyRangeSet s;
  s.AddPermission("a", "m");
  EXPECT_TRUE(s.Covers("f", "c"));
  EXPECT_TRUE(s.Covers("f", "f"));
  EXPECT_FALSE(s.Covers("a", "a"));  // nothing begins below "a"
  EXPECT_FALSE(s.Covers("z", "c"));  // the range ends before "z"
  EXPECT_FALSE(s.Covers("m", "m"));
}

// A literal model of etcd 3.4's adt interval tree over affine byte strings
// ("" = +infinity): Intersects for a point, Contains for a range.
class EtcdModel {
 public:
  void AddPermission(const std::string& key, const std::string& range_end) {
    ivs_.push_back(ToInterval(key, range_end));
  }
  bool Covers(const std::string& key, const std::string& range_end) const {
    auto q = ToInterval(key, range_end);
    std::vector<std::pair<std::string, std::string>> hit;
    for (const auto& iv : ivs_) {
      if (Less(q.first, iv.second) && Less(iv.first, q.second)) {
        hit.push_back(iv);
      }
    }
    if (range_end.empty()) return !hit.empty();  // Intersects
    std::sort(hit.begin(), hit.end(), [](const auto& x, const auto& y) {
      return Less(x.first, y.first);
    });
    if (hit.empty()) return false;
    std::string min_begin = hit[0].first, max_end = hit[0].second;
    for (size_t i = 1; i < hit.size(); ++i) {
      if (Less(max_end, hit[i].first)) return false;
      if (Less(max_end, hit[i].second)) max_end = hit[i].second;
    }
    return !Less(max_end, q.second) && !Less(q.first, min_begin);
  }

 private:
  static bool Less(const std::string& a, const std::string& b) {
    if (a.empty()) return false;
    if (b.empty()) return true;
    return a < b;
  }
  static std::pair<std::string, std::string> ToInterval(
      const std::string& key, const std::string& range_end) {
    if (range_end.empty()) return {key, key + kNul};
    if (range_end == kNul) return {key, ""};
    return {key, range_end};
  }
  std::vector<std::pair<std::string, std::string>> ivs_;
};

std::string RandomKey(std::mt19937_64& rng) {
  static const char kAlphabet[] = {'\0', 'a', 'b', 'c'};
  std::string k;
  const int len = 1 + static_cast<int>(rng() % 3);
  for (int i = 0; i < len; ++i) k.push_back(kAlphabet[rng() % 4]);
  return k;
}

// A wire-form range with key < range_end (or range_end "" / "\0").
std::pair<std::string, std::string> RandomRange(std::mt19937_64& rng) {
  std::string key = RandomKey(rng);
  switch (rng() % 4) {
    case 0:
      return {key, ""};
    case 1:
      return {key, kNul};
    default: {
      std::string end = RandomKey(rng);
      if (end <= key) end = key + kNul + RandomKey(rng);
      return {key, end};
    }
  }
}

TEST(KeyRangeSetTest, MatchesEtcdIntervalTreeOnRandomSets) {
  const uint64_t seed = std::random_device{}();
  SCOPED_TRACE(testing::Message() << "seed " << seed);
  std::mt19937_64 rng(seed);
  for (int round = 0; round < 300; ++round) {
    KeyRangeSet set;
    EtcdModel model;
    const int n = static_cast<int>(rng() % 8);
    for (int i = 0; i < n; ++i) {
      auto [k, e] = RandomRange(rng);
      set.AddPermission(k, e);
      model.AddPermission(k, e);
    }
    for (int q = 0; q < 50; ++q) {
      auto [k, e] = RandomRange(rng);
      ASSERT_EQ(set.Covers(k, e), model.Covers(k, e))
          << "round " << round << " key " << testing::PrintToString(k)
          << " range_end " << testing::PrintToString(e);
    }
  }
}

}  // namespace
}  // namespace synod::auth
