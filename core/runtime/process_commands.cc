// The runtime API's command set (docs/reload.md, "The runtime API"): Process::command()
// and the `show` / `set server` commands it answers. The transport is RuntimeApi
// (runtime_api.h); the process's own life (reload, stop, signals) is in process.cc.
#include <sys/resource.h>
#include <unistd.h>
#include <algorithm>

#include <chrono>
#include <future>
#include <string>
#include <string_view>
#include <vector>

#include "core/admin/stats.h"
#include "core/base/log.h"
#include "core/runtime/fd_limit.h"
#include "core/runtime/process.h"
#include "core/session/body_budget.h"
#include "core/session/error_capture.h"
#include "core/session/generation.h"
#include "core/tls/tls_context.h"

namespace crescent::core {
namespace {

std::vector<std::string_view> splitWords(std::string_view line) {
  std::vector<std::string_view> words;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    size_t j = i;
    while (j < line.size() && line[j] != ' ' && line[j] != '\t') ++j;
    if (j > i) words.push_back(line.substr(i, j - i));
    i = j;
  }
  return words;
}

// `show ssl cert`: one block per certificate loaded on a TLS bind of the generation (as
// HAProxy's `show ssl cert <file>`): bind (frontend and address), file, subject, issuer,
// SANs, notAfter. No empty line between blocks: an empty line ends a runtime API reply.
std::string showSslCerts(const Generation& gen) {
  std::string out;
  const Config& cfg = gen.config();
  for (size_t f = 0; f < cfg.frontends.size(); ++f) {
    const FrontendConfig& fe = cfg.frontends[f];
    for (size_t b = 0; b < fe.binds.size(); ++b) {
      const tls::ServerContext* ctx = gen.bindTls(f, b);
      if (ctx == nullptr) continue;
      for (size_t i = 0; i < ctx->certCount() && i < fe.binds[b].tls.certs.size(); ++i) {
        const tls::CertSummary& c = ctx->certSummary(i);
        std::string sans;
        for (const std::string& n : c.sans) sans += (sans.empty() ? "" : ", ") + n;
        out += fmt::format(
            "Bind: {} {}\nFilename: {}\nSubject: {}\nIssuer: {}\nSubjectAltName: {}\n"
            "NotAfter: {}\n",
            fe.name, fe.binds[b].text, fe.binds[b].tls.certs[i].cert, c.subject, c.issuer, sans,
            c.not_after);
      }
    }
  }
  return out;
}

}  // namespace

std::string Process::command(std::string_view line) {
  std::vector<std::string_view> w = splitWords(line);
  if (w.empty()) return "";
  auto is = [&](std::initializer_list<std::string_view> words) {
    if (w.size() < words.size()) return false;
    size_t i = 0;
    for (std::string_view x : words)
      if (w[i++] != x) return false;
    return true;
  };
  if (is({"help"})) {
    return "The following commands are valid at this level:\n"
           "  help                                  : this list\n"
           "  reload                                : load the configuration again; reply "
           "Success=1 or Success=0 and the error\n"
           "  show info                             : process information and counters\n"
           "  show generations                      : live configuration generations\n"
           "  show sess                             : client sessions, all workers\n"
           "  show stat                             : frontends, backends, servers (CSV)\n"
           "  show servers state [backend]          : servers: state, weight, connections\n"
           "  show ssl cert                         : certificates of the TLS binds\n"
           "  set server <b>/<s> state ready|drain|maint\n"
           "  show errors [frontend|backend] [name] : the last invalid request/response captured\n"
           "  clear counters [all]                  : reset the max values (all: the totals too)\n"
           "  set server <b>/<s> weight <0-256>|<n>%\n"
           "  set server <b>/<s> maxconn <n>\n"
           "  set server <b>/<s> addr <ip> [port <n>]\n"
           "  enable server <b>/<s>                 : same as state ready\n"
           "  disable server <b>/<s>                : same as state maint\n";
  }
  if (is({"reload"}) && w.size() == 1) {
    Status st = reload("runtime API");
    if (st.ok()) return fmt::format("Success=1\ngeneration {}\n", current_->id());
    return "Success=0\n" + st.message() + "\n";
  }
  if (is({"show", "info"})) return showInfo();
  if (is({"show", "stat"}) && w.size() == 2) return showStat();
  if (is({"show", "generations"})) return showGenerations();
  if (is({"show", "sess"})) return showSessions();
  if (is({"show", "servers", "state"})) {
    if (w.size() == 4 && current_->config().findBackend(w[3]) < 0)
      return fmt::format("error: no backend \"{}\"\n", w[3]);
    return showServers(w.size() == 4 ? w[3] : std::string_view());
  }
  if (is({"show", "ssl", "cert"}) && w.size() == 3)
    return current_ ? showSslCerts(*current_) : std::string();
  if (is({"show", "errors"})) {
    std::string_view kind = w.size() >= 3 ? w[2] : std::string_view();
    if (!kind.empty() && kind != "frontend" && kind != "backend")
      return fmt::format("error: show errors [frontend|backend] [name] (got \"{}\")\n", kind);
    std::string_view name = w.size() >= 4 ? w[3] : std::string_view();
    ErrorCaptures& c = ErrorCaptures::process();
    return formatErrors(c.snapshot(kind, name), c.total());
  }
  if (is({"clear", "counters"})) {
    bool all = w.size() == 3 && w[2] == "all";
    if (w.size() > 3 || (w.size() == 3 && !all)) return "error: usage: clear counters [all]\n";
    return clearCounters(all);
  }
  if (is({"set", "server"}) || is({"enable", "server"}) || is({"disable", "server"}))
    return setServer(w);
  return fmt::format("error: unknown command \"{}\" (try \"help\")\n", line);
}

