#include "core/admin/admin_service.h"

#include <crypt.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include <cstring>
#include <memory>

#include "core/admin/stats.h"
#include "core/backend/server.h"
#include "core/base/log.h"

namespace crescent::core {
namespace {

bool startsWithNoCase(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && equalsNoCase(s.substr(0, prefix.size()), prefix);
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// RFC 4648 §4 base64 (padding optional), by OpenSSL's EVP_DecodeBlock; false on a byte
// outside the alphabet.
bool decodeBase64(std::string_view in, std::string& out) {
  std::string padded(in);
  while (padded.size() % 4 != 0) padded.push_back('=');
  size_t pad = 0;
  while (pad < 2 && pad < padded.size() && padded[padded.size() - 1 - pad] == '=') ++pad;
  out.resize(padded.size() / 4 * 3);
  int n = ::EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                            reinterpret_cast<const unsigned char*>(padded.data()),
                            static_cast<int>(padded.size()));
  if (n < 0 || static_cast<size_t>(n) < pad) return false;
  out.resize(static_cast<size_t>(n) - pad);
  return true;
}

// Equal in time that depends on the lengths only (OpenSSL's CRYPTO_memcmp).
bool constantTimeEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

// The passwords this thread verified lately, as SHA-256(hash, NUL, password) (never the
// password itself), each good for kVerifiedMs: a scraper sending the same credentials
// every few seconds costs one crypt(3) a minute instead of one per request (a `$6$`
// check holds the worker ~3.5 ms). Only successes are kept: a wrong password always pays
// the full crypt(3).
struct VerifiedCache {
  static constexpr size_t kSlots = 16;
  static constexpr uint64_t kVerifiedMs = 60000;
  struct Slot {
    unsigned char digest[SHA256_DIGEST_LENGTH] = {};
    uint64_t until_ms = 0;
  };
  Slot slots[kSlots];
  size_t next = 0;
};

void digestOf(const std::string& password, const std::string& hash,
              unsigned char (&out)[SHA256_DIGEST_LENGTH]) {
  std::string text = hash;
  text.push_back('\0');  // a separator no hash contains
  text += password;
  unsigned int len = 0;
  ::EVP_Digest(text.data(), text.size(), out, &len, ::EVP_sha256(), nullptr);
  ::OPENSSL_cleanse(text.data(), text.size());
}

// crypt_r(3) of `password` with the setting (algorithm and salt) in `hash`, compared
// with `hash`. crypt_data is large (32 KiB): one per thread.
bool passwordMatches(const std::string& password, const std::string& hash) {
  thread_local VerifiedCache cache;
  unsigned char digest[SHA256_DIGEST_LENGTH];
  digestOf(password, hash, digest);
  uint64_t now = monotonicMs();
  for (const VerifiedCache::Slot& slot : cache.slots) {
    if (slot.until_ms > now && CRYPTO_memcmp(slot.digest, digest, sizeof digest) == 0) return true;
  }
  thread_local std::unique_ptr<crypt_data> data;
  if (!data) data = std::make_unique<crypt_data>();
  *data = crypt_data{};
  ++AdminService::crypt_calls;
  const char* out = ::crypt_r(password.c_str(), hash.c_str(), data.get());
  // libxcrypt answers an invalid setting with a string starting with '*'.
  if (out == nullptr || out[0] == '*' || !constantTimeEquals(out, hash)) return false;
  VerifiedCache::Slot& slot = cache.slots[cache.next++ % VerifiedCache::kSlots];
  std::memcpy(slot.digest, digest, sizeof digest);
  slot.until_ms = now + VerifiedCache::kVerifiedMs;
  return true;
}

void reply(ServiceResponse& out, int status, std::string content_type, std::string body) {
  out.status = status;
  out.headers.emplace_back("content-type", std::move(content_type));
  out.headers.emplace_back("cache-control", "no-cache");
  out.body = std::move(body);
}

}  // namespace

thread_local uint64_t AdminService::crypt_calls = 0;

AdminService::Access AdminService::authenticate(const AdminConfig& admin,
                                                std::string_view authorization, std::string& who) {
  std::string_view v = trim(authorization);
  if (v.empty()) {
    who = "no credentials";
    return Access::kDenied;
  }
  if (startsWithNoCase(v, "bearer ")) {
    std::string_view token = trim(v.substr(7));
    bool found = false;
    for (const std::string& t : admin.tokens) found = constantTimeEquals(token, t) || found;
    who = found ? "token" : "invalid bearer token";
    return found ? Access::kFull : Access::kDenied;
  }
  if (!startsWithNoCase(v, "basic ")) {
    who = "unsupported authorization scheme";
    return Access::kDenied;
  }
  std::string decoded;
  size_t colon = std::string::npos;
  if (decodeBase64(trim(v.substr(6)), decoded)) colon = decoded.find(':');
  if (colon == std::string::npos) {
    who = "malformed basic credentials";
    return Access::kDenied;
  }
  std::string user = decoded.substr(0, colon);
  std::string password = decoded.substr(colon + 1);
  const AdminConfig::User* found = nullptr;
  for (const AdminConfig::User& u : admin.users)
    if (u.name == user) found = &u;
  if (found == nullptr) {
    // The same work as for a known user, so that timing does not tell names apart.
    if (!admin.users.empty()) (void)passwordMatches(password, admin.users.front().hash);
    who = "unknown user \"" + user + "\"";
    return Access::kDenied;
  }
  if (!passwordMatches(password, found->hash)) {
    who = "wrong password for user \"" + user + "\"";
    return Access::kDenied;
  }
  who = user;
  for (const std::string& r : admin.read_only)
    if (r == user) return Access::kReadOnly;
  return Access::kFull;
}

void AdminService::serve(const BuiltinRequest& req, ServiceResponse& out) {
  const HeaderField* auth = req.head.find("authorization");
  std::string who;
  Access access = authenticate(req.admin, auth ? auth->value : std::string_view(), who);
  if (access == Access::kDenied) {
    logWarning("frontend \"{}\": 401 from {}: {}", req.frontend, req.src.toString(), who);
    out.headers.emplace_back("www-authenticate", "Basic realm=\"crescent\"");
    return reply(out, 401, "text/plain", "401 Unauthorized: credentials required\n");
  }
  bool read = req.head.method == "GET" || req.head.method == "HEAD";
  if (!read) {
    // Every endpoint is GET today; a read-only user never gets further than reading
    // once endpoints that change things exist.
    out.headers.emplace_back("allow", "GET, HEAD");
    return reply(out, 405, "text/plain",
                 access == Access::kReadOnly ? "405: user \"" + who + "\" is read-only\n"
                                             : "405 Method Not Allowed\n");
  }
  std::string_view path = req.head.target;
  if (size_t q = path.find('?'); q != std::string_view::npos) path = path.substr(0, q);
  if (path == "/healthz") return reply(out, 200, "text/plain", "ok\n");
  ProcessStatus::Snapshot snap = status_.snapshot();
  auto current = req.worker.current();
  if (path == "/readyz") {
    bool newest = snap.current_id != 0 && snap.oldest_serving == snap.current_id;
    bool ready = !snap.reloading && !snap.stopping && newest;
    if (ready) return reply(out, 200, "text/plain", "ready\n");
    return reply(out, 503, "text/plain",
                 snap.reloading ? "not ready: a reload is under way\n"
                 : snap.stopping
                     ? "not ready: stopping\n"
                     : "not ready: a worker does not serve the newest generation yet\n");
  }
  if (!current) return reply(out, 503, "text/plain", "no generation\n");
  Generation& gen = current->gen();
  if (path == "/stats;csv")
    return reply(out, 200, "text/csv; charset=utf-8", stats::csv(&gen, snap.stopping));
  if (path == "/stats;json")
    return reply(out, 200, "application/json", stats::json(gen, snap.stopping));
  if (path == "/stats" || path == "/stats/")
    return reply(out, 200, "text/html; charset=utf-8", stats::html(gen, snap));
  if (path == "/metrics") {
    return reply(out, 200, "text/plain; version=0.0.4; charset=utf-8",
                 stats::metrics(gen, snap, req.admin.metrics_prefix));
  }
  out.status = 404;
}

}  // namespace crescent::core
