#pragma once

#include <unordered_set>

namespace crescent::lua {

/// A resource a script made that must not outlive the phase, exchange or timer callback
/// it was made in (a cosocket): closed when its scope ends, unless it left the scope
/// first (a socket put in the keepalive pool, or collected).
class ScopedResource {
 public:
  /// The scope ends: close now. Called once; the resource leaves the scope.
  virtual void closeForScope() = 0;

 protected:
  ~ScopedResource() = default;
};

/// The resources of one exchange's phases, or of one timer callback. Worker thread only.
class ScriptScope {
 public:
  ScriptScope() = default;
  ~ScriptScope() { closeAll(); }
  ScriptScope(const ScriptScope&) = delete;
  ScriptScope& operator=(const ScriptScope&) = delete;

  void add(ScopedResource* r) { members_.insert(r); }
  void remove(ScopedResource* r) { members_.erase(r); }
  /// Closes every resource still in the scope.
  void closeAll() {
    while (!members_.empty()) {
      ScopedResource* r = *members_.begin();
      members_.erase(members_.begin());
      r->closeForScope();
    }
  }

 private:
  std::unordered_set<ScopedResource*> members_;
};

}  // namespace crescent::lua
