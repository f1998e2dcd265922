// ACL compilation: an AclNode tree becomes a tree of small matchers, one class per
// fetch, with every value prepared at load (core/config/acl_matchers.h).
//
// Fetch semantics (see docs/config.md, "ACLs"):
//   path       HttpHead::path(): no query, no authority of an absolute-form target.
//   url_param  the value of the first `arg=` parameter of the query string, split on '&'.
//              Names compare case-sensitively and nothing is percent-decoded. A parameter
//              written without '=' (`?debug`) has the value "". found: the parameter exists.
//   hdr        every field named `arg` (case-insensitive), and in each field every
//              comma-separated element, trimmed of spaces and tabs, as HAProxy's hdr()
//              does; commas inside a double-quoted string do not split. The ACL matches
//              when any element matches. A value that itself contains commas (User-Agent,
//              dates) is therefore compared piece by piece. found: one such field exists.
//   host       the first Host field, trimmed, without its ":port"; "[v6]:port" gives the
//              address without brackets. Always case-insensitive; an eq value written
//              as "[v6]" is compared without its brackets.
//   method     the request method, case-sensitive (RFC 9110 §9.1) unless nocase.
//   src        the client address in one of the networks (CidrSet); UNIX clients and a
//              missing address never match.
//   dst_port   the local port in one of the ranges; non-IP addresses never match.
// HTTP fetches (all but src and dst_port) never match a TCP-mode sample (req == nullptr).

#include "core/config/acl.h"

#include <string>
#include <utility>
#include <vector>

#include "core/config/acl_matchers.h"

