#pragma once

// A service built into crescent that answers an exchange itself, as a Lua service does
// (HAProxy's stats applet): the admin listener's stats, metrics and health endpoints
// (core/admin/admin_service.h implements it). The exchange calls it from one place,
// Exchange::runBuiltinService().

#include <string_view>

#include "core/config/config.h"
#include "core/net/address.h"
#include "core/proto/http_head.h"
#include "core/session/hooks.h"

namespace crescent::core {

class WorkerContext;

/// One request for a built-in service. Borrowed for the call only.
struct BuiltinRequest {
  const HttpHead& head;
  const AdminConfig& admin;  ///< the admin listener's settings (auth, metrics prefix)
  WorkerContext& worker;     ///< the worker thread the exchange runs on
  const Address& src;        ///< the client, for log lines
  std::string_view frontend;
};

class BuiltinService {
 public:
  virtual ~BuiltinService() = default;
  /// Answers `req` in `out` at once (it never waits). `out.status` 404 means "no such
  /// endpoint": the exchange answers with its error page for 404. Called on worker
  /// threads concurrently: implementations are thread-safe.
  virtual void serve(const BuiltinRequest& req, ServiceResponse& out) = 0;
};

}  // namespace crescent::core
