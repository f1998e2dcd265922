#include "core/runtime/file_watch.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <ctime>
#include <filesystem>
#include <utility>
#include <vector>

#include "core/base/log.h"

namespace crescent::core {

// A uv_fs_event_t on one directory. Lives until its close callback (libuv may still use
// the memory until then), so it is not a member of the FileWatch.
struct FileWatch::DirHandle {
  uv_fs_event_t h{};
  FileWatch* owner;
  std::string dir;
  std::set<std::string> names;  // file names in `dir` whose events count
  uint64_t device = 0;          // identity of the directory watched: one deleted and
  uint64_t inode = 0;           // re-created under the same path needs a new watch
  std::string self_name;        // the name libuv gives events on the directory itself

  DirHandle(FileWatch* o, std::string d) : owner(o), dir(std::move(d)) {
    size_t slash = dir.rfind('/');
    self_name = slash == std::string::npos ? dir : dir.substr(slash + 1);
  }
  static void onEventCb(uv_fs_event_t* h, const char* filename, int events, int status) {
    auto* self = static_cast<DirHandle*>(h->data);
    self->owner->onEvent(*self, filename, events, status);
  }
  static void onCloseCb(uv_handle_t* h) { delete static_cast<DirHandle*>(h->data); }
  void close() { uv_close(reinterpret_cast<uv_handle_t*>(&h), &onCloseCb); }
};

// The debounce timer, freed the same way.
struct FileWatch::TimerHandle {
  uv_timer_t h{};
  FileWatch* owner;

  explicit TimerHandle(FileWatch* o) : owner(o) {}
  static void onTimerCb(uv_timer_t* h) {
    // May destroy the FileWatch (then this holder is closing, freed later): nothing after.
    static_cast<TimerHandle*>(h->data)->owner->onDebounce();
  }
  static void onCloseCb(uv_handle_t* h) { delete static_cast<TimerHandle*>(h->data); }
  void close() { uv_close(reinterpret_cast<uv_handle_t*>(&h), &onCloseCb); }
};

namespace {

// A stat equality is trusted only when the baseline was taken this long after the file's
// last mtime/ctime: a write within the same timestamp tick (coarse on some filesystems)
// leaves size and times unchanged. The racy-git rule.
constexpr int64_t kRacyWindowNs = 2'000'000'000;

int64_t toNs(const struct timespec& ts) {
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

int64_t wallClockNs() {
  struct timespec ts {};
  clock_gettime(CLOCK_REALTIME, &ts);
  return toNs(ts);
}

void fillStat(FileFingerprint& fp, const struct stat& st) {
  fp.exists = true;
  fp.size = static_cast<uint64_t>(st.st_size);
  fp.mtime_ns = toNs(st.st_mtim);
  fp.ctime_ns = toNs(st.st_ctim);
  fp.inode = static_cast<uint64_t>(st.st_ino);
  fp.device = static_cast<uint64_t>(st.st_dev);
}

bool sameStat(const FileFingerprint& a, const FileFingerprint& b) {
  return a.exists == b.exists && a.size == b.size && a.mtime_ns == b.mtime_ns &&
         a.ctime_ns == b.ctime_ns && a.inode == b.inode && a.device == b.device;
}

// 64-bit FNV-1a.
constexpr uint64_t kFnvOffset = 14695981039346656037ull;
constexpr uint64_t fnvStep(uint64_t h, unsigned char c) {
  return (h ^ c) * 1099511628211ull;
}

// Reads the open file to its end, hashing it (64-bit FNV-1a). False on a read error.
bool hashFd(int fd, uint64_t& hash) {
  uint64_t h = kFnvOffset;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return false;
    if (n == 0) break;
    for (ssize_t i = 0; i < n; ++i) h = fnvStep(h, static_cast<unsigned char>(buf[i]));
  }
  hash = h;
  return true;
}

// The fingerprint of `path` now. With a baseline whose stat is unchanged and not racy,
// the content is not read again and the baseline is returned.
FileFingerprint fingerprint(const std::string& path, const FileFingerprint* baseline) {
  FileFingerprint fp;
  fp.taken_ns = wallClockNs();
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT || errno == ENOTDIR) return fp;  // absent
    fp.exists = true;  // there, but not even stat()able: compare as unreadable
    return fp;
  }
  fillStat(fp, st);
  if (baseline != nullptr && baseline->readable && sameStat(fp, *baseline) &&
      baseline->taken_ns - std::max(baseline->mtime_ns, baseline->ctime_ns) > kRacyWindowNs) {
    return *baseline;
  }
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno != ENOENT) return fp;  // there but unreadable
    FileFingerprint gone;            // deleted between stat() and open()
    gone.taken_ns = fp.taken_ns;
    return gone;
  }
  // Describe what was read: the open file, not the path (it may have been replaced).
  if (::fstat(fd, &st) == 0) fillStat(fp, st);
  fp.readable = hashFd(fd, fp.hash);
  ::close(fd);
  return fp;
}