namespace crescent::core {
namespace {

using Kind = AclNode::Kind;
using Fetch = AclNode::Fetch;
using Op = AclNode::Op;
using AclPtr = std::unique_ptr<const Acl>;

/// Deeper trees (after flattening and/or chains) are refused rather than risking the stack.
constexpr int kMaxDepth = 1000;

std::string_view trimOws(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

/// "example.com:8080" -> "example.com", "[::1]:80" -> "::1". A bare IPv6 address (more
/// than one ':') and a malformed "[..." are returned as they are.
std::string_view hostWithoutPort(std::string_view v) {
  if (!v.empty() && v.front() == '[') {
    size_t close = v.find(']');
    return close == std::string_view::npos ? v : v.substr(1, close - 1);
  }
  size_t colon = v.find(':');
  if (colon != std::string_view::npos && v.find(':', colon + 1) == std::string_view::npos)
    return v.substr(0, colon);
  return v;
}

// Fetches. Each calls pred on every sample value it finds and returns true as soon as
// pred does.

struct PathFetch {
  template <class Pred>
  bool any(const HttpHead& h, const Pred& pred) const {
    return pred(h.path());
  }
};

struct MethodFetch {
  template <class Pred>
  bool any(const HttpHead& h, const Pred& pred) const {
    return pred(h.method);
  }
};

struct HostFetch {
  template <class Pred>
  bool any(const HttpHead& h, const Pred& pred) const {
    const HeaderField* f = h.find("host");
    return f != nullptr && pred(hostWithoutPort(trimOws(f->value)));
  }
};

struct UrlParamFetch {
  std::string name;

  template <class Pred>
  bool any(const HttpHead& h, const Pred& pred) const {
    std::string_view q = h.query();
    for (;;) {
      size_t amp = q.find('&');
      std::string_view part = q.substr(0, amp);
      size_t eq = part.find('=');
      if (part.substr(0, eq) == name)
        return pred(eq == std::string_view::npos ? part.substr(part.size()) : part.substr(eq + 1));
      if (amp == std::string_view::npos) return false;
      q.remove_prefix(amp + 1);
    }
  }
};

struct HdrFetch {
  std::string name;

  template <class Pred>
  bool any(const HttpHead& h, const Pred& pred) const {
    for (const HeaderField& f : h.headers)
      if (equalsNoCase(f.name, name) && anyElement(f.value, pred)) return true;
    return false;
  }

  /// Splits a field value on commas outside double-quoted strings (RFC 9110 §5.6).
  template <class Pred>
  static bool anyElement(std::string_view v, const Pred& pred) {
    size_t start = 0;
    bool quoted = false;
    for (size_t i = 0; i <= v.size(); ++i) {
      if (i == v.size() || (!quoted && v[i] == ',')) {
        if (pred(trimOws(v.substr(start, i - start)))) return true;
        start = i + 1;
      } else if (quoted && v[i] == '\\') {
        ++i;  // quoted-pair: the next byte is literal
      } else if (v[i] == '"') {
        quoted = !quoted;
      }
    }
    return false;
  }
};

// Leaves -------------------------------------------------------------------

template <class F>
class StringLeaf final : public Acl {
 public:
  StringLeaf(F fetch, StringMatcher matcher)
      : fetch_(std::move(fetch)), matcher_(std::move(matcher)) {}

  bool match(const AclSample& s) const override {
    return s.req != nullptr &&
           fetch_.any(*s.req, [this](std::string_view v) { return matcher_.test(v); });
  }

 private:
  F fetch_;
  StringMatcher matcher_;
};

template <class F>
class FoundLeaf final : public Acl {
 public:
  explicit FoundLeaf(F fetch) : fetch_(std::move(fetch)) {}

  bool match(const AclSample& s) const override {
    return s.req != nullptr && fetch_.any(*s.req, [](std::string_view) { return true; });
  }

 private:
  F fetch_;
};

class SrcLeaf final : public Acl {
 public:
  explicit SrcLeaf(CidrSet set) : set_(std::move(set)) {}
  bool match(const AclSample& s) const override {
    return s.src != nullptr && set_.contains(*s.src);
  }

 private:
  CidrSet set_;
};

class DstPortLeaf final : public Acl {
 public:
  explicit DstPortLeaf(PortRangeSet set) : set_(std::move(set)) {}
  bool match(const AclSample& s) const override {
    return s.dst != nullptr && s.dst->isIp() && set_.contains(s.dst->port());
  }

 private:
  PortRangeSet set_;
};

// Combinators --------------------------------------------------------------

class AllNode final : public Acl {
 public:
  explicit AllNode(std::vector<AclPtr> children) : children_(std::move(children)) {}
  bool match(const AclSample& s) const override {
    for (const AclPtr& c : children_)
      if (!c->match(s)) return false;
    return true;
  }

 private:
  std::vector<AclPtr> children_;
};

class AnyNode final : public Acl {
 public:
  explicit AnyNode(std::vector<AclPtr> children) : children_(std::move(children)) {}
  bool match(const AclSample& s) const override {
    for (const AclPtr& c : children_)
      if (c->match(s)) return true;
    return false;
  }

 private:
  std::vector<AclPtr> children_;
};

class NotNode final : public Acl {
 public:
  explicit NotNode(AclPtr child) : child_(std::move(child)) {}
  bool match(const AclSample& s) const override { return !child_->match(s); }

 private:
  AclPtr child_;
};

// Names as the DSL spells them, for error messages ---------------------------

const char* opSuffix(Op op) {
  switch (op) {
    case Op::kEq:
      return "eq";
    case Op::kBeg:
      return "beg";
    case Op::kEnd:
      return "end";
    case Op::kSub:
      return "sub";
    case Op::kReg:
      return "reg";
    case Op::kFound:
      return "found";
    case Op::kCidr:
      return "cidr";
    case Op::kPortRange:
      return "port_range";
  }
  return "?";
}

/// "acl.path_reg", "acl.hdr_beg(\"x\")", "acl.url_param(\"id\"):eq", "acl.src", ...
std::string helperName(const AclNode& n) {
  auto flat = [&](const char* base) {
    return n.op == Op::kEq ? std::string("acl.") + base
                           : std::string("acl.") + base + "_" + opSuffix(n.op);
  };
  switch (n.fetch) {
    case Fetch::kPath:
      return flat("path");
    case Fetch::kHost:
      return flat("host");
    case Fetch::kMethod:
      return flat("method");
    case Fetch::kSrc:
      return "acl.src";
    case Fetch::kDstPort:
      return "acl.dst_port";
    case Fetch::kUrlParam: {
      std::string s = "acl.url_param(" + quoteForError(n.arg) + ")";
      if (n.op == Op::kFound) return s;
      return s + ":" + (n.op == Op::kEnd ? "end_" : opSuffix(n.op));
    }
    case Fetch::kHdr: {
      std::string q = "(" + quoteForError(n.arg) + ")";
      if (n.op == Op::kFound) return "acl.hdr" + q;
      if (n.op == Op::kEq) return "acl.hdr" + q + ":eq";
      return std::string("acl.hdr_") + opSuffix(n.op) + q;
    }
  }
  return "acl";
}

// Compiler -----------------------------------------------------------------

class Compiler {
 public:
  Result<AclPtr> compile(const AclNode& n, int depth) {
    if (depth > kMaxDepth)
      return Status::error("acl: nested too deeply (more than " + std::to_string(kMaxDepth) +
                           " levels)");
    switch (n.kind) {
      case Kind::kAll:
      case Kind::kAny:
        return combine(n, depth);
      case Kind::kNot:
        return negate(n, depth);
      case Kind::kMatch:
        return leaf(n);
    }
    return Status::error("acl: unknown node kind " + std::to_string(static_cast<int>(n.kind)));
  }

 private:
  /// kAll/kAny. Nested nodes of the same kind are spliced in (and/or are associative), so
  /// a chain like `a + b + c + ...` built in a loop compiles flat rather than deep.
  Result<AclPtr> combine(const AclNode& n, int depth) {
    std::vector<const AclNode*> pending{&n};
    std::vector<AclPtr> children;
    while (!pending.empty()) {
      const AclNode* cur = pending.back();
      pending.pop_back();
      if (cur->kind != n.kind || cur->children.empty()) {
        if (cur->kind == n.kind) {
          return Status::error(std::string(n.kind == Kind::kAll ? "acl.all" : "acl.any") +
                               ": needs at least one operand");
        }
        auto c = compile(*cur, depth + 1);
        if (!c) return c.status();
        children.push_back(std::move(*c));
        continue;
      }
      for (auto it = cur->children.rbegin(); it != cur->children.rend(); ++it)
        pending.push_back(&*it);
    }
    if (children.size() == 1) return std::move(children.front());
    if (n.kind == Kind::kAll) return AclPtr(std::make_unique<AllNode>(std::move(children)));
    return AclPtr(std::make_unique<AnyNode>(std::move(children)));
  }

  /// kNot. A chain of negations is folded: `--a` is a.
  Result<AclPtr> negate(const AclNode& n, int depth) {
    const AclNode* cur = &n;
    bool negated = false;
    while (cur->kind == Kind::kNot) {
      if (cur->children.size() != 1)
        return Status::error("acl: not (-a) needs exactly one operand, got " +
                             std::to_string(cur->children.size()));
      negated = !negated;
      cur = &cur->children.front();
    }
    auto c = compile(*cur, depth + 1);
    if (!c || !negated) return c;
    return AclPtr(std::make_unique<NotNode>(std::move(*c)));
  }

  Result<AclPtr> leaf(const AclNode& n) {
    std::string what = helperName(n);
    switch (n.fetch) {
      case Fetch::kSrc: {
        if (n.op != Op::kCidr) return unsupported(n, what);
        if (n.values.empty()) return Status::error(what + ": needs at least one network");
        auto set = CidrSet::parse(n.values, what);
        if (!set) return set.status();
        return AclPtr(std::make_unique<SrcLeaf>(std::move(*set)));
      }
      case Fetch::kDstPort: {
        if (n.op != Op::kPortRange) return unsupported(n, what);
        if (n.values.empty()) return Status::error(what + ": needs at least one port");
        auto set = PortRangeSet::parse(n.values, what);
        if (!set) return set.status();
        return AclPtr(std::make_unique<DstPortLeaf>(std::move(*set)));
      }
      case Fetch::kPath:
        return stringLeaf(n, what, PathFetch{});
      case Fetch::kMethod:
        return stringLeaf(n, what, MethodFetch{});
      case Fetch::kHost:
        return stringLeaf(n, what, HostFetch{});
      case Fetch::kUrlParam:
        if (n.arg.empty()) return Status::error(what + ": needs a parameter name");
        return stringLeaf(n, what, UrlParamFetch{n.arg});
      case Fetch::kHdr:
        if (n.arg.empty()) return Status::error(what + ": needs a header name");
        return stringLeaf(n, what, HdrFetch{n.arg});
    }
    return Status::error("acl: unknown fetch " + std::to_string(static_cast<int>(n.fetch)));
  }

  template <class F>
  Result<AclPtr> stringLeaf(const AclNode& n, const std::string& what, F fetch) {
    bool has_found = n.fetch == Fetch::kUrlParam || n.fetch == Fetch::kHdr;
    if (n.op == Op::kFound) {
      if (!has_found) return unsupported(n, what);
      return AclPtr(std::make_unique<FoundLeaf<F>>(std::move(fetch)));
    }
    if (n.op == Op::kCidr || n.op == Op::kPortRange) return unsupported(n, what);
    if (n.values.empty()) return Status::error(what + ": needs at least one value");
    bool host = n.fetch == Fetch::kHost;
    std::vector<std::string> values = n.values;
    if (host && n.op == Op::kEq) {
      for (std::string& v : values)
        if (v.size() >= 2 && v.front() == '[' && v.back() == ']') v = v.substr(1, v.size() - 2);
    }
    auto m = StringMatcher::compile(n.op, values, n.nocase || host, what);
    if (!m) return m.status();
    return AclPtr(std::make_unique<StringLeaf<F>>(std::move(fetch), std::move(*m)));
  }

  static Status unsupported(const AclNode& n, const std::string& what) {
    return Status::error(what + ": unsupported comparison \"" + opSuffix(n.op) + "\"");
  }
};

}  // namespace

Result<std::shared_ptr<const Acl>> Acl::compile(const AclNode& node) {
  Compiler compiler;
  auto r = compiler.compile(node, 0);
  if (!r) return r.status();
  return std::shared_ptr<const Acl>(std::move(*r));
}

}  // namespace crescent::core
