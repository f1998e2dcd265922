#pragma once

// Protocol health checks (HAProxy's `option mysql-check`, `pgsql-check`, `redis-check`,
// `smtpchk`) as sans-I/O state machines: bytes received in, bytes to send and a verdict
// out. core/backend/health_check.cc drives them over a check connection; the unit tests
// feed them byte-exact packets. See docs/config.md "Health checks".

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "core/config/config.h"

namespace crescent::core {

/// What a protocol check decided after the bytes it was given.
struct CheckStep {
  enum class Verdict {
    kMore,  ///< send `send` (may be empty) and wait for more bytes
    kPass,  ///< the server is healthy; send `send` (may be empty), then close
    kFail,  ///< the server is not healthy; close
  };
  Verdict verdict = Verdict::kMore;
  std::string send;  ///< bytes to write now
  /// kPass/kFail: the reason as HAProxy words it, e.g. `Layer7 check passed, info: "..."`,
  /// `Layer7 wrong status, code: 1045, info: "Access denied ..."`.
  std::string reason;
};

/// One run of a protocol check, from connect to verdict. Not reused: a new one per check.
/// A step after kPass/kFail is not asked for. Replies are bounded: a reply that does not
/// fit in kMaxReply bytes is an invalid response, so a peer cannot make it buffer more.
class ProtocolCheck {
 public:
  static constexpr size_t kMaxReply = 16 * 1024;

  virtual ~ProtocolCheck() = default;
  /// Bytes to write once connected (empty when the server speaks first: mysql, smtp).
  virtual std::string start() = 0;
  /// `data`: the next bytes received (any split). Returns what to do.
  virtual CheckStep feed(std::string_view data) = 0;
  /// The peer closed before a verdict: a failed check saying where it stopped.
  virtual CheckStep eof() const;

 protected:
  /// Appends `data` to the pending input; false (and nothing appended) past kMaxReply.
  bool buffer(std::string_view data);
  std::string in_;                       ///< received and not yet consumed
  const char* waiting_for_ = "a reply";  ///< for eof(): what was expected next
};

/// A check for `c.kind` (kMysql, kPgsql, kRedis, kSmtp), or null for kTcp/kHttp.
std::unique_ptr<ProtocolCheck> makeProtocolCheck(const HealthCheckConfig& c);

// --- encoders and parsers, exposed for the unit tests -----------------------------------

namespace mysql {
/// A HandshakeResponse41 packet (sequence id 1) logging in `user` (no NUL inside) with an
/// empty password and no database: capabilities CLIENT_LONG_PASSWORD | CLIENT_PROTOCOL_41 |
/// CLIENT_SECURE_CONNECTION, max packet 16 MiB, charset utf8 (33). MySQL's "Client/Server
/// Protocol: Connection Phase" (protocol 10, post-4.1).
std::string handshakeResponse41(std::string_view user);
/// COM_QUIT (sequence id 0): the session ends cleanly, the server logs no aborted connection.
std::string comQuit();
/// Splits the first packet off `buf`: true with its sequence id and payload when whole.
bool splitPacket(std::string_view buf, uint8_t& seq, std::string_view& payload, size_t& used);
}  // namespace mysql

namespace pgsql {
/// A StartupMessage, protocol 3.0 (196608), with parameters user and database (PostgreSQL
/// "Frontend/Backend Protocol: Message Formats").
std::string startupMessage(std::string_view user, std::string_view database);
/// Terminate ('X'), sent after ReadyForQuery so the server logs no lost connection.
std::string terminate();
}  // namespace pgsql

}  // namespace crescent::core
