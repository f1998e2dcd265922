#pragma once

#include "core/config/acl.h"
#include "core/config/config.h"

namespace crescent::core {

/// The backend a request or connection goes to: the first `use_backend` rule whose ACL
/// matches (or that has none), else `default_backend`. Returns an index into
/// Config::backends, or -1 when nothing applies.
inline int selectBackend(const FrontendConfig& fe, const AclSample& sample) {
  for (const auto& rule : fe.use_backend) {
    if (!rule.when || rule.when->match(sample)) return static_cast<int>(rule.backend_index);
  }
  return fe.default_backend_index;
}

}  // namespace crescent::core
