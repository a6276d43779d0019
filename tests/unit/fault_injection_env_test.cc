// FaultInjectionEnv (tests/support): what a simulated power loss keeps, and
// that an inactive filesystem refuses writes. Runs on a leveldb memory env.
#include "tests/support/fault_injection_env.h"

#include <iostream>
#include <memory>
#include <string>

#include "backend/raft/random.h"
#include "gtest/gtest.h"
#include "leveldb/env.h"
#include "leveldb/helpers/memenv.h"

namespace synod::testing {
namespace {

class FaultInjectionEnvTest : public ::testing::Test {
 protected:
  void SetUp() override {
    mem_.reset(leveldb::NewMemEnv(leveldb::Env::Default()));
    env_ = std::make_unique<FaultInjectionEnv>(mem_.get());
    ASSERT_TRUE(env_->CreateDir("/d").ok());
  }

  // Writes `synced` then Sync, then `unsynced`, and closes the file.
  void Write(const std::string& fname, const std::string& synced,
             const std::string& unsynced) {
    leveldb::WritableFile* f = nullptr;
    ASSERT_TRUE(env_->NewWritableFile(fname, &f).ok());
    std::unique_ptr<leveldb::WritableFile> file(f);
    ASSERT_TRUE(file->Append(synced).ok());
    if (!synced.empty()) {
      ASSERT_TRUE(file->Sync().ok());
    }
    ASSERT_TRUE(file->Append(unsynced).ok());
    ASSERT_TRUE(file->Close().ok());
  }

  std::string Read(const std::string& fname) {
    std::string data;
    leveldb::Status s = leveldb::ReadFileToString(mem_.get(), fname, &data);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return data;
  }

