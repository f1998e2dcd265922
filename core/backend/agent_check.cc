#include "core/backend/agent_check.h"

#include <algorithm>
#include <cctype>

#include "core/backend/check_io.h"
#include "core/base/log.h"
#include "core/net/event_loop.h"
#include "core/net/stream.h"
#include "core/net/timer.h"

namespace crescent::core {

namespace {

bool isSeparator(char c) {
  return c == ' ' || c == '\t' || c == ',';
}

std::string lower(std::string_view w) {
  std::string out(w);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
    s.remove_suffix(1);
  return s;
}

// "75%" -> 75; nullopt when the word is not digits followed by '%'.
std::optional<int> percentWord(std::string_view w) {
  if (w.size() < 2 || w.back() != '%' || w.size() > 7) return std::nullopt;
  int n = 0;
  for (char c : w.substr(0, w.size() - 1)) {
    if (c < '0' || c > '9') return std::nullopt;
    n = n * 10 + (c - '0');
  }
  return std::min(n, 100000);
}

// A peer's text made fit for one log line.
std::string printable(std::string_view s) {
  std::string out(s.substr(0, 200));
  for (char& c : out)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = ' ';
  return out;
}

}  // namespace

AgentReply parseAgentReply(std::string_view line) {
  AgentReply r;
  size_t hash = line.find('#');
  if (hash != std::string_view::npos) {
    r.reason = std::string(trim(line.substr(hash + 1)));
    line = line.substr(0, hash);
  }
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (isSeparator(line[i]) || line[i] == '\r')) ++i;
    size_t j = i;
    while (j < line.size() && !isSeparator(line[j]) && line[j] != '\r') ++j;
    if (j == i) break;
    std::string_view word = line.substr(i, j - i);
    std::string w = lower(word);
    if (w == "up") {
      r.up = true;
    } else if (w == "down" || w == "fail" || w == "failed" || w == "stopped") {
      r.up = false;
    } else if (w == "ready") {
      r.admin = AdminState::kReady;
    } else if (w == "drain") {
      r.admin = AdminState::kDrain;
    } else if (w == "maint") {
      r.admin = AdminState::kMaint;
    } else if (auto pct = percentWord(w)) {
      r.weight_percent = *pct;
    } else {
      r.unknown.emplace_back(word);
    }
    i = j;
  }
  return r;
}

int agentWeight(int configured, int percent) {
  int64_t w = static_cast<int64_t>(configured) * percent / 100;
  return static_cast<int>(std::clamp<int64_t>(w, 0, 256));
}

void applyAgentReply(Server& server, const AgentReply& reply, std::string_view line) {
  std::string words = printable(trim(line));
  const std::string& be = server.backend().name();
  std::string why = "agent says \"" + words + "\"";
  if (reply.admin) server.setAdmin(*reply.admin, why);  // logs a change
  if (reply.weight_percent) {
    int was = server.weight();
    int w = agentWeight(server.config().weight, *reply.weight_percent);
    if (w != was) {
      server.setWeight(w);
      logInfo("server {}/{} weight {} -> {} ({})", be, server.name(), was, w, why);
    }
  }
  if (reply.up) {
    std::string reason = *reply.up ? "Agent reports UP" : "Agent reports DOWN";
    reason += ", info: \"" + (reply.reason.empty() ? words : printable(reply.reason)) + "\"";
    bool was_agent_up = server.agentUp();
    bool changed = server.setAgentUp(*reply.up, reason);  // logs an UP/DOWN change
    if (!changed && *reply.up && !was_agent_up && !server.healthUp()) {
      logInfo("server {}/{}: {}; the server stays DOWN: its health check says down", be,
              server.name(), reason);
    } else if (!changed && was_agent_up != *reply.up) {
      logInfo("server {}/{}: {}", be, server.name(), reason);
    }
  }
}

// --- the I/O -----------------------------------------------------------------------------

