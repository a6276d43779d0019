#include "backend/storage/backend.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "leveldb/cache.h"
#include "leveldb/db.h"
#include "leveldb/env.h"
#include "leveldb/filter_policy.h"
#include "leveldb/write_batch.h"

namespace synod::storage {
namespace {

absl::Status FromLevelDb(const leveldb::Status& s) {
  if (s.ok()) return absl::OkStatus();
  if (s.IsCorruption()) return absl::DataLossError(s.ToString());
  if (s.IsNotFound()) return absl::NotFoundError(s.ToString());
  if (s.IsInvalidArgument()) return absl::InvalidArgumentError(s.ToString());
  return absl::InternalError(s.ToString());
}

leveldb::Slice ToSlice(absl::string_view s) {
  return leveldb::Slice(s.data(), s.size());
}

}  // namespace

Batch::Batch() : batch_(std::make_unique<leveldb::WriteBatch>()) {}
Batch::~Batch() = default;
void Batch::Put(absl::string_view key, absl::string_view value) {
  batch_->Put(ToSlice(key), ToSlice(value));
  ++count_;
}
void Batch::Delete(absl::string_view key) {
  batch_->Delete(ToSlice(key));
  ++count_;
}
size_t Batch::ApproximateSize() const { return batch_->ApproximateSize(); }
void Batch::Clear() {
  batch_->Clear();
  count_ = 0;
}

Iterator::Iterator(leveldb::Iterator* it, const leveldb::Snapshot* snap,
                   leveldb::DB* db)
    : it_(it), snapshot_(snap), db_(db) {}
Iterator::~Iterator() {
  it_.reset();
  db_->ReleaseSnapshot(snapshot_);
}
void Iterator::Seek(absl::string_view target) { it_->Seek(ToSlice(target)); }
bool Iterator::Valid() const { return it_->Valid(); }
void Iterator::Next() { it_->Next(); }
absl::string_view Iterator::key() const {
  leveldb::Slice k = it_->key();
  return absl::string_view(k.data(), k.size());
}
absl::string_view Iterator::value() const {
  leveldb::Slice v = it_->value();
  return absl::string_view(v.data(), v.size());
}
absl::Status Iterator::status() const { return FromLevelDb(it_->status()); }

struct Backend::CacheHolder {
  std::unique_ptr<leveldb::Cache> cache;
  std::unique_ptr<const leveldb::FilterPolicy> filter;
};

Backend::Backend(std::string path, leveldb::DB* db, leveldb::Env* env)
    : path_(std::move(path)), db_(db), env_(env) {}
Backend::~Backend() {
  db_.reset();  // before the cache it uses
}

absl::StatusOr<std::unique_ptr<Backend>> Backend::Open(
    const std::string& path, const BackendOptions& options) {
  auto holder = std::make_unique<CacheHolder>();
  holder->cache.reset(leveldb::NewLRUCache(options.block_cache_bytes));
  holder->filter.reset(leveldb::NewBloomFilterPolicy(10));
  leveldb::Options o;
  o.create_if_missing = true;
  // Not paranoid: after a crash the log may end in a torn record, which was
  // never synced and so never acknowledged; LevelDB then drops it instead of
  // refusing to open.
  o.paranoid_checks = false;
  o.block_cache = holder->cache.get();
  o.filter_policy = holder->filter.get();
  o.write_buffer_size = options.write_buffer_bytes;
  o.max_file_size = 8 << 20;
  if (options.env != nullptr) o.env = options.env;
  leveldb::DB* db = nullptr;
  leveldb::Status s = leveldb::DB::Open(o, path, &db);
  if (!s.ok()) {
    return absl::Status(FromLevelDb(s).code(),
                        absl::StrCat("open ", path, ": ", s.ToString()));
  }
  std::unique_ptr<Backend> b(new Backend(path, db, o.env));
  b->cache_ = std::move(holder);
  return b;
}

absl::Status Backend::Write(Batch* batch, bool sync) {
  absl::MutexLock l(&write_mu_);
  if (!write_error_.ok()) {
    return absl::InternalError(absl::StrCat(
        "refusing writes after a failed write: ", write_error_.message()));
  }
  leveldb::WriteOptions wo;
  wo.sync = sync;
  absl::Status st = FromLevelDb(db_->Write(wo, batch->batch_.get()));
  if (!st.ok()) write_error_ = st;
  return st;
}

absl::StatusOr<std::optional<std::string>> Backend::Get(
    absl::string_view key) const {
  std::string value;
  leveldb::Status s = db_->Get(leveldb::ReadOptions(), ToSlice(key), &value);
  if (s.IsNotFound()) return std::optional<std::string>();
  if (!s.ok()) return FromLevelDb(s);
  return std::optional<std::string>(std::move(value));
}

std::unique_ptr<Iterator> Backend::NewIterator() const {
  const leveldb::Snapshot* snap = db_->GetSnapshot();
  leveldb::ReadOptions ro;
  ro.snapshot = snap;
  ro.fill_cache = false;
  return std::unique_ptr<Iterator>(
      new Iterator(db_->NewIterator(ro), snap, db_.get()));
}

void Backend::CompactAll() { db_->CompactRange(nullptr, nullptr); }

int64_t Backend::DiskSizeBytes() const {
  std::vector<std::string> children;
  if (!env_->GetChildren(path_, &children).ok()) return 0;
  int64_t total = 0;
  for (const std::string& c : children) {
    uint64_t size = 0;
    if (env_->GetFileSize(path_ + "/" + c, &size).ok()) total += size;
  }
  return total;
}

}  // namespace synod::storage
