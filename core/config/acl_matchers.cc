#include "core/config/acl_matchers.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <arpa/inet.h>
#include <pcre2.h>

#include <algorithm>
#include <charconv>
#include <cstring>

namespace crescent::core {
namespace {

using Op = AclNode::Op;

inline unsigned char lower(unsigned char c) {
  return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

std::string toLower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(lower(static_cast<unsigned char>(c)));
  return out;
}

/// Compares s[pos, pos + v.size()) with v; v is already lowercase when nocase.
inline bool equalAt(std::string_view s, size_t pos, std::string_view v, bool nocase) {
  if (!nocase) return s.compare(pos, v.size(), v) == 0;
  for (size_t i = 0; i < v.size(); ++i)
    if (lower(static_cast<unsigned char>(s[pos + i])) != static_cast<unsigned char>(v[i]))
      return false;
  return true;
}

/// Three-way byte comparison of s (lowered when nocase) with v.
int compareFolded(std::string_view s, std::string_view v, bool nocase) {
  size_t n = std::min(s.size(), v.size());
  for (size_t i = 0; i < n; ++i) {
    unsigned char a = static_cast<unsigned char>(s[i]);
    if (nocase) a = lower(a);
    unsigned char b = static_cast<unsigned char>(v[i]);
    if (a != b) return a < b ? -1 : 1;
  }
  return s.size() < v.size() ? -1 : s.size() > v.size() ? 1 : 0;
}

bool findFolded(std::string_view s, std::string_view v, bool nocase) {
  if (!nocase) return s.find(v) != std::string_view::npos;
  if (v.size() > s.size()) return false;
  for (size_t pos = 0; pos + v.size() <= s.size(); ++pos)
    if (equalAt(s, pos, v, true)) return true;
  return false;
}

/// One match block per thread, sized for a single match (we only need yes/no). PCRE2
/// keeps its backtracking frames in the block, so it stops allocating once warmed up.
pcre2_match_data* threadMatchData() {
  struct Holder {
    pcre2_match_data* data = pcre2_match_data_create(1, nullptr);
    ~Holder() { pcre2_match_data_free(data); }
  };
  thread_local Holder holder;
  return holder.data;
}

Result<uint16_t> parsePort(std::string_view text, std::string_view value, std::string_view what) {
  unsigned long v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || end != text.data() + text.size() ||
      (ec != std::errc() && ec != std::errc::result_out_of_range))
    return Status::error(std::string(what) + ": invalid port " + quoteForError(value));
  if (ec == std::errc::result_out_of_range || v > 65535)
    return Status::error(std::string(what) + ": invalid port " + quoteForError(value) +
                         " (out of range)");
  return static_cast<uint16_t>(v);
}

uint32_t v4Mask(int prefix) {
  return prefix == 0 ? 0 : ~uint32_t{0} << (32 - prefix);
}

uint64_t halfMask(int bits) {  // bits 0..64 of a 64-bit half, from the top
  if (bits <= 0) return 0;
  if (bits >= 64) return ~uint64_t{0};
  return ~uint64_t{0} << (64 - bits);
}

uint64_t loadBe64(const unsigned char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = v << 8 | p[i];
  return v;
}

bool isV4Mapped(const unsigned char* a) {
  static const unsigned char kPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  return std::memcmp(a, kPrefix, sizeof(kPrefix)) == 0;
}

uint32_t loadBe32(const unsigned char* p) {
  return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | p[3];
}

}  // namespace

std::string quoteForError(std::string_view text) {
  static const char kHex[] = "0123456789abcdef";
  std::string out = "\"";
  for (char ch : text) {
    unsigned char c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += ch;
    } else if (c < 0x20 || c >= 0x7f) {
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    } else {
      out += ch;
    }
  }
  out += '"';
  return out;
}

// StringMatcher ------------------------------------------------------------

void StringMatcher::CodeFree::operator()(pcre2_real_code_8* code) const {
  pcre2_code_free(code);
}