// The baseline for content known without reading the file (it has no stat data, so the
// first check reads the file).
FileFingerprint textFingerprint(const std::string& text) {
  FileFingerprint fp;
  fp.exists = true;
  fp.readable = true;
  fp.size = text.size();
  uint64_t h = kFnvOffset;
  for (char c : text) h = fnvStep(h, static_cast<unsigned char>(c));
  fp.hash = h;
  return fp;
}

std::string normalize(const std::string& path) {
  std::string p = std::filesystem::path(path).lexically_normal().string();
  return p.empty() ? std::string(".") : p;
}

// "dir" and "name" of a normalized path ("." for a bare name).
std::pair<std::string, std::string> splitPath(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return {".", path};
  return {slash == 0 ? "/" : path.substr(0, slash), path.substr(slash + 1)};
}

std::string watchError(const std::string& dir, int err) {
  std::string msg = "cannot watch directory \"" + dir + "\": " + uv_strerror(err);
  if (err == UV_ENOSPC) msg += " (raise the inotify limit fs.inotify.max_user_watches)";
  return msg;
}

// Resolves `path` component by component, as the kernel does, and adds to `want` the
// (directory, name) pairs whose change can change what `path` names: every symbolic link
// met on the way (in its directory), and the file it resolves to. A missing component
// is watched for in the deepest existing directory, so its creation is seen. Directories
// in `want` are real paths (no links).
void addWatchesFor(const std::string& path, std::map<std::string, std::set<std::string>>& want) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::path abs = fs::absolute(path, ec);
  if (ec) return;
  std::vector<std::string> todo;  // components left, the next one last
  auto push = [&todo](const fs::path& p) {
    std::vector<std::string> parts;
    for (const auto& c : p.relative_path()) parts.push_back(c.string());
    todo.insert(todo.end(), parts.rbegin(), parts.rend());
  };
  push(abs);
  const std::string kRoot = "/";  // (a literal assigned below trips GCC 12's -Wrestrict)
  std::string cur = kRoot;
  auto join = [&cur](const std::string& c) { return cur == "/" ? "/" + c : cur + "/" + c; };
  for (int links = 0; !todo.empty();) {
    std::string c = std::move(todo.back());
    todo.pop_back();
    if (c.empty() || c == ".") continue;
    if (c == "..") {
      cur = splitPath(cur).first;
      continue;
    }
    std::string next = join(c);
    struct stat st {};
    if (::lstat(next.c_str(), &st) != 0) {
      want[cur].insert(c);  // missing: watch for its creation
      return;
    }
    if (!S_ISLNK(st.st_mode)) {
      cur = std::move(next);
      continue;
    }
    want[cur].insert(c);  // a swap of this link (..data in a ConfigMap) is an event here
    char target[PATH_MAX];
    ssize_t n = ::readlink(next.c_str(), target, sizeof(target) - 1);
    if (n <= 0 || ++links > 40) return;  // gone meanwhile, or a loop (ELOOP)
    fs::path t(std::string(target, static_cast<size_t>(n)));
    if (t.is_absolute()) cur = kRoot;
    push(t);
  }
  auto [dir, name] = splitPath(cur);
  want[dir].insert(name);
}

}  // namespace

bool FileFingerprint::sameContent(const FileFingerprint& o) const {
  if (exists != o.exists) return false;
  if (!exists) return true;
  if (readable != o.readable) return false;
  if (readable) return size == o.size && hash == o.hash;
  return sameStat(*this, o);
}

FileWatch::FileWatch(uv_loop_t* loop, uint64_t debounce_ms, std::function<void()> changed)
    : loop_(loop), debounce_ms_(debounce_ms), changed_(std::move(changed)) {}

FileWatch::~FileWatch() {
  close();
}

Result<std::unique_ptr<FileWatch>> FileWatch::start(uv_loop_t* loop, std::vector<WatchedFile> files,
                                                    uint64_t debounce_ms,
                                                    std::function<void()> changed) {
  std::unique_ptr<FileWatch> w(new FileWatch(loop, debounce_ms, std::move(changed)));
  w->timer_ = new TimerHandle(w.get());
  uv_timer_init(loop, &w->timer_->h);
  w->timer_->h.data = w->timer_;
  Status st = w->setFiles(std::move(files));
  if (!st.ok()) return st;  // the destructor closes what was opened
  return w;
}

