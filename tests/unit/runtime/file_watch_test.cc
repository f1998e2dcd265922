// core/runtime/file_watch: debounced, content-checked watch of config files through their
// directories. Real files in a temporary directory, a real loop bounded by deadlines.

#include "core/runtime/file_watch.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace crescent::core {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr uint64_t kDeadlineMs = 5000;  // for what must happen; a failure, not a wait

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "crescent-watch-XXXXXX").string();
    char* p = mkdtemp(tmpl.data());
    dir_ = p ? p : "/tmp";
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::string path(const std::string& name) const { return dir_ + "/" + name; }
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
};

void writeFile(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
}

// Writes a temporary file and renames it over `path`, as editors save.
void replaceFile(const std::string& path, const std::string& text) {
  writeFile(path + ".tmp~", text);
  fs::rename(path + ".tmp~", path);
}

class FileWatchTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_EQ(uv_loop_init(&loop_), 0); }
  void TearDown() override {
    if (watch_) watch_->close();
    watch_.reset();
    uv_run(&loop_, UV_RUN_DEFAULT);  // close callbacks free the handles
    EXPECT_EQ(uv_loop_close(&loop_), 0);
  }

  void start(std::vector<WatchedFile> files, uint64_t debounce_ms) {
    auto w = FileWatch::start(&loop_, std::move(files), debounce_ms, [this] {
      ++calls_;
      uv_update_time(&loop_);
      called_at_.push_back(uv_now(&loop_));
      if (on_change_) on_change_();
    });
    ASSERT_TRUE(w.ok()) << w.message();
    watch_ = std::move(*w);
  }

  // Runs the loop until `done()` or `ms` elapse; returns done().
  bool runUntil(const std::function<bool()>& done, uint64_t ms = kDeadlineMs) {
    bool expired = false;
    uv_timer_t deadline;
    uv_timer_init(&loop_, &deadline);
    deadline.data = &expired;
    uv_timer_start(
        &deadline, [](uv_timer_t* t) { *static_cast<bool*>(t->data) = true; }, ms, 0);
    while (!done() && !expired) uv_run(&loop_, UV_RUN_ONCE);
    uv_close(reinterpret_cast<uv_handle_t*>(&deadline), nullptr);
    uv_run(&loop_, UV_RUN_NOWAIT);  // runs the close before `deadline` leaves the stack
    return done();
  }
  bool awaitCalls(int n) {
    return runUntil([&] { return calls_ >= n; });
  }
  bool awaitChecks(uint64_t n) {
    return runUntil([&] { return watch_ && watch_->checks() >= n; });
  }
  uint64_t now() {
    uv_update_time(&loop_);
    return uv_now(&loop_);
  }

  uv_loop_t loop_{};
  TempDir tmp_;
  std::unique_ptr<FileWatch> watch_;
  int calls_ = 0;
  std::vector<uint64_t> called_at_;
  std::function<void()> on_change_;
};

TEST_F(FileWatchTest, WriteIsReportedOnceAfterTheDebounce) {
  std::string cfg = tmp_.path("cfg.lua");
  writeFile(cfg, "a = 1\n");
  start({cfg}, 100);
  uint64_t wrote = now();
  writeFile(cfg, "a = 2\n");
  ASSERT_TRUE(awaitCalls(1));
  EXPECT_GE(called_at_[0] - wrote, 100u);
  EXPECT_EQ(watch_->checks(), 1u);  // the open(O_TRUNC) and the write made one check
  EXPECT_EQ(calls_, 1);
}

TEST_F(FileWatchTest, BurstOfWritesGivesOneCallback) {
  std::string cfg = tmp_.path("cfg.lua");
  writeFile(cfg, "v = 0\n");
  constexpr uint64_t kDebounce = 500;
  start({cfg}, kDebounce);

  // Five writes 10 ms apart while the loop runs: each restarts the debounce.
  struct Writer {
    std::string path;
    int n = 0;
    uint64_t last_write = 0;
  } writer{cfg};
  uv_timer_t t;
  uv_timer_init(&loop_, &t);
  t.data = &writer;
  uv_timer_start(
      &t,
      [](uv_timer_t* h) {
        auto* w = static_cast<Writer*>(h->data);
        writeFile(w->path, "v = " + std::to_string(++w->n) + "\n");
        uv_update_time(h->loop);
        w->last_write = uv_now(h->loop);
        if (w->n == 5) uv_timer_stop(h);
      },
      10, 10);
  bool called = awaitCalls(1);
  uv_close(reinterpret_cast<uv_handle_t*>(&t), nullptr);
  uv_run(&loop_, UV_RUN_NOWAIT);
  ASSERT_TRUE(called);
  EXPECT_EQ(writer.n, 5);
  EXPECT_GE(called_at_[0] - writer.last_write, kDebounce);
  EXPECT_EQ(watch_->checks(), 1u);
  EXPECT_EQ(calls_, 1);
}