Result<StringMatcher> StringMatcher::compile(Op op, const std::vector<std::string>& values,
                                             bool nocase, std::string_view what) {
  StringMatcher m;
  m.op_ = op;
  m.nocase_ = nocase;
  if (op == Op::kReg) {
    uint32_t options = nocase ? PCRE2_CASELESS : 0;
    for (const std::string& v : values) {
      int err = 0;
      PCRE2_SIZE offset = 0;
      pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(v.data()), v.size(), options,
                                       &err, &offset, nullptr);
      if (code == nullptr) {
        PCRE2_UCHAR buf[256];
        int n = pcre2_get_error_message(err, buf, sizeof(buf));
        std::string reason = n < 0 ? "error " + std::to_string(err)
                                   : std::string(reinterpret_cast<const char*>(buf));
        return Status::error(std::string(what) + ": invalid regex " + quoteForError(v) + ": " +
                             reason + " (offset " + std::to_string(offset) + ")");
      }
      // Best effort: without JIT support (or on failure) pcre2_match interprets.
      (void)pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
      m.regexes_.emplace_back(code);
    }
    return m;
  }
  m.values_.reserve(values.size());
  for (const std::string& v : values) m.values_.push_back(nocase ? toLower(v) : v);
  if (op == Op::kEq) {
    std::sort(m.values_.begin(), m.values_.end());
    m.values_.erase(std::unique(m.values_.begin(), m.values_.end()), m.values_.end());
  }
  m.min_len_ = m.values_.empty() ? 0 : SIZE_MAX;
  for (const std::string& v : m.values_) {
    m.min_len_ = std::min(m.min_len_, v.size());
    m.max_len_ = std::max(m.max_len_, v.size());
  }
  return m;
}

bool StringMatcher::testEq(std::string_view s) const {
  if (s.size() < min_len_ || s.size() > max_len_) return false;
  size_t lo = 0, hi = values_.size();
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int c = compareFolded(s, values_[mid], nocase_);
    if (c == 0) return true;
    if (c < 0) {
      hi = mid;
    } else {
      lo = mid + 1;
    }
  }
  return false;
}

bool StringMatcher::test(std::string_view s) const {
  switch (op_) {
    case Op::kEq:
      return testEq(s);
    case Op::kBeg:
      if (s.size() < min_len_) return false;
      for (const std::string& v : values_)
        if (s.size() >= v.size() && equalAt(s, 0, v, nocase_)) return true;
      return false;
    case Op::kEnd:
      if (s.size() < min_len_) return false;
      for (const std::string& v : values_)
        if (s.size() >= v.size() && equalAt(s, s.size() - v.size(), v, nocase_)) return true;
      return false;
    case Op::kSub:
      if (s.size() < min_len_) return false;
      for (const std::string& v : values_)
        if (findFolded(s, v, nocase_)) return true;
      return false;
    case Op::kReg: {
      pcre2_match_data* md = threadMatchData();
      if (md == nullptr) return false;  // out of memory on this thread's first match
      // PCRE2 before 10.43 refuses a null subject even when empty.
      auto subject = reinterpret_cast<PCRE2_SPTR>(s.data() != nullptr ? s.data() : "");
      for (const Regex& re : regexes_) {
        // >= 0: a match (0 only says the one-pair ovector was too small). Errors such as
        // PCRE2_ERROR_MATCHLIMIT count as no match.
        if (pcre2_match(re.get(), subject, s.size(), 0, 0, md, nullptr) >= 0) return true;
      }
      return false;
    }
    case Op::kFound:
    case Op::kCidr:
    case Op::kPortRange:
      break;  // not string comparisons; refused by compile's caller
  }
  return false;
}

// CidrSet ------------------------------------------------------------------

