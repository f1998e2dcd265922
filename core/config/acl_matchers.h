#pragma once

// Value matchers behind the ACL leaves of core/config/acl.cc: string comparisons
// (eq/beg/end/sub/reg, optionally ASCII case-insensitive), CIDR sets and port-range
// sets. Each is built once at load from an AclNode's values and is then immutable:
// test()/contains() are const, thread-safe and make no allocation.
//
// Internal to core/config; callers outside use core/config/acl.h.

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/base/status.h"
#include "core/config/config.h"
#include "core/net/address.h"

struct pcre2_real_code_8;  // pcre2_code (PCRE2_CODE_UNIT_WIDTH 8), kept out of this header

namespace crescent::core {

/// Compares a sample with a list of strings; true when any value matches.
class StringMatcher {
 public:
  /// Builds a matcher for op (kEq, kBeg, kEnd, kSub or kReg) over values (at least one).
  /// nocase: ASCII case-insensitive; regexes are compiled with PCRE2_CASELESS.
  /// Regexes are unanchored searches over the bytes of the sample (no UTF mode), JIT
  /// compiled when PCRE2 supports it. what names the helper in errors ("acl.path_reg"):
  /// `acl.path_reg: invalid regex "a(": missing closing parenthesis (offset 2)`.
  static Result<StringMatcher> compile(AclNode::Op op, const std::vector<std::string>& values,
                                       bool nocase, std::string_view what);

  /// True when s matches one of the values. Regex matching uses a per-thread match
  /// block, allocated on the thread's first regex match only.
  bool test(std::string_view s) const;

 private:
  struct CodeFree {
    void operator()(pcre2_real_code_8* code) const;
  };
  using Regex = std::unique_ptr<pcre2_real_code_8, CodeFree>;

  bool testEq(std::string_view s) const;

  AclNode::Op op_ = AclNode::Op::kEq;
  bool nocase_ = false;
  /// Lowercased when nocase_; for kEq sorted and deduplicated (binary search).
  std::vector<std::string> values_;
  size_t min_len_ = 0;  ///< shortest value: shorter samples cannot match eq/beg/end/sub
  size_t max_len_ = 0;  ///< longest value: longer samples cannot match eq
  std::vector<Regex> regexes_;
};

/// A set of IPv4 and IPv6 networks.
class CidrSet {
 public:
  /// Parses "10.0.0.0/8", "2001:db8::/32", or a bare address (/32, /128). Host bits
  /// below the prefix are ignored. An IPv4-mapped IPv6 network with a prefix of at
  /// least 96 ("::ffff:10.0.0.0/104") is stored as the IPv4 network it maps.
  /// Errors: `acl.src: invalid CIDR "10.0.0.0/33" (prefix out of range)`.
  static Result<CidrSet> parse(const std::vector<std::string>& values, std::string_view what);

  /// True when a is an IP address inside one of the networks. An IPv4-mapped IPv6
  /// address (::ffff:1.2.3.4) is tested against the IPv4 networks as 1.2.3.4 and against
  /// the IPv6 networks as itself. UNIX and unset addresses never match.
  bool contains(const Address& a) const;

 private:
  struct V4 {
    uint32_t net, mask;  // host order
  };
  struct V6 {
    uint64_t net[2], mask[2];  // host order, [0] = most significant half
  };

  bool containsV4(uint32_t ip) const;
  bool containsV6(const uint64_t ip[2]) const;

  std::vector<V4> v4_;
  std::vector<V6> v6_;
};

/// A set of inclusive port ranges.
class PortRangeSet {
 public:
  /// Parses "80" or "8000-8080": decimal 0..65535, low <= high, no spaces.
  /// Errors: `acl.dst_port: invalid port range "90-80" (low > high)`.
  static Result<PortRangeSet> parse(const std::vector<std::string>& values, std::string_view what);

  bool contains(uint16_t port) const;

 private:
  struct Range {
    uint16_t lo, hi;
  };
  std::vector<Range> ranges_;
};

/// `"text"` with '"', '\\' and non-printable bytes escaped, for error messages.
std::string quoteForError(std::string_view text);

}  // namespace crescent::core
