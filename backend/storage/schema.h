// The data dir's key schema. PERSISTENT FORMAT: do not change these values;
// bump kFormatVersion and write a migration instead.
//
//   "m/format"            -> kFormatVersion (decimal)
//   "m/applied_index"     -> last applied log index (8 bytes big-endian)
//   "m/compact_rev"       -> compacted revision (8 bytes big-endian)
//   "m/alarms"            -> synodpb.AlarmRecord
//   "m/ids"               -> cluster_id then member_id (2 x 8 bytes BE)
//   "r" + main + sub      -> one revision of one key (16 bytes BE, so byte
//                            order is numeric order): a one-byte kind
//                            (kPut or kTombstone) then a mvccpb.KeyValue
//   "l" + id              -> synodpb.LeaseRecord (8 bytes BE id): granted
//                            TTL and last checkpointed remaining TTL
//   "m/members"           -> synodpb.MemberRecord (server/membership.h)
//   "a/enabled"           -> "1" or "0" (auth/auth_store.h)
//   "a/revision"          -> auth revision (8 bytes big-endian)
//   "a/u/" + name         -> authpb.User (password: the bcrypt hash)
//   "a/r/" + name         -> authpb.Role
//   "R/h", "R/s", "R/c"   -> Raft hard state, snapshot point, conf state
//   "R/e" + index         -> one Raft log entry (storage/raft_log_store.h);
//                            "R..." and "m/ids" are this member's alone and
//                            never travel in a snapshot
//
// Thread-safe: pure functions.
#ifndef SYNOD_BACKEND_STORAGE_SCHEMA_H_
#define SYNOD_BACKEND_STORAGE_SCHEMA_H_

#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"

namespace synod::storage {

inline constexpr int kFormatVersion = 1;
inline constexpr char kMetaFormat[] = "m/format";
inline constexpr char kMetaAppliedIndex[] = "m/applied_index";
inline constexpr char kMetaCompactRev[] = "m/compact_rev";
inline constexpr char kMetaAlarms[] = "m/alarms";
inline constexpr char kMetaIds[] = "m/ids";
inline constexpr char kRevPrefix = 'r';
inline constexpr char kLeasePrefix = 'l';
inline constexpr char kAuthEnabled[] = "a/enabled";
inline constexpr char kAuthRevision[] = "a/revision";
inline constexpr char kAuthUserPrefix[] = "a/u/";
inline constexpr char kAuthRolePrefix[] = "a/r/";

// Kind byte at the head of a revision value. Do not change these values.
enum RevisionKind : char { kPut = 'p', kTombstone = 't' };

// Appends `v` as 8 bytes big-endian.
inline void PutBigEndian64(std::string* dst, uint64_t v) {
  for (int shift = 56; shift >= 0; shift -= 8) {
    dst->push_back(static_cast<char>((v >> shift) & 0xff));
  }
}

// Reads 8 bytes big-endian. REQUIRES: src.size() >= 8.
inline uint64_t GetBigEndian64(absl::string_view src) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) {
    v = (v << 8) | static_cast<unsigned char>(src[i]);
  }
  return v;
}

inline std::string EncodeU64(uint64_t v) {
  std::string s;
  PutBigEndian64(&s, v);
  return s;
}

// "r" + main + sub. Revisions are >= 0, so unsigned big-endian sorts right.
inline std::string RevisionKey(int64_t main, int64_t sub) {
  std::string k(1, kRevPrefix);
  k.reserve(17);
  PutBigEndian64(&k, static_cast<uint64_t>(main));
  PutBigEndian64(&k, static_cast<uint64_t>(sub));
  return k;
}

// Decodes a key made by RevisionKey. Returns false if it is not one.
inline bool DecodeRevisionKey(absl::string_view k, int64_t* main,
                              int64_t* sub) {
  if (k.size() != 17 || k[0] != kRevPrefix) return false;
  *main = static_cast<int64_t>(GetBigEndian64(k.substr(1)));
  *sub = static_cast<int64_t>(GetBigEndian64(k.substr(9)));
  return true;
}

inline std::string LeaseKey(int64_t id) {
  std::string k(1, kLeasePrefix);
  PutBigEndian64(&k, static_cast<uint64_t>(id));
  return k;
}

}  // namespace synod::storage

#endif  // SYNOD_BACKEND_STORAGE_SCHEMA_H_
