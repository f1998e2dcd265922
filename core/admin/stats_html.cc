// The stats page for people (stats.h): HTML5, a table per frontend and per backend,
// colours per server state after HAProxy's page, refreshed every 10 s.
#include <unistd.h>

#include <fmt/format.h>

#include "core/admin/stats.h"

namespace crescent::core::stats {
namespace {

std::string esc(std::string_view s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out.push_back(c);
    }
  }
  return out;
}

// The CSS class of a server state (HAProxy's colours: green up, red down, brown maint,
// blue drain).
const char* stateClass(std::string_view state) {
  if (state == "UP") return "up";
  if (state == "DOWN") return "down";
  if (state == "MAINT") return "maint";
  return "drain";
}

std::string ago(uint64_t now, uint64_t ms) {
  if (ms == 0 || now < ms) return "-";
  uint64_t s = (now - ms) / 1000;
  if (s < 60) return fmt::format("{}s", s);
  if (s < 3600) return fmt::format("{}m{}s", s / 60, s % 60);
  return fmt::format("{}h{}m", s / 3600, (s % 3600) / 60);
}

constexpr const char* kHead = R"(<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="refresh" content="10">
<title>crescent stats</title>
<style>
body { font-family: sans-serif; font-size: 13px; margin: 1em; }
table { border-collapse: collapse; margin-bottom: 1.5em; }
th, td { border: 1px solid #999; padding: 2px 6px; text-align: right; }
th { background: #20435c; color: #fff; }
td.name { text-align: left; }
caption { text-align: left; font-weight: bold; background: #b8d0e0; padding: 3px 6px; }
tr.up td { background: #c0ffc0; }
tr.down td { background: #ff9090; }
tr.maint td { background: #c07820; }
tr.drain td { background: #b0d0ff; }
tr.total td { background: #e8e8d0; font-weight: bold; }
</style>
</head>
<body>
)";

void generations(std::string& out, const ProcessStatus::Snapshot& p, uint64_t now) {
  out += fmt::format(
      "<h1>crescent</h1>\n<p>pid {}, uptime {}s, {} thread{}, {} reload{}, {} connection{} "
      "now</p>\n",
      ::getpid(), p.uptime_ms / 1000, p.threads, p.threads == 1 ? "" : "s", p.reloads,
      p.reloads == 1 ? "" : "s", p.actconn, p.actconn == 1 ? "" : "s");
  out +=
      "<table id=\"generations\">\n<caption>Generations</caption>\n"
      "<tr><th>id</th><th>state</th><th>age</th><th>sessions</th></tr>\n";
  for (const auto& g : p.generations) {
    out += fmt::format("<tr><td>{}</td><td class=\"name\">{}</td><td>{}</td><td>{}</td></tr>\n",
                       g.gen->id(), esc(g.state), ago(now, g.gen->createdMs()), g.gen->sessions());
  }
  out += "</table>\n";
}

void frontendTable(std::string& out, Generation& gen, size_t i) {
  const FrontendConfig& fe = gen.config().frontends[i];
  FrontendStats& st = gen.frontendStats(i);
  out += fmt::format(
      "<table class=\"frontend\">\n<caption>frontend {}</caption>\n"
      "<tr><th>mode</th><th>sessions cur</th><th>limit</th><th>sessions total</th>"
      "<th>requests</th><th>binds</th></tr>\n",
      esc(fe.name));
  std::string binds;
  for (const BindConfig& b : fe.binds) binds += (binds.empty() ? "" : " ") + esc(b.text);
  out += fmt::format(
      "<tr class=\"total\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>"
      "<td class=\"name\">{}</td></tr>\n</table>\n",
      fe.mode == Mode::kHttp ? "http" : "tcp", st.cur.load(),
      fe.maxconn > 0 ? std::to_string(fe.maxconn) : "-", st.total.load(),
      fe.mode == Mode::kHttp ? std::to_string(st.requests.load()) : "-", binds);
}

void backendTable(std::string& out, Backend& b, uint64_t now) {
  out += fmt::format(
      "<table class=\"backend\">\n<caption>backend {}</caption>\n"
      "<tr><th>server</th><th>state</th><th>weight</th><th>sessions cur</th><th>limit</th>"
      "<th>sessions total</th><th>queue</th><th>conn errors</th><th>retries</th>"
      "<th>check failures</th><th>resp time ms</th><th>last change</th></tr>\n",
      esc(b.name()));
  int usable = 0;
  for (auto& s : b.servers()) {
    std::string_view state = s->stateName();
    usable += s->usable() ? 1 : 0;
    out += fmt::format(
        "<tr class=\"{}\"><td class=\"name\">{}{}</td><td>{}</td><td>{}</td><td>{}</td>"
        "<td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.0f}</td>"
        "<td>{}</td></tr>\n",
        stateClass(state), esc(s->name()), s->backup() ? " (backup)" : "", state, s->weight(),
        s->current(), s->maxconn() > 0 ? std::to_string(s->maxconn()) : "-", s->total(),
        s->queued(), s->connectErrors(), s->retries(), s->checkFailures(), s->responseTimeMs(),
        ago(now, s->lastChangeMs()));
  }
  out += fmt::format(
      "<tr class=\"total\"><td class=\"name\">BACKEND</td><td>{}</td><td></td><td>{}</td>"
      "<td></td><td>{}</td><td>{} (max {})</td><td></td><td></td><td></td><td></td><td></td>"
      "</tr>\n</table>\n",
      usable > 0 ? "UP" : "DOWN", b.current(), b.total(), b.queued(), b.queuedMax());
}

}  // namespace

std::string html(Generation& gen, const ProcessStatus::Snapshot& process) {
  uint64_t now = monotonicMs();
  std::string out = kHead;
  generations(out, process, now);
  for (size_t i = 0; i < gen.config().frontends.size(); ++i) frontendTable(out, gen, i);
  for (size_t i = 0; i < gen.backendCount(); ++i) backendTable(out, gen.backend(i), now);
  out += "</body>\n</html>\n";
  return out;
}

}  // namespace crescent::core::stats
