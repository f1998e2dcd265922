// crescent's command line: the composition root that wires the Lua side (lua/) into the
// core (core/ itself never includes a Lua header).
//
//   crescent -f FILE [-p PIDFILE]        run in the foreground
//   crescent -f FILE -x SOCK -sf PID...  binary upgrade: take the listening sockets of the
//                                        process behind runtime socket SOCK, serve, then
//                                        tell PID... to finish and exit (-st: to stop now)
//   crescent -c -f FILE                  check the configuration and exit (0 valid, 1 invalid)
//   crescent ctl -s SOCK CMD...          send a runtime API command
//   crescent reload -s SOCK              reload through the runtime API
//   crescent --version | -v              print the version
//   crescent -h | --help                 usage
//
// The flags are HAProxy's. They are parsed by hand: HAProxy's multi-letter single-dash
// flags (-sf, -st) do not fit CLI11's conventions.
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>

#include "core/base/log.h"
#include "core/runtime/process.h"
#include "core/runtime/runtime_client.h"
#include "lua/config_loader.h"

#ifndef CRESCENT_VERSION
#define CRESCENT_VERSION "0.1.0"
#endif

namespace {

const char kUsage[] =
    "usage: crescent -f FILE [-c] [-p PIDFILE] [-x SOCK] [-sf PID... | -st PID...]\n"
    "       crescent ctl -s SOCK [COMMAND...]\n"
    "       crescent reload -s SOCK\n"
    "  -f FILE      the Lua configuration to run\n"
    "  -c           check the configuration and exit: 0 if valid, 1 with file:line: message\n"
    "  -p PIDFILE   write the process id to PIDFILE\n"
    "  -x SOCK      binary upgrade: take the listening sockets of the process whose runtime\n"
    "               socket is SOCK (it needs `expose_fd_listeners = true`)\n"
    "  -sf PID...   once serving, tell these processes to stop accepting and finish (SIGUSR1)\n"
    "  -st PID...   once serving, tell these processes to stop now (SIGTERM)\n"
    "  -v, --version  print the version\n"
    "  -h, --help     this help\n";

struct Options {
  std::string config;
  std::string pidfile;
  std::string upgrade_socket;
  std::vector<int> old_pids;
  bool terminate_old = false;
  bool check = false;
};

int usageError(const std::string& msg) {
  std::fprintf(stderr, "crescent: %s\n%s", msg.c_str(), kUsage);
  return 1;
}

bool parsePid(const char* s, int& out) {
  char* end = nullptr;
  long v = std::strtol(s, &end, 10);
  if (end == s || *end != '\0' || v <= 0 || v > 0x7fffffff) return false;
  out = static_cast<int>(v);
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace crescent;
  if (argc >= 2 && (std::strcmp(argv[1], "ctl") == 0 || std::strcmp(argv[1], "reload") == 0))
    return core::ctlMain(argc - 1, argv + 1);
  Options opt;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
    if (a == "-h" || a == "--help") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (a == "-v" || a == "--version") {
      std::printf("crescent %s\n", CRESCENT_VERSION);
      return 0;
    } else if (a == "-c") {
      opt.check = true;
    } else if (a == "-f") {
      const char* v = value();
      if (!v) return usageError("-f needs a file");
      opt.config = v;
    } else if (a == "-p") {
      const char* v = value();
      if (!v) return usageError("-p needs a file");
      opt.pidfile = v;
    } else if (a == "-x") {
      const char* v = value();
      if (!v) return usageError("-x needs the old process's runtime socket");
      opt.upgrade_socket = v;
    } else if (a == "-sf" || a == "-st") {
      opt.terminate_old = a == "-st";
      int n = 0;
      while (i + 1 < argc && parsePid(argv[i + 1], n)) {
        opt.old_pids.push_back(n);
        ++i;
      }
      if (opt.old_pids.empty()) return usageError(a + " needs at least one process id");
    } else {
      return usageError("unknown argument \"" + a + "\"");
    }
  }
  if (opt.config.empty()) return usageError("no configuration given (-f FILE)");

  lua::ConfigLoader loader;
  auto loaded = loader.load(opt.config);
  if (!loaded.ok()) {
    std::fprintf(stderr, "%s\n", loaded.message().c_str());
    return 1;
  }
  if (opt.check) {
    std::printf("configuration file is valid: %s\n", opt.config.c_str());
    return 0;
  }

  core::ProcessOptions popt;
  popt.old_pids = opt.old_pids;
  popt.terminate_old = opt.terminate_old;
  popt.upgrade = !opt.upgrade_socket.empty() || !opt.old_pids.empty();
  if (!opt.upgrade_socket.empty()) {
    auto socks = core::fetchListeners(opt.upgrade_socket);
    if (!socks.ok()) {
      std::fprintf(stderr, "crescent: -x %s: %s\n", opt.upgrade_socket.c_str(),
                   socks.message().c_str());
      return 1;
    }
    core::logInfo("binary upgrade: {} listening socket{} received from {}", socks->size(),
                  socks->size() == 1 ? "" : "s", opt.upgrade_socket);
    popt.inherited = std::move(*socks);
  }

  if (!opt.pidfile.empty()) {
    // Written once serving, to a temporary name then renamed: a binary upgrade replaces
    // the old process's pidfile without a moment where it is missing or half written, and
    // a new process that fails to start leaves the old one's pidfile alone.
    popt.on_ready = [path = opt.pidfile] {
      std::string tmp = path + ".tmp";
      std::ofstream pf(tmp);
      pf << ::getpid() << "\n";
      pf.close();
      if (!pf || std::rename(tmp.c_str(), path.c_str()) != 0)
        core::logError("cannot write pidfile {}: {}", path, std::strerror(errno));
    };
  }

  core::Process process(opt.config, loader, std::move(popt));
  int rc = process.run(std::move(*loaded));
  if (!opt.pidfile.empty()) {
    // Only ours: after a binary upgrade the file names the new process.
    std::ifstream pf(opt.pidfile);
    long pid = 0;
    if (pf >> pid && pid == ::getpid()) ::unlink(opt.pidfile.c_str());
  }
  return rc;
}