std::string Process::showInfo() {
  uint64_t now = monotonicMs();
  uint64_t pauses = 0, errors = 0, lost = 0;
  for (auto& w : workers_) {
    pauses += w->acceptPauses();
    errors += w->acceptErrors();
    lost += w->listenersLost();
  }
  rlimit rl{};
  uint64_t ulimit = ::getrlimit(RLIMIT_NOFILE, &rl) == 0 ? rl.rlim_cur : 0;
  uint64_t maxsock = current_ ? fdsNeeded(current_->config(), threads_) : 0;
  return fmt::format(
             "Name: crescent\n"
             "Pid: {}\n"
             "Uptime_sec: {}\n"
             "Threads: {}\n"
             "Generation: {}\n"
             "Generations: {}\n"
             "Reloads: {}\n"
             "ReloadFailures: {}\n"
             "CurrConns: {}\n"
             "CumConns: {}\n"
             "Maxconn: {}\n"
             "HardStoppedSessions: {}\n"
             "BufferedBodyBytes: {}\n"
             "BodyBudgetRefusals: {}\n"
             "Stopping: {}\n"
             "Ulimit-n: {}\n"
             "Maxsock: {}\n"
             "AcceptPauses: {}\n"
             "AcceptErrors: {}\n"
             "ListenersLost: {}\n",
             ::getpid(), (now - started_ms_) / 1000, threads_, current_ ? current_->id() : 0,
             liveGenerations(), reloads_, reload_failures_,
             counters_.actconn.load(std::memory_order_relaxed),
             counters_.cumconn.load(std::memory_order_relaxed),
             counters_.maxconn.load(std::memory_order_relaxed),
             hard_stopped_.load(std::memory_order_relaxed), BodyBudget::process().used(),
             BodyBudget::process().refusals(), draining_ || stopping_ ? 1 : 0, ulimit, maxsock,
             pauses, errors, lost) +
         showScriptStats();
}

// The Lua states' counters: totals over the workers (coroutines, waits, timers, sockets
// left by scripts are seen here), then each worker's memory and Lua running time.
std::string Process::showScriptStats() {
  ScriptStats total;
  std::string per_worker;
  for (auto& w : workers_) {
    auto done = std::make_shared<std::promise<ScriptStats>>();
    auto fut = done->get_future();
    w->scriptStats([done](ScriptStats s) { done->set_value(s); });
    if (fut.wait_for(std::chrono::seconds(2)) != std::future_status::ready) {
      per_worker += fmt::format("Worker{}_Busy: 1\n", w->workerId());
      continue;
    }
    ScriptStats s = fut.get();
    total.coroutines += s.coroutines;
    total.waiting += s.waiting;
    total.timers += s.timers;
    total.sockets += s.sockets;
    total.memory_bytes += s.memory_bytes;
    total.run_us += s.run_us;
    total.memory_limit_hits += s.memory_limit_hits;
    total.memory_limit = std::max(total.memory_limit, s.memory_limit);
    per_worker += fmt::format(
        "Worker{0}_LuaMemKB: {1}\nWorker{0}_LuaRunMs: {2}\nWorker{0}_LuaMemLimitHits: {3}\n",
        w->workerId(), s.memory_bytes / 1024, s.run_us / 1000, s.memory_limit_hits);
  }
  return fmt::format(
             "LuaCoroutines: {}\nLuaWaiting: {}\nLuaTimers: {}\nLuaSockets: {}\n"
             "LuaMemKB: {}\nLuaRunMs: {}\nLuaMemLimitKB: {}\nLuaMemLimitHits: {}\n",
             total.coroutines, total.waiting, total.timers, total.sockets,
             total.memory_bytes / 1024, total.run_us / 1000, total.memory_limit / 1024,
             total.memory_limit_hits) +
         per_worker;
}

