#include "backend/storage/schema.h"

#include <cstdint>
#include <iostream>
#include <limits>
#include <random>
#include <string>

#include "gtest/gtest.h"

namespace synod::storage {
namespace {

TEST(SchemaTest, RevisionKeyIsPrefixThenSixteenBigEndianBytes) {
  const std::string k = RevisionKey(0x0102030405060708, 0x1112131415161718);
  ASSERT_EQ(k.size(), 17u);
  EXPECT_EQ(k[0], kRevPrefix);
  EXPECT_EQ(k.substr(1), std::string("\x01\x02\x03\x04\x05\x06\x07\x08"
                                     "\x11\x12\x13\x14\x15\x16\x17\x18",
                                     16));
}

TEST(SchemaTest, RevisionKeyRoundTrips) {
  const int64_t kMax = std::numeric_limits<int64_t>::max();
  const std::pair<int64_t, int64_t> cases[] = {
      {0, 0}, {1, 0}, {1, 1}, {255, 256}, {1 << 20, 7}, {kMax, kMax}};
  for (const auto& [main, sub] : cases) {
    int64_t m = -1, s = -1;
    ASSERT_TRUE(DecodeRevisionKey(RevisionKey(main, sub), &m, &s))
        << main << "." << sub;
    EXPECT_EQ(m, main);
    EXPECT_EQ(s, sub);
  }
}

TEST(SchemaTest, DecodeRejectsNonRevisionKeys) {
  int64_t m = 0, s = 0;
  EXPECT_FALSE(DecodeRevisionKey("", &m, &s));
  EXPECT_FALSE(DecodeRevisionKey(kMetaCompactRev, &m, &s));
  EXPECT_FALSE(DecodeRevisionKey(LeaseKey(5), &m, &s));
  std::string wrong_prefix = RevisionKey(3, 4);
  wrong_prefix[0] = kLeasePrefix;
  EXPECT_FALSE(DecodeRevisionKey(wrong_prefix, &m, &s));
  std::string too_long = RevisionKey(3, 4) + "x";
  EXPECT_FALSE(DecodeRevisionKey(too_long, &m, &s));
  EXPECT_FALSE(DecodeRevisionKey(RevisionKey(3, 4).substr(0, 16), &m, &s));
}

TEST(SchemaTest, RevisionKeyByteOrderIsNumericOrder) {
  const uint32_t seed = std::random_device{}();
  std::cout << "SchemaTest seed: " << seed << "\n";
  SCOPED_TRACE(testing::Message() << "seed " << seed);
  std::mt19937_64 rng(seed);
  // Mix small values (many equal mains, exercising the sub bytes) with
  // values spanning every byte position.
  auto draw = [&rng]() -> int64_t {
    switch (rng() % 3) {
      case 0:
        return static_cast<int64_t>(rng() % 4);
      case 1:
        return static_cast<int64_t>(rng() % 70000);
      default:
        return static_cast<int64_t>(rng() >> 1);  // >= 0
    }
  };
  for (int i = 0; i < 20000; ++i) {
    const int64_t am = draw(), as = draw(), bm = draw(), bs = draw();
    const bool numeric_less = am != bm ? am < bm : as < bs;
    const bool numeric_equal = am == bm && as == bs;
    const std::string a = RevisionKey(am, as), b = RevisionKey(bm, bs);
    ASSERT_EQ(a < b, numeric_less)
        << am << "." << as << " vs " << bm << "." << bs;
    ASSERT_EQ(a == b, numeric_equal)
        << am << "." << as << " vs " << bm << "." << bs;
  }
}

TEST(SchemaTest, BigEndianHelpersRoundTrip) {
  const uint64_t v = 0xfedcba9876543210ull;
  const std::string s = EncodeU64(v);
  ASSERT_EQ(s.size(), 8u);
  EXPECT_EQ(static_cast<unsigned char>(s[0]), 0xfe);
  EXPECT_EQ(static_cast<unsigned char>(s[7]), 0x10);
  EXPECT_EQ(GetBigEndian64(s), v);
  std::string appended = "ab";
  PutBigEndian64(&appended, 1);
  EXPECT_EQ(appended, std::string("ab\0\0\0\0\0\0\0\x01", 10));
}

TEST(SchemaTest, LeaseKeyIsPrefixThenBigEndianId) {
  const std::string k = LeaseKey(0x0a0b);
  ASSERT_EQ(k.size(), 9u);
  EXPECT_EQ(k[0], kLeasePrefix);
  EXPECT_EQ(GetBigEndian64(absl::string_view(k).substr(1)), 0x0a0bu);
  EXPECT_LT(LeaseKey(255), LeaseKey(256));
  EXPECT_NE(LeaseKey(1), LeaseKey(2));
}

TEST(SchemaTest, KeySpacesDoNotOverlap) {
  // Meta keys sort outside both the lease and the revision key spaces.
  const std::string lo_rev = RevisionKey(0, 0);
  const std::string lo_lease = LeaseKey(0);
  for (const char* meta : {kMetaFormat, kMetaAppliedIndex, kMetaCompactRev,
                           kMetaAlarms, kMetaIds}) {
    EXPECT_NE(meta[0], kRevPrefix) << meta;
    EXPECT_NE(meta[0], kLeasePrefix) << meta;
  }
  EXPECT_NE(lo_rev[0], lo_lease[0]);
}

}  // namespace
}  // namespace synod::storage
