#include "core/runtime/process.h"

#include <fcntl.h>
#include <grp.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <thread>

#include "core/base/log.h"
#include "core/runtime/fd_limit.h"
#include "core/runtime/file_watch.h"
#include "core/session/generation.h"

namespace crescent::core {
namespace {

// Refuses `addr` when a live socket of another process listens on it. Our listening
// sockets set SO_REUSEPORT (core/net/listener.cc), so binding next to another crescent
// (or anything else with SO_REUSEPORT, same user) would succeed and split the traffic.
// TCP: a probe socket bound without SO_REUSEPORT fails with EADDRINUSE when any socket
// listens there (a TIME_WAIT leftover does not count: SO_REUSEADDR). UNIX: a connect that
// succeeds means a live listener (a stale file is refused and removed later). Port 0
// cannot be in use.
Status refuseAddressInUse(const Address& addr) {
  if (addr.isIp()) {
    if (addr.port() == 0) return Status();
    int fd = ::socket(addr.sockaddrPtr()->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return Status();  // the real bind reports the problem
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (addr.sockaddrPtr()->sa_family == AF_INET6)
      ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    bool in_use = ::bind(fd, addr.sockaddrPtr(), addr.sockaddrLen()) != 0 && errno == EADDRINUSE;
    ::close(fd);
    if (in_use) return Status::error("address in use by another process");
    return Status();
  }
  if (addr.isUnix()) {
    std::string path = addr.unixPath();
    if (path.empty()) return Status();
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return Status();
    bool alive = ::connect(fd, addr.sockaddrPtr(), addr.sockaddrLen()) == 0;
    ::close(fd);
    if (alive) return Status::error("address in use by another process");
  }
  return Status();
}

Watchdog::OnStuck onStuckOf(const GlobalConfig& g) {
  return g.on_stuck == GlobalConfig::OnStuck::kLog ? Watchdog::OnStuck::kLog
                                                   : Watchdog::OnStuck::kAbort;
}

// `bind { "unix:/path", mode = "0660", user = "u", group = "g" }`: permissions and owner
// of a UNIX socket file (not for abstract names, which have none).
Status applyUnixOwnership(const BindConfig& b) {
  if (!b.address.isUnix()) return Status();
  std::string path = b.address.unixPath();
  if (path.empty() || path[0] == '@') return Status();
  if (b.unix_mode >= 0 && ::chmod(path.c_str(), static_cast<mode_t>(b.unix_mode)) != 0)
    return Status::error(std::string("chmod: ") + std::strerror(errno));
  if (b.user.empty() && b.group.empty()) return Status();
  uid_t uid = static_cast<uid_t>(-1);
  gid_t gid = static_cast<gid_t>(-1);
  if (!b.user.empty()) {
    struct passwd* pw = ::getpwnam(b.user.c_str());
    if (pw == nullptr) return Status::error("no user \"" + b.user + "\"");
    uid = pw->pw_uid;
  }
  if (!b.group.empty()) {
    struct group* gr = ::getgrnam(b.group.c_str());
    if (gr == nullptr) return Status::error("no group \"" + b.group + "\"");
    gid = gr->gr_gid;
  }
  if (::chown(path.c_str(), uid, gid) != 0)
    return Status::error(std::string("chown: ") + std::strerror(errno));
  return Status();
}

// The key of each bind of `cfg`, in frontend/bind order: its configured address, plus
// "#n" for the n-th repetition of the same address (port 0 twice).
std::vector<std::string> bindKeys(const Config& cfg) {
  std::vector<std::string> keys;
  std::map<std::string, int> seen;
  for (const FrontendConfig& fe : cfg.frontends) {
    for (const BindConfig& b : fe.binds) {
      std::string key = b.address.toString();
      int n = seen[key]++;
      keys.push_back(n == 0 ? key : key + "#" + std::to_string(n));
    }
  }
  return keys;
}

void unlinkUnixPath(const ListenSocket& s) {
  if (!s.unix_socket) return;
  std::string path = s.address.unixPath();
  if (!path.empty() && path[0] != '@') ::unlink(path.c_str());
}

// A listening socket that still listens (SO_ACCEPTCONN): not one that was shut down.
bool stillListening(int fd) {
  int on = 0;
  socklen_t len = sizeof(on);
  return ::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &on, &len) == 0 && on != 0;
}

// Raises RLIMIT_NOFILE to what `cfg` needs (HAProxy's maxsock), and says so when the hard
// limit is too low. Returns the process-wide connection limit to apply: `cfg`'s
// global.maxconn, lowered (when the hard limit is too low) to the connections the fds
// allow, two each, after those in use now and those the workers will open: beyond that, a
// session's server connection would find no fd and fail. The connections above it wait
// in the kernel's queue, as with maxconn; accept pauses (Listener) cover the fds used
// otherwise.
int sizeFdLimit(const Config& cfg, int threads) {
  FdLimit fl = raiseFdLimit(fdsNeeded(cfg, threads));
  if (fl.soft > fl.before)
    logInfo("RLIMIT_NOFILE soft limit raised from {} to {} (hard limit {})", fl.before, fl.soft,
            fl.hard);
  int maxconn = cfg.global.maxconn;
  if (!fl.enough) {
    uint64_t listeners = 0;
    for (const FrontendConfig& fe : cfg.frontends) listeners += fe.binds.size();
    int probe = ::fcntl(0, F_DUPFD_CLOEXEC, 0);  // the lowest free fd: all below are in use
    if (probe >= 0) ::close(probe);
    uint64_t in_use = probe > 0 ? static_cast<uint64_t>(probe) : 16;
    uint64_t base = in_use + listeners * static_cast<uint64_t>(threads) +
                    4 * static_cast<uint64_t>(threads) + 16;
    int cap = fl.soft > base + 2 ? static_cast<int>((fl.soft - base) / 2) : 1;
    if (maxconn <= 0 || cap < maxconn) maxconn = cap;
    logWarning(
        "RLIMIT_NOFILE: maxconn needs about {} fds but the hard limit is {}: raise it (ulimit "
        "-n, systemd LimitNOFILE=); until then at most {} connections are served at once and "
        "the others wait in the kernel's queue",
        fl.needed, fl.hard, maxconn);
  } else if (fl.error != 0) {
    logWarning("RLIMIT_NOFILE: cannot raise the soft limit from {}: {}", fl.before,
               std::strerror(fl.error));
  }
  return maxconn;
}

constexpr uint64_t kTickMs = 100;
// Quiet time after a file event before the reload (editors write in several steps).
constexpr uint64_t kWatchDebounceMs = 200;

}  // namespace

Process::Process(std::string path, ConfigLoader& loader, ProcessOptions options)
    : path_(std::move(path)), loader_(loader), options_(std::move(options)) {
  for (const PassedSocket& s : options_.inherited) inherited_[s.key] = s.fd;
}

Process::~Process() {
  disarmStopGuard();
  watchdog_.stop();
  closeListeners(false);
  for (auto& [key, fd] : inherited_) ::close(fd);
  inherited_.clear();
}

Status Process::matchListeners(const Config& cfg, std::vector<ListenSocket>& out,
                               std::vector<int>& opened) {
  std::vector<std::string> keys = bindKeys(cfg);
  // A plain start (not a binary upgrade) owns its addresses alone. Probed before any is
  // opened, so that two binds of one config on the same address do not see each other.
  if (!started_ && !options_.upgrade) {
    for (const FrontendConfig& fe : cfg.frontends) {
      for (const BindConfig& b : fe.binds) {
        if (Status st = refuseAddressInUse(b.address); !st.ok()) {
          return Status::error(fmt::format("{}:{}: frontend \"{}\": bind {}: {}", cfg.path, b.line,
                                           fe.name, b.text, st.message()));
        }
      }
    }
  }
  size_t k = 0;
  for (size_t i = 0; i < cfg.frontends.size(); ++i) {
    const FrontendConfig& fe = cfg.frontends[i];
    for (size_t j = 0; j < fe.binds.size(); ++j, ++k) {
      const BindConfig& b = fe.binds[j];
      ListenSocket s;
      s.key = keys[k];
      s.frontend_index = i;
      s.bind_index = j;
      s.unix_socket = b.address.isUnix();
      auto kept = std::find_if(sockets_.begin(), sockets_.end(),
                               [&](const ListenSocket& x) { return x.key == s.key; });
      if (kept != sockets_.end() && !stillListening(kept->fd)) {
        // Something shut it down: open the bind again (the old fd is closed at commit).
        logWarning("{}:{}: frontend \"{}\": bind {}: its socket no longer listens: opened again",
                   cfg.path, b.line, fe.name, b.text);
        kept = sockets_.end();
      }
      if (kept != sockets_.end()) {
        s.fd = kept->fd;  // the very socket: its accept queue goes on
        s.address = kept->address;
      } else if (auto inh = inherited_.find(s.key); inh != inherited_.end()) {
        s.fd = inh->second;  // binary upgrade: the old process's socket
        inherited_.erase(inh);
        opened.push_back(s.fd);
        s.address = s.unix_socket ? b.address : socketLocalAddress(s.fd);
      } else {
        auto fd = openListenSocket(b.address);
        if (!fd.ok()) {
          return Status::error(
              fmt::format("{}:{}: frontend \"{}\": {}", cfg.path, b.line, fe.name, fd.message()));
        }
        s.fd = *fd;
        opened.push_back(s.fd);
        s.address = s.unix_socket ? b.address : socketLocalAddress(s.fd);
      }
      if (Status st = applyUnixOwnership(b); !st.ok()) {
        return Status::error(fmt::format("{}:{}: frontend \"{}\": bind {}: {}", cfg.path, b.line,
                                         fe.name, b.text, st.message()));
      }
      out.push_back(std::move(s));
    }
  }
  return Status();
}

void Process::closeListeners(bool unlink_paths) {
  for (auto& s : sockets_) {
    if (s.fd >= 0) ::close(s.fd);
    // After `_getsocks` the sockets (and their paths) belong to the new process too.
    if (unlink_paths && !handed_over_) unlinkUnixPath(s);
    s.fd = -1;
  }
  sockets_.clear();
}

int Process::run(LoadedConfig first) {
  ::signal(SIGPIPE, SIG_IGN);
  // Signal handlers first: a SIGTERM that arrives while workers start (clients may already
  // connect: the sockets listen before the workers poll them) is handled, not fatal.
  uv_loop_t loop;
  uv_loop_init(&loop);
  loop_ = &loop;
  static const int kSignalNumbers[kSignals] = {SIGINT,  SIGTERM, SIGHUP, SIGUSR2,
                                               SIGUSR1, SIGTTOU, SIGTTIN};
  for (int i = 0; i < kSignals; ++i) {
    uv_signal_init(&loop, &signals_[i]);
    signals_[i].data = this;
    uv_signal_start(&signals_[i], &Process::onSignal, kSignalNumbers[i]);
  }
  uv_timer_init(&loop, &tick_);
  tick_.data = this;
  started_ms_ = monotonicMs();
  int rc = startAndServe(std::move(first));
  closeMainHandles();  // whatever is still open (startup failure)
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  loop_ = nullptr;
  return rc;
}

void Process::closeMainHandles() {
  for (auto& sig : signals_) {
    auto* h = reinterpret_cast<uv_handle_t*>(&sig);
    if (!uv_is_closing(h)) uv_close(h, nullptr);
  }
  auto* tick = reinterpret_cast<uv_handle_t*>(&tick_);
  if (!uv_is_closing(tick)) uv_close(tick, nullptr);
  if (api_) api_->close();
  for (auto& api : retiring_api_) api->close();
  if (watch_) watch_->close();
}

int Process::startAndServe(LoadedConfig first) {
  const Config& cfg = *first.config;
  counters_.maxconn = cfg.global.maxconn;
  std::vector<int> opened;
  if (Status st = matchListeners(cfg, sockets_, opened); !st.ok()) {
    for (int fd : opened) ::close(fd);
    sockets_.clear();
    logError("{}", st.message());
    return 1;
  }
  // Inherited sockets the config no longer binds: not ours to serve.
  for (auto& [key, fd] : inherited_) {
    logInfo("binary upgrade: socket {} is not bound by this configuration: closed", key);
    ::close(fd);
  }
  inherited_.clear();
  threads_ = cfg.global.threads;
  if (threads_ <= 0) threads_ = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  counters_.maxconn = sizeFdLimit(cfg, threads_);
  current_ = std::make_shared<Generation>(next_gen_id_++, first.config, first.tls);
  // Every Worker exists before any starts, so the list that wake_all reads from worker
  // threads never changes while they run.
  for (int i = 0; i < threads_; ++i) {
    workers_.push_back(std::make_unique<Worker>(i + 1, counters_));
    workers_.back()->setBuiltinService(&admin_);
  }
  status_.setStarted(started_ms_, threads_);
  {
    std::vector<const std::atomic<uint64_t>*> serving;
    for (auto& w : workers_) serving.push_back(&w->servingGeneration());
    status_.setWorkers(std::move(serving));
  }
  counters_.wake_all = [this] {
    for (auto& w : workers_) w->wake();
  };
  auto fail = [this](const std::string& msg) {
    logError("{}", msg);
    stopHealthChecks();
    for (auto& x : workers_) x->stop();
    for (auto& x : workers_) x->join();
    watchdog_.stop();
    status_.setWorkers({});
    workers_.clear();
    current_.reset();
    closeListeners(true);
    return 1;
  };
  for (auto& w : workers_) {
    auto runner = loader_.makeRunner(cfg);
    if (!runner.ok()) return fail(fmt::format("worker {}: {}", w->workerId(), runner.message()));
    Status st =
        w->start(std::make_shared<WorkerGeneration>(current_, std::move(*runner)), sockets_);
    if (!st.ok()) return fail(st.message());
  }
  {
    std::vector<Watchdog::Watched> watched;
    for (auto& w : workers_)
      watched.push_back({w->workerId(), &w->watchedLoop(), w->nativeThread(), &w->runningSlot()});
    watchdog_.start(std::move(watched), cfg.global.watchdog_ms, onStuckOf(cfg.global));
  }
  if (first.main_runner) first.main_runner->attach(*current_);
  if (Status st = startHealthChecks(*current_, std::move(first.main_runner)); !st.ok())
    return fail(st.message());
  if (Status st = openRuntimeApi(cfg); !st.ok()) return fail(st.message());
  startWatch(cfg);
  std::string binds, backends;
  for (const auto& s : sockets_) binds += " " + s.address.toString();
  for (const auto& b : cfg.backends) backends += " " + b.name;
  started_ = true;
  publishStatus();
  logInfo("ready: {} thread{}, binds{}, backends{}", threads_, threads_ == 1 ? "" : "s", binds,
          backends.empty() ? " (none)" : backends);
  if (options_.on_ready) options_.on_ready();
  // Binary upgrade: this process serves; the old one stops accepting and drains (-sf) or
  // stops (-st). Its sockets are ours too, so no connection attempt is refused.
  for (int pid : options_.old_pids) {
    int sig = options_.terminate_old ? SIGTERM : SIGUSR1;
    if (::kill(pid, sig) != 0)
      logWarning("binary upgrade: signal to old process {}: {}", pid, std::strerror(errno));
    else
      logInfo("binary upgrade: old process {} told to {}", pid,
              options_.terminate_old ? "terminate" : "finish its sessions and exit");
  }

  uv_run(loop_, UV_RUN_DEFAULT);  // until a stop closes the main handles

  stopHealthChecks();  // before the workers end and the generations go
  for (auto& w : workers_) w->join();
  disarmStopGuard();
  watchdog_.stop();
  status_.setWorkers({});  // the workers ended: nothing reads them any more
  workers_.clear();
  current_.reset();
  retired_.clear();
  closeListeners(!draining_);
  logInfo("stopped");
  return 0;
}

Status Process::reload(const char* reason) {
  if (stopping_ || draining_) return Status::error("reload: the process is stopping");
  if (in_reload_) return Status::error("reload: a reload is already under way");
  in_reload_ = true;
  status_.setReloading(true);
  struct Guard {
    Process& p;
    ~Guard() {
      p.in_reload_ = false;
      p.publishStatus();  // the new generation, or the failure count
      p.status_.setReloading(false);
    }
  } guard{*this};
  uint64_t t0 = monotonicMs();
  auto failed = [this](const std::string& msg) {
    ++reload_failures_;
    logError("reload refused, generation {} keeps serving: {}", current_->id(), msg);
    return Status::error(msg);
  };
  auto loaded = loader_.load(path_);
  if (!loaded.ok()) return failed(loaded.message());
  const Config& old = current_->config();
  {
    // threads, bufsize and cpu_map are fixed at start (buffer pools and threads exist);
    // the new generation runs with the running values, and says so.
    const GlobalConfig& g = loaded->config->global;
    int threads = g.threads > 0
                      ? g.threads
                      : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    bool threads_differ = threads != threads_;
    bool bufsize_differs = g.bufsize != old.global.bufsize;
    bool cpu_map_differs = g.cpu_map != old.global.cpu_map;
    if (threads_differ)
      logWarning("reload: threads stays {} (a new thread count needs a binary upgrade)", threads_);
    if (bufsize_differs)
      logWarning("reload: bufsize stays {} (a new size needs a binary upgrade)",
                 old.global.bufsize);
    if (cpu_map_differs)
      logWarning("reload: cpu_map is applied at start only (a new map needs a binary upgrade)");
    if (threads_differ || bufsize_differs || cpu_map_differs) {
      auto patched = std::make_shared<Config>(*loaded->config);
      patched->global.threads = old.global.threads;
      patched->global.bufsize = old.global.bufsize;
      patched->global.cpu_map = old.global.cpu_map;
      loaded->config = std::move(patched);
    }
  }
  const Config& cfg = *loaded->config;

  std::vector<ListenSocket> next;
  std::vector<int> opened;
  if (Status st = matchListeners(cfg, next, opened); !st.ok()) {
    for (int fd : opened) ::close(fd);
    return failed(st.message());
  }
  auto undo = [&](const std::string& msg) {
    for (int fd : opened) ::close(fd);
    for (const ListenSocket& s : next) {
      bool fresh = std::find(opened.begin(), opened.end(), s.fd) != opened.end();
      if (fresh) unlinkUnixPath(s);
    }
    return failed(msg);
  };
  auto gen =
      std::make_shared<Generation>(next_gen_id_, loaded->config, loaded->tls, current_.get());
  if (loaded->main_runner) {
    loaded->main_runner->attach(*gen);
    ReloadInfo info{current_->id(), &old, gen->id(), &cfg};
    if (Status st = loaded->main_runner->runReloadHooks(info); !st.ok()) return undo(st.message());
  }
  std::vector<std::shared_ptr<WorkerGeneration>> wgs;
  for (int i = 0; i < threads_; ++i) {
    auto runner = loader_.makeRunner(cfg);
    if (!runner.ok()) return undo(runner.message());
    wgs.push_back(std::make_shared<WorkerGeneration>(gen, std::move(*runner)));
  }
  if (cfg.global.runtime.socket != api_config_.socket ||
      cfg.global.runtime.mode != api_config_.mode ||
      cfg.global.runtime.expose_fd_listeners != api_config_.expose_fd_listeners) {
    // The command being answered may come through the old socket: it stays open until
    // this reply is written (RuntimeApi::close() finishes pending replies).
    if (Status st = openRuntimeApi(cfg); !st.ok()) return undo(st.message());
  }

  // Commit: nothing below fails.
  ++next_gen_id_;
  ++reloads_;
  counters_.maxconn = sizeFdLimit(cfg, threads_);  // a higher maxconn needs more fds
  stopHealthChecks();                              // it borrows the old generation's backends
  for (size_t i = 0; i < workers_.size(); ++i) workers_[i]->install(wgs[i], next);
  wgs.clear();
  size_t kept = 0, closed = 0;
  for (ListenSocket& s : sockets_) {
    bool still = std::any_of(next.begin(), next.end(),
                             [&](const ListenSocket& x) { return x.key == s.key; });
    bool same =
        std::any_of(next.begin(), next.end(), [&](const ListenSocket& x) { return x.fd == s.fd; });
    if (same) {
      ++kept;
      continue;
    }
    if (still) {  // opened again (it had stopped listening): its path is the new one's
      ::close(s.fd);
      continue;
    }
    ++closed;
    // The workers close their dups on their next loop turn, which a busy worker may not
    // reach for a while: shutdown() stops the socket itself from accepting now (new
    // connection attempts are refused). Not when another process (a binary upgrade)
    // holds the socket too: it is still serving there.
    if (!handed_over_) {
      ::shutdown(s.fd, SHUT_RDWR);
      unlinkUnixPath(s);
    }
    ::close(s.fd);
  }
  sockets_ = std::move(next);
  Retired r;
  r.id = current_->id();
  r.gen = current_;
  r.retired_ms = monotonicMs();
  if (cfg.global.hard_stop_after > 0) r.deadline_ms = r.retired_ms + cfg.global.hard_stop_after;
  retired_.push_back(std::move(r));
  current_ = gen;
  watchdog_.setPolicy(cfg.global.watchdog_ms, onStuckOf(cfg.global));
  if (Status st = startHealthChecks(*current_, std::move(loaded->main_runner)); !st.ok())
    logError("reload: {}", st.message());
  startWatch(cfg);
  enforceMaxGenerations(cfg.global.max_generations);
  ensureTicking();
  logInfo("reload ({}): generation {} serving in {} ms; listeners: {} kept, {} new, {} closed",
          reason, current_->id(), monotonicMs() - t0, kept, opened.size(), closed);
  return Status();
}

void Process::publishStatus() {
  std::vector<std::pair<std::weak_ptr<Generation>, std::string>> gens;
  if (current_) gens.emplace_back(current_, draining_ ? "draining" : "current");
  for (auto it = retired_.rbegin(); it != retired_.rend(); ++it)
    gens.emplace_back(it->gen, it->closing ? "closing" : "old");
  status_.publish(std::move(gens), current_ ? current_->id() : 0, reloads_, reload_failures_,
                  draining_ || stopping_);
}

int Process::liveGenerations() {
  int n = current_ ? 1 : 0;
  for (const Retired& r : retired_)
    if (!r.gen.expired()) ++n;
  return n;
}

void Process::enforceMaxGenerations(int max) {
  if (max <= 0) return;
  // A generation whose sessions were told to close is on its way out: it does not count.
  int live = current_ ? 1 : 0;
  for (const Retired& r : retired_)
    if (!r.gen.expired() && !r.closing) ++live;
  for (Retired& r : retired_) {
    if (live <= max) break;
    if (r.gen.expired() || r.closing) continue;
    closeGeneration(r, "max_generations");
    --live;
  }
}

void Process::closeGeneration(Retired& r, const char* why) {
  r.closing = true;
  publishStatus();
  auto gen = r.gen.lock();
  if (!gen) return;
  uint64_t age = monotonicMs() - r.retired_ms;
  logWarning("generation {}: {} reached {} ms after the reload: closing its {} session{}", r.id,
             why, age, gen->sessions(), gen->sessions() == 1 ? "" : "s");
  uint64_t id = r.id;
  for (auto& w : workers_) {
    int wid = w->workerId();
    w->closeGeneration(id, [this, id, wid](int n) {
      if (n == 0) return;
      hard_stopped_.fetch_add(static_cast<uint64_t>(n), std::memory_order_relaxed);
      logWarning("worker {}: closed {} session{} of generation {}", wid, n, n == 1 ? "" : "s", id);
    });
  }
}

void Process::ensureTicking() {
  if (ticking_ || loop_ == nullptr) return;
  ticking_ = true;
  uv_timer_start(&tick_, &Process::onTick, kTickMs, kTickMs);
}

void Process::onTick(uv_timer_t* t) {
  static_cast<Process*>(t->data)->tick();
}

void Process::tick() {
  uint64_t now = monotonicMs();
  for (auto& api : retiring_api_) api->close();
  retiring_api_.clear();
  bool freed = false;
  for (auto it = retired_.begin(); it != retired_.end();) {
    if (it->gen.expired()) {
      logInfo("generation {} freed: its last session ended {} ms after the reload", it->id,
              now - it->retired_ms);
      it = retired_.erase(it);
      freed = true;
      publishStatus();
      continue;
    }
    if (it->deadline_ms > 0 && now >= it->deadline_ms && !it->closing)
      closeGeneration(*it, "hard_stop_after");
    ++it;
  }
#ifdef __GLIBC__
  // A generation's config, Lua states and servers went back to malloc: give the free
  // pages back to the system (every arena, the workers' too), as HAProxy trims its pools
  // after a reload, so that RSS follows what the process holds.
  if (freed) ::malloc_trim(0);
#endif
  if (draining_ && !stopping_) {
    int left = counters_.actconn.load(std::memory_order_relaxed);
    if (left == 0) {
      logInfo("soft stop: every session ended");
      return hardStop(nullptr);
    }
    if (drain_deadline_ms_ > 0 && now >= drain_deadline_ms_) {
      hard_stopped_.fetch_add(static_cast<uint64_t>(left), std::memory_order_relaxed);
      logWarning("soft stop: hard_stop_after reached: closing {} session{}", left,
                 left == 1 ? "" : "s");
      return hardStop(nullptr);
    }
  }
  if (retired_.empty() && !draining_ && ticking_) {
    uv_timer_stop(&tick_);
    ticking_ = false;
  }
}

void Process::softStop(const char* why) {
  if (stopping_ || draining_) return;
  draining_ = true;
  publishStatus();
  int left = counters_.actconn.load(std::memory_order_relaxed);
  logInfo("{}: soft stop: no longer accepting; {} session{} to finish", why, left,
          left == 1 ? "" : "s");
  for (auto& w : workers_) w->softStop();
  // Our dups close in the workers; the sockets stay open only where another process (a
  // binary upgrade) holds them.
  for (auto& s : sockets_) {
    if (s.fd >= 0) ::close(s.fd);
    s.fd = -1;
  }
  sockets_.clear();
  if (api_) api_->close();
  if (watch_) watch_->close();
  uint64_t hsa = current_ ? current_->config().global.hard_stop_after : 0;
  if (hsa > 0) drain_deadline_ms_ = monotonicMs() + hsa;
  armStopGuard();
  ensureTicking();
}

void Process::armStopGuard() {
  uint64_t hsa = current_ ? current_->config().global.hard_stop_after : 0;
  if (hsa == 0 || stop_guard_.joinable()) return;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(hsa + 500);
  stop_guard_ = std::thread([this, deadline, hsa] {
    std::unique_lock<std::mutex> lock(stop_mu_);
    if (stop_cv_.wait_until(lock, deadline, [this] { return workers_ended_; })) return;
    // workers_ does not change while the main thread waits in join() (startAndServe).
    std::string stuck;
    for (auto& w : workers_) {
      std::string running = w->runningSlot().describe();
      stuck += fmt::format(" worker {}{}", w->workerId(),
                           running.empty() ? std::string() : " (running " + running + ")");
    }
    logError(
        "hard_stop_after ({} ms) reached and the workers have not all stopped:{}; "
        "exiting now",
        hsa, stuck);
    std::fflush(stdout);
    std::fflush(stderr);
    std::_Exit(1);
  });
}

void Process::disarmStopGuard() {
  {
    std::lock_guard<std::mutex> lock(stop_mu_);
    workers_ended_ = true;
  }
  stop_cv_.notify_all();
  if (stop_guard_.joinable()) stop_guard_.join();
}

void Process::hardStop(const char* why) {
  if (stopping_) return;
  stopping_ = true;
  publishStatus();
  if (why != nullptr) logInfo("{}: stopping", why);
  armStopGuard();
  // No server changes state while the workers stop.
  stopHealthChecks();
  for (auto& w : workers_) w->stop();
  closeMainHandles();
}

void Process::onSignal(uv_signal_t* h, int signum) {
  auto* self = static_cast<Process*>(h->data);
  switch (signum) {
    case SIGHUP:
    case SIGUSR2: {
      const char* name = signum == SIGHUP ? "SIGHUP" : "SIGUSR2";
      (void)self->reload(name);
      break;
    }
    case SIGUSR1:
      self->softStop("SIGUSR1");
      break;
    case SIGTTOU:
      logInfo("SIGTTOU: listeners paused (connections wait in the kernel's queue)");
      for (auto& w : self->workers_) w->pauseListeners();
      break;
    case SIGTTIN:
      logInfo("SIGTTIN: listeners resumed");
      for (auto& w : self->workers_) w->resumeListeners();
      break;
    default:
      self->hardStop(signum == SIGINT ? "SIGINT" : "SIGTERM");
      break;
  }
}

Status Process::startHealthChecks(Generation& gen, std::unique_ptr<ScriptRunner> script) {
  std::vector<Backend*> backends;
  bool lua = false;
  for (size_t i = 0; i < gen.backendCount(); ++i) {
    backends.push_back(&gen.backend(i));
    for (const ServerConfig& s : gen.backend(i).config().servers)
      lua = lua || (s.check.enabled && s.check.expect_hook > 0);
  }
  if (!HealthChecker::wanted(backends)) return Status();
  if (lua && !script) logWarning("health checks: no Lua state for `expect` functions");
  // The script's own state, used on the checker thread only from now on.
  Generation* g = &gen;  // outlives the checker: stopHealthChecks() runs before it goes
  checker_ = std::make_unique<HealthChecker>(
      std::move(backends), lua ? std::move(script) : nullptr,
      [g](const Server& s) { return g->serverTls(s.backend().index(), s.index()); });
  checker_->start();
  return Status();
}

void Process::stopHealthChecks() {
  if (checker_) checker_->stop();
  checker_.reset();
}

Status Process::openRuntimeApi(const Config& cfg) {
  const GlobalConfig::Runtime& rc = cfg.global.runtime;
  std::unique_ptr<RuntimeApi> next;
  if (!rc.socket.empty()) {
    RuntimeApiOptions opt;
    opt.path = rc.socket;
    opt.mode = rc.mode;
    opt.expose_fd_listeners = rc.expose_fd_listeners;
    auto api = RuntimeApi::open(
        loop_, opt, [this](std::string_view line) { return command(line); },
        [this] {
          std::vector<PassedSocket> out;
          for (const ListenSocket& s : sockets_) out.push_back({s.key, s.fd});
          handed_over_ = true;  // the RuntimeApi logs the hand-over
          return out;
        });
    if (!api.ok())
      return Status::error(fmt::format("{}: global: runtime: {}", cfg.path, api.message()));
    next = std::move(*api);
  }
  // The command being answered (a `reload`) may have come through the old socket: it is
  // closed on the next tick, after its reply. The new one has taken its path already.
  if (api_) {
    retiring_api_.push_back(std::move(api_));
    ensureTicking();
  }
  api_ = std::move(next);
  api_config_ = rc;
  return Status();
}

void Process::startWatch(const Config& cfg) {
  if (!cfg.global.watch) {
    if (watch_) watch_->close();
    watch_.reset();
    return;
  }
  // One baseline: the texts this generation was loaded from. A write that landed while it
  // loaded differs from them, and the watch reloads once for it.
  std::vector<WatchedFile> files{WatchedFile(path_, cfg.script)};
  for (size_t i = 0; i < cfg.files.size(); ++i) {
    if (i < cfg.file_texts.size())
      files.emplace_back(cfg.files[i], cfg.file_texts[i]);
    else
      files.emplace_back(cfg.files[i]);
  }
  if (watch_) {
    if (Status st = watch_->setFiles(std::move(files)); !st.ok())
      logWarning("watch: {}", st.message());
    return;
  }
  auto w = FileWatch::start(loop_, std::move(files), kWatchDebounceMs, [this] {
    if (stopping_ || draining_) return;
    (void)reload("file changed");
  });
  if (!w.ok()) {
    logWarning("watch: {}", w.message());
    return;
  }
  watch_ = std::move(*w);
}

}  // namespace crescent::core
