// The `show stat` rows, as CSV and JSON (stats.h). The HTML page is in stats_html.cc,
// the Prometheus exposition in metrics.cc.
#include "core/admin/stats.h"

#include <unistd.h>

#include <fmt/format.h>

namespace crescent::core::stats {
namespace {

// The index of `name` in fieldNames(); every name used below is there.
size_t col(std::string_view name) {
  const auto& f = fieldNames();
  for (size_t i = 0; i < f.size(); ++i)
    if (f[i] == name) return i;
  return f.size();
}

using Fields = std::vector<std::pair<std::string_view, std::string>>;

Row makeRow(const Fields& fields) {
  Row r(fieldNames().size());
  for (const auto& [name, value] : fields) r[col(name)] = value;
  return r;
}

template <class T>
std::string num(T v) {
  return std::to_string(v);
}

bool allDigits(std::string_view s) {
  if (s.empty() || s.size() > 18) return false;
  for (char c : s)
    if (c < '0' || c > '9') return false;
  return true;
}

// A JSON string literal (RFC 8259 §7).
void appendJsonString(std::string& out, std::string_view s) {
  out.push_back('"');
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(ch);
    } else if (c < 0x20) {
      out += fmt::format("\\u{:04x}", c);
    } else {
      out.push_back(ch);
    }
  }
  out.push_back('"');
}

void serverRows(Backend& b, size_t iid, uint64_t now, const std::string& pid,
                std::vector<Row>& out) {
  int act = 0, bck = 0, act_weight = 0, bck_weight = 0;
  for (auto& s : b.servers()) {
    uint64_t changed = s->lastChangeMs();
    if (s->usable()) {
      (s->backup() ? bck : act) += 1;
      (s->backup() ? bck_weight : act_weight) += s->weight();
    }
    out.push_back(makeRow({{"pxname", b.name()},
                           {"svname", s->name()},
                           {"qcur", num(s->queued())},
                           {"scur", num(s->current())},
                           {"slim", s->maxconn() > 0 ? num(s->maxconn()) : ""},
                           {"stot", num(s->total())},
                           {"econ", num(s->connectErrors())},
                           {"wretr", num(s->retries())},
                           {"wredis", num(s->redispatches())},
                           {"status", s->stateName()},
                           {"weight", num(s->weight())},
                           {"act", s->backup() ? "0" : "1"},
                           {"bck", s->backup() ? "1" : "0"},
                           {"chkfail", num(s->checkFailures())},
                           {"lastchg", changed > 0 ? num((now - changed) / 1000) : ""},
                           {"pid", pid},
                           {"iid", num(iid)},
                           {"sid", num(s->index() + 1)},
                           {"type", "2"},
                           {"rtime", num(static_cast<uint64_t>(s->responseTimeMs()))}}));
  }
  out.push_back(makeRow({{"pxname", b.name()},
                         {"svname", "BACKEND"},
                         {"qcur", num(b.queued())},
                         {"qmax", num(b.queuedMax())},
                         {"scur", num(b.current())},
                         {"stot", num(b.total())},
                         {"status", act + bck > 0 ? "UP" : "DOWN"},
                         {"weight", num(act > 0 ? act_weight : bck_weight)},
                         {"act", num(act)},
                         {"bck", num(bck)},
                         {"pid", pid},
                         {"iid", num(iid)},
                         {"sid", "0"},
                         {"type", "1"}}));
}

}  // namespace

const std::vector<std::string_view>& fieldNames() {
  static const std::vector<std::string_view> kFields = {
      "pxname",       "svname",     "qcur",
      "qmax",         "scur",       "smax",
      "slim",         "stot",       "bin",
      "bout",         "dreq",       "dresp",
      "ereq",         "econ",       "eresp",
      "wretr",        "wredis",     "status",
      "weight",       "act",        "bck",
      "chkfail",      "chkdown",    "lastchg",
      "downtime",     "qlimit",     "pid",
      "iid",          "sid",        "throttle",
      "lbtot",        "tracked",    "type",
      "rate",         "rate_lim",   "rate_max",
      "check_status", "check_code", "check_duration",
      "hrsp_1xx",     "hrsp_2xx",   "hrsp_3xx",
      "hrsp_4xx",     "hrsp_5xx",   "hrsp_other",
      "hanafail",     "req_rate",   "req_rate_max",
      "req_tot",      "cli_abrt",   "srv_abrt",
      "comp_in",      "comp_out",   "comp_byp",
      "comp_rsp",     "lastsess",   "last_chk",
      "last_agt",     "qtime",      "ctime",
      "rtime",        "ttime"};
  return kFields;
}

std::vector<Row> rows(Generation& gen, bool stopping) {
  std::vector<Row> out;
  const Config& cfg = gen.config();
  uint64_t now = monotonicMs();
  std::string pid = num(::getpid());
  for (size_t i = 0; i < cfg.frontends.size(); ++i) {
    const FrontendConfig& fe = cfg.frontends[i];
    FrontendStats& st = gen.frontendStats(i);
    out.push_back(makeRow({{"pxname", fe.name},
                           {"svname", "FRONTEND"},
                           {"scur", num(st.cur.load())},
                           {"slim", fe.maxconn > 0 ? num(fe.maxconn) : ""},
                           {"stot", num(st.total.load())},
                           {"status", stopping ? "STOP" : "OPEN"},
                           {"pid", pid},
                           {"iid", num(i + 1)},
                           {"sid", "0"},
                           {"type", "0"},
                           {"req_tot", fe.mode == Mode::kHttp ? num(st.requests.load()) : ""}}));
  }
  for (size_t i = 0; i < gen.backendCount(); ++i) serverRows(gen.backend(i), i + 1, now, pid, out);
  return out;
}

std::string csv(Generation* gen, bool stopping) {
  std::string out = "# ";
  const auto& f = fieldNames();
  for (size_t i = 0; i < f.size(); ++i) {
    if (i > 0) out.push_back(',');
    out += f[i];
  }
  out.push_back('\n');
  if (gen == nullptr) return out;
  for (const Row& r : rows(*gen, stopping)) {
    for (size_t i = 0; i < r.size(); ++i) {
      if (i > 0) out.push_back(',');
      out += r[i];
    }
    out.push_back('\n');
  }
  return out;
}

std::string json(Generation& gen, bool stopping) {
  const auto& f = fieldNames();
  std::string out = "[";
  bool first_row = true;
  for (const Row& r : rows(gen, stopping)) {
    out += first_row ? "\n  {" : ",\n  {";
    first_row = false;
    for (size_t i = 0; i < r.size(); ++i) {
      if (i > 0) out += ", ";
      appendJsonString(out, f[i]);
      out += ": ";
      if (r[i].empty()) {
        out += "null";
      } else if (allDigits(r[i])) {
        out += r[i];
      } else {
        appendJsonString(out, r[i]);
      }
    }
    out.push_back('}');
  }
  out += "\n]\n";
  return out;
}

}  // namespace crescent::core::stats