TEST_F(FileWatchTest, TouchOrIdenticalContentGivesNoCallback) {
  std::string cfg = tmp_.path("cfg.lua");
  writeFile(cfg, "same\n");
  start({cfg}, 20);

  ASSERT_EQ(utimensat(AT_FDCWD, cfg.c_str(), nullptr, 0), 0);  // touch
  ASSERT_TRUE(awaitChecks(1));
  writeFile(cfg, "same\n");  // saved without a change
  ASSERT_TRUE(awaitChecks(2));
  replaceFile(cfg, "same\n");  // saved by rename, new inode, same content
  ASSERT_TRUE(awaitChecks(3));
  EXPECT_EQ(calls_, 0);

  writeFile(cfg, "different\n");  // and a real change still counts
  ASSERT_TRUE(awaitCalls(1));
}

TEST_F(FileWatchTest, RenameReplaceIsSeenTwiceInARow) {
  std::string cfg = tmp_.path("cfg.lua");
  writeFile(cfg, "v = 1\n");
  start({cfg}, 20);
  replaceFile(cfg, "v = 2\n");
  ASSERT_TRUE(awaitCalls(1));
  replaceFile(cfg, "v = 3\n");
  ASSERT_TRUE(awaitCalls(2));
  EXPECT_EQ(calls_, 2);
}

TEST_F(FileWatchTest, DeleteAndRecreateAreChanges) {
  std::string cfg = tmp_.path("cfg.lua");
  writeFile(cfg, "v = 1\n");
  start({cfg}, 20);
  fs::remove(cfg);
  ASSERT_TRUE(awaitCalls(1));
  writeFile(cfg, "v = 1\n");  // back, even with the old content: it was gone
  ASSERT_TRUE(awaitCalls(2));
  writeFile(cfg, "v = 2\n");  // and still watched
  ASSERT_TRUE(awaitCalls(3));
}

TEST_F(FileWatchTest, OtherFilesInTheDirectoryAreIgnored) {
  std::string cfg = tmp_.path("cfg.lua");
  writeFile(cfg, "v = 1\n");
  start({cfg}, 20);
  writeFile(tmp_.path("access.log"), "noise\n");
  writeFile(tmp_.path("other.lua"), "noise\n");
  // No check runs: the events are filtered by name (the debounce is 20 ms; wait 10x).
  EXPECT_FALSE(runUntil([&] { return watch_->checks() > 0; }, 200));
  EXPECT_EQ(calls_, 0);
}

TEST_F(FileWatchTest, SetFilesSwitchesTheSet) {
  TempDir other;
  std::string a = tmp_.path("a.lua");
  std::string b = other.path("b.lua");
  writeFile(a, "a\n");
  writeFile(b, "b\n");
  start({a}, 20);
  EXPECT_THAT(watch_->directories(), ElementsAre(tmp_.dir()));

  ASSERT_TRUE(watch_->setFiles({b}).ok());
  EXPECT_THAT(watch_->directories(), ElementsAre(other.dir()));
  writeFile(a, "a changed\n");  // no longer watched: not even a check
  EXPECT_FALSE(runUntil([&] { return watch_->checks() > 0; }, 200));
  writeFile(b, "b changed\n");
  ASSERT_TRUE(awaitCalls(1));
  EXPECT_EQ(watch_->checks(), 1u);
}

TEST_F(FileWatchTest, SetFilesFromTheCallbackAddsAModule) {
  std::string cfg = tmp_.path("cfg.lua");
  std::string mod = tmp_.path("lib/mod.lua");
  fs::create_directories(tmp_.path("lib"));
  writeFile(cfg, "v = 1\n");
  writeFile(mod, "return 1\n");
  start({cfg}, 20);
  // The reload finds that the script now requires lib/mod.lua.
  on_change_ = [&] {
    ASSERT_TRUE(watch_->setFiles({cfg, mod, tmp_.dir() + "/lib/../cfg.lua"}).ok());
  };
  writeFile(cfg, "v = 2\nrequire 'lib.mod'\n");
  ASSERT_TRUE(awaitCalls(1));
  EXPECT_EQ(watch_->directories().size(), 2u);
  on_change_ = nullptr;
  writeFile(mod, "return 2\n");
  ASSERT_TRUE(awaitCalls(2));
}

