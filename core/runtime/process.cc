#include "core/runtime/process.h"

#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

#include "core/base/log.h"
#include "core/session/generation.h"
#include "core/tls/tls_context.h"

namespace crescent::core {
namespace {

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

}  // namespace

Process::Process(std::shared_ptr<const Config> config, ScriptRunnerFactory factory,
                 std::shared_ptr<const tls::Contexts> tls)
    : config_(std::move(config)), tls_(std::move(tls)), factory_(std::move(factory)) {
  counters_.maxconn = config_->global.maxconn;
}

Process::~Process() {
  closeListeners();
}

Status Process::openListeners() {
  for (size_t i = 0; i < config_->frontends.size(); ++i) {
    const FrontendConfig& fe = config_->frontends[i];
    for (size_t j = 0; j < fe.binds.size(); ++j) {
      const BindConfig& b = fe.binds[j];
      auto fd = openListenSocket(b.address);
      if (!fd.ok())
        return Status::error(fmt::format("{}:{}: frontend \"{}\": {}", config_->path, b.line,
                                         fe.name, fd.message()));
      ListenSocket s;
      s.fd = *fd;
      s.frontend_index = i;
      s.bind_index = j;
      if (Status st = applyUnixOwnership(b); !st.ok()) {
        ::close(*fd);
        return Status::error(fmt::format("{}:{}: frontend \"{}\": bind {}: {}", config_->path,
                                         b.line, fe.name, b.text, st.message()));
      }
      s.unix_socket = b.address.isUnix();
      s.address = b.address.isUnix() ? b.address : socketLocalAddress(*fd);
      sockets_.push_back(s);
    }
  }
  return Status();
}

void Process::closeListeners() {
  for (auto& s : sockets_) {
    if (s.fd >= 0) ::close(s.fd);
    std::string path = s.unix_socket ? s.address.unixPath() : "";
    if (!path.empty() && path[0] != '@') ::unlink(path.c_str());
    s.fd = -1;
  }
  sockets_.clear();
}

int Process::run() {
  ::signal(SIGPIPE, SIG_IGN);
  // Signal handlers first: a SIGTERM that arrives while workers start (clients may already
  // connect: the sockets listen before the workers poll them) is handled, not fatal.
  uv_loop_t loop;
  uv_loop_init(&loop);
  loop_ = &loop;
  uv_signal_init(&loop, &sigint_);
  uv_signal_init(&loop, &sigterm_);
  sigint_.data = sigterm_.data = this;
  uv_signal_start(&sigint_, &Process::onSignal, SIGINT);
  uv_signal_start(&sigterm_, &Process::onSignal, SIGTERM);
  int rc = startAndServe();
  // Close whatever is still open (startup failure), then the loop.
  if (!uv_is_closing(reinterpret_cast<uv_handle_t*>(&sigint_))) {
    uv_close(reinterpret_cast<uv_handle_t*>(&sigint_), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&sigterm_), nullptr);
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  loop_ = nullptr;
  return rc;
}

int Process::startAndServe() {
  if (Status st = openListeners(); !st.ok()) {
    logError("{}", st.message());
    return 1;
  }
  int threads = config_->global.threads;
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  if (tls_ == nullptr) {
    auto built = tls::buildContexts(*config_);
    if (!built.ok()) {
      logError("{}", built.message());
      return 1;
    }
    tls_ = std::move(*built);
  }
  auto gen = std::make_shared<Generation>(1, config_, tls_);
  // Every Worker exists before any starts, so the list that wake_all reads from worker
  // threads never changes while they run.
  for (int i = 0; i < threads; ++i)
    workers_.push_back(std::make_unique<Worker>(i + 1, counters_, factory_));
  counters_.wake_all = [this] {
    for (auto& w : workers_) w->wake();
  };
  for (auto& w : workers_) {
    Status st = w->start(gen, sockets_);
    if (!st.ok()) {
      logError("{}", st.message());
      for (auto& x : workers_) x->stop();
      for (auto& x : workers_) x->join();
      workers_.clear();
      return 1;
    }
  }
  if (Status st = startHealthChecks(*gen); !st.ok()) {
    logError("{}", st.message());
    for (auto& x : workers_) x->stop();
    for (auto& x : workers_) x->join();
    workers_.clear();
    return 1;
  }
  std::string binds, backends;
  for (const auto& s : sockets_) binds += " " + s.address.toString();
  for (const auto& b : config_->backends) backends += " " + b.name;
  logInfo("ready: {} thread{}, binds{}, backends{}", threads, threads == 1 ? "" : "s", binds,
          backends.empty() ? " (none)" : backends);

  uv_run(loop_, UV_RUN_DEFAULT);  // until SIGINT/SIGTERM closes the signal handles

  stopHealthChecks();  // before the workers end and `gen` goes
  for (auto& w : workers_) w->join();
  workers_.clear();
  closeListeners();
  logInfo("stopped");
  return 0;
}

Status Process::startHealthChecks(Generation& gen) {
  std::vector<Backend*> backends;
  bool lua = false;
  for (size_t i = 0; i < gen.backendCount(); ++i) {
    backends.push_back(&gen.backend(i));
    for (const ServerConfig& s : gen.backend(i).config().servers)
      lua = lua || (s.check.enabled && s.check.expect_hook > 0);
  }
  if (!HealthChecker::wanted(backends)) return Status();
  std::unique_ptr<CheckScript> script;
  if (lua && factory_) {
    // Its own Lua state, used on the checker thread only.
    auto r = factory_();
    if (!r.ok()) return Status::error("health checks: " + r.message());
    if (std::unique_ptr<ScriptRunner> runner = std::move(*r)) {
      runner->attach(gen);
      script = std::move(runner);
    }
  }
  if (lua && !script) logWarning("health checks: no Lua state for `expect` functions");
  checker_ = std::make_unique<HealthChecker>(std::move(backends), std::move(script));
  checker_->start();
  return Status();
}

void Process::stopHealthChecks() {
  if (checker_) checker_->stop();
  checker_.reset();
}

void Process::onSignal(uv_signal_t* h, int signum) {
  auto* self = static_cast<Process*>(h->data);
  logInfo("{}: stopping", signum == SIGINT ? "SIGINT" : "SIGTERM");
  // No server changes state while the workers stop.
  self->stopHealthChecks();
  for (auto& w : self->workers_) w->stop();
  uv_close(reinterpret_cast<uv_handle_t*>(&self->sigint_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&self->sigterm_), nullptr);
}

}  // namespace crescent::core