class AgentCheck::Impl final : public StreamHandler {
 public:
  Impl(EventLoop& loop, Server& server, uint64_t first_delay_ms) : loop_(loop), server_(server) {
    const AgentCheckConfig& a = server.config().agent;
    uint64_t connect = server.backend().config().timeout.connect;
    uint64_t t = server.config().check.timeout;
    timeout_ms_ = t != 0 ? t : (connect != 0 ? std::min(a.inter, connect) : a.inter);
    timer_ = Timer::create(loop_, &Impl::onTimerCb, this);
    timer_->start(first_delay_ms);
  }
  ~Impl() override { close(); }

  void close() {
    if (closed_) return;
    closed_ = true;
    timer_.reset();
    if (conn_) drainCheckInput(*conn_);
    conn_.reset();
  }

 private:
  const AgentCheckConfig& cfg() const { return server_.config().agent; }

  static void onTimerCb(void* ctx) { static_cast<Impl*>(ctx)->onTimer(); }
  void onTimer() {
    if (conn_) {
      end("timeout");
      return;
    }
    line_.clear();
    started_loop_ = loop_.now();
    timer_->start(timeout_ms_);
    conn_ = Stream::create(loop_, Stream::Kind::kTcp);
    conn_->setHandler(this);
    if (int rc = conn_->connect(cfg().address); rc != 0) end("connect: " + checkErrorText(rc));
  }

  void onStreamConnected(Stream&, int status) override {
    if (status != 0) {
      end("connect: " + checkErrorText(status));
      return;
    }
    conn_->setNoDelay(true);
    if (!cfg().send.empty()) conn_->write(cfg().send);
    conn_->readStart();
  }
  void onStreamData(Stream&, Buffer data) override {
    std::string_view d = data.view();
    size_t nl = d.find('\n');
    line_.append(d.substr(0, std::min(nl, kMaxLine - std::min(kMaxLine, line_.size()))));
    if (nl != std::string_view::npos || line_.size() >= kMaxLine) apply();
  }
  void onStreamEof(Stream&) override { apply(); }
  void onStreamError(Stream&, int uv_error) override {
    if (!line_.empty()) {
      apply();
      return;
    }
    end(checkErrorText(uv_error));
  }

  void apply() {
    if (trim(line_).empty()) {
      end("empty reply");
      return;
    }
    AgentReply r = parseAgentReply(line_);
    if (line_ != last_line_) {
      for (const std::string& w : r.unknown)
        logWarning("agent check for server {}/{}: ignored the word \"{}\" of \"{}\"",
                   server_.backend().name(), server_.name(), printable(w), printable(line_));
      last_line_ = line_;
    }
    applyAgentReply(server_, r, line_);
    end("");
  }

  // Ends the running agent check (`problem`: why nothing was applied, or empty) and
  // schedules the next one `inter` after this one started.
  void end(const std::string& problem) {
    if (!problem.empty())
      logDebug("agent check for server {}/{} at {}: {}", server_.backend().name(), server_.name(),
               cfg().address.toString(), problem);
    if (conn_) drainCheckInput(*conn_);
    conn_.reset();
    uint64_t elapsed = loop_.now() - started_loop_;
    timer_->start(elapsed >= cfg().inter ? 0 : cfg().inter - elapsed);
  }

  EventLoop& loop_;
  Server& server_;
  uint64_t timeout_ms_ = 0;
  TimerPtr timer_;
  StreamPtr conn_;  // while an agent check runs
  bool closed_ = false;
  uint64_t started_loop_ = 0;
  std::string line_;       // the reply being read
  std::string last_line_;  // the last reply applied (unknown words are logged once)
};

AgentCheck::AgentCheck(EventLoop& loop, Server& server, uint64_t first_delay_ms)
    : impl_(std::make_unique<Impl>(loop, server, first_delay_ms)) {}

AgentCheck::~AgentCheck() = default;

void AgentCheck::close() {
  impl_->close();
}

}  // namespace crescent::core
