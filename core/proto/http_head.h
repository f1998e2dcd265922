#pragma once

#include <cstdint>
#include <forward_list>
#include <string>
#include <string_view>
#include <vector>

namespace crescent::core {

/// One header field as received or set. Views point either into the buffer the head
/// was parsed from (zero-copy) or into the owning HttpHead's storage.
struct HeaderField {
  std::string_view name;
  std::string_view value;
};

/// A parsed HTTP/1.x request or response head (RFC 9112 §3, §4), editable by rules and
/// Lua hooks before it is serialized again.
///
/// Ownership: views taken by the parser borrow the caller's input buffer, which must
/// outlive this object (or until clear()). Strings given to set()/add()/own() are copied
/// into this object's storage, so callers may pass temporaries.
class HttpHead {
 public:
  // Request line (requests only).
  std::string_view method;
  std::string_view target;  ///< request-target as sent: origin-form, absolute-form, ...
  // Status line (responses only).
  int status = 0;
  std::string_view reason;
  /// HTTP/1.<minor>: 0 or 1.
  int version_minor = 1;
  /// Fields in arrival order; duplicates are kept as separate entries.
  std::vector<HeaderField> headers;

  /// Path part of an origin-form target ("/a/b" of "/a/b?x=1"); for absolute-form
  /// ("http://h/a?x") the path after the authority; "*" for asterisk-form.
  std::string_view path() const;
  /// Query string without the '?', empty when none.
  std::string_view query() const;

  /// First field with this name (ASCII case-insensitive), or nullptr.
  const HeaderField* find(std::string_view name) const;
  /// Number of fields with this name.
  size_t count(std::string_view name) const;
  /// Replaces every field of this name by one field (appended at the end when absent).
  void set(std::string_view name, std::string_view value);
  /// Appends a field.
  void add(std::string_view name, std::string_view value);
  /// Removes every field of this name; returns how many were removed.
  size_t remove(std::string_view name);
  /// Copies s into this head's storage and returns a view that lives as long as the head.
  std::string_view own(std::string_view s);

  /// Forgets everything, including owned storage.
  void clear();

 private:
  // Nodes never move, so views into them stay valid; an empty list allocates nothing
  // (a std::deque allocates its map and a 512-byte node even when empty: per request).
  std::forward_list<std::string> storage_;
};

/// ASCII case-insensitive equality (header names, tokens).
bool equalsNoCase(std::string_view a, std::string_view b);

}  // namespace crescent::core
