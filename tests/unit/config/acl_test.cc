#include "core/config/acl.h"

#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace crescent::core {
namespace {

using Fetch = AclNode::Fetch;
using Op = AclNode::Op;
using Kind = AclNode::Kind;

AclNode leaf(Fetch fetch, Op op, std::vector<std::string> values = {}, std::string arg = {},
             bool nocase = false) {
  AclNode n;
  n.kind = Kind::kMatch;
  n.fetch = fetch;
  n.op = op;
  n.values = std::move(values);
  n.arg = std::move(arg);
  n.nocase = nocase;
  return n;
}

AclNode tree(Kind kind, std::vector<AclNode> children) {
  AclNode n;
  n.kind = kind;
  n.children = std::move(children);
  return n;
}

/// kind(left, right) without copying left (an initializer_list would copy it).
AclNode pair(Kind kind, AclNode left, AclNode right) {
  AclNode n;
  n.kind = kind;
  n.children.reserve(2);
  n.children.push_back(std::move(left));
  n.children.push_back(std::move(right));
  return n;
}

/// A request head that owns its strings. Not copyable: views point into head's storage.
struct Request {
  HttpHead head;
  Request(std::string_view method, std::string_view target,
          std::vector<std::pair<std::string, std::string>> headers = {}) {
    head.method = head.own(method);
    head.target = head.own(target);
    for (auto& [name, value] : headers) head.add(name, value);
  }
  Request(const Request&) = delete;
  Request& operator=(const Request&) = delete;
};

std::shared_ptr<const Acl> compileOk(const AclNode& n) {
  auto acl = Acl::compile(n);
  EXPECT_TRUE(acl.ok()) << acl.message();
  return acl.ok() ? *acl : nullptr;
}

bool matches(const AclNode& n, const Request& r) {
  auto acl = compileOk(n);
  AclSample s;
  s.req = &r.head;
  return acl && acl->match(s);
}

std::string compileError(const AclNode& n) {
  auto acl = Acl::compile(n);
  EXPECT_FALSE(acl.ok());
  return acl.message();
}

Address addr(std::string_view text) {
  auto a = Address::parse(text);
  EXPECT_TRUE(a.ok()) << a.message();
  return a.ok() ? *a : Address();
}

bool srcMatches(const AclNode& n, std::string_view client) {
  auto acl = compileOk(n);
  Address a = addr(client);
  AclSample s;
  s.src = &a;
  return acl && acl->match(s);
}

bool dstMatches(const AclNode& n, std::string_view local) {
  auto acl = compileOk(n);
  Address a = addr(local);
  AclSample s;
  s.dst = &a;
  return acl && acl->match(s);
}

// path ---------------------------------------------------------------------

TEST(AclPath, EqualsAnyValue) {
  Request r("GET", "/api/v1?x=1");
  EXPECT_TRUE(matches(leaf(Fetch::kPath, Op::kEq, {"/other", "/api/v1"}), r));
  EXPECT_FALSE(matches(leaf(Fetch::kPath, Op::kEq, {"/api/v1?x=1"}), r));
  EXPECT_FALSE(matches(leaf(Fetch::kPath, Op::kEq, {"/api"}), r));
  EXPECT_FALSE(matches(leaf(Fetch::kPath, Op::kEq, {"/API/V1"}), r));
}

TEST(AclPath, EqualsWithManyValuesAndDuplicates) {
  std::vector<std::string> values;
  for (int i = 0; i < 200; ++i) values.push_back("/p" + std::to_string(i));
  values.push_back("/p7");
  Request hit("GET", "/p123"), miss("GET", "/p1234"), upper("GET", "/P42");
  EXPECT_TRUE(matches(leaf(Fetch::kPath, Op::kEq, values), hit));
  EXPECT_FALSE(matches(leaf(Fetch::kPath, Op::kEq, values), miss));
  EXPECT_FALSE(matches(leaf(Fetch::kPath, Op::kEq, values), upper));
  EXPECT_TRUE(matches(leaf(Fetch::kPath, Op::kEq, values, {}, true), upper));
}

TEST(AclPath, BeginsEndsContains) {
  Request r("GET", "/static/img/logo.PNG");
  EXPECT_TRUE(matches(leaf(Fetch::kPath, Op::kBeg, {"/api", "/static/"}), r));
  EXPECT_FALSE(matches(leaf(Fetch::kPath, Op::kBeg, {"/STATIC"}), r));
  EXPECT_TRUE(matches(leaf(Fetch::kPath, Op::kBeg, {"/STATIC"}, {}, true), r));
  EXPECT_FALSE(matches(leaf(Fetch::kPath, Op::kBeg, {"/static/img/logo.PNG/x"}), r));
  EXPECT_TRUE(matches(leaf(Fetch::kPath, Op::kEnd, {".png", ".PNG"}), r));
  EXPECT_FALSE(matches(leaf(Fetch::kPath, Op::kEnd, {".png"}), r));
  EXPECT_TRUE(matches(leaf(Fetch::kPath, Op::kEnd, {".png"}, {}, true), r));
  EXPECT_TRUE(matches(leaf(Fetch::kPath, Op::kSub, {"/img/"}), r));
  EXPECT_FALSE(matches(leaf(Fetch::kPath, Op::kSub, {"LOGO"}), r));
  EXPECT_TRUE(matches(leaf(Fetch::kPath, Op::kSub, {"LOGO"}, {}, true), r));
  EXPECT_FALSE(matches(leaf(Fetch::kPath, Op::kSub, {"/static/img/logo.PNG!"}, {}, true), r));
  // An empty value begins, ends and is contained in every path (HAProxy's behaviour).
  EXPECT_TRUE(matches(leaf(Fetch::kPath, Op::kSub, {""}), r));
}

TEST(AclPath, RegexIsAnUnanchoredSearch) {
  Request r("GET", "/users/42/Profile");
  EXPECT_TRUE(matches(leaf(Fetch::kPath, Op::kReg, {"/[0-9]+/"}), r));
  EXPECT_TRUE(matches(leaf(Fetch::kPath, Op::kReg, {"^/nope", "profile$"}, {}, true), r));
  EXPECT_FALSE(matches(leaf(Fetch::kPath, Op::kReg, {"profile$"}), r));
  EXPECT_FALSE(matches(leaf(Fetch::kPath, Op::kReg, {"^/[a-z]+$"}), r));
}

TEST(AclPath, UsesThePathOfAnAbsoluteFormTarget) {
  Request r("GET", "http://example.com/a/b?q=1");
  EXPECT_TRUE(matches(leaf(Fetch::kPath, Op::kEq, {"/a/b"}), r));
  EXPECT_FALSE(matches(leaf(Fetch::kPath, Op::kSub, {"example"}), r));
}

// url_param ------------------------------------------------------------------

TEST(AclUrlParam, ComparesTheFirstOccurrence) {
  Request r("GET", "/s?a=1&b=two&a=3");
  EXPECT_TRUE(matches(leaf(Fetch::kUrlParam, Op::kEq, {"1"}, "a"), r));
  EXPECT_FALSE(matches(leaf(Fetch::kUrlParam, Op::kEq, {"3"}, "a"), r));
  EXPECT_TRUE(matches(leaf(Fetch::kUrlParam, Op::kBeg, {"tw"}, "b"), r));
  EXPECT_TRUE(matches(leaf(Fetch::kUrlParam, Op::kEnd, {"WO"}, "b", true), r));
  EXPECT_TRUE(matches(leaf(Fetch::kUrlParam, Op::kSub, {"w"}, "b"), r));
  EXPECT_TRUE(matches(leaf(Fetch::kUrlParam, Op::kReg, {"^t.o$"}, "b"), r));
}

TEST(AclUrlParam, FoundMeansPresent) {
  Request r("GET", "/s?flag&x=&y=1");
  EXPECT_TRUE(matches(leaf(Fetch::kUrlParam, Op::kFound, {}, "flag"), r));
  EXPECT_TRUE(matches(leaf(Fetch::kUrlParam, Op::kFound, {}, "x"), r));
  EXPECT_FALSE(matches(leaf(Fetch::kUrlParam, Op::kFound, {}, "z"), r));
  EXPECT_FALSE(matches(leaf(Fetch::kUrlParam, Op::kFound, {}, "fla"), r));
}

TEST(AclUrlParam, ParameterWithoutEqualsHasEmptyValue) {
  Request r("GET", "/s?flag&x=&y=1");
  EXPECT_TRUE(matches(leaf(Fetch::kUrlParam, Op::kEq, {""}, "flag"), r));
  EXPECT_TRUE(matches(leaf(Fetch::kUrlParam, Op::kEq, {""}, "x"), r));
  EXPECT_TRUE(matches(leaf(Fetch::kUrlParam, Op::kReg, {"^$"}, "flag"), r));
  EXPECT_FALSE(matches(leaf(Fetch::kUrlParam, Op::kEq, {""}, "y"), r));
}

TEST(AclUrlParam, EdgeCases) {
  Request r("GET", "/s?&&ab=1&a=b=c&A=up#a=frag");
  // Names compare exactly: "ab" is not "a", "A" is not "a".
  EXPECT_TRUE(matches(leaf(Fetch::kUrlParam, Op::kEq, {"b=c"}, "a"), r));
  EXPECT_TRUE(matches(leaf(Fetch::kUrlParam, Op::kEq, {"up"}, "A"), r));
  // The fragment is not part of the query.
  EXPECT_FALSE(matches(leaf(Fetch::kUrlParam, Op::kSub, {"frag"}, "A"), r));
  // Empty segments are skipped over; an empty name never matches a named lookup.
  EXPECT_TRUE(matches(leaf(Fetch::kUrlParam, Op::kEq, {"1"}, "ab"), r));
  // No percent-decoding.
  Request enc("GET", "/s?q=a%20b");
  EXPECT_TRUE(matches(leaf(Fetch::kUrlParam, Op::kEq, {"a%20b"}, "q"), enc));
  // No query at all.
  Request none("GET", "/s");
  EXPECT_FALSE(matches(leaf(Fetch::kUrlParam, Op::kFound, {}, "q"), none));
  EXPECT_FALSE(matches(leaf(Fetch::kUrlParam, Op::kEq, {""}, "q"), none));
  Request empty("GET", "/s?");
  EXPECT_FALSE(matches(leaf(Fetch::kUrlParam, Op::kFound, {}, "q"), empty));
}

// hdr ----------------------------------------------------------------------

TEST(AclHdr, FoundWithCaseInsensitiveName) {
  Request r("GET", "/", {{"X-Debug", ""}, {"Accept", "*/*"}});
  EXPECT_TRUE(matches(leaf(Fetch::kHdr, Op::kFound, {}, "x-debug"), r));
  EXPECT_TRUE(matches(leaf(Fetch::kHdr, Op::kFound, {}, "ACCEPT"), r));
  EXPECT_FALSE(matches(leaf(Fetch::kHdr, Op::kFound, {}, "x-deb"), r));
  EXPECT_TRUE(matches(leaf(Fetch::kHdr, Op::kEq, {""}, "x-debug"), r));
}

TEST(AclHdr, ComparesEveryCommaSeparatedElementOfEveryField) {
  Request r("GET", "/",
            {{"Connection", "keep-alive, Upgrade"},
             {"Upgrade", "h2c"},
             {"upgrade", "  websocket\t,foo"}});
  EXPECT_TRUE(matches(leaf(Fetch::kHdr, Op::kEq, {"Upgrade"}, "connection"), r));
  EXPECT_FALSE(matches(leaf(Fetch::kHdr, Op::kEq, {"upgrade"}, "connection"), r));
  EXPECT_TRUE(matches(leaf(Fetch::kHdr, Op::kEq, {"upgrade"}, "connection", true), r));
  EXPECT_FALSE(matches(leaf(Fetch::kHdr, Op::kEq, {"keep-alive, Upgrade"}, "connection"), r));
  // Second field of the same name, element trimmed of spaces and tabs.
  EXPECT_TRUE(matches(leaf(Fetch::kHdr, Op::kEq, {"websocket"}, "upgrade"), r));
  EXPECT_TRUE(matches(leaf(Fetch::kHdr, Op::kEq, {"WebSocket"}, "Upgrade", true), r));
  EXPECT_TRUE(matches(leaf(Fetch::kHdr, Op::kBeg, {"web"}, "upgrade"), r));
  EXPECT_TRUE(matches(leaf(Fetch::kHdr, Op::kEnd, {"ket"}, "upgrade"), r));
  EXPECT_TRUE(matches(leaf(Fetch::kHdr, Op::kSub, {"bso"}, "upgrade"), r));
  EXPECT_TRUE(matches(leaf(Fetch::kHdr, Op::kReg, {"^foo$"}, "upgrade"), r));
  EXPECT_FALSE(matches(leaf(Fetch::kHdr, Op::kReg, {"socket,"}, "upgrade"), r));
  EXPECT_FALSE(matches(leaf(Fetch::kHdr, Op::kEq, {"h2"}, "upgrade"), r));
  EXPECT_FALSE(matches(leaf(Fetch::kHdr, Op::kEq, {"websocket"}, "x-missing"), r));
}

TEST(AclHdr, CommasInsideQuotedStringsDoNotSplit) {
  Request r("GET", "/", {{"X-List", "\"a,b\", c, \"d\\\",e\""}, {"X-Empty", "x,,y"}});
  EXPECT_TRUE(matches(leaf(Fetch::kHdr, Op::kEq, {"\"a,b\""}, "x-list"), r));
  EXPECT_TRUE(matches(leaf(Fetch::kHdr, Op::kEq, {"c"}, "x-list"), r));
  EXPECT_TRUE(matches(leaf(Fetch::kHdr, Op::kEq, {"\"d\\\",e\""}, "x-list"), r));
  EXPECT_FALSE(matches(leaf(Fetch::kHdr, Op::kEq, {"e\""}, "x-list"), r));
  EXPECT_TRUE(matches(leaf(Fetch::kHdr, Op::kEq, {""}, "x-empty"), r));
}

// host ---------------------------------------------------------------------

TEST(AclHost, StripsPortAndIgnoresCase) {
  Request r("GET", "/", {{"Host", "WWW.Example.COM:8080"}});
  EXPECT_TRUE(matches(leaf(Fetch::kHost, Op::kEq, {"www.example.com"}), r));
  EXPECT_TRUE(matches(leaf(Fetch::kHost, Op::kEq, {"WWW.EXAMPLE.com"}), r));
  EXPECT_FALSE(matches(leaf(Fetch::kHost, Op::kEq, {"www.example.com:8080"}), r));
  EXPECT_TRUE(matches(leaf(Fetch::kHost, Op::kEnd, {".EXAMPLE.com"}), r));
  EXPECT_TRUE(matches(leaf(Fetch::kHost, Op::kReg, {"^www\\.example\\.com$"}), r));
  Request plain("GET", "/", {{"host", "api.example.com"}});
  EXPECT_TRUE(matches(leaf(Fetch::kHost, Op::kEq, {"api.example.com"}), plain));
  EXPECT_TRUE(matches(leaf(Fetch::kHost, Op::kBeg, {"API."}), plain));
}

TEST(AclHost, HandlesIpv6Literals) {
  Request r("GET", "/", {{"Host", "[2001:DB8::1]:443"}});
  EXPECT_TRUE(matches(leaf(Fetch::kHost, Op::kEq, {"2001:db8::1"}), r));
  EXPECT_TRUE(matches(leaf(Fetch::kHost, Op::kEq, {"[2001:db8::1]"}), r));
  EXPECT_FALSE(matches(leaf(Fetch::kHost, Op::kEq, {"2001"}), r));
  Request bracketed("GET", "/", {{"Host", "[::1]"}});
  EXPECT_TRUE(matches(leaf(Fetch::kHost, Op::kEq, {"::1"}), bracketed));
  // A bare IPv6 address (not valid in Host, but seen) is compared as written.
  Request bare("GET", "/", {{"Host", "::1"}});
  EXPECT_TRUE(matches(leaf(Fetch::kHost, Op::kEq, {"::1"}), bare));
}

TEST(AclHost, MissingHostNeverMatches) {
  Request r("GET", "/");
  EXPECT_FALSE(matches(leaf(Fetch::kHost, Op::kEq, {""}), r));
  EXPECT_FALSE(matches(leaf(Fetch::kHost, Op::kSub, {""}), r));
}

// method -------------------------------------------------------------------

TEST(AclMethod, IsCaseSensitiveUnlessNocase) {
  Request r("POST", "/");
  EXPECT_TRUE(matches(leaf(Fetch::kMethod, Op::kEq, {"GET", "POST"}), r));
  EXPECT_FALSE(matches(leaf(Fetch::kMethod, Op::kEq, {"post"}), r));
  EXPECT_TRUE(matches(leaf(Fetch::kMethod, Op::kEq, {"post"}, {}, true), r));
  EXPECT_FALSE(matches(leaf(Fetch::kMethod, Op::kEq, {"POS"}), r));
  EXPECT_TRUE(matches(leaf(Fetch::kMethod, Op::kReg, {"^p(os|u)t$"}, {}, true), r));
}

// src ----------------------------------------------------------------------

TEST(AclSrc, Ipv4Networks) {
  AclNode n = leaf(Fetch::kSrc, Op::kCidr, {"10.0.0.0/8", "192.168.1.7", "172.16.5.9/12"});
  EXPECT_TRUE(srcMatches(n, "10.200.3.4:5000"));
  EXPECT_FALSE(srcMatches(n, "11.0.0.1:5000"));
  EXPECT_TRUE(srcMatches(n, "192.168.1.7:1"));
  EXPECT_FALSE(srcMatches(n, "192.168.1.8:1"));
  // Host bits under the prefix are ignored.
  EXPECT_TRUE(srcMatches(n, "172.31.255.255:1"));
  EXPECT_FALSE(srcMatches(n, "172.32.0.0:1"));
  EXPECT_TRUE(srcMatches(leaf(Fetch::kSrc, Op::kCidr, {"0.0.0.0/0"}), "8.8.8.8:53"));
  EXPECT_FALSE(srcMatches(leaf(Fetch::kSrc, Op::kCidr, {"0.0.0.0/0"}), "[::1]:53"));
}

TEST(AclSrc, Ipv6Networks) {
  AclNode n = leaf(Fetch::kSrc, Op::kCidr, {"2001:db8::/32", "::1", "fd00:0:0:1::/65"});
  EXPECT_TRUE(srcMatches(n, "[2001:db8:ffff::1]:1"));
  EXPECT_FALSE(srcMatches(n, "[2001:db9::1]:1"));
  EXPECT_TRUE(srcMatches(n, "[::1]:1"));
  EXPECT_FALSE(srcMatches(n, "[::2]:1"));
  EXPECT_TRUE(srcMatches(n, "[fd00:0:0:1:7fff::1]:1"));
  EXPECT_FALSE(srcMatches(n, "[fd00:0:0:1:8000::1]:1"));
  EXPECT_FALSE(srcMatches(n, "127.0.0.1:1"));
  EXPECT_TRUE(srcMatches(leaf(Fetch::kSrc, Op::kCidr, {"::/0"}), "[fe80::1]:1"));
}

TEST(AclSrc, Ipv4MappedClientsMatchIpv4Networks) {
  AclNode v4 = leaf(Fetch::kSrc, Op::kCidr, {"1.2.3.0/24"});
  EXPECT_TRUE(srcMatches(v4, "[::ffff:1.2.3.4]:1"));
  EXPECT_FALSE(srcMatches(v4, "[::ffff:1.2.4.4]:1"));
  EXPECT_FALSE(srcMatches(v4, "[::1.2.3.4]:1"));  // IPv4-compatible, not mapped
  // A mapped network is the IPv4 network it maps, for both kinds of clients.
  AclNode mapped = leaf(Fetch::kSrc, Op::kCidr, {"::ffff:10.0.0.0/104"});
  EXPECT_TRUE(srcMatches(mapped, "10.9.9.9:1"));
  EXPECT_TRUE(srcMatches(mapped, "[::ffff:10.9.9.9]:1"));
  EXPECT_FALSE(srcMatches(mapped, "11.0.0.1:1"));
  // Mapped clients are IPv6 connections too.
  EXPECT_TRUE(srcMatches(leaf(Fetch::kSrc, Op::kCidr, {"::/0"}), "[::ffff:1.2.3.4]:1"));
  EXPECT_TRUE(srcMatches(leaf(Fetch::kSrc, Op::kCidr, {"::ffff:0:0/96"}), "9.9.9.9:1"));
}

TEST(AclSrc, UnixAndMissingClientsNeverMatch) {
  AclNode n = leaf(Fetch::kSrc, Op::kCidr, {"0.0.0.0/0", "::/0"});
  EXPECT_FALSE(srcMatches(n, "unix:/tmp/crescent.sock"));
  auto acl = compileOk(n);
  ASSERT_TRUE(acl);
  EXPECT_FALSE(acl->match(AclSample{}));
}

// dst_port -----------------------------------------------------------------

TEST(AclDstPort, PortsAndRanges) {
  AclNode n = leaf(Fetch::kDstPort, Op::kPortRange, {"80", "8000-8080", "0"});
  EXPECT_TRUE(dstMatches(n, "0.0.0.0:80"));
  EXPECT_FALSE(dstMatches(n, "0.0.0.0:81"));
  EXPECT_FALSE(dstMatches(n, "0.0.0.0:7999"));
  EXPECT_TRUE(dstMatches(n, "0.0.0.0:8000"));
  EXPECT_TRUE(dstMatches(n, "[::1]:8042"));
  EXPECT_TRUE(dstMatches(n, "0.0.0.0:8080"));
  EXPECT_FALSE(dstMatches(n, "0.0.0.0:8081"));
  EXPECT_TRUE(dstMatches(leaf(Fetch::kDstPort, Op::kPortRange, {"0-65535"}), "1.1.1.1:65535"));
  EXPECT_FALSE(dstMatches(n, "unix:/tmp/x.sock"));
  EXPECT_FALSE(compileOk(n)->match(AclSample{}));
}

// trees --------------------------------------------------------------------

TEST(AclTree, AllAnyNot) {
  Request r("GET", "/api/x", {{"Host", "a.example"}});
  AclNode api = leaf(Fetch::kPath, Op::kBeg, {"/api"});
  AclNode host_a = leaf(Fetch::kHost, Op::kEq, {"a.example"});
  AclNode host_b = leaf(Fetch::kHost, Op::kEq, {"b.example"});
  EXPECT_TRUE(matches(tree(Kind::kAll, {api, host_a}), r));
  EXPECT_FALSE(matches(tree(Kind::kAll, {api, host_b}), r));
  EXPECT_TRUE(matches(tree(Kind::kAny, {host_b, api}), r));
  EXPECT_FALSE(matches(tree(Kind::kAny, {host_b}), r));
  EXPECT_TRUE(matches(tree(Kind::kNot, {host_b}), r));
  EXPECT_FALSE(matches(tree(Kind::kNot, {tree(Kind::kNot, {host_b})}), r));
  EXPECT_TRUE(matches(tree(Kind::kNot, {tree(Kind::kNot, {tree(Kind::kNot, {host_b})})}), r));
  // acl.none(a, b) = not any.
  EXPECT_FALSE(matches(tree(Kind::kNot, {tree(Kind::kAny, {host_b, api})}), r));
  // Nested mixtures: (api and not b) or b.
  AclNode mix = tree(Kind::kAny, {tree(Kind::kAll, {api, tree(Kind::kNot, {host_b})}), host_b});
  EXPECT_TRUE(matches(mix, r));
  Request other("GET", "/web", {{"Host", "a.example"}});
  EXPECT_FALSE(matches(mix, other));
}

TEST(AclTree, LongChainsCompileFlat) {
  // `a + b + c + ...` folded in a loop by a script nests 5000 levels deep, past
  // the 1000-level limit on alternating trees.
  AclNode chain = leaf(Fetch::kPath, Op::kEq, {"/0"});
  for (int i = 1; i < 5000; ++i)
    chain =
        pair(Kind::kAny, std::move(chain), leaf(Fetch::kPath, Op::kEq, {"/" + std::to_string(i)}));
  Request hit("GET", "/4999"), first("GET", "/0"), miss("GET", "/5000");
  auto acl = compileOk(chain);
  ASSERT_TRUE(acl);
  AclSample s;
  s.req = &hit.head;
  EXPECT_TRUE(acl->match(s));
  s.req = &first.head;
  EXPECT_TRUE(acl->match(s));
  s.req = &miss.head;
  EXPECT_FALSE(acl->match(s));
}

TEST(AclTree, RefusesTreesNestedTooDeeply) {
  AclNode deep = leaf(Fetch::kPath, Op::kEq, {"/"});
  for (int i = 0; i < 1100; ++i)
    deep =
        pair(i % 2 ? Kind::kAll : Kind::kAny, std::move(deep), leaf(Fetch::kPath, Op::kEq, {"/x"}));
  EXPECT_EQ(compileError(deep), "acl: nested too deeply (more than 1000 levels)");
}

// TCP mode -----------------------------------------------------------------

TEST(AclTcpMode, HttpFetchesNeverMatchWithoutARequest) {
  Address client = addr("10.0.0.1:4000"), local = addr("0.0.0.0:443");
  AclSample s;
  s.src = &client;
  s.dst = &local;
  std::vector<AclNode> http = {
      leaf(Fetch::kPath, Op::kSub, {""}),          leaf(Fetch::kMethod, Op::kReg, {""}),
      leaf(Fetch::kHost, Op::kBeg, {""}),          leaf(Fetch::kHdr, Op::kFound, {}, "host"),
      leaf(Fetch::kUrlParam, Op::kFound, {}, "a"), leaf(Fetch::kHdr, Op::kSub, {""}, "x"),
  };
  for (const AclNode& n : http) {
    auto acl = compileOk(n);
    ASSERT_TRUE(acl);
    EXPECT_FALSE(acl->match(s));
  }
  EXPECT_TRUE(compileOk(tree(Kind::kNot, {http[0]}))->match(s));
  EXPECT_TRUE(compileOk(leaf(Fetch::kSrc, Op::kCidr, {"10.0.0.0/8"}))->match(s));
  EXPECT_TRUE(compileOk(leaf(Fetch::kDstPort, Op::kPortRange, {"443"}))->match(s));
  EXPECT_FALSE(compileOk(tree(Kind::kAll, {leaf(Fetch::kSrc, Op::kCidr, {"10.0.0.0/8"}), http[0]}))
                   ->match(s));
}

// concurrency --------------------------------------------------------------

TEST(AclRegex, MatchesConcurrentlyFromManyThreads) {
  auto acl = compileOk(leaf(Fetch::kPath, Op::kReg, {"^/item/([0-9]+)/(edit|view)$"}));
  ASSERT_TRUE(acl);
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      Request hit("GET", "/item/" + std::to_string(t) + "/view"), miss("GET", "/item/x/view");
      AclSample a, b;
      a.req = &hit.head;
      b.req = &miss.head;
      for (int i = 0; i < 2000; ++i)
        if (!acl->match(a) || acl->match(b)) ++wrong;
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(wrong.load(), 0);
}

// compile errors -----------------------------------------------------------

TEST(AclCompileErrors, InvalidRegex) {
  EXPECT_EQ(compileError(leaf(Fetch::kPath, Op::kReg, {"ok", "a("})),
            "acl.path_reg: invalid regex \"a(\": missing closing parenthesis (offset 2)");
  EXPECT_EQ(compileError(leaf(Fetch::kHdr, Op::kReg, {"[z-a]"}, "x-id")),
            "acl.hdr_reg(\"x-id\"): invalid regex \"[z-a]\": range out of order in character "
            "class (offset 3)");
  EXPECT_EQ(compileError(leaf(Fetch::kUrlParam, Op::kReg, {"*"}, "q")),
            "acl.url_param(\"q\"):reg: invalid regex \"*\": quantifier does not follow a "
            "repeatable item (offset 0)");
}

TEST(AclCompileErrors, InvalidCidr) {
  auto src = [](std::string v) { return leaf(Fetch::kSrc, Op::kCidr, {"10.0.0.0/8", v}); };
  EXPECT_EQ(compileError(src("10.0.0.0/33")),
            "acl.src: invalid CIDR \"10.0.0.0/33\" (prefix out of range)");
  EXPECT_EQ(compileError(src("::/129")), "acl.src: invalid CIDR \"::/129\" (prefix out of range)");
  EXPECT_EQ(compileError(src("10.0.0.0/99999999999")),
            "acl.src: invalid CIDR \"10.0.0.0/99999999999\" (prefix out of range)");
  EXPECT_EQ(compileError(src("10.0.0.300")), "acl.src: invalid CIDR \"10.0.0.300\" (bad address)");
  EXPECT_EQ(compileError(src("2001:db8::g/32")),
            "acl.src: invalid CIDR \"2001:db8::g/32\" (bad address)");
  EXPECT_EQ(compileError(src("/8")), "acl.src: invalid CIDR \"/8\" (bad address)");
  EXPECT_EQ(compileError(src("example.com")),
            "acl.src: invalid CIDR \"example.com\" (bad address)");
  EXPECT_EQ(compileError(src("10.0.0.0/")), "acl.src: invalid CIDR \"10.0.0.0/\" (bad prefix)");
  EXPECT_EQ(compileError(src("10.0.0.0/-1")), "acl.src: invalid CIDR \"10.0.0.0/-1\" (bad prefix)");
  EXPECT_EQ(compileError(src("10.0.0.0/8x")), "acl.src: invalid CIDR \"10.0.0.0/8x\" (bad prefix)");
  EXPECT_EQ(compileError(src("")), "acl.src: invalid CIDR \"\" (bad address)");
}

TEST(AclCompileErrors, InvalidPort) {
  auto port = [](std::string v) { return leaf(Fetch::kDstPort, Op::kPortRange, {"80", v}); };
  EXPECT_EQ(compileError(port("http")), "acl.dst_port: invalid port \"http\"");
  EXPECT_EQ(compileError(port("")), "acl.dst_port: invalid port \"\"");
  EXPECT_EQ(compileError(port("-80")), "acl.dst_port: invalid port \"-80\"");
  EXPECT_EQ(compileError(port("80-")), "acl.dst_port: invalid port \"80-\"");
  EXPECT_EQ(compileError(port(" 80")), "acl.dst_port: invalid port \" 80\"");
  EXPECT_EQ(compileError(port("1-2-3")), "acl.dst_port: invalid port \"1-2-3\"");
  EXPECT_EQ(compileError(port("70000")), "acl.dst_port: invalid port \"70000\" (out of range)");
  EXPECT_EQ(compileError(port("1-99999999999999999999999")),
            "acl.dst_port: invalid port \"1-99999999999999999999999\" (out of range)");
  EXPECT_EQ(compileError(port("90-80")), "acl.dst_port: invalid port range \"90-80\" (low > high)");
}

TEST(AclCompileErrors, TreeShapes) {
  AclNode a = leaf(Fetch::kPath, Op::kEq, {"/"});
  EXPECT_EQ(compileError(tree(Kind::kNot, {})), "acl: not (-a) needs exactly one operand, got 0");
  EXPECT_EQ(compileError(tree(Kind::kNot, {a, a})),
            "acl: not (-a) needs exactly one operand, got 2");
  EXPECT_EQ(compileError(tree(Kind::kAll, {})), "acl.all: needs at least one operand");
  EXPECT_EQ(compileError(tree(Kind::kAny, {})), "acl.any: needs at least one operand");
  EXPECT_EQ(compileError(tree(Kind::kAll, {a, tree(Kind::kAll, {})})),
            "acl.all: needs at least one operand");
  EXPECT_EQ(compileError(tree(Kind::kAny, {a, tree(Kind::kNot, {tree(Kind::kAll, {})})})),
            "acl.all: needs at least one operand");
}

TEST(AclCompileErrors, MissingValuesAndNames) {
  EXPECT_EQ(compileError(leaf(Fetch::kPath, Op::kEq)), "acl.path: needs at least one value");
  EXPECT_EQ(compileError(leaf(Fetch::kPath, Op::kBeg)), "acl.path_beg: needs at least one value");
  EXPECT_EQ(compileError(leaf(Fetch::kPath, Op::kReg)), "acl.path_reg: needs at least one value");
  EXPECT_EQ(compileError(leaf(Fetch::kHost, Op::kEq)), "acl.host: needs at least one value");
  EXPECT_EQ(compileError(leaf(Fetch::kMethod, Op::kEq)), "acl.method: needs at least one value");
  EXPECT_EQ(compileError(leaf(Fetch::kHdr, Op::kEq, {}, "upgrade")),
            "acl.hdr(\"upgrade\"):eq: needs at least one value");
  EXPECT_EQ(compileError(leaf(Fetch::kHdr, Op::kSub, {}, "upgrade")),
            "acl.hdr_sub(\"upgrade\"): needs at least one value");
  EXPECT_EQ(compileError(leaf(Fetch::kUrlParam, Op::kEnd, {}, "id")),
            "acl.url_param(\"id\"):end_: needs at least one value");
  EXPECT_EQ(compileError(leaf(Fetch::kSrc, Op::kCidr)), "acl.src: needs at least one network");
  EXPECT_EQ(compileError(leaf(Fetch::kDstPort, Op::kPortRange)),
            "acl.dst_port: needs at least one port");
  EXPECT_EQ(compileError(leaf(Fetch::kHdr, Op::kFound)), "acl.hdr(\"\"): needs a header name");
  EXPECT_EQ(compileError(leaf(Fetch::kUrlParam, Op::kFound)),
            "acl.url_param(\"\"): needs a parameter name");
  // kFound needs no values.
  EXPECT_TRUE(Acl::compile(leaf(Fetch::kHdr, Op::kFound, {}, "x")).ok());
}

TEST(AclCompileErrors, UnsupportedComparisons) {
  EXPECT_EQ(compileError(leaf(Fetch::kPath, Op::kFound)),
            "acl.path_found: unsupported comparison \"found\"");
  EXPECT_EQ(compileError(leaf(Fetch::kPath, Op::kCidr, {"10.0.0.0/8"})),
            "acl.path_cidr: unsupported comparison \"cidr\"");
  EXPECT_EQ(compileError(leaf(Fetch::kSrc, Op::kEq, {"10.0.0.1"})),
            "acl.src: unsupported comparison \"eq\"");
  EXPECT_EQ(compileError(leaf(Fetch::kDstPort, Op::kEq, {"80"})),
            "acl.dst_port: unsupported comparison \"eq\"");
  EXPECT_EQ(compileError(leaf(Fetch::kHdr, Op::kPortRange, {"80"}, "x")),
            "acl.hdr_port_range(\"x\"): unsupported comparison \"port_range\"");
}

TEST(AclCompileErrors, QuotesUnprintableValues) {
  EXPECT_EQ(compileError(leaf(Fetch::kDstPort, Op::kPortRange, {"8\"0\n"})),
            "acl.dst_port: invalid port \"8\\\"0\\x0a\"");
}

}  // namespace
}  // namespace crescent::core
