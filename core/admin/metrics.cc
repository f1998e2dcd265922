// The Prometheus exposition (text format 0.0.4) of the stats, with the metric names and
// labels of HAProxy's exporter (its `haproxy_` prefix replaced by `metrics.prefix`).
#include <fmt/format.h>

#include <functional>

#include "core/admin/stats.h"

namespace crescent::core::stats {
namespace {

// A label value: backslash, double quote and line feed escaped (exposition format).
std::string labelValue(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '\\' || c == '"') {
      out.push_back('\\');
      out.push_back(c);
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out.push_back(c);
    }
  }
  return out;
}

class Writer {
 public:
  Writer(std::string& out, std::string_view prefix) : out_(out), prefix_(prefix) {}

  /// Starts the family `<prefix>_<name>`: its HELP and TYPE lines.
  void family(std::string_view name, const char* type, const char* help) {
    name_ = fmt::format("{}_{}", prefix_, name);
    out_ += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name_, help, name_, type);
  }
  /// One sample of the current family; `labels` is `a="x",b="y"` or empty.
  void sample(const std::string& labels, double v) { sample("", labels, v); }
  /// A sample named the family's name + `suffix` (a histogram's _bucket, _sum, _count).
  void sample(std::string_view suffix, const std::string& labels, double v) {
    if (labels.empty()) {
      out_ += fmt::format("{}{} {}\n", name_, suffix, v);
    } else {
      out_ += fmt::format("{}{}{{{}}} {}\n", name_, suffix, labels, v);
    }
  }

 private:
  std::string& out_;
  std::string_view prefix_;
  std::string name_;
};

std::string proxyLabel(std::string_view proxy) {
  return fmt::format("proxy=\"{}\"", labelValue(proxy));
}

std::string serverLabel(std::string_view proxy, std::string_view server) {
  return fmt::format("proxy=\"{}\",server=\"{}\"", labelValue(proxy), labelValue(server));
}

void processMetrics(Writer& w, const ProcessStatus::Snapshot& p) {
  w.family("process_uptime_seconds", "gauge", "Seconds since the process started.");
  w.sample("", static_cast<double>(p.uptime_ms / 1000));
  w.family("process_current_connections", "gauge", "Client connections open now.");
  w.sample("", p.actconn);
  w.family("process_connections_total", "counter", "Client connections accepted.");
  w.sample("", static_cast<double>(p.cumconn));
  w.family("process_nbthread", "gauge", "Worker threads.");
  w.sample("", p.threads);
  w.family("process_reloads_total", "counter", "Reloads applied.");
  w.sample("", static_cast<double>(p.reloads));
  w.family("process_reload_failures_total", "counter", "Reloads refused (errors).");
  w.sample("", static_cast<double>(p.reload_failures));
  w.family("process_generations", "gauge", "Live configuration generations.");
  w.sample("", static_cast<double>(p.generations.size()));
  w.family("process_generation_sessions", "gauge",
           "Client sessions served by each live generation.");
  for (const auto& g : p.generations) {
    w.sample(fmt::format("generation=\"{}\",state=\"{}\"", g.gen->id(), g.state),
             g.gen->sessions());
  }
}

void frontendMetrics(Writer& w, Generation& gen) {
  const Config& cfg = gen.config();
  auto each = [&](const std::function<double(size_t)>& value, bool http_only = false) {
    for (size_t i = 0; i < cfg.frontends.size(); ++i) {
      if (http_only && cfg.frontends[i].mode != Mode::kHttp) continue;
      w.sample(proxyLabel(cfg.frontends[i].name), value(i));
    }
  };
  w.family("frontend_current_sessions", "gauge", "Client connections open now.");
  each([&](size_t i) { return gen.frontendStats(i).cur.load(); });
  w.family("frontend_limit_sessions", "gauge", "The frontend's maxconn (0: none).");
  each([&](size_t i) { return cfg.frontends[i].maxconn; });
  w.family("frontend_sessions_total", "counter", "Client connections accepted.");
  each([&](size_t i) { return static_cast<double>(gen.frontendStats(i).total.load()); });
  w.family("frontend_http_requests_total", "counter", "HTTP requests received.");
  each([&](size_t i) { return static_cast<double>(gen.frontendStats(i).requests.load()); }, true);
}

// Response time (request sent to response head) per backend, HTTP only: cumulative
// buckets with `le` in seconds, then _sum and _count.
void responseTimeHistogram(Writer& w, Generation& gen) {
  w.family("backend_http_response_time_seconds", "histogram",
           "Time from the request sent to a server to its response head.");
  for (size_t i = 0; i < gen.backendCount(); ++i) {
    Backend& b = gen.backend(i);
    if (b.config().mode != Mode::kHttp) continue;
    std::string proxy = proxyLabel(b.name());
    uint64_t cumulative = 0;
    for (size_t k = 0; k < kResponseTimeBuckets; ++k) {
      cumulative += b.responseTimeBucket(k);
      std::string le = k < std::size(kResponseTimeBucketsMs)
                           ? fmt::format("{}", kResponseTimeBucketsMs[k] / 1000.0)
                           : "+Inf";
      w.sample("_bucket", fmt::format("{},le=\"{}\"", proxy, le), static_cast<double>(cumulative));
    }
    w.sample("_sum", proxy, b.responseTimeSumMs() / 1000.0);
    w.sample("_count", proxy, static_cast<double>(cumulative));
  }
}

