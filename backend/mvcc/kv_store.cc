#include "backend/mvcc/kv_store.h"

#include <zlib.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "backend/storage/schema.h"
#include "common/errors.h"
#include "common/etcd_compare.h"
#include "common/etcd_range.h"
#include "common/key_range.h"
#include "common/logging.h"
#include "common/metrics.h"

namespace synod::mvcc {

using common::EtcdError;
using common::Err;
using etcdserverpb::Compare;
using etcdserverpb::RangeRequest;
using etcdserverpb::RangeResponse;
using etcdserverpb::RequestOp;
using etcdserverpb::TxnRequest;
using etcdserverpb::TxnResponse;

bool ParseRecord(absl::string_view record, bool* tombstone,
                 mvccpb::KeyValue* kv) {
  if (record.empty()) return false;
  if (record[0] != storage::kPut && record[0] != storage::kTombstone) {
    return false;
  }
  *tombstone = record[0] == storage::kTombstone;
  return kv->ParseFromArray(record.data() + 1,
                            static_cast<int>(record.size() - 1));
}

namespace {

// etcd's mvcc counters (mvcc/metrics.go, counted as its metricsTxnWrite
// does): every Put applied, and every delete operation (a DeleteRange
// however many keys it removes, even none; each key a lease revoke
// deletes), on every member. etcd 3.4 exposes each twice: etcd_mvcc_<name>
// and etcd_debugging_mvcc_<name>.
class MvccCounter {
 public:
  MvccCounter(const std::string& name, const std::string& help)
      : etcd_(common::DefaultMetrics().GetCounter("etcd_mvcc_" + name, help)),
        debugging_(common::DefaultMetrics().GetCounter(
            "etcd_debugging_mvcc_" + name, help)) {}
  void Inc() {
    etcd_->Inc();
    debugging_->Inc();
  }