Status FileWatch::setFiles(std::vector<WatchedFile> files) {
  if (closed_) return Status::error("file watch: setFiles after close");
  std::map<std::string, FileFingerprint> next;
  std::vector<std::string> fresh;
  std::vector<std::string> given;  // baselines from a loaded text: compared below
  for (WatchedFile& f : files) {
    std::string path = normalize(f.path);
    if (next.count(path) != 0) continue;
    if (f.loaded) {
      next[path] = textFingerprint(*f.loaded);
      given.push_back(path);
      continue;
    }
    auto old = files_.find(path);
    if (old != files_.end()) {
      next[path] = old->second;
    } else {
      next[path] = FileFingerprint();
      fresh.push_back(path);
    }
  }
  files_ = std::move(next);
  Status st = syncWatches();
  // Baselines after the watches: a write from now on is an event, none is lost.
  for (const std::string& path : fresh) files_[path] = fingerprint(path, nullptr);
  for (const std::string& path : given) {
    if (fingerprint(path, nullptr).sameContent(files_[path])) continue;
    logInfo("file watch: \"{}\" differs from the text that was loaded", path);
    uv_timer_start(&timer_->h, &TimerHandle::onTimerCb, debounce_ms_, 0);
    break;
  }
  return st;
}

std::map<std::string, std::set<std::string>> FileWatch::wantedWatches() const {
  std::map<std::string, std::set<std::string>> want;
  for (const auto& [path, fp] : files_) addWatchesFor(path, want);
  return want;
}

Status FileWatch::syncWatches() {
  std::map<std::string, std::set<std::string>> want = wantedWatches();
  for (auto it = dirs_.begin(); it != dirs_.end();) {
    if (want.count(it->first) != 0) {
      ++it;
      continue;
    }
    logDebug("file watch: no longer watching directory \"{}\"", it->first);
    it->second->close();
    it = dirs_.erase(it);
  }
  std::string errors;
  for (auto& [dir, names] : want) {
    struct stat st {};
    bool there = ::stat(dir.c_str(), &st) == 0;
    auto it = dirs_.find(dir);
    if (it != dirs_.end()) {
      DirHandle* d = it->second;
      if (there && d->device == st.st_dev && d->inode == st.st_ino) {
        d->names = std::move(names);
        continue;
      }
      logDebug("file watch: directory \"{}\" was replaced", dir);
      d->close();
      dirs_.erase(it);
    }
    auto* d = new DirHandle(this, dir);
    uv_fs_event_init(loop_, &d->h);
    d->h.data = d;
    int rc = uv_fs_event_start(&d->h, &DirHandle::onEventCb, dir.c_str(), 0);
    if (rc != 0) {
      d->close();
      if (!errors.empty()) errors += "; ";
      errors += watchError(dir, rc);
      continue;
    }
    logDebug("file watch: watching directory \"{}\"", dir);
    d->names = std::move(names);
    d->device = static_cast<uint64_t>(st.st_dev);
    d->inode = static_cast<uint64_t>(st.st_ino);
    dirs_[dir] = d;
  }
  if (!errors.empty()) return Status::error("file watch: " + errors);
  return Status();
}

std::vector<std::string> FileWatch::directories() const {
  std::vector<std::string> out;
  for (const auto& [dir, d] : dirs_) out.push_back(dir);
  return out;
}

void FileWatch::close() {
  if (closed_) return;
  closed_ = true;
  for (auto& [dir, d] : dirs_) d->close();
  dirs_.clear();
  if (timer_ != nullptr) timer_->close();
  timer_ = nullptr;
}

void FileWatch::onEvent(DirHandle& dir, const char* filename, int events, int status) {
  if (status < 0) {
    logWarning("file watch: directory \"{}\": {}", dir.dir, uv_strerror(status));
    return;
  }
  // Some platforms give no name: then any event in the directory may concern us. An
  // event on the directory itself (moved or deleted: libuv names it by its basename)
  // may change what our paths name.
  if (filename != nullptr && dir.names.count(filename) == 0 && dir.self_name != filename) {
    return;
  }
  logDebug("file watch: event {} on \"{}/{}\"", events, dir.dir, filename ? filename : "?");
  uv_timer_start(&timer_->h, &TimerHandle::onTimerCb, debounce_ms_, 0);
}

void FileWatch::onDebounce() {
  ++checks_;
  std::string first_changed;
  size_t n_changed = 0;
  for (auto& [path, baseline] : files_) {
    FileFingerprint now = fingerprint(path, &baseline);
    if (!now.sameContent(baseline)) {
      if (n_changed++ == 0) first_changed = path;
    }
    baseline = now;
  }
  // Links may point elsewhere now (a ConfigMap swap): follow them.
  if (Status st = syncWatches(); !st.ok()) logWarning("{}", st.message());
  if (n_changed == 0) {
    logDebug("file watch: events but no content change");
    return;
  }
  logInfo("file watch: \"{}\" changed{}", first_changed,
          n_changed > 1 ? fmt::format(" (and {} more)", n_changed - 1) : std::string());
  // The callback may call setFiles(), close() or destroy `this`: call a copy, last.
  std::function<void()> cb = changed_;
  cb();
}

}  // namespace crescent::core
