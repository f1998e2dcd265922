#pragma once

#include <memory>
#include <string>

#include "core/backend/health_check.h"
#include "core/config/config.h"
#include "core/runtime/worker.h"

namespace crescent::core {

namespace tls {
class Contexts;
}  // namespace tls

/// The running process (DESIGN §2): the main thread opens one listening socket per bind,
/// starts the worker threads, then waits for signals. SIGINT and SIGTERM stop it: the
/// workers close their listeners and sessions and exit, and run() returns 0.
/// When some server has `check` enabled, a HealthChecker (its own thread) checks the
/// generation's servers from when the workers are ready until the stop begins.
class Process {
 public:
  /// `tls`: the config's TLS contexts (tls::buildContexts(), done by the caller so that
  /// a bad certificate fails before anything starts); null: built at startup.
  Process(std::shared_ptr<const Config> config, ScriptRunnerFactory factory,
          std::shared_ptr<const tls::Contexts> tls = nullptr);
  ~Process();

  /// Runs until stopped. Returns the exit code: 0 after a clean stop, 1 when startup
  /// failed (the error is logged as `file:line: message`).
  int run();

 private:
  int startAndServe();
  Status openListeners();
  void closeListeners();
  /// Starts health checks of `gen`'s servers when some server wants them; a Lua state for
  /// `expect` functions comes from the factory, only when a check has one.
  Status startHealthChecks(Generation& gen);
  /// Stops and destroys the checker (before the generation it borrows goes). Idempotent.
  void stopHealthChecks();
  static void onSignal(uv_signal_t* h, int signum);

  std::shared_ptr<const Config> config_;
  std::shared_ptr<const tls::Contexts> tls_;
  ScriptRunnerFactory factory_;
  ProcessCounters counters_;
  std::vector<ListenSocket> sockets_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::unique_ptr<HealthChecker> checker_;  // borrows the backends of startAndServe()'s generation
  uv_loop_t* loop_ = nullptr;
  uv_signal_t sigint_{}, sigterm_{};
};

}  // namespace crescent::core