 private:
  common::Counter* const etcd_;
  common::Counter* const debugging_;
};

void CountPut() {
  static MvccCounter c("put_total", "Total number of puts seen by this member.");
  c.Inc();
}

void CountDelete() {
  static MvccCounter c("delete_total",
                       "Total number of deletes seen by this member.");
  c.Inc();
}

std::string RevKey(const Revision& r) {
  return storage::RevisionKey(r.main, r.sub);
}

void FillKvFromEntry(const std::string& key, const IndexEntry& e,
                     mvccpb::KeyValue* kv) {
  kv->set_key(key);
  kv->set_create_revision(e.create_revision);
  kv->set_mod_revision(e.rev.main);
  kv->set_version(e.version);
  kv->set_lease(e.lease);
}

}  // namespace

absl::StatusOr<std::unique_ptr<KvStore>> KvStore::Open(
    storage::Backend* backend) {
  std::unique_ptr<KvStore> s(new KvStore(backend));
  absl::Status st = s->Load();
  if (!st.ok()) return st;
  return s;
}

absl::Status KvStore::Load() {
  auto format = backend_->Get(storage::kMetaFormat);
  if (!format.ok()) return format.status();
  if (!format->has_value()) {
    storage::Batch b;
    b.Put(storage::kMetaFormat, absl::StrCat(storage::kFormatVersion));
    absl::Status st = backend_->Write(&b, true);
    if (!st.ok()) return st;
  } else if (**format != absl::StrCat(storage::kFormatVersion)) {
    return absl::FailedPreconditionError(
        absl::StrCat("data dir format ", **format, " is not supported (want ",
                     storage::kFormatVersion, ")"));
  }
  auto applied = backend_->Get(storage::kMetaAppliedIndex);
  if (!applied.ok()) return applied.status();
  if (applied->has_value() && (*applied)->size() == 8) {
    applied_index_ = storage::GetBigEndian64(**applied);
  }
  int64_t compact = 0;
  auto c = backend_->Get(storage::kMetaCompactRev);
  if (!c.ok()) return c.status();
  if (c->has_value() && (*c)->size() == 8) {
    compact = static_cast<int64_t>(storage::GetBigEndian64(**c));
  }

  absl::MutexLock l(&mu_);
  compact_rev_ = compact;
  int64_t last = 0;
  auto it = backend_->NewIterator();
  for (it->Seek(std::string(1, storage::kRevPrefix)); it->Valid(); it->Next()) {
    int64_t main, sub;
    if (!storage::DecodeRevisionKey(it->key(), &main, &sub)) break;
    bool tombstone;
    mvccpb::KeyValue kv;
    if (!ParseRecord(it->value(), &tombstone, &kv)) {
      return absl::DataLossError(
          absl::StrCat("corrupt revision record at ", main, ".", sub));
    }
    IndexEntry e;
    e.rev = Revision{main, sub};
    if (!tombstone) {
      e.create_revision = kv.create_revision();
      e.version = kv.version();
      e.lease = kv.lease();
    }
    index_[kv.key()].Restore(e);
    last = main;
  }
  if (!it->status().ok()) return it->status();
  int64_t rev = std::max<int64_t>({last, compact, 1});
  rev_ = rev;
  staged_rev_ = rev;
  return absl::OkStatus();
}

absl::Status KvStore::Reload() {
  {
    absl::MutexLock l(&mu_);
    index_.clear();
    compact_rev_ = 0;
  }
  batch_.Clear();
  staged_records_.clear();
  staged_events_.clear();
  applied_index_ = 0;
  return Load();
}

int64_t KvStore::CompactRev() const {
  absl::ReaderMutexLock l(&mu_);
  return compact_rev_;
}

size_t KvStore::KeyCount() const {
  absl::ReaderMutexLock l(&mu_);
  return index_.size();
}

void KvStore::CollectLocked(const std::string& key,
                            const std::string& range_end, int64_t rev,
                            int64_t limit, bool count_only,
                            std::vector<Match>* out, int64_t* count) const {
  *count = 0;
  auto take = [&](const std::string& k, const KeyIndex& ki) {
    const IndexEntry* e = ki.At(rev);
    if (e == nullptr || e->tombstone()) return;
    ++*count;
    if (count_only) return;
    if (limit > 0 && static_cast<int64_t>(out->size()) >= limit) return;
    out->push_back(Match{k, *e});
  };
  if (range_end.empty()) {
    auto it = index_.find(key);
    if (it != index_.end()) take(it->first, it->second);
    return;
  }
  bool open = common::IsOpenEnd(range_end);
  for (auto it = index_.lower_bound(key); it != index_.end(); ++it) {
    if (!open && !(it->first < range_end)) break;
    take(it->first, it->second);
  }
}

template <typename ReadValue>
absl::Status KvStore::RangeImpl(const RangeRequest& r, int64_t rev,
                                std::vector<Match> matches, int64_t count,
                                ReadValue read_value,
                                RangeResponse* resp) const {
  auto match_meta = [](const Match& m) {
    return common::KvMeta{m.entry.version, m.entry.create_revision,
                          m.entry.rev.main};
  };
  common::FilterByRevision(r, &matches, match_meta);

  // Sorting by value needs every value first; otherwise the index entries
  // are sorted and values are read only for the keys answered.
  const bool by_value = common::SortsByValue(r);
  std::vector<mvccpb::KeyValue> kvs;
  if (by_value) {
    kvs.reserve(matches.size());
    for (const Match& m : matches) {
      mvccpb::KeyValue kv;
      FillKvFromEntry(m.key, m.entry, &kv);
      kv.set_value(read_value(m));
      kvs.push_back(std::move(kv));
    }
    common::SortRange(r, &kvs, common::MetaOf,
                      [](const mvccpb::KeyValue& kv) -> const std::string& {
                        return kv.value();
                      });
  } else {
    common::SortRange(r, &matches, match_meta,
                      [](const Match&) { return absl::string_view(); });
  }

  const size_t n =
      common::ApplyLimit(r, by_value ? kvs.size() : matches.size(), resp);
  resp->mutable_header()->set_revision(rev);
  resp->set_count(count);
  if (r.count_only()) return absl::OkStatus();
  auto* out = resp->mutable_kvs();
  out->Reserve(static_cast<int>(n));
  for (size_t i = 0; i < n; ++i) {
    mvccpb::KeyValue* kv = out->Add();
    if (by_value) {
      *kv = std::move(kvs[i]);
      if (r.keys_only()) kv->clear_value();
    } else {
      FillKvFromEntry(matches[i].key, matches[i].entry, kv);
      if (!r.keys_only()) kv->set_value(read_value(matches[i]));
    }
  }
  return absl::OkStatus();
}

namespace {
// Reads one revision's value through a snapshot iterator.
std::string ValueAt(storage::Iterator* it, const Revision& rev) {
  std::string k = RevKey(rev);
  it->Seek(k);
  if (!it->Valid() || it->key() != k) return std::string();
  bool tombstone;
  mvccpb::KeyValue kv;
  if (!ParseRecord(it->value(), &tombstone, &kv)) return std::string();
  return std::move(*kv.mutable_value());
}
}  // namespace

absl::Status KvStore::Range(const RangeRequest& r, RangeResponse* resp) const {
  const int64_t cur = Rev();
  const int64_t rev = r.revision() > 0 ? r.revision() : cur;
  if (rev > cur) return Err(EtcdError::kFutureRev);
  std::vector<Match> matches;
  int64_t count = 0;
  std::unique_ptr<storage::Iterator> it;
  {
    absl::ReaderMutexLock l(&mu_);
    if (rev < compact_rev_) return Err(EtcdError::kCompacted);
    CollectLocked(r.key(), r.range_end(), rev, common::CollectLimit(r),
                  r.count_only(), &matches, &count);
    // The snapshot is taken under the lock so that compaction cannot remove
    // the records of the collected revisions first.
    // Values are read unless keys_only, and always to sort by VALUE.
    if (!matches.empty() && (!r.keys_only() || common::SortsByValue(r))) {
      it = backend_->NewIterator();
    }
  }
  absl::Status st = RangeImpl(
      r, rev, std::move(matches), count,
      [&](const Match& m) { return ValueAt(it.get(), m.entry.rev); }, resp);
  // etcd answers every read, historical ones too, with the store's current
  // revision: clients take header.revision as "now" (e.g. to start a watch).
  resp->mutable_header()->set_revision(cur);
  return st;
}

absl::Status KvStore::ReadEvents(int64_t from_rev, int64_t to_rev,
                                 size_t max_events,
                                 std::vector<mvccpb::Event>* out,
                                 int64_t* next_rev) const {
  std::unique_ptr<storage::Iterator> it;
  {
    absl::ReaderMutexLock l(&mu_);
    if (from_rev < compact_rev_) return Err(EtcdError::kCompacted);
    it = backend_->NewIterator();
  }
  to_rev = std::min(to_rev, Rev());
  max_events = std::max<size_t>(max_events, 1);
  *next_rev = from_rev;
  if (from_rev > to_rev) return absl::OkStatus();
  size_t n = 0;
  int64_t cur_main = -1;
  for (it->Seek(storage::RevisionKey(from_rev, 0)); it->Valid(); it->Next()) {
    int64_t main, sub;
    if (!storage::DecodeRevisionKey(it->key(), &main, &sub)) break;
    if (main > to_rev) break;
    if (main != cur_main && n >= max_events) break;
    cur_main = main;
    bool tombstone;
    mvccpb::Event ev;
    if (!ParseRecord(it->value(), &tombstone, ev.mutable_kv())) {
      return absl::DataLossError(
          absl::StrCat("corrupt revision record at ", main, ".", sub));
    }
    ev.set_type(tombstone ? mvccpb::Event::DELETE : mvccpb::Event::PUT);
    out->push_back(std::move(ev));
    ++n;
    *next_rev = main + 1;
  }
  if (!it->status().ok()) return it->status();
  // Reached to_rev without hitting the cap: everything up to to_rev is read.
  if (n < max_events || cur_main == -1) *next_rev = to_rev + 1;
  return absl::OkStatus();
}

absl::StatusOr<std::optional<mvccpb::KeyValue>> KvStore::Get(
    const std::string& key, int64_t rev) const {
  IndexEntry e;
  std::unique_ptr<storage::Iterator> it;
  {
    absl::ReaderMutexLock l(&mu_);
    if (rev < compact_rev_) return Err(EtcdError::kCompacted);
    auto ki = index_.find(key);
    if (ki == index_.end()) return std::optional<mvccpb::KeyValue>();
    const IndexEntry* at = ki->second.At(rev);
    if (at == nullptr || at->tombstone()) {
      return std::optional<mvccpb::KeyValue>();
    }
    e = *at;
    it = backend_->NewIterator();
  }
  mvccpb::KeyValue kv;
  FillKvFromEntry(key, e, &kv);
  kv.set_value(ValueAt(it.get(), e.rev));
  return std::optional<mvccpb::KeyValue>(std::move(kv));
}

absl::StatusOr<uint32_t> KvStore::HashKV(int64_t rev) const {
  const int64_t cur = Rev();
  // etcd refuses an explicit revision at or below the compacted one (its
  // hash would not cover the compacted history the same way everywhere).
  const bool explicit_rev = rev > 0;
  if (rev <= 0) rev = cur;
  if (rev > cur) return Err(EtcdError::kFutureRev);
  std::unique_ptr<storage::Iterator> it;
  {
    absl::ReaderMutexLock l(&mu_);
    if (rev < compact_rev_ || (explicit_rev && rev == compact_rev_)) {
      return Err(EtcdError::kCompacted);
    }
    it = backend_->NewIterator();
  }
  uLong crc = crc32(0L, Z_NULL, 0);
  for (it->Seek(std::string(1, storage::kRevPrefix)); it->Valid(); it->Next()) {
    int64_t main, sub;
    if (!storage::DecodeRevisionKey(it->key(), &main, &sub)) break;
    if (main > rev) break;
    crc = crc32(crc, reinterpret_cast<const Bytef*>(it->key().data()),
                static_cast<uInt>(it->key().size()));
    crc = crc32(crc, reinterpret_cast<const Bytef*>(it->value().data()),
                static_cast<uInt>(it->value().size()));
  }
  if (!it->status().ok()) return it->status();
  return static_cast<uint32_t>(crc);
}

std::vector<std::pair<int64_t, std::string>> KvStore::LeasedKeys() const {
  std::vector<std::pair<int64_t, std::string>> out;
  absl::ReaderMutexLock l(&mu_);
  const int64_t rev = Rev();
  for (const auto& [key, ki] : index_) {
    const IndexEntry* e = ki.At(rev);
    if (e != nullptr && !e->tombstone() && e->lease != 0) {
      out.emplace_back(e->lease, key);
    }
  }
  return out;
}

// ---------------- Write side ----------------

std::unique_ptr<KvStore::WriteTxn> KvStore::Write() {
  return std::unique_ptr<WriteTxn>(new WriteTxn(this));
}

absl::Status KvStore::Compact(int64_t rev) {
  // Compaction only runs on the published state: the applier commits the
  // staged writes first, so readers never see a half-compacted history.
  if (staged_rev_ != Rev()) {
    return absl::InternalError("compact with unpublished writes staged");
  }
  std::vector<Revision> dropped;
  {
    absl::MutexLock l(&mu_);
    if (rev <= compact_rev_) return Err(EtcdError::kCompacted);
    if (rev > Rev()) return Err(EtcdError::kFutureRev);
    for (auto it = index_.begin(); it != index_.end();) {
      if (it->second.Compact(rev, &dropped)) {
        it = index_.erase(it);
      } else {
        ++it;
      }
    }
    compact_rev_ = rev;
  }
  for (const Revision& d : dropped) batch_.Delete(RevKey(d));
  batch_.Put(storage::kMetaCompactRev, storage::EncodeU64(rev));
  return absl::OkStatus();
}

absl::Status KvStore::Commit(uint64_t applied_index,
                             std::vector<mvccpb::Event>* events, bool sync) {
  batch_.Put(storage::kMetaAppliedIndex, storage::EncodeU64(applied_index));
  absl::Status st = backend_->Write(&batch_, sync);
  if (!st.ok()) return st;
  batch_.Clear();
  staged_records_.clear();
  applied_index_.store(applied_index, std::memory_order_release);
  rev_.store(staged_rev_, std::memory_order_release);
  if (events != nullptr) {
    events->insert(events->end(), std::make_move_iterator(staged_events_.begin()),
                   std::make_move_iterator(staged_events_.end()));
  }
  staged_events_.clear();
  return absl::OkStatus();
}

KvStore::WriteTxn::WriteTxn(KvStore* s) : s_(s), rev_(s->staged_rev_ + 1) {}

KvStore::WriteTxn::~WriteTxn() {
  if (sub_ > 0) s_->staged_rev_ = rev_;
}

std::optional<mvccpb::KeyValue> KvStore::WriteTxn::ReadKv(
    const std::string& key, const IndexEntry& e) const {
  mvccpb::KeyValue kv;
  FillKvFromEntry(key, e, &kv);
  std::string k = RevKey(e.rev);
  auto staged = s_->staged_records_.find(k);
  bool tombstone;
  mvccpb::KeyValue stored;
  if (staged != s_->staged_records_.end()) {
    if (ParseRecord(staged->second, &tombstone, &stored)) {
      kv.set_value(std::move(*stored.mutable_value()));
    }
    return kv;
  }
  auto rec = s_->backend_->Get(k);
  if (rec.ok() && rec->has_value() && ParseRecord(**rec, &tombstone, &stored)) {
    kv.set_value(std::move(*stored.mutable_value()));
  }
  return kv;
}

void KvStore::WriteTxn::PutInternal(const std::string& key,
                                    const std::string& value, int64_t lease) {
  Revision rv{rev_, sub_++};
  IndexEntry e;
  int64_t old_lease = 0;
  {
    absl::MutexLock l(&s_->mu_);
    KeyIndex& ki = s_->index_[key];
    const IndexEntry* prev = ki.Last();
    if (prev != nullptr && !prev->tombstone()) old_lease = prev->lease;
    e = ki.Put(rv, lease);
  }
  mvccpb::Event ev;
  ev.set_type(mvccpb::Event::PUT);
  mvccpb::KeyValue* kv = ev.mutable_kv();
  FillKvFromEntry(key, e, kv);
  kv->set_value(value);
  std::string record(1, storage::kPut);
  kv->AppendToString(&record);
  std::string k = RevKey(rv);
  s_->batch_.Put(k, record);
  s_->staged_records_[k] = std::move(record);
  s_->staged_events_.push_back(std::move(ev));
  if (s_->lease_hooks_ != nullptr && old_lease != lease) {
    if (old_lease != 0) s_->lease_hooks_->Detach(old_lease, key);
    if (lease != 0) s_->lease_hooks_->Attach(lease, key);
  }
}

bool KvStore::WriteTxn::TombstoneInternal(const std::string& key) {
  int64_t old_lease = 0;
  Revision rv{rev_, sub_};
  {
    absl::MutexLock l(&s_->mu_);
    auto it = s_->index_.find(key);
    if (it == s_->index_.end()) return false;
    const IndexEntry* prev = it->second.Last();
    if (prev == nullptr || prev->tombstone()) return false;
    old_lease = prev->lease;
    it->second.Tombstone(rv);
  }
  ++sub_;
  mvccpb::Event ev;
  ev.set_type(mvccpb::Event::DELETE);
  ev.mutable_kv()->set_key(key);
  ev.mutable_kv()->set_mod_revision(rv.main);
  std::string record(1, storage::kTombstone);
  ev.kv().AppendToString(&record);
  std::string k = RevKey(rv);
  s_->batch_.Put(k, record);
  s_->staged_records_[k] = std::move(record);
  s_->staged_events_.push_back(std::move(ev));
  if (s_->lease_hooks_ != nullptr && old_lease != 0) {
    s_->lease_hooks_->Detach(old_lease, key);
  }
  return true;
}

bool KvStore::WriteTxn::DeleteKey(const std::string& key) {
  CountDelete();
  return TombstoneInternal(key);
}

absl::Status KvStore::WriteTxn::Put(const etcdserverpb::PutRequest& r,
                                    etcdserverpb::PutResponse* resp) {
  std::optional<IndexEntry> existing;
  {
    absl::ReaderMutexLock l(&s_->mu_);
    auto it = s_->index_.find(r.key());
    if (it != s_->index_.end()) {
      const IndexEntry* e = it->second.At(ReadRev());
      if (e != nullptr && !e->tombstone()) existing = *e;
    }
  }
  // etcd checks the lease first, then the key for ignore_value/ignore_lease.
  if (!r.ignore_lease() && r.lease() != 0 &&
      (s_->lease_hooks_ == nullptr || !s_->lease_hooks_->LeaseExists(r.lease()))) {
    return Err(EtcdError::kLeaseNotFound);
  }
  if ((r.ignore_value() || r.ignore_lease()) && !existing) {
    return Err(EtcdError::kKeyNotFound);
  }
  std::optional<mvccpb::KeyValue> prev;
  if (existing && (r.prev_kv() || r.ignore_value())) {
    prev = ReadKv(r.key(), *existing);
  }
  const int64_t lease = r.ignore_lease() ? existing->lease : r.lease();
  PutInternal(r.key(), r.ignore_value() ? prev->value() : r.value(), lease);
  CountPut();
  if (r.prev_kv() && prev) *resp->mutable_prev_kv() = std::move(*prev);
  resp->mutable_header()->set_revision(rev_);
  return absl::OkStatus();
}

absl::Status KvStore::WriteTxn::DeleteRange(
    const etcdserverpb::DeleteRangeRequest& r,
    etcdserverpb::DeleteRangeResponse* resp) {
  CountDelete();
  std::vector<Match> matches;
  int64_t count = 0;
  {
    absl::ReaderMutexLock l(&s_->mu_);
    s_->CollectLocked(r.key(), r.range_end(), ReadRev(), 0, false, &matches,
                      &count);
  }
  for (const Match& m : matches) {
    if (r.prev_kv()) {
      std::optional<mvccpb::KeyValue> kv = ReadKv(m.key, m.entry);
      if (kv) *resp->add_prev_kvs() = std::move(*kv);
    }
    TombstoneInternal(m.key);
  }
  resp->set_deleted(static_cast<int64_t>(matches.size()));
  resp->mutable_header()->set_revision(ReadRev());
  return absl::OkStatus();
}

absl::Status KvStore::WriteTxn::Range(const RangeRequest& r,
                                      RangeResponse* resp) {
  const int64_t cur = ReadRev();
  const int64_t rev = r.revision() > 0 ? r.revision() : cur;
  if (rev > cur) return Err(EtcdError::kFutureRev);
  std::vector<Match> matches;
  int64_t count = 0;
  {
    absl::ReaderMutexLock l(&s_->mu_);
    if (rev < s_->compact_rev_) return Err(EtcdError::kCompacted);
    s_->CollectLocked(r.key(), r.range_end(), rev, common::CollectLimit(r),
                      r.count_only(), &matches, &count);
  }
  absl::Status st = s_->RangeImpl(
      r, rev, std::move(matches), count,
      [&](const Match& m) {
        std::optional<mvccpb::KeyValue> kv = ReadKv(m.key, m.entry);
        return kv ? std::move(*kv->mutable_value()) : std::string();
      },
      resp);
  resp->mutable_header()->set_revision(cur);  // as KvStore::Range
  return st;
}

bool KvStore::WriteTxn::EvalCompare(const Compare& c) const {
  std::vector<Match> matches;
  int64_t count = 0;
  {
    absl::ReaderMutexLock l(&s_->mu_);
    s_->CollectLocked(c.key(), c.range_end(), ReadRev(), 0, false, &matches,
                      &count);
  }
  if (matches.empty()) return common::CompareHoldsOnMissingKey(c);
  for (const Match& m : matches) {
    mvccpb::KeyValue kv;
    if (common::CompareNeedsValue(c)) {
      std::optional<mvccpb::KeyValue> full = ReadKv(m.key, m.entry);
      if (full) kv = std::move(*full);
    } else {
      FillKvFromEntry(m.key, m.entry, &kv);
    }
    if (!common::CompareHolds(c, kv)) return false;
  }
  return true;
}

void KvStore::WriteTxn::ComputePath(const TxnRequest& r,
                                    std::vector<bool>* path) const {
  bool ok = true;
  for (const Compare& c : r.compare()) {
    if (!EvalCompare(c)) {
      ok = false;
      break;
    }
  }
  path->push_back(ok);
  for (const RequestOp& op : ok ? r.success() : r.failure()) {
    if (op.has_request_txn()) ComputePath(op.request_txn(), path);
  }
}

absl::Status KvStore::WriteTxn::CheckTxn(const TxnRequest& r,
                                         const std::vector<bool>& path,
                                         size_t* pos) const {
  const bool ok = path[(*pos)++];
  for (const RequestOp& op : ok ? r.success() : r.failure()) {
    if (op.has_request_put()) {
      const auto& p = op.request_put();
      if (!p.ignore_lease() && p.lease() != 0 &&
          (s_->lease_hooks_ == nullptr ||
           !s_->lease_hooks_->LeaseExists(p.lease()))) {
        return Err(EtcdError::kLeaseNotFound);
      }
      if (p.ignore_value() || p.ignore_lease()) {
        absl::ReaderMutexLock l(&s_->mu_);
        auto it = s_->index_.find(p.key());
        const IndexEntry* e =
            it == s_->index_.end() ? nullptr : it->second.At(ReadRev());
        if (e == nullptr || e->tombstone()) return Err(EtcdError::kKeyNotFound);
      }
    } else if (op.has_request_range()) {
      const auto& rr = op.request_range();
      if (rr.revision() > ReadRev()) return Err(EtcdError::kFutureRev);
      absl::ReaderMutexLock l(&s_->mu_);
      if (rr.revision() > 0 && rr.revision() < s_->compact_rev_) {
        return Err(EtcdError::kCompacted);
      }
    } else if (op.has_request_txn()) {
      absl::Status st = CheckTxn(op.request_txn(), path, pos);
      if (!st.ok()) return st;
    }
  }
  return absl::OkStatus();
}

absl::Status KvStore::WriteTxn::ExecTxn(const TxnRequest& r,
                                        const std::vector<bool>& path,
                                        size_t* pos, TxnResponse* resp) {
  const bool ok = path[(*pos)++];
  resp->set_succeeded(ok);
  for (const RequestOp& op : ok ? r.success() : r.failure()) {
    etcdserverpb::ResponseOp* out = resp->add_responses();
    absl::Status st;
    if (op.has_request_range()) {
      st = Range(op.request_range(), out->mutable_response_range());
    } else if (op.has_request_put()) {
      st = Put(op.request_put(), out->mutable_response_put());
    } else if (op.has_request_delete_range()) {
      st = DeleteRange(op.request_delete_range(),
                       out->mutable_response_delete_range());
    } else if (op.has_request_txn()) {
      st = ExecTxn(op.request_txn(), path, pos, out->mutable_response_txn());
    }
    if (!st.ok()) return st;
  }
  return absl::OkStatus();
}

absl::Status KvStore::WriteTxn::Txn(const TxnRequest& r, TxnResponse* resp) {
  std::vector<bool> path;
  ComputePath(r, &path);
  size_t pos = 0;
  absl::Status st = CheckTxn(r, path, &pos);
  if (!st.ok()) return st;
  pos = 0;
  st = ExecTxn(r, path, &pos, resp);
  if (!st.ok()) {
    // CheckTxn and the service's checks make this unreachable; if it happens
    // anyway, committing half a txn would corrupt state silently.
    if (sub_ > 0) {
      SYNOD_LOG(FATAL) << "txn failed after " << sub_
                       << " writes were staged at revision " << rev_ << ": "
                       << st;
    }
    return st;
  }
  // Every sub-response reports the txn's revision, as etcd does.
  resp->mutable_header()->set_revision(ReadRev());
  return absl::OkStatus();
}

}  // namespace synod::mvcc
