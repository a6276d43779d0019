#include "tests/support/fault_injection_env.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"

namespace synod::testing {
namespace {

leveldb::Status Inactive(const std::string& fname) {
  return leveldb::Status::IOError(fname, "filesystem inactive");
}

std::string DirName(const std::string& fname) {
  const size_t slash = fname.rfind('/');
  return slash == std::string::npos ? std::string() : fname.substr(0, slash);
}

// What a power loss does to one file: delete it, or keep its first `keep`
// bytes. `rnd` null: the plain loss; else a torn one (see the header).
struct Loss {
  bool remove = false;
  uint64_t keep = 0;
};
Loss LossFor(uint64_t size, uint64_t synced_size, bool created_unsynced,
             raft::Random* rnd) {
  if (rnd == nullptr) return Loss{created_unsynced, synced_size};
  Loss loss;
  loss.remove = created_unsynced && rnd->OneIn(2);
  loss.keep = synced_size + rnd->Uniform(size - synced_size + 1);
  return loss;
}

}  // namespace

// The WritableFile LevelDB gets: forwards to the base env's file through
// the env, which records what was appended and synced.
class FaultInjectionEnv::TrackedFile : public leveldb::WritableFile {
 public:
  TrackedFile(FaultInjectionEnv* env, std::shared_ptr<FileState> state,
              std::unique_ptr<leveldb::WritableFile> base)
      : env_(env), state_(std::move(state)), base_(std::move(base)) {}
  ~TrackedFile() override {
    if (!closed_) base_->Close();  // as LevelDB's own files: errors dropped
    env_->WriterGone(state_.get());
  }
  leveldb::Status Append(const leveldb::Slice& data) override {
    return env_->Append(state_.get(), base_.get(), data);
  }
  leveldb::Status Flush() override {
    return env_->Flush(state_.get(), base_.get());
  }
  leveldb::Status Sync() override {
    return env_->Sync(state_.get(), base_.get());
  }
  leveldb::Status Close() override {
    closed_ = true;
    return env_->Close(state_.get(), base_.get());
  }