std::string Process::showGenerations() {
  uint64_t now = monotonicMs();
  std::string out = "# id age_s sessions state\n";
  auto row = [&](const Generation& g, const char* state) {
    out += fmt::format("{} {:.1f} {} {}\n", g.id(),
                       static_cast<double>(now - g.createdMs()) / 1000.0, g.sessions(), state);
  };
  if (current_) row(*current_, draining_ ? "draining" : "current");
  for (auto it = retired_.rbegin(); it != retired_.rend(); ++it) {
    if (auto g = it->gen.lock()) row(*g, it->closing ? "closing" : "old");
  }
  return out;
}

// HAProxy's `show stat` CSV: the same builder as the admin listener's /stats;csv.
std::string Process::showStat() {
  return stats::csv(current_.get(), draining_);
}

std::string Process::showServers(std::string_view backend) {
  std::string out =
      "# backend server address state admin weight cur maxconn queue total econ checks_failed\n";
  if (!current_) return out;
  for (size_t i = 0; i < current_->backendCount(); ++i) {
    Backend& b = current_->backend(i);
    if (!backend.empty() && b.name() != backend) continue;
    for (auto& s : b.servers()) {
      out += fmt::format("{} {} {} {} {} {} {} {} {} {} {} {}\n", b.name(), s->name(),
                         s->address().toString(), s->up() ? "UP" : "DOWN",
                         adminStateName(s->admin()), s->weight(), s->current(), s->maxconn(),
                         s->queued(), s->total(), s->connectErrors(), s->checkFailures());
    }
  }
  return out;
}

std::string Process::showSessions() {
  std::string out;
  for (auto& w : workers_) {
    auto done = std::make_shared<std::promise<std::vector<std::string>>>();
    auto fut = done->get_future();
    w->describeSessions(
        [done](std::vector<std::string> lines) { done->set_value(std::move(lines)); });
    if (fut.wait_for(std::chrono::seconds(2)) != std::future_status::ready) {
      out += fmt::format("worker={} (busy: no answer within 2 s)\n", w->workerId());
      continue;
    }
    for (const std::string& l : fut.get()) out += l + "\n";
  }
  return out;
}

