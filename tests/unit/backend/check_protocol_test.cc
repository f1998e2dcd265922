// The protocol health checks (mysql, pgsql, redis, smtp) and the agent reply parser,
// sans-I/O: byte-exact packets out, server replies in (whole and split at every byte).

#include "core/backend/check_protocol.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/backend/agent_check.h"

namespace crescent::core {
namespace {

using Verdict = CheckStep::Verdict;

std::string bytes(std::initializer_list<int> b) {
  std::string s;
  for (int c : b) s.push_back(static_cast<char>(c));
  return s;
}

HealthCheckConfig config(HealthCheckConfig::Kind kind, std::string user = "") {
  HealthCheckConfig c;
  c.kind = kind;
  c.user = std::move(user);
  return c;
}

// Feeds `replies` to a fresh check, one at a time (each may be split at every byte by
// the caller); returns the bytes it sent, in order, and the last step.
struct Exchange {
  std::vector<std::string> sent;
  CheckStep last;
};

Exchange drive(const HealthCheckConfig& c, const std::vector<std::string>& replies,
               size_t split = 0) {
  auto check = makeProtocolCheck(c);
  Exchange r;
  if (std::string first = check->start(); !first.empty()) r.sent.push_back(first);
  for (const std::string& reply : replies) {
    std::vector<std::string> parts;
    if (split == 0 || split >= reply.size()) {
      parts = {reply};
    } else {
      parts = {reply.substr(0, split), reply.substr(split)};
    }
    for (size_t i = 0; i < parts.size(); ++i) {
      r.last = check->feed(parts[i]);
      if (!r.last.send.empty()) r.sent.push_back(r.last.send);
      if (r.last.verdict != Verdict::kMore) return r;
      if (i + 1 < parts.size()) {
        EXPECT_TRUE(r.last.send.empty());
      }
    }
  }
  return r;
}

// Every split of each reply gives the same result as the whole reply.
void expectSameAtEverySplit(const HealthCheckConfig& c, const std::vector<std::string>& replies) {
  Exchange whole = drive(c, replies);
  size_t longest = 0;
  for (const auto& r : replies) longest = std::max(longest, r.size());
  for (size_t split = 1; split < longest; ++split) {
    Exchange r = drive(c, replies, split);
    EXPECT_EQ(r.sent, whole.sent) << "split at " << split;
    EXPECT_EQ(r.last.verdict, whole.last.verdict) << "split at " << split;
    EXPECT_EQ(r.last.reason, whole.last.reason) << "split at " << split;
  }
}

// --- MySQL -------------------------------------------------------------------------------

// A protocol-10 initial handshake packet (sequence 0) with server version `version`.
std::string mysqlGreeting(const std::string& version) {
  std::string p = bytes({10}) + version + std::string(1, '\0');
  p += bytes({0x2a, 0, 0, 0});                             // connection id
  p += "abcdefgh" + std::string(1, '\0');                  // auth-plugin-data part 1, filler
  p += bytes({0xff, 0xf7, 0x21, 0x02, 0x00, 0xff, 0x81});  // capabilities, charset, status
  p += std::string(10, '\0') + "ijklmnopqrst" + std::string(1, '\0');
  p += "mysql_native_password" + std::string(1, '\0');
  std::string out = bytes({static_cast<int>(p.size()), 0, 0, 0});
  return out + p;
}

TEST(MysqlCheck, HandshakeResponse41IsByteExact) {
  std::string want = bytes({0x27, 0x00, 0x00, 0x01,  // length 39, sequence 1
                            0x01, 0x82, 0x00, 0x00,  // LONG_PASSWORD|PROTOCOL_41|SECURE
                            0x00, 0x00, 0x00, 0x01,  // max packet 16 MiB
                            0x21}) +                 // utf8_general_ci
                     std::string(23, '\0') +
                     "check" + bytes({0x00, 0x00});
  EXPECT_EQ(mysql::handshakeResponse41("check"), want);
  EXPECT_EQ(mysql::comQuit(), bytes({0x01, 0x00, 0x00, 0x00, 0x01}));
}

TEST(MysqlCheck, HandshakeOnlyWithoutUser) {
  Exchange r = drive(config(HealthCheckConfig::Kind::kMysql), {mysqlGreeting("10.11.6-MariaDB")});
  EXPECT_TRUE(r.sent.empty());
  EXPECT_EQ(r.last.verdict, Verdict::kPass);
  EXPECT_EQ(r.last.reason, "Layer7 check passed, info: \"10.11.6-MariaDB\"");
}

TEST(MysqlCheck, LoginThenQuit) {
  auto c = config(HealthCheckConfig::Kind::kMysql, "check");
  std::string ok = bytes({0x07, 0, 0, 0x02, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00});
  Exchange r = drive(c, {mysqlGreeting("8.0.36"), ok});
  ASSERT_EQ(r.sent.size(), 2u);
  EXPECT_EQ(r.sent[0], mysql::handshakeResponse41("check"));
  EXPECT_EQ(r.sent[1], mysql::comQuit());
  EXPECT_EQ(r.last.verdict, Verdict::kPass);
  EXPECT_EQ(r.last.reason, "Layer7 check passed, info: \"8.0.36\"");
  expectSameAtEverySplit(c, {mysqlGreeting("8.0.36"), ok});
}

TEST(MysqlCheck, LoginErrorIsDown) {
  auto c = config(HealthCheckConfig::Kind::kMysql, "nobody");
  std::string msg = "Access denied for user 'nobody'@'localhost'";
  std::string p = bytes({0xff, 0x15, 0x04}) + "#28000" + msg;
  std::string err = bytes({static_cast<int>(p.size()), 0, 0, 2}) + p;
  Exchange r = drive(c, {mysqlGreeting("10.11.6-MariaDB"), err});
  EXPECT_EQ(r.last.verdict, Verdict::kFail);
  EXPECT_EQ(r.last.reason, "Layer7 wrong status, code: 1045, info: \"" + msg + "\"");
  ASSERT_EQ(r.sent.size(), 1u);  // no COM_QUIT after an error: the server closes
}

TEST(MysqlCheck, ErrorInsteadOfHandshakeIsDown) {
  std::string p = bytes({0xff, 0x10, 0x04}) + "Too many connections";
  std::string err = bytes({static_cast<int>(p.size()), 0, 0, 0}) + p;
  Exchange r = drive(config(HealthCheckConfig::Kind::kMysql, "check"), {err});
  EXPECT_EQ(r.last.verdict, Verdict::kFail);
  EXPECT_EQ(r.last.reason, "Layer7 wrong status, code: 1040, info: \"Too many connections\"");
  EXPECT_TRUE(r.sent.empty());
}

TEST(MysqlCheck, RefusesOtherProtocolsAndEof) {
  Exchange r = drive(config(HealthCheckConfig::Kind::kMysql), {bytes({1, 0, 0, 0, 9})});
  EXPECT_EQ(r.last.verdict, Verdict::kFail);
  EXPECT_EQ(r.last.reason, "Layer7 invalid response, info: \"MySQL protocol version 9, not 10\"");
  auto check = makeProtocolCheck(config(HealthCheckConfig::Kind::kMysql));
  EXPECT_EQ(check->feed("\x05\x00").verdict, Verdict::kMore);
  EXPECT_EQ(check->eof().reason,
            "Layer7 invalid response, info: \"connection closed before the MySQL handshake\"");
  // An HTTP server answering on the MySQL port: a huge "length", then too much data.
  auto http = makeProtocolCheck(config(HealthCheckConfig::Kind::kMysql));
  CheckStep s = http->feed("HTTP/1.1 400 Bad Request\r\n");
  for (int i = 0; i < 2000 && s.verdict == Verdict::kMore; ++i)
    s = http->feed(std::string(64, 'x'));
  EXPECT_EQ(s.verdict, Verdict::kFail);
}

// --- PostgreSQL --------------------------------------------------------------------------

TEST(PgsqlCheck, StartupMessageIsByteExact) {
  std::string body = bytes({0x00, 0x03, 0x00, 0x00}) + "user" + std::string(1, '\0') + "bob" +
                     std::string(1, '\0') + "database" + std::string(1, '\0') + "bob" +
                     std::string(2, '\0');
  std::string want = bytes({0, 0, 0, static_cast<int>(body.size() + 4)}) + body;
  EXPECT_EQ(pgsql::startupMessage("bob", "bob"), want);
  EXPECT_EQ(want.size(), 31u);
  EXPECT_EQ(pgsql::terminate(), bytes({'X', 0, 0, 0, 4}));
}

TEST(PgsqlCheck, AuthenticationRequestIsUp) {
  auto c = config(HealthCheckConfig::Kind::kPgsql, "bob");
  std::string md5 = bytes({'R', 0, 0, 0, 12, 0, 0, 0, 5, 1, 2, 3, 4});
  Exchange r = drive(c, {md5});
  ASSERT_EQ(r.sent.size(), 1u);
  EXPECT_EQ(r.sent[0], pgsql::startupMessage("bob", "bob"));
  EXPECT_EQ(r.last.verdict, Verdict::kPass);
  EXPECT_EQ(r.last.reason, "Layer7 check passed, info: \"authentication requested (5)\"");
  expectSameAtEverySplit(c, {md5});
}

// The full start of a trust-authenticated session: AuthenticationOk, ParameterStatus,
// BackendKeyData, ReadyForQuery.
std::string pgsqlSessionStart() {
  std::string param = std::string("server_version") + '\0' + "15.18" + '\0';
  return bytes({'N', 0, 0, 0, 4}) + bytes({'R', 0, 0, 0, 8, 0, 0, 0, 0}) +
         bytes({'S', 0, 0, 0, static_cast<int>(param.size() + 4)}) + param +
         bytes({'K', 0, 0, 0, 12, 0, 0, 0x30, 0x39, 1, 2, 3, 4}) + bytes({'Z', 0, 0, 0, 5, 'I'});
}

TEST(PgsqlCheck, ReadyForQueryIsUpAndTerminates) {
  auto c = config(HealthCheckConfig::Kind::kPgsql, "bob");
  Exchange r = drive(c, {pgsqlSessionStart()});
  ASSERT_EQ(r.sent.size(), 2u);
  EXPECT_EQ(r.sent[1], pgsql::terminate());
  EXPECT_EQ(r.last.verdict, Verdict::kPass);
  EXPECT_EQ(r.last.reason, "Layer7 check passed, info: \"ready for query\"");
  expectSameAtEverySplit(c, {pgsqlSessionStart()});
}

TEST(PgsqlCheck, AuthenticationOkThenErrorIsDown) {
  // Trust authentication passes, then the role is looked up: it does not exist.
  auto c = config(HealthCheckConfig::Kind::kPgsql, "ghost");
  std::string fields = std::string("SFATAL") + '\0' + "C28000" + '\0' +
                       "Mrole \"ghost\" does not exist" + '\0' + '\0';
  std::string reply = bytes({'R', 0, 0, 0, 8, 0, 0, 0, 0}) +
                      bytes({'E', 0, 0, 0, static_cast<int>(fields.size() + 4)}) + fields;
  Exchange r = drive(c, {reply});
  EXPECT_EQ(r.last.verdict, Verdict::kFail);
  EXPECT_EQ(r.last.reason,
            "Layer7 wrong status, info: \"role \"ghost\" does not exist (SQLSTATE 28000)\"");
  auto check = makeProtocolCheck(c);
  (void)check->start();
  EXPECT_EQ(check->feed(bytes({'R', 0, 0, 0, 8, 0, 0, 0, 0})).verdict, Verdict::kMore);
  EXPECT_EQ(check->eof().reason,
            "Layer7 invalid response, info: \"connection closed before ReadyForQuery\"");
}

TEST(PgsqlCheck, ErrorResponseIsDown) {
  auto c = config(HealthCheckConfig::Kind::kPgsql, "bob");
  std::string fields = std::string("SFATAL") + '\0' + "C57P03" + '\0' +
                       "Mthe database system is starting up" + '\0' + '\0';
  std::string e = bytes({'E', 0, 0, 0, static_cast<int>(fields.size() + 4)}) + fields;
  Exchange r = drive(c, {e});
  EXPECT_EQ(r.last.verdict, Verdict::kFail);
  EXPECT_EQ(r.last.reason,
            "Layer7 wrong status, info: \"the database system is starting up (SQLSTATE 57P03)\"");
  expectSameAtEverySplit(c, {e});
  Exchange bad = drive(c, {bytes({'R', 0, 0, 0, 2})});
  EXPECT_EQ(bad.last.reason, "Layer7 invalid response, info: \"bad PostgreSQL message length\"");
}

// --- Redis -------------------------------------------------------------------------------

TEST(RedisCheck, PingPong) {
  auto c = config(HealthCheckConfig::Kind::kRedis);
  Exchange r = drive(c, {"+PONG\r\n"});
  ASSERT_EQ(r.sent.size(), 1u);
  EXPECT_EQ(r.sent[0], "PING\r\n");
  EXPECT_EQ(r.last.verdict, Verdict::kPass);
  expectSameAtEverySplit(c, {"+PONG\r\n"});
  Exchange loading = drive(c, {"-LOADING Redis is loading the dataset in memory\r\n"});
  EXPECT_EQ(loading.last.verdict, Verdict::kFail);
  EXPECT_EQ(loading.last.reason,
            "Layer7 wrong status, info: \"-LOADING Redis is loading the dataset in memory\"");
}

// --- SMTP --------------------------------------------------------------------------------

TEST(SmtpCheck, GreetingEhloMultiLine250ThenQuit) {
  auto c = config(HealthCheckConfig::Kind::kSmtp);
  c.domain = "check.example";
  std::string ehlo = "250-mail.example Hello\r\n250-PIPELINING\r\n250 8BITMIME\r\n";
  Exchange r = drive(c, {"220 mail.example ESMTP\r\n", ehlo});
  ASSERT_EQ(r.sent.size(), 2u);
  EXPECT_EQ(r.sent[0], "EHLO check.example\r\n");
  EXPECT_EQ(r.sent[1], "QUIT\r\n");
  EXPECT_EQ(r.last.verdict, Verdict::kPass);
  EXPECT_EQ(r.last.reason, "Layer7 check passed, code: 250");
  expectSameAtEverySplit(c, {"220-first\r\n220 mail.example\r\n", ehlo});
}

TEST(SmtpCheck, OtherCodesAreDown) {
  auto c = config(HealthCheckConfig::Kind::kSmtp);
  Exchange busy = drive(c, {"421 4.3.2 Service not available\r\n"});
  EXPECT_EQ(busy.last.verdict, Verdict::kFail);
  EXPECT_EQ(busy.last.reason,
            "Layer7 wrong status, code: 421, info: \"4.3.2 Service not available\"");
  EXPECT_TRUE(busy.sent.empty());
  Exchange ehlo = drive(c, {"220 ok\n", "502 5.5.2 Error: command not recognized\n"});
  EXPECT_EQ(ehlo.last.verdict, Verdict::kFail);
  Exchange junk = drive(c, {"HTTP/1.1 400\r\n"});
  EXPECT_EQ(junk.last.reason,
            "Layer7 invalid response, info: \"not an SMTP reply line: HTTP/1.1 400\"");
}

// --- agent replies -----------------------------------------------------------------------

TEST(AgentReply, WordsWeightsAndReason) {
  AgentReply r = parseAgentReply("UP 75%");
  EXPECT_EQ(r.up, true);
  EXPECT_EQ(r.weight_percent, 75);
  EXPECT_FALSE(r.admin.has_value());

  r = parseAgentReply("drain,50%\r");
  EXPECT_EQ(r.admin, AdminState::kDrain);
  EXPECT_EQ(r.weight_percent, 50);
  EXPECT_TRUE(r.unknown.empty());

  r = parseAgentReply("down #disk full, sorry");
  EXPECT_EQ(r.up, false);
  EXPECT_EQ(r.reason, "disk full, sorry");

  r = parseAgentReply("maint\tstopped");
  EXPECT_EQ(r.admin, AdminState::kMaint);
  EXPECT_EQ(r.up, false);
  EXPECT_EQ(parseAgentReply("fail").up, false);
  EXPECT_EQ(parseAgentReply("Ready").admin, AdminState::kReady);

  r = parseAgentReply("up maxconn:30 x%");
  EXPECT_EQ(r.up, true);
  EXPECT_EQ(r.unknown, (std::vector<std::string>{"maxconn:30", "x%"}));
  EXPECT_TRUE(parseAgentReply("   ").unknown.empty());
}

TEST(AgentReply, WeightIsAPercentOfTheConfiguredOne) {
  EXPECT_EQ(agentWeight(10, 50), 5);
  EXPECT_EQ(agentWeight(10, 0), 0);
  EXPECT_EQ(agentWeight(100, 300), 256);
  EXPECT_EQ(agentWeight(1, 150), 1);
}

// The agent's words through the server's own state machinery: health is up only while
// the check and the agent both say so; drain/maint/ready and the weight are the admin
// state and weight the runtime API sets.
TEST(AgentReply, AppliesToTheServer) {
  BackendConfig cfg;
  cfg.name = "b";
  ServerConfig sc;
  sc.name = "s1";
  sc.text = "127.0.0.1:8001";
  sc.address = *Address::parse(sc.text);
  sc.id = 1;
  sc.weight = 10;
  sc.agent.enabled = true;
  cfg.servers.push_back(sc);
  Backend be(cfg, 0);
  Server& s = *be.servers()[0];
  auto apply = [&](std::string_view line) { applyAgentReply(s, parseAgentReply(line), line); };

  apply("up 50%");
  EXPECT_EQ(s.weight(), 5);
  EXPECT_TRUE(s.up());
  apply("drain");
  EXPECT_EQ(s.admin(), AdminState::kDrain);
  EXPECT_FALSE(s.usable());
  apply("ready 100%");
  EXPECT_EQ(s.admin(), AdminState::kReady);
  EXPECT_EQ(s.weight(), 10);
  EXPECT_TRUE(s.usable());

  apply("down #disk full");
  EXPECT_FALSE(s.up());
  EXPECT_TRUE(s.healthUp());
  EXPECT_FALSE(s.setUp(true, "check passed"));  // the check cannot bring it back
  EXPECT_FALSE(s.up());
  apply("up");
  EXPECT_TRUE(s.up());

  EXPECT_TRUE(s.setUp(false, "check failed"));
  apply("up");  // the agent cannot bring it back either
  EXPECT_FALSE(s.up());
  EXPECT_TRUE(s.setUp(true, "check passed"));
  EXPECT_TRUE(s.up());

  apply("maint");
  EXPECT_EQ(s.admin(), AdminState::kMaint);
  apply("ready");
  EXPECT_EQ(s.admin(), AdminState::kReady);
}

}  // namespace
}  // namespace crescent::core
