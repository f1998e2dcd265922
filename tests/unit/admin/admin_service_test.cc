// The admin service's authentication (crypt(3) hashes, bearer tokens, read-only users)
// and the stats builders (CSV, JSON, the histogram in /metrics) on a generation.
#include <crypt.h>
#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "core/admin/admin_service.h"
#include "core/admin/stats.h"

namespace crescent::core {
namespace {

// A SHA-512 crypt(3) hash of `password` (what `openssl passwd -6` prints).
std::string hashOf(const std::string& password) {
  auto data = std::make_unique<crypt_data>();
  return ::crypt_r(password.c_str(), "$6$unitsalt$", data.get());
}

std::string basic(const std::string& credentials) {
  static const char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 2 < credentials.size(); i += 3) {
    uint32_t n = (uint8_t(credentials[i]) << 16) | (uint8_t(credentials[i + 1]) << 8) |
                 uint8_t(credentials[i + 2]);
    for (int k = 3; k >= 0; --k) out.push_back(kAlphabet[(n >> (6 * k)) & 63]);
  }
  size_t rest = credentials.size() - i;
  if (rest > 0) {
    uint32_t n = uint8_t(credentials[i]) << 16;
    if (rest == 2) n |= uint8_t(credentials[i + 1]) << 8;
    out.push_back(kAlphabet[(n >> 18) & 63]);
    out.push_back(kAlphabet[(n >> 12) & 63]);
    out.push_back(rest == 2 ? kAlphabet[(n >> 6) & 63] : '=');
    out.push_back('=');
  }
  return "Basic " + out;
}

AdminConfig admin() {
  AdminConfig a;
  a.users = {{"ops", hashOf("pw-ops")}, {"viewer", hashOf("pw-view")}};
  a.tokens = {"tok-1"};
  a.read_only = {"viewer"};
  return a;
}

using Access = AdminService::Access;

TEST(AdminAuth, AVerifiedPasswordIsRememberedAWrongOneIsNot) {
  AdminConfig a = admin();
  a.users[0].hash = hashOf("pw-cache");  // a hash no other test verified on this thread
  std::string who;
  uint64_t before = AdminService::crypt_calls;
  EXPECT_EQ(AdminService::authenticate(a, basic("ops:pw-cache"), who), Access::kFull);
  EXPECT_EQ(AdminService::authenticate(a, basic("ops:pw-cache"), who), Access::kFull);
  EXPECT_EQ(AdminService::crypt_calls, before + 1);  // the second one from the cache
  EXPECT_EQ(AdminService::authenticate(a, basic("ops:wrong"), who), Access::kDenied);
  EXPECT_EQ(AdminService::authenticate(a, basic("ops:wrong"), who), Access::kDenied);
  EXPECT_EQ(AdminService::crypt_calls, before + 3);  // each wrong one pays in full
  a.users[0].hash = hashOf("pw-other");              // a reload with another hash: not remembered
  EXPECT_EQ(AdminService::authenticate(a, basic("ops:pw-cache"), who), Access::kDenied);
}

TEST(AdminAuth, Base64WithoutPaddingIsAccepted) {
  AdminConfig a = admin();
  std::string who;
  std::string padded = basic("ops:pw-ops");
  std::string bare = padded.substr(0, padded.find_last_not_of('=') + 1);
  EXPECT_EQ(AdminService::authenticate(a, bare, who), Access::kFull) << bare;
  EXPECT_EQ(AdminService::authenticate(a, "Basic b3Bz*HB3", who), Access::kDenied);
  EXPECT_EQ(who, "malformed basic credentials");
}

TEST(AdminAuth, PasswordsAreCheckedAgainstTheirHash) {
  AdminConfig a = admin();
  std::string who;
  EXPECT_EQ(AdminService::authenticate(a, basic("ops:pw-ops"), who), Access::kFull);
  EXPECT_EQ(who, "ops");
  EXPECT_EQ(AdminService::authenticate(a, basic("viewer:pw-view"), who), Access::kReadOnly);
  EXPECT_EQ(AdminService::authenticate(a, basic("ops:pw-view"), who), Access::kDenied);
  EXPECT_EQ(who, "wrong password for user \"ops\"");
  EXPECT_EQ(AdminService::authenticate(a, basic("root:pw-ops"), who), Access::kDenied);
  EXPECT_EQ(who, "unknown user \"root\"");
  // The hash itself is not a password.
  EXPECT_EQ(AdminService::authenticate(a, basic("ops:" + a.users[0].hash), who), Access::kDenied);
  // A password may contain ':' (only the first one separates the user).
  a.users[0].hash = hashOf("a:b");
  EXPECT_EQ(AdminService::authenticate(a, basic("ops:a:b"), who), Access::kFull);
}

TEST(AdminAuth, TokensAndMalformedHeaders) {
  AdminConfig a = admin();
  std::string who;
  EXPECT_EQ(AdminService::authenticate(a, "Bearer tok-1", who), Access::kFull);
  EXPECT_EQ(AdminService::authenticate(a, "bearer   tok-1 ", who), Access::kFull);
  EXPECT_EQ(AdminService::authenticate(a, "Bearer tok-", who), Access::kDenied);
  EXPECT_EQ(AdminService::authenticate(a, "Bearer tok-12", who), Access::kDenied);
  EXPECT_EQ(AdminService::authenticate(a, "", who), Access::kDenied);
  EXPECT_EQ(who, "no credentials");
  EXPECT_EQ(AdminService::authenticate(a, "Basic @@@", who), Access::kDenied);
  EXPECT_EQ(AdminService::authenticate(a, basic("no-colon"), who), Access::kDenied);
  EXPECT_EQ(who, "malformed basic credentials");
  EXPECT_EQ(AdminService::authenticate(a, "Digest x", who), Access::kDenied);
  // A user whose configured hash libcrypt cannot read never gets in.
  a.users[0].hash = "$zz$nonsense";
  EXPECT_EQ(AdminService::authenticate(a, basic("ops:pw-ops"), who), Access::kDenied);
}

std::shared_ptr<Config> statsConfig() {
  auto cfg = std::make_shared<Config>();
  BackendConfig be;
  be.name = "app";
  ServerConfig s;
  s.name = "s\"1";
  s.text = "127.0.0.1:9001";
  s.address = *Address::parse(s.text);
  be.servers.push_back(s);
  cfg->backends.push_back(be);
  FrontendConfig fe;
  fe.name = "web";
  cfg->frontends.push_back(fe);
  return cfg;
}

TEST(Stats, CsvAndJsonHaveTheSameRows) {
  Generation gen(1, statsConfig());
  gen.frontendStats(0).requests.fetch_add(7);
  std::string csv = stats::csv(&gen, false);
  EXPECT_EQ(csv.rfind("# pxname,svname,qcur,qmax,scur,smax,slim,stot,", 0), 0u);
  EXPECT_NE(csv.find("\nweb,FRONTEND,"), std::string::npos);
  EXPECT_NE(csv.find("\napp,BACKEND,"), std::string::npos);
  std::string json = stats::json(gen, false);
  EXPECT_NE(json.find("\"req_tot\": 7"), std::string::npos);
  EXPECT_NE(json.find("\"svname\": \"s\\\"1\""), std::string::npos);  // escaped
  EXPECT_NE(json.find("\"bin\": null"), std::string::npos);
  EXPECT_EQ(stats::csv(nullptr, false).find('\n'), csv.find('\n'));  // the header alone
}

TEST(Stats, ResponseTimeHistogramIsCumulative) {
  Generation gen(1, statsConfig());
  gen.backend(0).recordResponseTime(3);
  gen.backend(0).recordResponseTime(40);
  gen.backend(0).recordResponseTime(60000);
  ProcessCounters counters;
  ProcessStatus status(counters);
  std::string m = stats::metrics(gen, status.snapshot(), "px");
  EXPECT_NE(m.find("# TYPE px_backend_http_response_time_seconds histogram\n"), std::string::npos);
  EXPECT_NE(m.find("px_backend_http_response_time_seconds_bucket{proxy=\"app\",le=\"0.005\"} 1\n"),
            std::string::npos);
  EXPECT_NE(m.find("px_backend_http_response_time_seconds_bucket{proxy=\"app\",le=\"0.05\"} 2\n"),
            std::string::npos);
  EXPECT_NE(m.find("px_backend_http_response_time_seconds_bucket{proxy=\"app\",le=\"10\"} 2\n"),
            std::string::npos);
  EXPECT_NE(m.find("px_backend_http_response_time_seconds_bucket{proxy=\"app\",le=\"+Inf\"} 3\n"),
            std::string::npos);
  EXPECT_NE(m.find("px_backend_http_response_time_seconds_count{proxy=\"app\"} 3\n"),
            std::string::npos);
  EXPECT_NE(m.find("px_backend_http_response_time_seconds_sum{proxy=\"app\"} 60.043\n"),
            std::string::npos);
  // Label values are escaped.
  EXPECT_NE(m.find("server=\"s\\\"1\""), std::string::npos);
}

}  // namespace
}  // namespace crescent::core