std::string Process::setServer(const std::vector<std::string_view>& w) {
  // set server B/S state|weight|maxconn V ; enable|disable server B/S
  if (w.size() < 3)
    return "error: usage: set server <backend>/<server> state|weight|maxconn <value>\n";
  std::string_view target = w[2];
  size_t slash = target.find('/');
  if (slash == std::string_view::npos)
    return fmt::format("error: \"{}\": expected <backend>/<server>\n", target);
  std::string_view bname = target.substr(0, slash), sname = target.substr(slash + 1);
  int bi = current_->config().findBackend(bname);
  if (bi < 0) return fmt::format("error: no backend \"{}\"\n", bname);
  Server* s = current_->backend(static_cast<size_t>(bi)).findServer(sname);
  if (s == nullptr)
    return fmt::format("error: backend \"{}\" has no server \"{}\"\n", bname, sname);
  if (w[0] == "enable" || w[0] == "disable") {
    if (w.size() != 3) return fmt::format("error: usage: {} server <backend>/<server>\n", w[0]);
    s->setAdmin(w[0] == "enable" ? AdminState::kReady : AdminState::kMaint, "runtime API");
    return "";
  }
  if (w.size() >= 5 && w[3] == "addr") return setServerAddr(*s, w);
  if (w.size() != 5)
    return "error: usage: set server <backend>/<server> state|weight|maxconn|addr <value>\n";
  std::string_view what = w[3], value = w[4];
  if (what == "state") {
    AdminState a;
    if (value == "ready")
      a = AdminState::kReady;
    else if (value == "drain")
      a = AdminState::kDrain;
    else if (value == "maint")
      a = AdminState::kMaint;
    else
      return fmt::format("error: state must be ready, drain or maint (got \"{}\")\n", value);
    s->setAdmin(a, "runtime API");
    return "";
  }
  auto number = [](std::string_view v, int lo, int hi, int& out) {
    if (v.empty() || v.size() > 10) return false;
    long n = 0;
    for (char c : v) {
      if (c < '0' || c > '9') return false;
      n = n * 10 + (c - '0');
    }
    if (n < lo || n > hi) return false;
    out = static_cast<int>(n);
    return true;
  };
  if (what == "weight") {
    // HAProxy: "50%" is relative to the weight the configuration gave.
    bool percent = !value.empty() && value.back() == '%';
    int n = 0;
    if (percent ? !number(value.substr(0, value.size() - 1), 0, 25600, n)
                : !number(value, 0, 256, n))
      return fmt::format(
          "error: weight must be an integer from 0 to 256, or a percentage of the configured "
          "weight like 50% (got \"{}\")\n",
          value);
    if (percent) n = std::min(256, (s->config().weight * n + 50) / 100);
    int was = s->weight();
    s->setWeight(n);
    current_->backend(static_cast<size_t>(bi)).serversChanged();
    logInfo("backend \"{}\": server \"{}\": weight {} -> {} (runtime API: weight {})", bname, sname,
            was, n, value);
    return "";
  }
  if (what == "maxconn") {
    int n = 0;
    if (!number(value, 0, 1000000000, n))
      return fmt::format("error: maxconn must be a non-negative integer (got \"{}\")\n", value);
    int was = s->maxconn();
    s->setMaxconn(n);
    logInfo("backend \"{}\": server \"{}\": maxconn {} -> {} (runtime API)", bname, sname, was, n);
    return "";
  }
  return fmt::format("error: unknown server setting \"{}\" (state, weight, maxconn)\n", what);
}

// `set server B/S addr IP [port N]`: new connections and the next health check go there;
// without `port`, the port stays. Until the next reload, which brings the configured one.
std::string Process::setServerAddr(Server& s, const std::vector<std::string_view>& w) {
  if (w.size() != 5 && !(w.size() == 7 && w[5] == "port"))
    return "error: usage: set server <backend>/<server> addr <ip> [port <n>]\n";
  Address was = s.address();
  if (!was.isIp()) return "error: the server's address is a UNIX socket; addr takes an IP\n";
  std::string_view port = w.size() == 7 ? w[6] : std::string_view();
  std::string ip(w[4]);
  bool v6 = ip.find(':') != std::string::npos;
  std::string text = (v6 ? "[" + ip + "]" : ip) + ":" +
                     (port.empty() ? std::to_string(was.port()) : std::string(port));
  auto parsed = Address::parse(text);
  if (!parsed.ok() || !parsed->isIp())
    return fmt::format("error: \"{}\" is not an IP address and port ({})\n", text,
                       parsed.ok() ? "not an IP" : parsed.message());
  s.setAddress(*parsed);
  logInfo("backend \"{}\": server \"{}\": addr {} -> {} (runtime API)", s.backend().name(),
          s.name(), was.toString(), parsed->toString());
  return "";
}

// `clear counters [all]` (HAProxy): the max values, and with `all` the totals of every
// frontend, backend and server and the captured errors. Logged.
std::string Process::clearCounters(bool all) {
  if (!current_) return "";
  for (size_t i = 0; i < current_->backendCount(); ++i) current_->backend(i).clearCounters(all);
  if (all) {
    for (size_t i = 0; i < current_->config().frontends.size(); ++i) {
      FrontendStats& st = current_->frontendStats(i);
      st.total.store(0, std::memory_order_relaxed);
      st.requests.store(0, std::memory_order_relaxed);
    }
    ErrorCaptures::process().clear();
  }
  logInfo("runtime API: clear counters{}", all ? " all" : "");
  return "";
}

}  // namespace crescent::core
