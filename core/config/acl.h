#pragma once

#include <memory>

#include "core/base/status.h"
#include "core/config/config.h"
#include "core/net/address.h"
#include "core/proto/http_head.h"

namespace crescent::core {

/// What an ACL is evaluated against. Borrowed for the call.
struct AclSample {
  const HttpHead* req = nullptr;  ///< null in TCP mode: HTTP fetches never match
  const Address* src = nullptr;   ///< client address
  const Address* dst = nullptr;   ///< local address the client connected to
};

/// An AclNode compiled to a matcher: regexes (PCRE2, JIT where available) and CIDRs are
/// prepared once at load, so matching makes no allocation and calls no Lua.
/// Immutable after compile(); match() is thread-safe (PCRE2 match data is per thread).
class Acl {
 public:
  virtual ~Acl() = default;

  /// Compiles a descriptor. Errors name the helper, the value and the problem, e.g.
  /// `acl.path_reg: invalid regex "a(": missing closing parenthesis (offset 2)`,
  /// `acl.src: invalid CIDR "10.0.0.0/33" (prefix out of range)`; the caller prefixes
  /// `file:line:`.
  static Result<std::shared_ptr<const Acl>> compile(const AclNode& node);

  /// True when the sample matches.
  virtual bool match(const AclSample& sample) const = 0;
};

}  // namespace crescent::core