// Issue 16's double reload: a check saw the file half written (truncated), the reload it
// triggered read the whole file. With that text as the new baseline, the rest of the write
// is no change: one callback, not two.
TEST_F(FileWatchTest, TheLoadedTextIsTheBaseline) {
  std::string cfg = tmp_.path("cfg.lua");
  writeFile(cfg, "v = 1\n");
  start({WatchedFile(cfg, "v = 1\n")}, 20);
  on_change_ = [&] {
    // The "reload": the rest of the write lands, then the loader reads the whole file.
    writeFile(cfg, "v = 2\n");
    ASSERT_TRUE(watch_->setFiles({WatchedFile(cfg, "v = 2\n")}).ok());
  };
  writeFile(cfg, "");  // the truncation the first check sees
  ASSERT_TRUE(awaitCalls(1));
  on_change_ = nullptr;
  uint64_t checks = watch_->checks();
  // The write's own event restarts the debounce: let that check run, and find nothing.
  EXPECT_FALSE(runUntil([&] { return calls_ > 1; }, 300));
  EXPECT_GE(watch_->checks(), checks);
  EXPECT_EQ(calls_, 1);
}

// A write that landed after the caller read the file but before the watch started (an
// edit during a slow start or reload) differs from the loaded text: reported once.
TEST_F(FileWatchTest, AFileThatMovedOnWhileLoadingIsReportedOnce) {
  std::string cfg = tmp_.path("cfg.lua");
  writeFile(cfg, "v = 2\n");
  start({WatchedFile(cfg, "v = 1\n")}, 20);
  ASSERT_TRUE(awaitCalls(1));
  EXPECT_EQ(watch_->checks(), 1u);
  EXPECT_FALSE(runUntil([&] { return calls_ > 1; }, 200));
  // Given the text it runs, an unchanged file is no change.
  ASSERT_TRUE(watch_->setFiles({WatchedFile(cfg, "v = 2\n")}).ok());
  EXPECT_FALSE(runUntil([&] { return watch_->checks() > 1; }, 200));
}

TEST_F(FileWatchTest, CallbackMayDestroyTheWatch) {
  std::string cfg = tmp_.path("cfg.lua");
  writeFile(cfg, "v = 1\n");
  start({cfg}, 20);
  on_change_ = [&] { watch_.reset(); };
  writeFile(cfg, "v = 2\n");
  ASSERT_TRUE(awaitCalls(1));
  EXPECT_EQ(watch_, nullptr);
  writeFile(cfg, "v = 3\n");  // nothing left to call: TearDown's uv_loop_close() checks
}

TEST_F(FileWatchTest, CloseIsIdempotentAndStopsCallbacks) {
  std::string cfg = tmp_.path("cfg.lua");
  writeFile(cfg, "v = 1\n");
  start({cfg}, 20);
  writeFile(cfg, "v = 2\n");
  watch_->close();
  watch_->close();
  EXPECT_FALSE(watch_->setFiles({cfg}).ok());
  uv_run(&loop_, UV_RUN_DEFAULT);  // returns: nothing is left active
  EXPECT_EQ(calls_, 0);
}

// The Kubernetes ConfigMap layout: cfg.lua -> ..data/cfg.lua, ..data -> ..v1, updated by
// renaming a new link over ..data.
TEST_F(FileWatchTest, SymlinkSwapLikeAConfigMapIsSeen) {
  auto version = [&](const std::string& v, const std::string& text) {
    fs::create_directories(tmp_.path(v));
    writeFile(tmp_.path(v + "/cfg.lua"), text);
    fs::create_directory_symlink(v, tmp_.path("..data_tmp"));
    fs::rename(tmp_.path("..data_tmp"), tmp_.path("..data"));
  };
  version("..v1", "v = 1\n");
  fs::create_symlink("..data/cfg.lua", tmp_.path("cfg.lua"));
  start({tmp_.path("cfg.lua")}, 20);
  EXPECT_THAT(watch_->directories(), ElementsAre(tmp_.dir(), tmp_.path("..v1")));

  version("..v2", "v = 2\n");
  fs::remove_all(tmp_.path("..v1"));
  ASSERT_TRUE(awaitCalls(1));
  EXPECT_THAT(watch_->directories(), ElementsAre(tmp_.dir(), tmp_.path("..v2")));
  version("..v3", "v = 3\n");
  ASSERT_TRUE(awaitCalls(2));
  // And an in-place edit of the current target.
  writeFile(tmp_.path("..v3/cfg.lua"), "v = 4\n");
  ASSERT_TRUE(awaitCalls(3));
}

