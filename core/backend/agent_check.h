#pragma once

// Agent checks (HAProxy's `agent-check`, `agent-port`, `agent-inter`, `agent-send`,
// `agent-addr`; configuration manual §5.2 "agent-check"). See docs/config.md "Agent checks".

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/backend/server.h"

namespace crescent::core {

class EventLoop;

/// What one agent reply line says. Words are separated by spaces, tabs or commas and
/// compared without case; what follows a '#' is the reason (to the end of the line).
///   "up"                      the agent's health is up
///   "down", "fail", "stopped" the agent's health is down (optionally "#reason")
///   "ready", "drain", "maint" the server's admin state
///   "75%"                     the weight: that percentage of the configured weight
/// Other words are kept in `unknown` (and ignored). Later words win over earlier ones.
struct AgentReply {
  std::optional<bool> up;
  std::optional<AdminState> admin;
  std::optional<int> weight_percent;  ///< 0..100000 (HAProxy allows more than 100%)
  std::string reason;                 ///< after '#', trimmed
  std::vector<std::string> unknown;
};

/// Parses one agent line (without its '\n'; a trailing '\r' is ignored). Sans-I/O.
AgentReply parseAgentReply(std::string_view line);

/// The weight `percent` % of `configured` gives (HAProxy: rounded down, capped at 256).
int agentWeight(int configured, int percent);

/// Applies `reply` (from the line `line`) to `server`, as HAProxy does: admin state through
/// Server::setAdmin (ready/drain/maint, as the runtime API's `set server state`), the weight
/// through Server::setWeight (as `set server weight`), the health through
/// Server::setAgentUp (the server is up only while its health check and its agent both say
/// so). Each change is logged with the server's name and the agent's words. Thread-safe.
void applyAgentReply(Server& server, const AgentReply& reply, std::string_view line);

/// The agent check of one server, on the health checker's loop (core/backend/health_check):
/// every `agent.inter` ms it connects to `agent.address`, writes `agent.send` (if any),
/// reads one line (up to '\n', the close, or kMaxLine bytes) and applies it. It runs
/// whatever the server's state (maint too: only the agent's "ready" may end an agent's
/// "maint"). A failed connection, a timeout (check.timeout, else min(inter, timeout
/// connect)) or an empty reply changes nothing (HAProxy: connectivity is the health
/// check's business); it is logged at debug level.
class AgentCheck {
 public:
  static constexpr size_t kMaxLine = 1024;

  AgentCheck(EventLoop& loop, Server& server, uint64_t first_delay_ms);
  ~AgentCheck();
  AgentCheck(const AgentCheck&) = delete;
  AgentCheck& operator=(const AgentCheck&) = delete;

  /// Stops: closes the timer and the connection (they free themselves). Idempotent.
  void close();

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace crescent::core