void backendMetrics(Writer& w, Generation& gen) {
  auto each = [&](const std::function<double(Backend&)>& value) {
    for (size_t i = 0; i < gen.backendCount(); ++i)
      w.sample(proxyLabel(gen.backend(i).name()), value(gen.backend(i)));
  };
  auto count = [](Backend& b, bool backup) {
    int n = 0;
    for (auto& s : b.servers()) n += s->usable() && s->backup() == backup ? 1 : 0;
    return n;
  };
  w.family("backend_current_queue", "gauge", "Requests waiting for a server now.");
  each([](Backend& b) { return b.queued(); });
  w.family("backend_max_queue", "gauge", "Most requests that waited at once.");
  each([](Backend& b) { return b.queuedMax(); });
  w.family("backend_current_sessions", "gauge", "Requests or sessions on the backend now.");
  each([](Backend& b) { return b.current(); });
  w.family("backend_sessions_total", "counter", "Requests or sessions sent to the backend.");
  each([](Backend& b) { return static_cast<double>(b.total()); });
  w.family("backend_active_servers", "gauge", "Usable active servers.");
  each([&](Backend& b) { return count(b, false); });
  w.family("backend_backup_servers", "gauge", "Usable backup servers.");
  each([&](Backend& b) { return count(b, true); });
  w.family("backend_up", "gauge", "1 when the backend has a usable server, else 0.");
  each([&](Backend& b) { return count(b, false) + count(b, true) > 0 ? 1 : 0; });
  responseTimeHistogram(w, gen);
}

void serverMetrics(Writer& w, Generation& gen) {
  auto each = [&](const std::function<void(Backend&, Server&)>& fn) {
    for (size_t i = 0; i < gen.backendCount(); ++i)
      for (auto& s : gen.backend(i).servers()) fn(gen.backend(i), *s);
  };
  auto simple = [&](const char* name, const char* type, const char* help,
                    const std::function<double(Server&)>& value) {
    w.family(name, type, help);
    each([&](Backend& b, Server& s) { w.sample(serverLabel(b.name(), s.name()), value(s)); });
  };
  // HAProxy 2.4+: one series per state, 1 for the server's current state.
  static constexpr const char* kStates[] = {"DOWN", "UP", "MAINT", "DRAIN"};
  w.family("server_status", "gauge", "The server's state: 1 for the current one.");
  each([&](Backend& b, Server& s) {
    std::string_view now = s.stateName();
    for (const char* st : kStates) {
      w.sample(fmt::format("{},state=\"{}\"", serverLabel(b.name(), s.name()), st),
               now == st ? 1 : 0);
    }
  });
  simple("server_current_sessions", "gauge", "Connections to the server now.",
         [](Server& s) { return s.current(); });
  simple("server_limit_sessions", "gauge", "The server's maxconn (0: none).",
         [](Server& s) { return s.maxconn(); });
  simple("server_sessions_total", "counter", "Requests or sessions sent to the server.",
         [](Server& s) { return static_cast<double>(s.total()); });
  simple("server_current_queue", "gauge", "Requests waiting for this server now.",
         [](Server& s) { return s.queued(); });
  simple("server_connection_errors_total", "counter", "Failed connection attempts.",
         [](Server& s) { return static_cast<double>(s.connectErrors()); });
  simple("server_retry_warnings_total", "counter", "Connection attempts retried.",
         [](Server& s) { return static_cast<double>(s.retries()); });
  simple("server_redispatch_warnings_total", "counter", "Requests redispatched to another server.",
         [](Server& s) { return static_cast<double>(s.redispatches()); });
  simple("server_check_failures_total", "counter", "Failed health checks.",
         [](Server& s) { return static_cast<double>(s.checkFailures()); });
  simple("server_weight", "gauge", "The server's weight now.",
         [](Server& s) { return s.weight(); });
  simple("server_response_time_average_seconds", "gauge",
         "Average response time of the last requests, in seconds.",
         [](Server& s) { return s.responseTimeMs() / 1000.0; });
  uint64_t now = monotonicMs();
  simple("server_last_state_change_seconds", "gauge", "Seconds since the last state change.",
         [now](Server& s) {
           uint64_t c = s.lastChangeMs();
           return c > 0 && now >= c ? static_cast<double>((now - c) / 1000) : 0.0;
         });
}

}  // namespace

std::string metrics(Generation& gen, const ProcessStatus::Snapshot& process,
                    std::string_view prefix) {
  std::string out;
  Writer w(out, prefix);
  processMetrics(w, process);
  frontendMetrics(w, gen);
  backendMetrics(w, gen);
  serverMetrics(w, gen);
  return out;
}

}  // namespace crescent::core::stats