// A release layout: the directory on the path is a link, swapped at deployment.
TEST_F(FileWatchTest, DirectoryLinkSwapIsSeen) {
  auto release = [&](const std::string& r, const std::string& text) {
    fs::create_directories(tmp_.path("releases/" + r));
    writeFile(tmp_.path("releases/" + r + "/cfg.lua"), text);
    fs::create_directory_symlink("releases/" + r, tmp_.path("current.tmp"));
    fs::rename(tmp_.path("current.tmp"), tmp_.path("current"));
  };
  release("1", "v = 1\n");
  start({tmp_.path("current/cfg.lua")}, 20);
  EXPECT_THAT(watch_->directories(), ElementsAre(tmp_.dir(), tmp_.path("releases/1")));
  release("2", "v = 2\n");
  ASSERT_TRUE(awaitCalls(1));
  EXPECT_THAT(watch_->directories(), ElementsAre(tmp_.dir(), tmp_.path("releases/2")));
  writeFile(tmp_.path("releases/2/cfg.lua"), "v = 3\n");
  ASSERT_TRUE(awaitCalls(2));
  writeFile(tmp_.path("releases/1/cfg.lua"), "v = 4\n");  // no longer what the path names
  EXPECT_FALSE(runUntil([&] { return watch_->checks() > 2; }, 200));
}

TEST_F(FileWatchTest, MissingDirectoryIsWatchedForItsCreation) {
  std::string cfg = tmp_.path("conf.d/cfg.lua");
  start({cfg}, 20);
  EXPECT_THAT(watch_->directories(), ElementsAre(tmp_.dir()));
  fs::create_directories(tmp_.path("conf.d"));
  writeFile(cfg, "v = 1\n");
  ASSERT_TRUE(awaitCalls(1));
  EXPECT_THAT(watch_->directories(), ElementsAre(tmp_.path("conf.d")));
  writeFile(cfg, "v = 2\n");
  ASSERT_TRUE(awaitCalls(2));
}

TEST_F(FileWatchTest, DirectoryDeletedOrMovedAwayAndReplacedIsWatchedAgain) {
  std::string cfg = tmp_.path("conf/cfg.lua");
  fs::create_directories(tmp_.path("conf"));
  writeFile(cfg, "v = 1\n");
  start({cfg}, 20);
  fs::remove_all(tmp_.path("conf"));
  ASSERT_TRUE(awaitCalls(1));
  fs::create_directories(tmp_.path("conf"));
  writeFile(cfg, "v = 2\n");
  ASSERT_TRUE(awaitCalls(2));
  // Moved away and replaced at once: the only event is on the old directory itself.
  fs::rename(tmp_.path("conf"), tmp_.path("conf.old"));
  fs::create_directories(tmp_.path("conf"));
  writeFile(cfg, "v = 3\n");
  ASSERT_TRUE(awaitCalls(3));
  writeFile(cfg, "v = 4\n");
  ASSERT_TRUE(awaitCalls(4));
}

TEST_F(FileWatchTest, UnwatchableDirectoryIsAnError) {
  if (geteuid() == 0) GTEST_SKIP() << "root may watch any directory";
  fs::create_directories(tmp_.path("private"));
  writeFile(tmp_.path("private/cfg.lua"), "v = 1\n");
  fs::permissions(tmp_.path("private"), fs::perms::owner_exec);  // searchable, not readable
  auto w = FileWatch::start(&loop_, {tmp_.path("private/cfg.lua")}, 20, [] {});
  fs::permissions(tmp_.path("private"), fs::perms::owner_all);
  ASSERT_FALSE(w.ok());
  EXPECT_THAT(w.message(), HasSubstr("cannot watch directory \"" + tmp_.path("private") + "\""));
  EXPECT_THAT(w.message(), HasSubstr("permission denied"));
}

}  // namespace
}  // namespace crescent::core
