#include "core/backend/check_protocol.h"

#include <fmt/format.h>

namespace crescent::core {

namespace {

using Verdict = CheckStep::Verdict;

// A peer's text made fit for one log line (control bytes become spaces, bounded).
std::string printable(std::string_view s, size_t max = 200) {
  std::string out(s.substr(0, max));
  for (char& c : out)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = ' ';
  if (s.size() > max) out += "...";
  return out;
}

CheckStep more(std::string send = {}) {
  return {Verdict::kMore, std::move(send), {}};
}
CheckStep pass(std::string reason, std::string send = {}) {
  return {Verdict::kPass, std::move(send), std::move(reason)};
}
CheckStep fail(std::string reason) {
  return {Verdict::kFail, {}, std::move(reason)};
}
CheckStep invalid(std::string_view what) {
  return fail(fmt::format("Layer7 invalid response, info: \"{}\"", what));
}
CheckStep tooLong() {
  return invalid("reply longer than 16 KiB");
}

void putLe(std::string& out, uint32_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void putBe32(std::string& out, uint32_t v) {
  for (int i = 3; i >= 0; --i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
uint32_t be32(std::string_view s) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v = (v << 8) | static_cast<unsigned char>(s[i]);
  return v;
}
uint8_t byteAt(std::string_view s, size_t i) {
  return static_cast<uint8_t>(s[i]);
}

// --- MySQL -------------------------------------------------------------------------------

// The text of an ERR packet's payload (0xff, code, ['#' sqlstate], message).
CheckStep mysqlError(std::string_view p) {
  if (p.size() < 3) return invalid("short MySQL error packet");
  unsigned code = byteAt(p, 1) | (byteAt(p, 2) << 8);
  std::string_view msg = p.substr(3);
  if (!msg.empty() && msg.front() == '#' && msg.size() >= 6) msg.remove_prefix(6);
  return fail(fmt::format("Layer7 wrong status, code: {}, info: \"{}\"", code, printable(msg)));
}

// Server first: the initial handshake (protocol 10), then, with a user, the reply to its
// login, then COM_QUIT. HAProxy's mysql-check with `user` (post-41): a login error is a
// failed check (the check user must exist and need no password).
class MysqlCheck final : public ProtocolCheck {
 public:
  explicit MysqlCheck(std::string user) : user_(std::move(user)) {
    waiting_for_ = "the MySQL handshake";
  }
  std::string start() override { return {}; }
  CheckStep feed(std::string_view data) override {
    if (!buffer(data)) return tooLong();
    uint8_t seq = 0;
    std::string_view payload;
    size_t used = 0;
    if (!mysql::splitPacket(in_, seq, payload, used)) return more();
    CheckStep step = greeted_ ? onLoginReply(payload) : onHandshake(payload);
    in_.erase(0, used);
    return step;
  }

 private:
  CheckStep onHandshake(std::string_view p) {
    if (p.empty()) return invalid("empty MySQL handshake packet");
    if (byteAt(p, 0) == 0xff) return mysqlError(p);
    if (byteAt(p, 0) != 10)
      return invalid(fmt::format("MySQL protocol version {}, not 10", byteAt(p, 0)));
    size_t nul = p.find('\0', 1);
    if (nul == std::string_view::npos) return invalid("MySQL handshake without a server version");
    version_ = printable(p.substr(1, nul - 1), 64);
    if (user_.empty()) return pass(fmt::format("Layer7 check passed, info: \"{}\"", version_));
    greeted_ = true;
    waiting_for_ = "the reply to the MySQL login";
    return more(mysql::handshakeResponse41(user_));
  }
  CheckStep onLoginReply(std::string_view p) {
    if (p.empty()) return invalid("empty MySQL packet");
    switch (byteAt(p, 0)) {
      case 0x00:
        return pass(fmt::format("Layer7 check passed, info: \"{}\"", version_), mysql::comQuit());
      case 0xff:
        return mysqlError(p);
      case 0xfe:
        return fail(
            "Layer7 wrong status, info: \"the server asks for another authentication method "
            "(the check user must have no password)\"");
      default:
        return invalid(
            fmt::format("unexpected MySQL packet 0x{:02x} after the login", byteAt(p, 0)));
    }
  }

  std::string user_;
  std::string version_;
  bool greeted_ = false;
};

// --- PostgreSQL --------------------------------------------------------------------------

// Client first: StartupMessage; a request for a password ('R', method != 0) or
// ReadyForQuery ('Z') is up, an ErrorResponse ('E') down (HAProxy's pgsql-check). After
// AuthenticationOk ('R', 0: trust) the server still checks the role and the database and
// may send an ErrorResponse, so the check waits for ReadyForQuery (stricter than HAProxy,
// which stops at the 'R'). Notices, parameters, key data and a protocol negotiation are
// skipped.
class PgsqlCheck final : public ProtocolCheck {
 public:
  explicit PgsqlCheck(std::string user) : user_(std::move(user)) {
    waiting_for_ = "the PostgreSQL reply";
  }
  std::string start() override { return pgsql::startupMessage(user_, user_); }
  CheckStep feed(std::string_view data) override {
    if (!buffer(data)) return tooLong();
    while (in_.size() >= 5) {
      char type = in_[0];
      uint32_t len = be32(std::string_view(in_).substr(1, 4));
      if (len < 4 || len > kMaxReply) return invalid("bad PostgreSQL message length");
      if (in_.size() < 1 + static_cast<size_t>(len)) return more();
      std::string_view body = std::string_view(in_).substr(5, len - 4);
      CheckStep step = onMessage(type, body);
      if (step.verdict != Verdict::kMore) return step;
      in_.erase(0, 1 + len);
    }
    return more();
  }

 private:
  CheckStep onMessage(char type, std::string_view body) {
    switch (type) {
      case 'R': {
        if (body.size() < 4) return invalid("short PostgreSQL authentication request");
        uint32_t method = be32(body);
        if (method == 0) {
          waiting_for_ = "ReadyForQuery";
          return more();
        }
        return pass(
            fmt::format("Layer7 check passed, info: \"authentication requested ({})\"", method));
      }
      case 'Z':
        return pass("Layer7 check passed, info: \"ready for query\"", pgsql::terminate());
      case 'E':
        return fail(fmt::format("Layer7 wrong status, info: \"{}\"", errorText(body)));
      case 'S':  // ParameterStatus
      case 'K':  // BackendKeyData
      case 'N':  // NoticeResponse
      case 'v':  // NegotiateProtocolVersion
        return more();
      default:
        return invalid(fmt::format("unexpected PostgreSQL message '{}'", printable({&type, 1})));
    }
  }
  // The message ('M') and SQLSTATE ('C') fields of an ErrorResponse.
  static std::string errorText(std::string_view body) {
    std::string_view msg, code;
    while (!body.empty() && body.front() != '\0') {
      char field = body.front();
      size_t nul = body.find('\0', 1);
      if (nul == std::string_view::npos) break;
      std::string_view value = body.substr(1, nul - 1);
      if (field == 'M') msg = value;
      if (field == 'C') code = value;
      body.remove_prefix(nul + 1);
    }
    if (msg.empty()) return "error response";
    return code.empty() ? printable(msg) : printable(msg) + " (SQLSTATE " + printable(code) + ")";
  }

  std::string user_;
};

// --- Redis ----------------------------------------------------------------------------------

// PING; the first line must be +PONG (HAProxy's redis-check). An error reply (-LOADING,
// -NOAUTH) is down with its text.
class RedisCheck final : public ProtocolCheck {
 public:
  RedisCheck() { waiting_for_ = "the reply to PING"; }
  std::string start() override { return "PING\r\n"; }
  CheckStep feed(std::string_view data) override {
    if (!buffer(data)) return tooLong();
    size_t eol = in_.find("\r\n");
    if (eol == std::string::npos) return more();
    std::string_view line = std::string_view(in_).substr(0, eol);
    if (line == "+PONG") return pass("Layer7 check passed, info: \"+PONG\"");
    return fail(fmt::format("Layer7 wrong status, info: \"{}\"", printable(line)));
  }
};

// --- SMTP -------------------------------------------------------------------------------

// A 220 greeting, EHLO <domain>, a 250 reply (multi-line replies: "250-..." lines up to the
// "250 ..." one), then QUIT (RFC 5321 §4.2, §4.1.1.1; HAProxy's smtpchk).
class SmtpCheck final : public ProtocolCheck {
 public:
  explicit SmtpCheck(std::string domain) : domain_(std::move(domain)) {
    waiting_for_ = "the SMTP greeting";
  }
  std::string start() override { return {}; }
  CheckStep feed(std::string_view data) override {
    if (!buffer(data)) return tooLong();
    for (;;) {
      size_t eol = in_.find('\n');
      if (eol == std::string::npos) return more();
      std::string line = in_.substr(0, eol);
      in_.erase(0, eol + 1);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      CheckStep step = onLine(line);
      if (step.verdict != Verdict::kMore || !step.send.empty()) return step;
    }
  }

 private:
  // One reply line: "NNN-text" (more follow) or "NNN text" / "NNN" (the last).
  CheckStep onLine(std::string_view line) {
    bool digits = line.size() >= 3;
    for (size_t i = 0; digits && i < 3; ++i) digits = line[i] >= '0' && line[i] <= '9';
    if (!digits || (line.size() > 3 && line[3] != ' ' && line[3] != '-'))
      return invalid("not an SMTP reply line: " + printable(line, 80));
    if (line.size() > 3 && line[3] == '-') return more();  // a continuation
    int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
    std::string_view text = line.size() > 4 ? line.substr(4) : std::string_view();
    int want = greeted_ ? 250 : 220;
    if (code != want) {
      return fail(
          fmt::format("Layer7 wrong status, code: {}, info: \"{}\"", code, printable(text)));
    }
    if (greeted_) return pass("Layer7 check passed, code: 250", "QUIT\r\n");
    greeted_ = true;
    waiting_for_ = "the reply to EHLO";
    return more("EHLO " + domain_ + "\r\n");
  }

  std::string domain_;
  bool greeted_ = false;
};

}  // namespace

CheckStep ProtocolCheck::eof() const {
  return fail(
      fmt::format("Layer7 invalid response, info: \"connection closed before {}\"", waiting_for_));
}

bool ProtocolCheck::buffer(std::string_view data) {
  if (in_.size() + data.size() > kMaxReply) return false;
  in_.append(data);
  return true;
}

std::unique_ptr<ProtocolCheck> makeProtocolCheck(const HealthCheckConfig& c) {
  using Kind = HealthCheckConfig::Kind;
  switch (c.kind) {
    case Kind::kMysql:
      return std::make_unique<MysqlCheck>(c.user);
    case Kind::kPgsql:
      return std::make_unique<PgsqlCheck>(c.user);
    case Kind::kRedis:
      return std::make_unique<RedisCheck>();
    case Kind::kSmtp:
      return std::make_unique<SmtpCheck>(c.domain);
    case Kind::kTcp:
    case Kind::kHttp:
      break;
  }
  return nullptr;
}

namespace mysql {

std::string handshakeResponse41(std::string_view user) {
  constexpr uint32_t kLongPassword = 0x1, kProtocol41 = 0x200, kSecureConnection = 0x8000;
  std::string p;
  putLe(p, kLongPassword | kProtocol41 | kSecureConnection, 4);
  putLe(p, 16u << 20, 4);  // max packet size
  p.push_back(33);         // utf8_general_ci
  p.append(23, '\0');      // reserved
  p.append(user);
  p.push_back('\0');
  p.push_back('\0');  // auth response length 0: no password
  std::string out;
  putLe(out, static_cast<uint32_t>(p.size()), 3);
  out.push_back(1);  // sequence id: the reply to the server's handshake (0)
  return out + p;
}

std::string comQuit() {
  return std::string("\x01\x00\x00\x00\x01", 5);
}

bool splitPacket(std::string_view buf, uint8_t& seq, std::string_view& payload, size_t& used) {
  if (buf.size() < 4) return false;
  size_t len = byteAt(buf, 0) | (byteAt(buf, 1) << 8) | (byteAt(buf, 2) << 16);
  if (buf.size() < 4 + len) return false;
  seq = byteAt(buf, 3);
  payload = buf.substr(4, len);
  used = 4 + len;
  return true;
}

}  // namespace mysql

namespace pgsql {

std::string startupMessage(std::string_view user, std::string_view database) {
  std::string body;
  putBe32(body, 196608);  // protocol 3.0
  for (std::string_view kv :
       {std::string_view("user"), user, std::string_view("database"), database}) {
    body.append(kv);
    body.push_back('\0');
  }
  body.push_back('\0');
  std::string out;
  putBe32(out, static_cast<uint32_t>(body.size() + 4));
  return out + body;
}

std::string terminate() {
  return std::string("X\x00\x00\x00\x04", 5);
}

}  // namespace pgsql

}  // namespace crescent::core
