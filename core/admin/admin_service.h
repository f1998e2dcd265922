#pragma once

#include <string>
#include <string_view>

#include "core/admin/process_status.h"
#include "core/session/builtin_service.h"

namespace crescent::core {

/// The admin listener's built-in service (docs/observability.md): authenticates every
/// request, then answers
///   GET /healthz       200 "ok" while the process runs
///   GET /readyz        200 when every worker serves the newest generation and no
///                      reload is under way, else 503
///   GET /stats         the stats page (HTML); /stats;csv `show stat`'s CSV; /stats;json
///   GET /metrics       Prometheus text exposition format 0.0.4
/// and 404 for any other path. Credentials: `Authorization: Basic` (a user of
/// auth.users, whose crypt(3) hash is checked with crypt_r, compared in constant time)
/// or `Authorization: Bearer <token>` (one of auth.tokens, constant-time compare).
/// Without valid ones: 401 with `WWW-Authenticate: Basic realm="crescent"`. A read-only
/// user may use GET and HEAD only (405 otherwise; every endpoint is GET today).
/// Thread-safe: workers call serve() concurrently.
class AdminService final : public BuiltinService {
 public:
  /// `status` outlives this service.
  explicit AdminService(const ProcessStatus& status) : status_(status) {}
  void serve(const BuiltinRequest& req, ServiceResponse& out) override;

  /// The outcome of checking a request's Authorization header against `admin`.
  enum class Access { kDenied, kReadOnly, kFull };
  /// Checks `authorization` (the header's value; empty: none). `who` gets the user name
  /// ("token" for a bearer token) or why it was refused, for the log line.
  /// A password verified on this thread is remembered (as a SHA-256 digest with its hash,
  /// never in clear) for 60 s, so that a scraper's repeated Basic credentials cost one
  /// crypt(3) a minute; wrong passwords are never remembered.
  static Access authenticate(const AdminConfig& admin, std::string_view authorization,
                             std::string& who);
  /// crypt(3) computations made by this thread (tests: what the cache saves).
  static thread_local uint64_t crypt_calls;

 private:
  const ProcessStatus& status_;
};

}  // namespace crescent::core