  std::unique_ptr<leveldb::Env> mem_;
  std::unique_ptr<FaultInjectionEnv> env_;
};

TEST_F(FaultInjectionEnvTest, PowerLossKeepsWhatWasSynced) {
  Write("/d/a", "synced", "lost");
  EXPECT_EQ(Read("/d/a"), "syncedlost");
  ASSERT_TRUE(env_->DropUnsyncedData().ok());
  EXPECT_EQ(Read("/d/a"), "synced");
}

TEST_F(FaultInjectionEnvTest, PowerLossDeletesAFileCreatedAndNeverSynced) {
  Write("/d/a", "a", "");
  Write("/d/b", "", "never synced");
  ASSERT_TRUE(env_->DropUnsyncedData().ok());
  EXPECT_EQ(Read("/d/a"), "a");
  EXPECT_FALSE(mem_->FileExists("/d/b"));
}

TEST_F(FaultInjectionEnvTest, SyncingANewFileSyncsItsDirectory) {
  Write("/d/b", "", "never synced");
  Write("/d/c", "c", "");  // syncs /d, so b's name is durable
  ASSERT_TRUE(env_->DropUnsyncedData().ok());
  EXPECT_EQ(Read("/d/b"), "");
  EXPECT_EQ(Read("/d/c"), "c");
}

TEST_F(FaultInjectionEnvTest, RenameCarriesTheFileState) {
  // LevelDB's SetCurrentFile: write a temp file, sync, rename.
  Write("/d/CURRENT.dbtmp", "MANIFEST-000002\n", "");
  ASSERT_TRUE(env_->RenameFile("/d/CURRENT.dbtmp", "/d/CURRENT").ok());
  Write("/d/x.tmp", "", "unsynced");
  ASSERT_TRUE(env_->RenameFile("/d/x.tmp", "/d/x").ok());
  ASSERT_TRUE(env_->DropUnsyncedData().ok());
  EXPECT_EQ(Read("/d/CURRENT"), "MANIFEST-000002\n");
  EXPECT_FALSE(mem_->FileExists("/d/CURRENT.dbtmp"));
  EXPECT_FALSE(mem_->FileExists("/d/x"));  // created, never synced
}

TEST_F(FaultInjectionEnvTest, FilesItDidNotWriteAreDurableAsTheyWere) {
  ASSERT_TRUE(leveldb::WriteStringToFile(mem_.get(), "old", "/d/log").ok());
  leveldb::WritableFile* f = nullptr;
  ASSERT_TRUE(env_->NewAppendableFile("/d/log", &f).ok());
  std::unique_ptr<leveldb::WritableFile> file(f);
  ASSERT_TRUE(file->Append("+new").ok());
  ASSERT_TRUE(file->Close().ok());
  file.reset();
  ASSERT_TRUE(env_->DropUnsyncedData().ok());
  EXPECT_EQ(Read("/d/log"), "old");
}

TEST_F(FaultInjectionEnvTest, PowerLossIsRefusedWhileAFileIsOpenForWriting) {
  leveldb::WritableFile* f = nullptr;
  ASSERT_TRUE(env_->NewWritableFile("/d/a", &f).ok());
  std::unique_ptr<leveldb::WritableFile> file(f);
  EXPECT_EQ(env_->DropUnsyncedData().code(),
            absl::StatusCode::kFailedPrecondition);
  file.reset();
  EXPECT_TRUE(env_->DropUnsyncedData().ok());
}

TEST_F(FaultInjectionEnvTest, InactiveFilesystemFailsEveryWriteAndKeepsReads) {
  leveldb::WritableFile* f = nullptr;
  ASSERT_TRUE(env_->NewWritableFile("/d/a", &f).ok());
  std::unique_ptr<leveldb::WritableFile> file(f);
  ASSERT_TRUE(file->Append("abc").ok());
  ASSERT_TRUE(file->Sync().ok());

  env_->SetFilesystemActive(false);
  EXPECT_FALSE(env_->IsFilesystemActive());
  EXPECT_TRUE(file->Append("x").IsIOError());
  EXPECT_TRUE(file->Flush().IsIOError());
  EXPECT_TRUE(file->Sync().IsIOError());
  leveldb::WritableFile* g = nullptr;
  EXPECT_TRUE(env_->NewWritableFile("/d/b", &g).IsIOError());
  EXPECT_EQ(g, nullptr);
  EXPECT_FALSE(mem_->FileExists("/d/b"));
  EXPECT_TRUE(env_->NewAppendableFile("/d/a", &g).IsIOError());
  EXPECT_TRUE(env_->RenameFile("/d/a", "/d/c").IsIOError());
  EXPECT_TRUE(env_->RemoveFile("/d/a").IsIOError());
  EXPECT_TRUE(env_->CreateDir("/e").IsIOError());
  EXPECT_EQ(Read("/d/a"), "abc");

  env_->SetFilesystemActive(true);
  EXPECT_TRUE(file->Append("d").ok());
  EXPECT_TRUE(file->Close().ok());
  EXPECT_EQ(Read("/d/a"), "abcd");
}

TEST_F(FaultInjectionEnvTest, SyncCountCountsSuccessfulSyncs) {
  EXPECT_EQ(env_->sync_count(), 0);
  Write("/d/a", "a", "b");
  EXPECT_EQ(env_->sync_count(), 1);
  Write("/d/b", "", "b");
  EXPECT_EQ(env_->sync_count(), 1);
}

// A torn power loss keeps the synced bytes and some prefix of the rest, or
// deletes a file that was created and never synced; a seed replays it.
TEST_F(FaultInjectionEnvTest, TornPowerLossKeepsAPrefix) {
  const std::string content = "0123456789abcdefghijklmnopqrstuvwxyz";
  const size_t synced = 10;
  bool saw_torn = false, saw_kept = false, saw_deleted = false;
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    SCOPED_TRACE(::testing::Message() << "seed " << seed);
    std::cout << "TornPowerLossKeepsAPrefix seed " << seed << "\n";
    env_->RemoveFile("/d/keep");
    env_->RemoveFile("/d/new");
    Write("/d/keep", content.substr(0, synced), content.substr(synced));
    // Created after the last directory sync (by /d/keep's Sync).
    Write("/d/new", "", content);
    raft::Random rnd(seed);
    ASSERT_TRUE(env_->DropRandomUnsyncedData(&rnd).ok());
    const std::string kept = Read("/d/keep");
    EXPECT_GE(kept.size(), synced);
    EXPECT_EQ(kept, content.substr(0, kept.size()));
    saw_torn |= kept.size() > synced && kept.size() < content.size();
    if (mem_->FileExists("/d/new")) {
      saw_kept = true;
      const std::string rest = Read("/d/new");
      EXPECT_EQ(rest, content.substr(0, rest.size()));
    } else {
      saw_deleted = true;
    }
  }
  // The fixed seeds exercise every outcome.
  EXPECT_TRUE(saw_torn);
  EXPECT_TRUE(saw_kept);
  EXPECT_TRUE(saw_deleted);
}

}  // namespace
}  // namespace synod::testing
