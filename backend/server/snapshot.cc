#include "backend/server/snapshot.h"

#include <openssl/evp.h>
#include <openssl/sha.h>

#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "backend/storage/schema.h"

namespace synod::server {
namespace {

constexpr char kMagic[] = "SYNODSNAP2\n";
constexpr size_t kChunkBytes = 64 << 10;
constexpr size_t kAlign = 512;


}  // namespace

void PutVarint32(std::string* dst, uint32_t v) {
  while (v >= 0x80) {
    dst->push_back(static_cast<char>(v | 0x80));
    v >>= 7;
  }
  dst->push_back(static_cast<char>(v));
}

bool GetVarint32(absl::string_view* in, uint32_t* v) {
  uint32_t result = 0;
  for (int shift = 0; shift <= 28 && !in->empty(); shift += 7) {
    uint32_t byte = static_cast<unsigned char>((*in)[0]);
    in->remove_prefix(1);
    result |= (byte & 0x7f) << shift;
    if ((byte & 0x80) == 0) {
      *v = result;
      return true;
    }
  }
  return false;
}

// SHA-256 through OpenSSL's EVP interface (SHA256_Init and friends are
// deprecated since OpenSSL 3.0).
struct SnapshotWriter::Sha {
  Sha() : ctx(EVP_MD_CTX_new()) { EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr); }
  ~Sha() { EVP_MD_CTX_free(ctx); }
  Sha(const Sha&) = delete;
  Sha& operator=(const Sha&) = delete;
  EVP_MD_CTX* ctx;
};

SnapshotWriter::SnapshotWriter(storage::Backend* backend)
    : it_(backend->NewIterator()), sha_(std::make_shared<Sha>()) {}

absl::Status SnapshotWriter::Next(std::string* chunk, bool* last) {
  chunk->clear();
  *last = false;
  if (done_) {
    *last = true;
    return absl::OkStatus();
  }
  if (!started_) {
    started_ = true;
    chunk->append(kMagic);
    it_->Seek("");
  }
  while (it_->Valid() && chunk->size() < kChunkBytes) {
    if (it_->key().empty()) {
      it_->Next();  // never written by Synod; the end marker is length 0
      continue;
    }
    PutVarint32(chunk, static_cast<uint32_t>(it_->key().size()));
    chunk->append(it_->key().data(), it_->key().size());
    PutVarint32(chunk, static_cast<uint32_t>(it_->value().size()));
    chunk->append(it_->value().data(), it_->value().size());
    it_->Next();
  }
  if (!it_->status().ok()) return it_->status();
  if (!it_->Valid()) {
    chunk->push_back('\0');
    const size_t used = (written_ + chunk->size() + 2) % kAlign;
    const size_t pad = used == 0 ? 0 : kAlign - used;
    chunk->append(pad, '\0');
    chunk->push_back(static_cast<char>((pad >> 8) & 0xff));
    chunk->push_back(static_cast<char>(pad & 0xff));
    done_ = true;
    *last = true;
  }
  EVP_DigestUpdate(sha_->ctx, chunk->data(), chunk->size());
  written_ += chunk->size();
  if (done_) {
    unsigned char digest[SHA256_DIGEST_LENGTH];
    EVP_DigestFinal_ex(sha_->ctx, digest, nullptr);
    chunk->append(reinterpret_cast<const char*>(digest), sizeof(digest));
  }
  return absl::OkStatus();
}

namespace {

// What a restored member keeps of the snapshot: the keyspace (every revision,
// the compacted revision), the leases, and the auth state (users, roles,
// enabled flag and auth revision, as etcd's restore keeps its auth bucket).
// It drops the old member's identity,
// its cluster's membership, its Raft log and applied index, and its alarms,
// so that it starts a new cluster from its own flags, as `etcdctl snapshot
// restore` does (etcd rewrites the membership and resets the Raft log).
bool KeepOnRestore(absl::string_view key) {
  if (key.empty()) return false;
  if (key[0] == storage::kRevPrefix || key[0] == storage::kLeasePrefix) return true;
  if (absl::StartsWith(key, "a/")) return true;  // schema.h's kAuth* keys
  return key == storage::kMetaFormat || key == storage::kMetaCompactRev;
}

}  // namespace

absl::Status RestoreSnapshot(const std::string& path, storage::Backend* backend) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return absl::NotFoundError(absl::StrCat("cannot read snapshot file ", path));
  std::stringstream ss;
  ss << f.rdbuf();
  const std::string data = ss.str();
  auto corrupt = [&](absl::string_view why) {
    return absl::DataLossError(
        absl::StrCat("snapshot file ", path, " is corrupt: ", why));
  };
  const size_t magic = sizeof(kMagic) - 1;
  if (data.size() < magic + 3 + SHA256_DIGEST_LENGTH ||
      data.compare(0, magic, kMagic) != 0) {
    return corrupt("bad header");
  }
  const size_t body_end = data.size() - SHA256_DIGEST_LENGTH;
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), body_end, digest);
  if (data.compare(body_end, SHA256_DIGEST_LENGTH,
                   reinterpret_cast<const char*>(digest), SHA256_DIGEST_LENGTH) != 0) {
    return corrupt("SHA-256 mismatch");
  }
  const size_t pad = (static_cast<unsigned char>(data[body_end - 2]) << 8) |
                     static_cast<unsigned char>(data[body_end - 1]);
  if (pad + 2 + magic > body_end) return corrupt("bad padding");
  absl::string_view in =
      absl::string_view(data).substr(magic, body_end - 2 - pad - magic);
  storage::Batch batch;
  while (true) {
    uint32_t klen, vlen;
    if (!GetVarint32(&in, &klen)) return corrupt("truncated");
    if (klen == 0) break;  // end marker
    if (in.size() < klen) return corrupt("bad record");
    absl::string_view k = in.substr(0, klen);
    in.remove_prefix(klen);
    if (!GetVarint32(&in, &vlen) || in.size() < vlen) return corrupt("bad record");
    if (KeepOnRestore(k)) batch.Put(k, in.substr(0, vlen));
    in.remove_prefix(vlen);
    if (batch.ApproximateSize() > (4 << 20)) {
      absl::Status st = backend->Write(&batch, false);
      if (!st.ok()) return st;
      batch.Clear();
    }
  }
  if (!in.empty()) return corrupt("data after the end marker");
  return backend->Write(&batch, true);
}

}  // namespace synod::server