Result<CidrSet> CidrSet::parse(const std::vector<std::string>& values, std::string_view what) {
  CidrSet set;
  for (const std::string& value : values) {
    auto fail = [&](const char* why) {
      return Status::error(std::string(what) + ": invalid CIDR " + quoteForError(value) + " (" +
                           why + ")");
    };
    std::string_view text = value;
    size_t slash = text.find('/');
    std::string_view addr = text.substr(0, slash);
    bool v6 = addr.find(':') != std::string_view::npos;
    int max_prefix = v6 ? 128 : 32;
    int prefix = max_prefix;
    if (slash != std::string_view::npos) {
      std::string_view p = text.substr(slash + 1);
      auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), prefix);
      if (p.empty() || p[0] < '0' || p[0] > '9' || end != p.data() + p.size() ||
          (ec != std::errc() && ec != std::errc::result_out_of_range))
        return fail("bad prefix");
      if (ec == std::errc::result_out_of_range || prefix < 0 || prefix > max_prefix)
        return fail("prefix out of range");
    }
    char buf[INET6_ADDRSTRLEN + 1];
    if (addr.empty() || addr.size() >= sizeof(buf)) return fail("bad address");
    std::memcpy(buf, addr.data(), addr.size());
    buf[addr.size()] = '\0';
    unsigned char bytes[16];
    if (inet_pton(v6 ? AF_INET6 : AF_INET, buf, bytes) != 1) return fail("bad address");
    if (v6 && prefix >= 96 && isV4Mapped(bytes)) {
      std::memmove(bytes, bytes + 12, 4);
      prefix -= 96;
      v6 = false;
    }
    if (v6) {
      V6 n;
      n.mask[0] = halfMask(prefix);
      n.mask[1] = halfMask(prefix - 64);
      n.net[0] = loadBe64(bytes) & n.mask[0];
      n.net[1] = loadBe64(bytes + 8) & n.mask[1];
      set.v6_.push_back(n);
    } else {
      uint32_t mask = v4Mask(prefix);
      set.v4_.push_back({loadBe32(bytes) & mask, mask});
    }
  }
  return set;
}

bool CidrSet::containsV4(uint32_t ip) const {
  for (const V4& n : v4_)
    if ((ip & n.mask) == n.net) return true;
  return false;
}

bool CidrSet::containsV6(const uint64_t ip[2]) const {
  for (const V6& n : v6_)
    if ((ip[0] & n.mask[0]) == n.net[0] && (ip[1] & n.mask[1]) == n.net[1]) return true;
  return false;
}

bool CidrSet::contains(const Address& a) const {
  if (a.family() == Address::Family::kIpv4) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(a.sockaddrPtr());
    return containsV4(ntohl(in->sin_addr.s_addr));
  }
  if (a.family() != Address::Family::kIpv6) return false;
  const auto* in6 = reinterpret_cast<const sockaddr_in6*>(a.sockaddrPtr());
  const unsigned char* b = in6->sin6_addr.s6_addr;
  if (isV4Mapped(b) && containsV4(loadBe32(b + 12))) return true;
  const uint64_t ip[2] = {loadBe64(b), loadBe64(b + 8)};
  return containsV6(ip);
}

// PortRangeSet -------------------------------------------------------------

Result<PortRangeSet> PortRangeSet::parse(const std::vector<std::string>& values,
                                         std::string_view what) {
  PortRangeSet set;
  for (const std::string& value : values) {
    std::string_view text = value;
    size_t dash = text.find('-');
    auto lo = parsePort(text.substr(0, dash), value, what);
    if (!lo) return lo.status();
    uint16_t hi = *lo;
    if (dash != std::string_view::npos) {
      auto h = parsePort(text.substr(dash + 1), value, what);
      if (!h) return h.status();
      hi = *h;
      if (*lo > hi)
        return Status::error(std::string(what) + ": invalid port range " + quoteForError(value) +
                             " (low > high)");
    }
    set.ranges_.push_back({*lo, hi});
  }
  return set;
}

bool PortRangeSet::contains(uint16_t port) const {
  for (const Range& r : ranges_)
    if (port >= r.lo && port <= r.hi) return true;
  return false;
}

}  // namespace crescent::core
