#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace crescent::core {

class HttpHead;
class Server;

/// What a health check received, for a Lua `expect = function(res, server)`.
/// Borrowed for the call.
struct CheckResponse {
  int status = 0;                  ///< HTTP status; 0 for a TCP check
  const HttpHead* head = nullptr;  ///< HTTP response head; null for a TCP check
  std::string_view body;           ///< first bytes of the body / TCP reply (≤ 16 KiB)
  uint64_t elapsed_ms = 0;         ///< from connect start to the end of the reply
};

/// Runs a health check's Lua `expect` function (implemented by lua/HookRunner). Used on
/// the health-check thread only, through its own Lua state.
class CheckScript {
 public:
  virtual ~CheckScript() = default;
  /// Calls hook `hook_id` as expect(res, server). True when it returned a true value;
  /// otherwise `reason` says why (its second return value, or its error with traceback).
  virtual bool runCheckExpect(int hook_id, const CheckResponse& res, const Server& server,
                              std::string& reason) = 0;
};

}  // namespace crescent::core
