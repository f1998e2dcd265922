#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "core/admin/admin_service.h"
#include "core/admin/process_status.h"
#include "core/backend/health_check.h"
#include "core/config/config.h"
#include "core/runtime/config_loader.h"
#include "core/runtime/runtime_api.h"
#include "core/runtime/watchdog.h"
#include "core/runtime/worker.h"

namespace crescent::core {

class FileWatch;

/// How the process starts (command line).
struct ProcessOptions {
  /// Listening sockets received from the process being upgraded (`-x`), by
  /// ListenSocket::key. Taken over when a bind has the same key; the rest are closed.
  std::vector<PassedSocket> inherited;
  /// `-sf` / `-st`: processes told to stop once this one serves: SIGUSR1 (soft stop,
  /// they drain) or, with `terminate_old`, SIGTERM.
  std::vector<int> old_pids;
  bool terminate_old = false;
  /// `-x`, `-sf` or `-st` given: a binary upgrade, whose binds may already listen in the
  /// old process. Without it, a start refuses a bind address another process listens on
  /// (`address in use by another process`), instead of splitting traffic with it through
  /// SO_REUSEPORT.
  bool upgrade = false;
  /// Called once the process serves (before old processes are signalled), e.g. to write
  /// the pidfile: a process that fails to start never touches it.
  std::function<void()> on_ready;
};

/// The running process (DESIGN §2, §3): the main thread owns the listening sockets, the
/// generations, the runtime API and the signals; N workers serve.
///
/// Signals (HAProxy's): SIGHUP (and SIGUSR2) reload; SIGUSR1 soft stop: stop accepting,
/// let sessions finish (at most `hard_stop_after`), exit 0; SIGTTOU pause listening
/// (connections wait in the kernel's queue), SIGTTIN resume; SIGINT/SIGTERM hard stop.
///
/// A reload (reload(): SIGHUP, the runtime API, the file watch) builds a new generation
/// on the main thread — script evaluated, config, TLS, listeners diffed by key, on_reload
/// hooks, one Lua state per worker — and only then switches the workers to it. Any error
/// leaves the running generation untouched. Old generations live while sessions use them
/// (bounded by `hard_stop_after` and `max_generations`).
class Process {
 public:
  /// `path`: the config script (reloads read it again). `loader` outlives the process.
  Process(std::string path, ConfigLoader& loader, ProcessOptions options = {});
  ~Process();

  /// Serves `first` (loaded by the caller, so that errors show before anything starts)
  /// until stopped. Returns the exit code: 0 after a clean stop, 1 when startup failed
  /// (the error is logged as `file:line: message`).
  int run(LoadedConfig first);

  /// Loads the script again and switches to it (main thread). Returns the error
  /// (`file:line: message`) when nothing changed.
  Status reload(const char* reason);

  /// One runtime API command line -> its reply (main thread). docs/reload.md lists them;
  /// they are implemented in process_commands.cc.
  std::string command(std::string_view line);

 private:
  struct Retired {
    std::weak_ptr<Generation> gen;
    uint64_t id = 0;
    uint64_t retired_ms = 0;
    uint64_t deadline_ms = 0;  ///< 0: no hard_stop_after
    bool closing = false;      ///< its sessions were told to close
  };

  int startAndServe(LoadedConfig first);
  /// Listening sockets for `cfg`: kept from sockets_ by key, taken from inherited_, or
  /// opened. `opened` gets the fds this call opened (closed again on failure).
  Status matchListeners(const Config& cfg, std::vector<ListenSocket>& out,
                        std::vector<int>& opened);
  void closeListeners(bool unlink_paths);
  /// Starts health checks of `gen`'s servers when some server wants them; `script` runs
  /// Lua `expect` functions (null when none).
  Status startHealthChecks(Generation& gen, std::unique_ptr<ScriptRunner> script);
  /// Stops and destroys the checker (before the generation it borrows goes). Idempotent.
  void stopHealthChecks();
  Status openRuntimeApi(const Config& cfg);
  void startWatch(const Config& cfg);
  /// Closes the sessions of the oldest old generations while more than max_generations live.
  void enforceMaxGenerations(int max);
  void closeGeneration(Retired& r, const char* why);
  void tick();
  void ensureTicking();
  void softStop(const char* why);
  void hardStop(const char* why);
  void closeMainHandles();
  /// hard_stop_after for the stop itself (SIGTERM, soft stop, -sf): at the first stop, a
  /// thread that ends the process (exit code 1, a log line naming the workers that did not
  /// stop and what they run) if the workers have not all ended by hard_stop_after + 0.5 s,
  /// e.g. one stuck in a C call (the main thread would wait in join() for ever).
  void armStopGuard();
  void disarmStopGuard();
  int liveGenerations();
  /// Publishes the generations and reload counts to status_ (after each change).
  void publishStatus();
  std::string showGenerations();
  std::string showScriptStats();
  std::string showInfo();
  /// `show servers state [backend]`; empty `backend`: every backend.
  std::string showServers(std::string_view backend = {});
  std::string showStat();
  std::string showSessions();
  std::string setServer(const std::vector<std::string_view>& words);
  std::string setServerAddr(Server& s, const std::vector<std::string_view>& words);
  std::string clearCounters(bool all);
  static void onSignal(uv_signal_t* h, int signum);
  static void onTick(uv_timer_t* t);

  std::string path_;
  ConfigLoader& loader_;
  ProcessOptions options_;
  ProcessCounters counters_;
  ProcessStatus status_{counters_};  // what the admin service reads (publishStatus())
  AdminService admin_{status_};
  std::shared_ptr<Generation> current_;
  std::vector<Retired> retired_;
  uint64_t next_gen_id_ = 1;
  uint64_t started_ms_ = 0;
  uint64_t reloads_ = 0, reload_failures_ = 0;
  std::atomic<uint64_t> hard_stopped_{0};  // sessions closed by hard_stop_after/max_generations
  int threads_ = 0;
  std::vector<ListenSocket> sockets_;
  std::map<std::string, int> inherited_;  // key -> fd, not used yet
  std::vector<std::unique_ptr<Worker>> workers_;
  std::unique_ptr<HealthChecker> checker_;  // borrows current_'s backends
  std::unique_ptr<RuntimeApi> api_;
  std::vector<std::unique_ptr<RuntimeApi>> retiring_api_;  // replaced, closed on the next tick
  GlobalConfig::Runtime api_config_;
  std::unique_ptr<FileWatch> watch_;
  bool handed_over_ = false;  // `_getsocks` served: the sockets are another process's too
  bool draining_ = false;     // soft stop under way
  bool stopping_ = false;     // hard stop under way
  uint64_t drain_deadline_ms_ = 0;
  bool ticking_ = false;
  bool in_reload_ = false;
  bool started_ = false;  // the first generation serves (later binds come from reloads)
  uv_loop_t* loop_ = nullptr;
  uv_timer_t tick_{};
  Watchdog watchdog_;
  std::thread stop_guard_;
  std::mutex stop_mu_;
  std::condition_variable stop_cv_;
  bool workers_ended_ = false;  // guarded by stop_mu_
  static constexpr int kSignals = 7;
  uv_signal_t signals_[kSignals]{};
};

}  // namespace crescent::core
