#include "backend/server/membership.h"

#include <algorithm>

#include <openssl/evp.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "backend/storage/schema.h"

namespace synod::server {

namespace {

// The first 8 bytes of SHA-1(data), big-endian (etcd's ID derivation).
uint64_t Sha1Prefix64(absl::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), md, &len, EVP_sha1(), nullptr);
  uint64_t id = 0;
  for (int i = 0; i < 8; ++i) id = (id << 8) | md[i];
  return id;
}

}  // namespace

absl::StatusOr<std::vector<InitialMember>> ParseInitialCluster(
    const std::string& s) {
  std::vector<InitialMember> out;
  for (absl::string_view part : absl::StrSplit(s, ',', absl::SkipEmpty())) {
    std::vector<std::string> kv = absl::StrSplit(part, absl::MaxSplits('=', 1));
    if (kv.size() != 2 || kv[0].empty() || kv[1].empty() ||
        !(absl::StartsWith(kv[1], "http://") ||
          absl::StartsWith(kv[1], "https://") ||
          absl::StartsWith(kv[1], "unix://") ||
          absl::StartsWith(kv[1], "unixs://"))) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--initial-cluster: bad element \"", part,
          "\": want name=http://host:port (or https, unix, unixs)"));
    }
    auto it = std::find_if(out.begin(), out.end(),
                           [&](const InitialMember& m) { return m.name == kv[0]; });
    if (it == out.end()) {
      out.push_back(InitialMember{kv[0], {kv[1]}});
    } else {
      it->peer_urls.push_back(kv[1]);
    }
  }
  if (out.empty()) {
    return absl::InvalidArgumentError("--initial-cluster is empty");
  }
  return out;
}

uint64_t ComputeMemberId(const std::string& /*name*/,
                         const std::vector<std::string>& peer_urls,
                         const std::string& token,
                         std::optional<int64_t> added_unix_seconds) {
  std::vector<std::string> urls = peer_urls;
  std::sort(urls.begin(), urls.end());
  std::string b = absl::StrCat(absl::StrJoin(urls, ""), token);
  if (added_unix_seconds.has_value()) absl::StrAppend(&b, *added_unix_seconds);
  return Sha1Prefix64(b);
}

uint64_t ComputeClusterId(std::vector<uint64_t> member_ids,
                          const std::string& /*token*/) {
  std::sort(member_ids.begin(), member_ids.end());
  std::string b;
  b.reserve(8 * member_ids.size());
  for (uint64_t id : member_ids) storage::PutBigEndian64(&b, id);
  return Sha1Prefix64(b);
}

absl::Status Membership::Load(storage::Backend* backend) {
  auto v = backend->Get(kMetaMembers);
  if (!v.ok()) return v.status();
  absl::MutexLock l(&mu_);
  rec_.Clear();
  if (v->has_value() && !rec_.ParseFromString(**v)) {
    return absl::DataLossError("corrupt member record");
  }
  return absl::OkStatus();
}

void Membership::Reset(const synodpb::MemberRecord& rec) {
  absl::MutexLock l(&mu_);
  rec_ = rec;
}

synodpb::Member* Membership::FindLocked(uint64_t id) {
  for (auto& m : *rec_.mutable_members()) {
    if (m.id() == id) return &m;
  }
  return nullptr;
}

void Membership::StageLocked(storage::Batch* batch) {
  std::sort(rec_.mutable_members()->begin(), rec_.mutable_members()->end(),
            [](const synodpb::Member& a, const synodpb::Member& b) {
              return a.id() < b.id();
            });
  if (batch != nullptr) batch->Put(kMetaMembers, rec_.SerializeAsString());
}

void Membership::Add(const synodpb::Member& m, storage::Batch* batch) {
  absl::MutexLock l(&mu_);
  for (uint64_t r : rec_.removed()) {
    if (r == m.id()) return;  // a removed ID never comes back
  }
  synodpb::Member* cur = FindLocked(m.id());
  if (cur == nullptr) {
    *rec_.add_members() = m;
  } else {
    if (cur->is_learner() && !m.is_learner()) cur->set_is_learner(false);
    if (cur->peer_urls().empty()) *cur->mutable_peer_urls() = m.peer_urls();
    if (cur->name().empty()) cur->set_name(m.name());
  }
  StageLocked(batch);
}

void Membership::Remove(uint64_t id, storage::Batch* batch) {
  absl::MutexLock l(&mu_);
  auto* ms = rec_.mutable_members();
  for (int i = 0; i < ms->size(); ++i) {
    if (ms->Get(i).id() == id) {
      ms->DeleteSubrange(i, 1);
      break;
    }
  }
  bool known = false;
  for (uint64_t r : rec_.removed()) known |= (r == id);
  if (!known) rec_.add_removed(id);
  StageLocked(batch);
}

void Membership::Promote(uint64_t id, storage::Batch* batch) {
  absl::MutexLock l(&mu_);
  if (synodpb::Member* m = FindLocked(id)) m->set_is_learner(false);
  StageLocked(batch);
}

void Membership::SetPeerUrls(uint64_t id,
                             const std::vector<std::string>& peer_urls,
                             storage::Batch* batch) {
  absl::MutexLock l(&mu_);
  synodpb::Member* m = FindLocked(id);
  if (m == nullptr) return;
  m->clear_peer_urls();
  for (const auto& u : peer_urls) m->add_peer_urls(u);
  StageLocked(batch);
}

void Membership::SetAttributes(uint64_t id, const std::string& name,
                               const std::vector<std::string>& client_urls,
                               storage::Batch* batch) {
  absl::MutexLock l(&mu_);
  synodpb::Member* m = FindLocked(id);
  if (m == nullptr) return;
  m->set_name(name);
  m->clear_client_urls();
  for (const auto& u : client_urls) m->add_client_urls(u);
  StageLocked(batch);
}

synodpb::MemberRecord Membership::Record() const {
  absl::MutexLock l(&mu_);
  return rec_;
}

std::vector<synodpb::Member> Membership::Members() const {
  absl::MutexLock l(&mu_);
  std::vector<synodpb::Member> out(rec_.members().begin(), rec_.members().end());
  std::sort(out.begin(), out.end(),
            [](const auto& a, const auto& b) { return a.id() < b.id(); });
  return out;
}

std::optional<synodpb::Member> Membership::Get(uint64_t id) const {
  absl::MutexLock l(&mu_);
  for (const auto& m : rec_.members()) {
    if (m.id() == id) return m;
  }
  return std::nullopt;
}

bool Membership::IsRemoved(uint64_t id) const {
  absl::MutexLock l(&mu_);
  for (uint64_t r : rec_.removed()) {
    if (r == id) return true;
  }
  return false;
}

std::optional<uint64_t> Membership::FindByPeerUrl(
    const std::vector<std::string>& peer_urls) const {
  absl::MutexLock l(&mu_);
  for (const auto& m : rec_.members()) {
    for (const auto& u : m.peer_urls()) {
      if (std::find(peer_urls.begin(), peer_urls.end(), u) != peer_urls.end()) {
        return m.id();
      }
    }
  }
  return std::nullopt;
}

}  // namespace synod::server
