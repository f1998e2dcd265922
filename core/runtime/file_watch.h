#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "core/base/status.h"

namespace crescent::core {

/// What a file looked like at one check: enough to tell a real change of content from a
/// touch, a rename of an identical copy or an unrelated event.
struct FileFingerprint {
  bool exists = false;
  uint64_t size = 0;
  int64_t mtime_ns = 0;
  int64_t ctime_ns = 0;
  uint64_t inode = 0;
  uint64_t device = 0;
  uint64_t hash = 0;      ///< 64-bit FNV-1a of the content (0 when absent or unreadable)
  bool readable = false;  ///< the content could be read (hash is meaningful)
  int64_t taken_ns = 0;   ///< wall-clock time of the check (CLOCK_REALTIME, as mtime)

  /// Same content, as far as a reload is concerned: both absent, or both readable with
  /// the same hash and size.
  bool sameContent(const FileFingerprint& o) const;
};

/// A file to watch, and the content its watcher acts on: for the config watch, the text the
/// running generation was loaded from. Without `loaded`, what the file holds when the watch
/// takes it is the baseline.
struct WatchedFile {
  WatchedFile(std::string p) : path(std::move(p)) {}  // NOLINT: a bare path is a file
  WatchedFile(std::string p, std::string text) : path(std::move(p)), loaded(std::move(text)) {}
  std::string path;
  std::optional<std::string> loaded;
};

/// Watches files (the config script and the modules it requires) and calls `changed` once
/// per burst of changes, `debounce_ms` after the last event, and only if some file's
/// content really changed: a touch, or an editor saving identical content, does not
/// count.
///
/// Editors replace files by rename (write a temporary file, rename it over), which
/// defeats a watch on the file itself. So FileWatch watches the parent DIRECTORIES
/// (uv_fs_event, inotify on Linux) and filters events by file name: a file replaced,
/// deleted and re-created is still watched. Symbolic links on the way are followed the
/// way the kernel resolves the path, and each link is watched in its own directory too:
/// a deployment that swaps a link is seen, whether the file is the link (the Kubernetes
/// ConfigMap layout: cfg.lua -> ..data/cfg.lua, ..data -> ..2024_01_01/, updated by
/// renaming a new `..data` over the old) or a directory is (/srv/app/current ->
/// releases/42). A missing file or directory is watched for in its deepest existing
/// ancestor. Watches follow the links, and a directory replaced by a new one, after
/// every check.
///
/// Detection: after the debounce, each file is stat()ed. If size, mtime, ctime, inode
/// and device are those of the baseline, and the baseline was taken more than 2 s after
/// the file's last mtime/ctime (so a write in the same timestamp tick would have changed
/// them), the file is unchanged. Otherwise its content is read and hashed (synchronous
/// reads on the loop thread: config files are small). A file that vanished, appeared or
/// whose hash differs is a change. After a check every file's fingerprint becomes the
/// new baseline, then `changed` runs.
///
/// One baseline: a file given with its `loaded` text is compared with that text, not with
/// what the file held when the watch took it. A write that lands between the caller's read
/// and start()/setFiles() is therefore a change, found at once (the debounce timer starts),
/// and the events of the same write only restart that timer: one burst, one `changed`.
///
/// Lifetime (DESIGN §2): the uv handles are heap-allocated holders that free themselves in
/// their close callbacks, so the FileWatch may be destroyed right after close() (the
/// destructor calls it). The handles keep the loop alive until then: close it when the
/// process stops. Runs on the loop's thread; not thread-safe.
///
/// Limit: a change made while the watches are being moved (just after a check, when a
/// link or directory was swapped) is noticed only at the next event.
class FileWatch {
 public:
  /// Watches `files` (paths, absolute or relative to the working directory; duplicates
  /// are ignored; a file may be missing, then its appearance is a change) on `loop`.
  /// A file whose content already differs from its `loaded` text starts the debounce.
  /// Directories are watched by their real path (directories() lists them).
  /// `debounce_ms`: quiet time after the last event before the check (0 = next loop turn).
  /// `changed` is called on the loop's thread; it may call setFiles(), close() or destroy
  /// the FileWatch (it is the last thing the check does).
  /// Errors: a directory that cannot be watched (permission, or the inotify limit
  /// fs.inotify.max_user_watches), naming the directory and the reason; nothing is left
  /// running then (the handles close on the next loop turn).
  static Result<std::unique_ptr<FileWatch>> start(uv_loop_t* loop, std::vector<WatchedFile> files,
                                                  uint64_t debounce_ms,
                                                  std::function<void()> changed);
  ~FileWatch();
  FileWatch(const FileWatch&) = delete;
  FileWatch& operator=(const FileWatch&) = delete;

  /// Replaces the watched set (after a reload, with the texts the new generation was
  /// loaded from). A file given with `loaded` takes that text as its baseline; one without
  /// it keeps its baseline if it was watched already (the content seen by the last check),
  /// or takes its current content. A file whose content differs from its new baseline
  /// starts the debounce, so a write that landed while the caller loaded is reported
  /// once. Safe to call from inside `changed`. Errors as start(); the files whose
  /// directories could be watched are watched anyway. After close(): an error.
  Status setFiles(std::vector<WatchedFile> files);

  /// Closes its handles; no callback runs afterwards. Idempotent.
  void close();

  /// Debounced checks run so far (each may or may not have called `changed`). Lets a
  /// caller (a test, the stats) await "the burst has been looked at".
  uint64_t checks() const { return checks_; }
  /// Directories currently watched (for logs and tests).
  std::vector<std::string> directories() const;

 private:
  struct DirHandle;
  struct TimerHandle;

  FileWatch(uv_loop_t* loop, uint64_t debounce_ms, std::function<void()> changed);
  /// Directory -> file names whose events count, for the current files (with the links
  /// met while resolving them).
  std::map<std::string, std::set<std::string>> wantedWatches() const;
  /// Opens watches for wanted directories not yet watched and closes the others.
  Status syncWatches();
  void onEvent(DirHandle& dir, const char* filename, int events, int status);
  void onDebounce();

  uv_loop_t* loop_;
  uint64_t debounce_ms_;
  std::function<void()> changed_;
  std::map<std::string, FileFingerprint> files_;  // path -> baseline
  std::map<std::string, DirHandle*> dirs_;        // owned by libuv until their close callback
  TimerHandle* timer_ = nullptr;                  // same
  uint64_t checks_ = 0;
  bool closed_ = false;
};

}  // namespace crescent::core