 private:
  FaultInjectionEnv* const env_;
  const std::shared_ptr<FileState> state_;
  const std::unique_ptr<leveldb::WritableFile> base_;
  bool closed_ = false;
};

FaultInjectionEnv::FaultInjectionEnv(leveldb::Env* base)
    : leveldb::EnvWrapper(base) {}
FaultInjectionEnv::~FaultInjectionEnv() = default;

void FaultInjectionEnv::SetFilesystemActive(bool active) {
  absl::MutexLock l(&mu_);
  active_ = active;
}

bool FaultInjectionEnv::IsFilesystemActive() const {
  absl::MutexLock l(&mu_);
  return active_;
}

int64_t FaultInjectionEnv::sync_count() const {
  absl::MutexLock l(&mu_);
  return sync_count_;
}

leveldb::Status FaultInjectionEnv::Track(
    std::shared_ptr<FileState> state,
    std::unique_ptr<leveldb::WritableFile> base,
    leveldb::WritableFile** result) {
  ++state->writers;
  *result = new TrackedFile(this, std::move(state), std::move(base));
  return leveldb::Status::OK();
}

leveldb::Status FaultInjectionEnv::NewWritableFile(
    const std::string& fname, leveldb::WritableFile** result) {
  *result = nullptr;
  absl::MutexLock l(&mu_);
  if (!active_) return Inactive(fname);
  // Asked before the base creates it: only a new name can vanish at a power
  // loss. Truncating an existing file leaves it with no durable bytes.
  const bool existed = target()->FileExists(fname);
  leveldb::WritableFile* base = nullptr;
  leveldb::Status s = target()->NewWritableFile(fname, &base);
  if (!s.ok()) return s;
  auto state = std::make_shared<FileState>();
  state->name = fname;
  files_[fname] = state;
  if (!existed) created_unsynced_.insert(fname);
  return Track(std::move(state), std::unique_ptr<leveldb::WritableFile>(base),
               result);
}

leveldb::Status FaultInjectionEnv::NewAppendableFile(
    const std::string& fname, leveldb::WritableFile** result) {
  *result = nullptr;
  absl::MutexLock l(&mu_);
  if (!active_) return Inactive(fname);
  const bool existed = target()->FileExists(fname);
  uint64_t size = 0;
  if (existed) {
    leveldb::Status s = target()->GetFileSize(fname, &size);
    if (!s.ok()) return s;
  }
  leveldb::WritableFile* base = nullptr;
  leveldb::Status s = target()->NewAppendableFile(fname, &base);
  if (!s.ok()) return s;
  std::shared_ptr<FileState>& state = files_[fname];
  if (state == nullptr || !existed) {
    // Not written through this env (or removed behind its back): the bytes
    // already there are durable as they are.
    state = std::make_shared<FileState>();
    state->name = fname;
    state->size = state->synced_size = size;
    if (!existed) created_unsynced_.insert(fname);
  }
  return Track(state, std::unique_ptr<leveldb::WritableFile>(base), result);
}

leveldb::Status FaultInjectionEnv::RemoveFile(const std::string& fname) {
  absl::MutexLock l(&mu_);
  if (!active_) return Inactive(fname);
  leveldb::Status s = target()->RemoveFile(fname);
  if (s.ok()) {
    files_.erase(fname);
    created_unsynced_.erase(fname);
  }
  return s;
}

leveldb::Status FaultInjectionEnv::RenameFile(const std::string& src,
                                              const std::string& target_name) {
  absl::MutexLock l(&mu_);
  if (!active_) return Inactive(src);
  leveldb::Status s = target()->RenameFile(src, target_name);
  if (!s.ok()) return s;
  files_.erase(target_name);
  created_unsynced_.erase(target_name);
  auto it = files_.find(src);
  if (it != files_.end()) {
    it->second->name = target_name;
    files_[target_name] = std::move(it->second);
    files_.erase(it);
  }
  if (created_unsynced_.erase(src) > 0) created_unsynced_.insert(target_name);
  return s;
}

leveldb::Status FaultInjectionEnv::CreateDir(const std::string& dirname) {
  absl::MutexLock l(&mu_);
  if (!active_) return Inactive(dirname);
  return target()->CreateDir(dirname);
}

leveldb::Status FaultInjectionEnv::RemoveDir(const std::string& dirname) {
  absl::MutexLock l(&mu_);
  if (!active_) return Inactive(dirname);
  return target()->RemoveDir(dirname);
}

leveldb::Status FaultInjectionEnv::Append(FileState* state,
                                          leveldb::WritableFile* base,
                                          const leveldb::Slice& data) {
  absl::MutexLock l(&mu_);
  if (!active_) return Inactive(state->name);
  leveldb::Status s = base->Append(data);
  if (s.ok()) state->size += data.size();
  return s;
}

leveldb::Status FaultInjectionEnv::Flush(FileState* state,
                                         leveldb::WritableFile* base) {
  absl::MutexLock l(&mu_);
  if (!active_) return Inactive(state->name);
  return base->Flush();
}

leveldb::Status FaultInjectionEnv::Sync(FileState* state,
                                        leveldb::WritableFile* base) {
  absl::MutexLock l(&mu_);
  if (!active_) return Inactive(state->name);
  leveldb::Status s = base->Sync();
  if (!s.ok()) return s;
  ++sync_count_;
  state->synced_size = state->size;
  if (created_unsynced_.count(state->name) > 0) {
    DirectorySynced(DirName(state->name));
  }
  return s;
}

leveldb::Status FaultInjectionEnv::Close(FileState* state,
                                         leveldb::WritableFile* base) {
  absl::MutexLock l(&mu_);
  // The base file is closed either way (its handle must go); a close while
  // inactive still reports the failure a real one could have.
  leveldb::Status s = base->Close();
  if (!active_) return Inactive(state->name);
  return s;
}

void FaultInjectionEnv::WriterGone(FileState* state) {
  absl::MutexLock l(&mu_);
  --state->writers;
}

void FaultInjectionEnv::DirectorySynced(const std::string& dir) {
  for (auto it = created_unsynced_.begin(); it != created_unsynced_.end();) {
    it = DirName(*it) == dir ? created_unsynced_.erase(it) : std::next(it);
  }
}

leveldb::Status FaultInjectionEnv::TruncateBase(const std::string& fname,
                                                uint64_t size) {
  leveldb::SequentialFile* in = nullptr;
  leveldb::Status s = target()->NewSequentialFile(fname, &in);
  if (!s.ok()) return s;
  std::unique_ptr<leveldb::SequentialFile> reader(in);
  std::string kept;
  std::vector<char> scratch(64 << 10);
  while (s.ok() && kept.size() < size) {
    leveldb::Slice chunk;
    const size_t want = std::min<uint64_t>(scratch.size(), size - kept.size());
    s = reader->Read(want, &chunk, scratch.data());
    if (s.ok() && chunk.empty()) break;  // shorter than recorded
    if (s.ok()) kept.append(chunk.data(), chunk.size());
  }
  reader.reset();
  if (!s.ok()) return s;
  leveldb::WritableFile* out = nullptr;
  s = target()->NewWritableFile(fname, &out);
  if (!s.ok()) return s;
  std::unique_ptr<leveldb::WritableFile> writer(out);
  s = writer->Append(kept);
  if (s.ok()) s = writer->Sync();
  leveldb::Status c = writer->Close();
  return s.ok() ? c : s;
}

absl::Status FaultInjectionEnv::DropUnsyncedData() {
  return DropUnsynced(nullptr);
}

absl::Status FaultInjectionEnv::DropRandomUnsyncedData(raft::Random* rnd) {
  return DropUnsynced(rnd);
}

absl::Status FaultInjectionEnv::DropUnsynced(raft::Random* rnd) {
  absl::MutexLock l(&mu_);
  for (const auto& [name, f] : files_) {
    if (f->writers > 0) {
      return absl::FailedPreconditionError(
          absl::StrCat(name, " is still open for writing"));
    }
  }
  for (auto it = files_.begin(); it != files_.end();) {
    FileState& f = *it->second;
    const Loss loss = LossFor(f.size, f.synced_size,
                              created_unsynced_.count(f.name) > 0, rnd);
    leveldb::Status s;
    if (loss.remove) {
      s = target()->RemoveFile(f.name);
    } else if (loss.keep < f.size) {
      s = TruncateBase(f.name, loss.keep);
    }
    if (!s.ok()) {
      return absl::InternalError(
          absl::StrCat("power loss on ", f.name, ": ", s.ToString()));
    }
    created_unsynced_.erase(f.name);
    if (loss.remove) {
      it = files_.erase(it);
      continue;
    }
    f.size = f.synced_size = loss.keep;
    ++it;
  }
  return absl::OkStatus();
}

}  // namespace synod::testing
