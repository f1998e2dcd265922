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
/// Immutable after compile(); match() is thread-safe (per-call match data).
class Acl {
 public:
  virtual ~Acl() = default;

  /// Compiles a descriptor. Errors name the problem and the value, e.g.
  /// `invalid regex "a(" in acl.path_reg: missing closing parenthesis at offset 2`,
  /// `invalid CIDR "10.0.0.0/33"`, `invalid port range "90-80"`; the caller prefixes
  /// `file:line:`.
  static Result<std::shared_ptr<const Acl>> compile(const AclNode& node);

  /// True when the sample matches.
  virtual bool match(const AclSample& sample) const = 0;
};

}  // namespace crescent::core
