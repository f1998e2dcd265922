// crescent's command line: the composition root that wires the Lua side (lua/) into the
// core (core/ itself never includes a Lua header).
//
//   crescent -f FILE [-p PIDFILE]   run in the foreground
//   crescent -c -f FILE             check the configuration and exit (0 valid, 1 invalid)
//   crescent --version | -v         print the version
//   crescent -h | --help            usage
//
// The flags are HAProxy's. They are parsed by hand: HAProxy's multi-letter single-dash
// flags (-sf, -st, coming with binary upgrade) do not fit CLI11's conventions.
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

#include "core/base/log.h"
#include "core/runtime/process.h"
#include "core/tls/tls_context.h"
#if __has_include("lua/hook_runner.h")
#include "lua/hook_runner.h"
#define CRESCENT_HAVE_HOOKS 1
#endif
#include "lua/script_state.h"

#ifndef CRESCENT_VERSION
#define CRESCENT_VERSION "0.1.0"
#endif

namespace {

const char kUsage[] =
    "usage: crescent -f FILE [-c] [-p PIDFILE]\n"
    "  -f FILE      the Lua configuration to run\n"
    "  -c           check the configuration and exit: 0 if valid, 1 with file:line: message\n"
    "  -p PIDFILE   write the process id to PIDFILE\n"
    "  -v, --version  print the version\n"
    "  -h, --help     this help\n";

struct Options {
  std::string config;
  std::string pidfile;
  bool check = false;
};

int usageError(const std::string& msg) {
  std::fprintf(stderr, "crescent: %s\n%s", msg.c_str(), kUsage);
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace crescent;
  Options opt;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&](const char* flag) -> const char* {
      if (i + 1 >= argc) return nullptr;
      (void)flag;
      return argv[++i];
    };
    if (a == "-h" || a == "--help") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (a == "-v" || a == "--version") {
      std::printf("crescent %s\n", CRESCENT_VERSION);
      return 0;
    } else if (a == "-c") {
      opt.check = true;
    } else if (a == "-f") {
      const char* v = value("-f");
      if (!v) return usageError("-f needs a file");
      opt.config = v;
    } else if (a == "-p") {
      const char* v = value("-p");
      if (!v) return usageError("-p needs a file");
      opt.pidfile = v;
    } else {
      return usageError("unknown argument \"" + a + "\"");
    }
  }
  if (opt.config.empty()) return usageError("no configuration given (-f FILE)");

  auto state = lua::ScriptState::load(opt.config);
  if (!state.ok()) {
    std::fprintf(stderr, "%s\n", state.message().c_str());
    return 1;
  }
  auto config = (*state)->buildConfig();
  if (!config.ok()) {
    std::fprintf(stderr, "%s\n", config.message().c_str());
    return 1;
  }
  // Certificates, keys and CA files are part of the configuration: `-c` checks them too.
  auto tls = core::tls::buildContexts(**config);
  if (!tls.ok()) {
    std::fprintf(stderr, "%s\n", tls.message().c_str());
    return 1;
  }
  if (opt.check) {
    std::printf("configuration file is valid: %s\n", opt.config.c_str());
    return 0;
  }
  state->reset();  // workers evaluate the script in their own states

  if (!opt.pidfile.empty()) {
    std::ofstream pf(opt.pidfile);
    pf << ::getpid() << "\n";
    if (!pf) {
      std::fprintf(stderr, "crescent: cannot write pidfile %s\n", opt.pidfile.c_str());
      return 1;
    }
  }

  std::string path = opt.config;
  core::ScriptRunnerFactory factory =
      [path]() -> core::Result<std::unique_ptr<core::ScriptRunner>> {
    lua::ScriptState::LoadOptions quiet;
    quiet.quiet = true;  // the main thread's evaluation already printed the script's log lines
    auto st = lua::ScriptState::load(path, quiet);
    if (!st.ok()) return st.status();
#ifdef CRESCENT_HAVE_HOOKS
    return std::unique_ptr<core::ScriptRunner>(std::make_unique<lua::HookRunner>(std::move(*st)));
#else
    return std::unique_ptr<core::ScriptRunner>();
#endif
  };
  core::Process process(std::move(*config), std::move(factory), std::move(*tls));
  int rc = process.run();
  if (!opt.pidfile.empty()) ::unlink(opt.pidfile.c_str());
  return rc;
}
