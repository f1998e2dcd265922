#pragma once

#include <memory>
#include <string>

#include "core/config/config.h"
#include "core/runtime/worker.h"

namespace crescent::core {

/// The running process (DESIGN §2): the main thread opens one listening socket per bind,
/// starts the worker threads, then waits for signals. SIGINT and SIGTERM stop it: the
/// workers close their listeners and sessions and exit, and run() returns 0.
class Process {
 public:
  Process(std::shared_ptr<const Config> config, ScriptRunnerFactory factory);
  ~Process();

  /// Runs until stopped. Returns the exit code: 0 after a clean stop, 1 when startup
  /// failed (the error is logged as `file:line: message`).
  int run();

 private:
  int startAndServe();
  Status openListeners();
  void closeListeners();
  static void onSignal(uv_signal_t* h, int signum);

  std::shared_ptr<const Config> config_;
  ScriptRunnerFactory factory_;
  ProcessCounters counters_;
  std::vector<ListenSocket> sockets_;
  std::vector<std::unique_ptr<Worker>> workers_;
  uv_loop_t* loop_ = nullptr;
  uv_signal_t sigint_{}, sigterm_{};
};

}  // namespace crescent::core
