#include "backend/server/snapshot.h"

#include <zlib.h>

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"

namespace synod::server {
namespace {

constexpr char kMagic[] = "SYNODSNAP1\n";
constexpr size_t kChunkBytes = 64 << 10;

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

uint32_t Crc(uint32_t crc, absl::string_view s) {
  return static_cast<uint32_t>(crc32(crc, reinterpret_cast<const Bytef*>(s.data()),
                                     static_cast<uInt>(s.size())));
}

}  // namespace

SnapshotWriter::SnapshotWriter(storage::Backend* backend)
    : it_(backend->NewIterator()), crc_(static_cast<uint32_t>(crc32(0L, Z_NULL, 0))) {}

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
    PutVarint32(chunk, static_cast<uint32_t>(it_->key().size()));
    chunk->append(it_->key().data(), it_->key().size());
    PutVarint32(chunk, static_cast<uint32_t>(it_->value().size()));
    chunk->append(it_->value().data(), it_->value().size());
    it_->Next();
  }
  if (!it_->status().ok()) return it_->status();
  crc_ = Crc(crc_, *chunk);
  if (!it_->Valid()) {
    chunk->push_back('\0');
    for (int shift = 24; shift >= 0; shift -= 8) {
      chunk->push_back(static_cast<char>((crc_ >> shift) & 0xff));
    }
    done_ = true;
    *last = true;
  }
  return absl::OkStatus();
}

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
  if (data.size() < magic + 5 || data.compare(0, magic, kMagic) != 0) {
    return corrupt("bad header");
  }
  const size_t body_end = data.size() - 5;
  if (data[body_end] != '\0') return corrupt("no trailer");
  uint32_t want = 0;
  for (int i = 1; i <= 4; ++i) {
    want = (want << 8) | static_cast<unsigned char>(data[body_end + i]);
  }
  uint32_t crc = Crc(static_cast<uint32_t>(crc32(0L, Z_NULL, 0)),
                     absl::string_view(data).substr(0, body_end));
  if (crc != want) return corrupt("checksum mismatch");
  absl::string_view in = absl::string_view(data).substr(magic, body_end - magic);
  storage::Batch batch;
  while (!in.empty()) {
    uint32_t klen, vlen;
    if (!GetVarint32(&in, &klen) || in.size() < klen) return corrupt("bad record");
    absl::string_view k = in.substr(0, klen);
    in.remove_prefix(klen);
    if (!GetVarint32(&in, &vlen) || in.size() < vlen) return corrupt("bad record");
    batch.Put(k, in.substr(0, vlen));
    in.remove_prefix(vlen);
    if (batch.ApproximateSize() > (4 << 20)) {
      absl::Status st = backend->Write(&batch, false);
      if (!st.ok()) return st;
      batch.Clear();
    }
  }
  return backend->Write(&batch, true);
}

}  // namespace synod::server
