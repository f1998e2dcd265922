#include "core/proto/proxy_protocol.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdio>
#include <cstring>

namespace crescent::core::proxy {
namespace {

constexpr std::string_view kV1Magic = "PROXY";
constexpr unsigned char kV2Signature[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                            0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
constexpr char kNotProxy[] = "not a PROXY protocol header";
constexpr size_t kUnixField = 108;  // §2.2: each AF_UNIX address is exactly 108 bytes
constexpr size_t kSslFixed = 5;     // pp2_tlv_ssl: client (1) + verify (4)

constexpr std::array<uint32_t, 256> makeCrc32cTable() {
  std::array<uint32_t, 256> t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1u) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    t[i] = c;
  }
  return t;
}
constexpr std::array<uint32_t, 256> kCrc32cTable = makeCrc32cTable();

uint8_t byteAt(std::string_view s, size_t i) {
  return static_cast<uint8_t>(s[i]);
}
uint16_t be16(std::string_view s, size_t i) {
  return static_cast<uint16_t>(byteAt(s, i) << 8 | byteAt(s, i + 1));
}
uint32_t be32(std::string_view s, size_t i) {
  return uint32_t{byteAt(s, i)} << 24 | uint32_t{byteAt(s, i + 1)} << 16 |
         uint32_t{byteAt(s, i + 2)} << 8 | uint32_t{byteAt(s, i + 3)};
}
void putBe16(std::string& out, size_t at, uint16_t v) {
  out[at] = static_cast<char>(v >> 8);
  out[at + 1] = static_cast<char>(v & 0xff);
}
void putBe32(std::string& out, size_t at, uint32_t v) {
  for (int k = 0; k < 4; ++k) out[at + k] = static_cast<char>(v >> (24 - 8 * k));
}

std::string hex(uint32_t v, int digits) {
  char b[16];
  std::snprintf(b, sizeof(b), "0x%0*x", digits, v);
  return b;
}

// Network input quoted for a log line: control and non-ASCII bytes as \xNN, capped.
std::string printable(std::string_view s) {
  constexpr size_t kMax = 48;
  std::string out = "\"";
  for (size_t i = 0; i < s.size() && i < kMax; ++i) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\') {
      char b[8];
      std::snprintf(b, sizeof(b), "\\x%02x", c);
      out += b;
    } else {
      out += static_cast<char>(c);
    }
  }
  if (s.size() > kMax) out += "...";
  return out + "\"";
}

bool isDigit(char c) {
  return c >= '0' && c <= '9';
}

// §2.1: exactly 4 decimal numbers 0..255 separated by single dots, no leading zeros.
bool parseV1Ipv4(std::string_view s, in_addr* out) {
  if (s.size() > 15) return false;
  size_t i = 0;
  for (int part = 0; part < 4; ++part) {
    if (part > 0) {
      if (i >= s.size() || s[i] != '.') return false;
      ++i;
    }
    size_t start = i;
    unsigned v = 0;
    while (i < s.size() && isDigit(s[i]) && i - start < 3) v = v * 10 + (s[i++] - '0');
    size_t len = i - start;
    if (len == 0 || (len > 1 && s[start] == '0') || v > 255) return false;
  }
  if (i != s.size()) return false;
  char buf[16] = {0};
  std::memcpy(buf, s.data(), s.size());
  return inet_pton(AF_INET, buf, out) == 1;
}

// §2.1: hexadecimal groups and colons (one "::" allowed), as inet_pton reads them.
bool parseV1Ipv6(std::string_view s, in6_addr* out) {
  if (s.size() < 2 || s.size() >= INET6_ADDRSTRLEN) return false;
  for (char c : s) {
    bool ok =
        isDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == ':' || c == '.';
    if (!ok) return false;
  }
  char buf[INET6_ADDRSTRLEN] = {0};
  std::memcpy(buf, s.data(), s.size());
  return inet_pton(AF_INET6, buf, out) == 1;
}

// §2.1: decimal 0..65535, no sign, no leading zeros.
bool parseV1Port(std::string_view s, uint16_t* out) {
  if (s.empty() || s.size() > 5 || (s.size() > 1 && s[0] == '0')) return false;
  uint32_t v = 0;
  for (char c : s) {
    if (!isDigit(c)) return false;
    v = v * 10 + static_cast<uint32_t>(c - '0');
  }
  if (v > 65535) return false;
  *out = static_cast<uint16_t>(v);
  return true;
}

Address makeIpv4(const void* addr, uint16_t port) {
  sockaddr_in in{};
  in.sin_family = AF_INET;
  in.sin_port = htons(port);
  std::memcpy(&in.sin_addr, addr, 4);
  return Address::fromSockaddr(reinterpret_cast<const sockaddr*>(&in), sizeof(in));
}

Address makeIpv6(const void* addr, uint16_t port) {
  sockaddr_in6 in6{};
  in6.sin6_family = AF_INET6;
  in6.sin6_port = htons(port);
  std::memcpy(&in6.sin6_addr, addr, 16);
  return Address::fromSockaddr(reinterpret_cast<const sockaddr*>(&in6), sizeof(in6));
}

// A 108-byte v2 UNIX field: a NUL-terminated path (or exactly 108 path bytes), an
// abstract name (leading NUL; trailing NULs are padding), or all zeros (unnamed peer).
Address makeUnix(std::string_view field) {
  sockaddr_un un{};
  un.sun_family = AF_UNIX;
  static_assert(sizeof(un.sun_path) == kUnixField);
  size_t used = 0, len = offsetof(sockaddr_un, sun_path);
  if (field[0] != '\0') {
    used = strnlen(field.data(), kUnixField);
    len += used + (used < kUnixField ? 1 : 0);
  } else {
    size_t last = kUnixField;
    while (last > 1 && field[last - 1] == '\0') --last;
    used = last > 1 ? last : 0;
    len += used;
  }
  std::memcpy(un.sun_path, field.data(), used);
  return Address::fromSockaddr(reinterpret_cast<const sockaddr*>(&un), static_cast<socklen_t>(len));
}

// Size of the address block for a v2 family/transport byte (§2.2), or -1 when the
// byte is not one of the seven the specification lists.
int addressBlockSize(uint8_t fam) {
  switch (fam) {
    case 0x00:
      return 0;
    case 0x11:
    case 0x12:
      return 12;
    case 0x21:
    case 0x22:
      return 36;
    case 0x31:
    case 0x32:
      return 216;
    default:
      return -1;
  }
}

const char* familyName(uint8_t fam) {
  switch (fam >> 4) {
    case 1:
      return "INET";
    case 2:
      return "INET6";
    default:
      return "UNIX";
  }
}

struct RawTlv {
  uint8_t type;
  std::string_view value;
  size_t offset;  // of the type byte, within the area given to splitTlvs
};

// Splits `area` into TLVs that must tile it exactly. On failure, `why` says where.
bool splitTlvs(std::string_view area, const char* what, std::vector<RawTlv>& out,
               std::string& why) {
  size_t pos = 0;
  while (pos < area.size()) {
    if (area.size() - pos < 3) {
      why = std::to_string(area.size() - pos) + " trailing byte(s) at offset " +
            std::to_string(pos) + " of the " + what + " area, too short for a TLV";
      return false;
    }
    uint8_t type = byteAt(area, pos);
    size_t len = be16(area, pos + 1);
    if (len > area.size() - pos - 3) {
      why = "TLV " + hex(type, 2) + " at offset " + std::to_string(pos) + " of the " + what +
            " area (length " + std::to_string(len) + ") overruns it by " +
            std::to_string(len - (area.size() - pos - 3)) + " byte(s)";
      return false;
    }
    out.push_back({type, area.substr(pos + 3, len), pos});
    pos += 3 + len;
  }
  return true;
}

// Checks one PP2_TYPE_SSL value (§2.2.6): fixed part, then sub-TLVs tiling the rest.
bool checkSsl(std::string_view v, std::string& why) {
  if (v.size() < kSslFixed) {
    why = "SSL TLV is " + std::to_string(v.size()) + " byte(s), shorter than its " +
          std::to_string(kSslFixed) + " fixed bytes";
    return false;
  }
  std::vector<RawTlv> subs;
  return splitTlvs(v.substr(kSslFixed), "SSL sub-TLV", subs, why);
}

void appendTlv(std::string& out, uint8_t type, std::string_view value) {
  out.push_back(static_cast<char>(type));
  out.append(2, '\0');
  putBe16(out, out.size() - 2, static_cast<uint16_t>(value.size()));
  out.append(value);
}

void appendUnixField(std::string& out, const Address& a) {
  char field[kUnixField] = {0};
  const auto* un = reinterpret_cast<const sockaddr_un*>(a.sockaddrPtr());
  constexpr size_t kOff = offsetof(sockaddr_un, sun_path);
  size_t n = a.sockaddrLen() > kOff ? a.sockaddrLen() - kOff : 0;
  n = std::min(n, kUnixField);
  if (n > 0 && un->sun_path[0] != '\0') n = strnlen(un->sun_path, n);  // path: no garbage
  std::memcpy(field, un->sun_path, n);
  out.append(field, kUnixField);
}

// 16 bytes of IPv6 address; an IPv4 address becomes IPv4-mapped (::ffff:a.b.c.d).
void appendIpv6Bytes(std::string& out, const Address& a) {
  unsigned char b[16] = {0};
  if (a.family() == Address::Family::kIpv6) {
    std::memcpy(b, &reinterpret_cast<const sockaddr_in6*>(a.sockaddrPtr())->sin6_addr, 16);
  } else {
    b[10] = b[11] = 0xff;
    std::memcpy(b + 12, &reinterpret_cast<const sockaddr_in*>(a.sockaddrPtr())->sin_addr, 4);
  }
  out.append(reinterpret_cast<const char*>(b), 16);
}

void appendPorts(std::string& out, const Address& src, const Address& dst) {
  out.append(4, '\0');
  putBe16(out, out.size() - 4, src.port());
  putBe16(out, out.size() - 2, dst.port());
}

// Family/transport byte and address block for a PROXY command.
uint8_t appendAddresses(std::string& out, const Address* src, const Address* dst) {
  if (src == nullptr || dst == nullptr) return 0x00;
  if (src->isIp() && dst->isIp()) {
    if (src->family() == Address::Family::kIpv4 && dst->family() == Address::Family::kIpv4) {
      out.append(reinterpret_cast<const char*>(
                     &reinterpret_cast<const sockaddr_in*>(src->sockaddrPtr())->sin_addr),
                 4);
      out.append(reinterpret_cast<const char*>(
                     &reinterpret_cast<const sockaddr_in*>(dst->sockaddrPtr())->sin_addr),
                 4);
      appendPorts(out, *src, *dst);
      return 0x11;
    }
    appendIpv6Bytes(out, *src);
    appendIpv6Bytes(out, *dst);
    appendPorts(out, *src, *dst);
    return 0x21;
  }
  if (src->isUnix() && dst->isUnix()) {
    appendUnixField(out, *src);
    appendUnixField(out, *dst);
    return 0x31;
  }
  return 0x00;
}

}  // namespace

// ---- Header ------------------------------------------------------------------------

const Tlv* Header::find(uint8_t type) const {
  for (const Tlv& t : tlvs)
    if (t.type == type) return &t;
  return nullptr;
}

namespace {
std::optional<std::string_view> valueOf(const Header& h, uint8_t type) {
  const Tlv* t = h.find(type);
  if (t == nullptr) return std::nullopt;
  return std::string_view(t->value);
}
}  // namespace

std::optional<std::string_view> Header::alpn() const {
  return valueOf(*this, kTlvAlpn);
}
std::optional<std::string_view> Header::authority() const {
  return valueOf(*this, kTlvAuthority);
}
std::optional<std::string_view> Header::uniqueId() const {
  return valueOf(*this, kTlvUniqueId);
}

std::optional<SslInfo> Header::ssl() const {
  const Tlv* t = find(kTlvSsl);
  if (t == nullptr || t->value.size() < kSslFixed) return std::nullopt;
  std::string_view v(t->value);
  std::vector<RawTlv> subs;
  std::string why;
  if (!splitTlvs(v.substr(kSslFixed), "SSL sub-TLV", subs, why)) return std::nullopt;
  SslInfo info;
  info.client = byteAt(v, 0);
  info.verify = be32(v, 1);
  for (const RawTlv& s : subs) {
    std::string* dst = nullptr;
    switch (s.type) {
      case kSslSubVersion:
        dst = &info.version;
        break;
      case kSslSubCn:
        dst = &info.cn;
        break;
      case kSslSubCipher:
        dst = &info.cipher;
        break;
      case kSslSubSigAlg:
        dst = &info.sig_alg;
        break;
      case kSslSubKeyAlg:
        dst = &info.key_alg;
        break;
      default:
        break;
    }
    if (dst != nullptr && dst->empty()) dst->assign(s.value);
  }
  return info;
}

// ---- Parser ------------------------------------------------------------------------

Parser::Parser(size_t v2_limit) : limit_(std::clamp(v2_limit, kV2FixedSize, kV2MaxSize)) {}

void Parser::reset() {
  phase_ = Phase::kDetect;
  state_ = State::kNeedMore;
  buf_.clear();
  v2_total_ = 0;
  header_ = Header();
  error_.clear();
}

size_t Parser::feed(const char* data, size_t n) {
  size_t used = 0;
  while (used < n) {
    switch (phase_) {
      case Phase::kDetect:
        used += onDetect(data + used, n - used);
        break;
      case Phase::kV1Line:
        used += onV1Line(data + used, n - used);
        break;
      case Phase::kV2Fixed:
        used += onV2Fixed(data + used, n - used);
        break;
      case Phase::kV2Rest:
        used += onV2Rest(data + used, n - used);
        break;
      case Phase::kDone:
      case Phase::kError:
        return used;
    }
  }
  return used;
}

void Parser::fail(std::string reason) {
  phase_ = Phase::kError;
  state_ = State::kError;
  error_ = std::move(reason);
}

// One byte at a time until the input is known to be v1 ("PROXY") or v2 (the 12-byte
// signature); the first byte that rules both out is an error.
size_t Parser::onDetect(const char* data, size_t n) {
  const size_t i = buf_.size();
  const char c = data[0];
  buf_.push_back(c);
  if (buf_[0] == kV1Magic[0]) {
    if (c != kV1Magic[i]) {
      fail(kNotProxy);
    } else if (buf_.size() == kV1Magic.size()) {
      phase_ = Phase::kV1Line;
    }
  } else if (static_cast<unsigned char>(buf_[0]) == kV2Signature[0]) {
    if (static_cast<unsigned char>(c) != kV2Signature[i]) {
      fail(std::string(kNotProxy) + " (bad PROXY v2 signature)");
    } else if (buf_.size() == sizeof(kV2Signature)) {
      phase_ = Phase::kV2Fixed;
    }
  } else {
    fail(kNotProxy);
  }
  return 1;
}

// §2.1: the line ends with CRLF within 107 bytes; a lone CR or LF is refused at once.
size_t Parser::onV1Line(const char* data, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    const char c = data[i];
    const char prev = buf_.back();
    buf_.push_back(c);
    if (prev == '\r' && c != '\n') {
      fail("PROXY v1: CR not followed by LF");
      return i + 1;
    }
    if (c == '\n' && prev != '\r') {
      fail("PROXY v1: LF without CR (the line must end with CRLF)");
      return i + 1;
    }
    if (c == '\n') {
      finishV1();
      return i + 1;
    }
    if (buf_.size() >= kV1MaxLine) {
      fail("PROXY v1: line longer than 107 bytes (no CRLF within the first 107 bytes)");
      return i + 1;
    }
  }
  return n;
}

void Parser::finishV1() {
  constexpr char kSpacing[] =
      "PROXY v1: empty field (fields are separated by exactly one space, none trailing)";
  std::string_view line(buf_.data(), buf_.size() - 2);
  if (line.size() < 6 || line[5] != ' ')
    return fail("PROXY v1: expected a space after \"PROXY\", got " + printable(line.substr(5, 1)));
  std::string_view rest = line.substr(6);
  std::string_view proto = rest.substr(0, rest.find(' '));
  if (proto.empty()) return fail(kSpacing);
  if (proto == "UNKNOWN") {  // §2.1: anything may follow, up to the CRLF
    header_.version = 1;
    header_.command = Command::kLocal;
    phase_ = Phase::kDone;
    state_ = State::kDone;
    return;
  }
  if (proto != "TCP4" && proto != "TCP6")
    return fail("PROXY v1: unknown protocol " + printable(proto) +
                " (expected TCP4, TCP6 or UNKNOWN)");
  std::vector<std::string_view> f;
  for (size_t pos = proto.size(); pos < rest.size();) {
    size_t next = rest.find(' ', pos + 1);
    if (next == std::string_view::npos) next = rest.size();
    f.push_back(rest.substr(pos + 1, next - pos - 1));
    pos = next;
  }
  for (std::string_view s : f)
    if (s.empty()) return fail(kSpacing);
  if (f.size() != 4)
    return fail("PROXY v1: expected <src> <dst> <sport> <dport> after " + std::string(proto) +
                ", got " + std::to_string(f.size()) + " field(s)");
  const bool v4 = proto == "TCP4";
  const char* fam = v4 ? "IPv4" : "IPv6";
  unsigned char a[2][16];
  for (int k = 0; k < 2; ++k) {
    bool ok = v4 ? parseV1Ipv4(f[k], reinterpret_cast<in_addr*>(a[k]))
                 : parseV1Ipv6(f[k], reinterpret_cast<in6_addr*>(a[k]));
    if (!ok)
      return fail(std::string("PROXY v1: invalid ") + fam + (k == 0 ? " source" : " destination") +
                  " address " + printable(f[k]));
  }
  uint16_t port[2];
  for (int k = 0; k < 2; ++k) {
    if (!parseV1Port(f[2 + k], &port[k]))
      return fail(std::string("PROXY v1: invalid ") + (k == 0 ? "source" : "destination") +
                  " port " + printable(f[2 + k]) +
                  " (expected 0..65535 in decimal, no sign or leading zeros)");
  }
  header_.version = 1;
  header_.command = Command::kProxy;
  header_.has_addresses = true;
  header_.src = v4 ? makeIpv4(a[0], port[0]) : makeIpv6(a[0], port[0]);
  header_.dst = v4 ? makeIpv4(a[1], port[1]) : makeIpv6(a[1], port[1]);
  phase_ = Phase::kDone;
  state_ = State::kDone;
}

// Bytes 13..16, one at a time so that each is judged as soon as it arrives.
size_t Parser::onV2Fixed(const char* data, size_t n) {
  buf_.push_back(data[0]);
  if (!checkV2Fixed()) return 1;
  if (buf_.size() == kV2FixedSize) {
    phase_ = Phase::kV2Rest;
    if (v2_total_ == kV2FixedSize) finishV2();
  }
  return 1;
}

bool Parser::checkV2Fixed() {
  const std::string_view b(buf_);
  const uint8_t ver_cmd = byteAt(b, 12);
  const bool proxy = (ver_cmd & 0x0f) == 1;
  if (b.size() == 13) {
    if ((ver_cmd >> 4) != 2) {
      fail("PROXY v2: unsupported version " + std::to_string(ver_cmd >> 4) + " (only 2 exists)");
      return false;
    }
    if ((ver_cmd & 0x0f) > 1) {
      fail("PROXY v2: invalid command " + std::to_string(ver_cmd & 0x0f) +
           " (expected 0 LOCAL or 1 PROXY)");
      return false;
    }
  } else if (b.size() == 14) {
    const uint8_t fam = byteAt(b, 13);
    if ((fam >> 4) > 3) {
      fail("PROXY v2: invalid address family " + std::to_string(fam >> 4));
      return false;
    }
    if ((fam & 0x0f) > 2) {
      fail("PROXY v2: invalid transport protocol " + std::to_string(fam & 0x0f));
      return false;
    }
    if (addressBlockSize(fam) < 0) {
      fail("PROXY v2: invalid family/transport byte " + hex(fam, 2) +
           " (UNSPEC mixed with a specified value)");
      return false;
    }
    if (proxy && (fam & 0x0f) == 2) {
      fail("PROXY v2: DGRAM transport not supported (crescent proxies streams only)");
      return false;
    }
  } else if (b.size() == kV2FixedSize) {
    const uint8_t fam = byteAt(b, 13);
    const size_t len = be16(b, 14);
    const size_t total = kV2FixedSize + len;
    if (total > limit_) {
      fail("PROXY v2: header too large (" + std::to_string(total) + " bytes, limit " +
           std::to_string(limit_) + ")");
      return false;
    }
    const auto block = static_cast<size_t>(addressBlockSize(fam));
    if (proxy && len < block) {
      fail("PROXY v2: length " + std::to_string(len) + " is shorter than the " +
           std::to_string(block) + "-byte " + familyName(fam) + " address block");
      return false;
    }
    v2_total_ = total;
  }
  return true;
}

size_t Parser::onV2Rest(const char* data, size_t n) {
  size_t k = std::min(n, v2_total_ - buf_.size());
  buf_.append(data, k);
  if (buf_.size() == v2_total_) finishV2();
  return k;
}

void Parser::finishV2() {
  const std::string_view b(buf_);
  const uint8_t fam = byteAt(b, 13);
  const bool proxy = (byteAt(b, 12) & 0x0f) == 1;
  const auto block = static_cast<size_t>(addressBlockSize(fam));
  header_.version = 2;
  header_.command = proxy ? Command::kProxy : Command::kLocal;
  if (proxy && block > 0) {
    const std::string_view a = b.substr(kV2FixedSize, block);
    switch (fam >> 4) {
      case 1:
        header_.src = makeIpv4(a.data(), be16(a, 8));
        header_.dst = makeIpv4(a.data() + 4, be16(a, 10));
        break;
      case 2:
        header_.src = makeIpv6(a.data(), be16(a, 32));
        header_.dst = makeIpv6(a.data() + 16, be16(a, 34));
        break;
      default:
        header_.src = makeUnix(a.substr(0, kUnixField));
        header_.dst = makeUnix(a.substr(kUnixField, kUnixField));
        break;
    }
    header_.has_addresses = true;
  }
  // LOCAL: the rest of the header is discarded unread (§2.2).
  if (proxy && !parseV2Tlvs(kV2FixedSize + block)) return;
  phase_ = Phase::kDone;
  state_ = State::kDone;
}

bool Parser::parseV2Tlvs(size_t offset) {
  const std::string_view b(buf_);
  std::vector<RawTlv> raw;
  std::string why;
  if (!splitTlvs(b.substr(offset), "TLV", raw, why)) {
    fail("PROXY v2: " + why);
    return false;
  }
  size_t crc_at = 0;  // offset of the CRC32C value in buf_, 0 when absent
  for (const RawTlv& t : raw) {
    if (t.type == kTlvCrc32c) {
      if (t.value.size() != 4) {
        fail("PROXY v2: CRC32C TLV is " + std::to_string(t.value.size()) + " byte(s), expected 4");
        return false;
      }
      if (crc_at != 0) {
        fail("PROXY v2: duplicate CRC32C TLV");
        return false;
      }
      crc_at = offset + t.offset + 3;
    } else if (t.type == kTlvUniqueId && t.value.size() > kUniqueIdMax) {
      fail("PROXY v2: UNIQUE_ID TLV is " + std::to_string(t.value.size()) + " bytes (max 128)");
      return false;
    } else if (t.type == kTlvSsl && !checkSsl(t.value, why)) {
      fail("PROXY v2: " + why);
      return false;
    }
  }
  if (crc_at != 0) {  // §2.2.3: over the whole header with the checksum field zeroed
    static constexpr char kZeros[4] = {0, 0, 0, 0};
    uint32_t c = crc32c(b.data(), crc_at);
    c = crc32c(kZeros, 4, c);
    c = crc32c(b.data() + crc_at + 4, b.size() - crc_at - 4, c);
    const uint32_t sent = be32(b, crc_at);
    if (c != sent) {
      fail("PROXY v2: CRC32C mismatch (header says " + hex(sent, 8) + ", computed " + hex(c, 8) +
           ")");
      return false;
    }
  }
  header_.tlvs.reserve(raw.size());
  for (const RawTlv& t : raw) header_.tlvs.push_back({t.type, std::string(t.value)});
  return true;
}

// ---- Encoders ----------------------------------------------------------------------

std::string encodeV1(const Address& src, const Address& dst) {
  if (!src.isIp() || src.family() != dst.family()) return "PROXY UNKNOWN\r\n";
  const char* proto = src.family() == Address::Family::kIpv4 ? "TCP4" : "TCP6";
  return std::string("PROXY ") + proto + " " + src.ip() + " " + dst.ip() + " " +
         std::to_string(src.port()) + " " + std::to_string(dst.port()) + "\r\n";
}

Result<std::string> encodeV2(Command cmd, const Address* src, const Address* dst,
                             const V2Options& opts) {
  if (opts.unique_id.size() > kUniqueIdMax)
    return Status::error("PROXY v2: unique id is " + std::to_string(opts.unique_id.size()) +
                         " bytes (max 128)");
  std::string out(reinterpret_cast<const char*>(kV2Signature), sizeof(kV2Signature));
  out.push_back(static_cast<char>(cmd == Command::kProxy ? 0x21 : 0x20));
  out.append(3, '\0');  // family/transport UNSPEC, length 0: what LOCAL sends
  if (cmd == Command::kLocal) return out;
  out[13] = static_cast<char>(appendAddresses(out, src, dst));
  if (!opts.alpn.empty()) appendTlv(out, kTlvAlpn, opts.alpn);
  if (!opts.authority.empty()) appendTlv(out, kTlvAuthority, opts.authority);
  if (!opts.unique_id.empty()) appendTlv(out, kTlvUniqueId, opts.unique_id);
  if (opts.ssl) {
    std::string v(kSslFixed, '\0');
    v[0] = static_cast<char>(opts.ssl_client);
    putBe32(v, 1, opts.ssl_verify);
    if (!opts.ssl_version.empty()) appendTlv(v, kSslSubVersion, opts.ssl_version);
    if (!opts.ssl_cn.empty()) appendTlv(v, kSslSubCn, opts.ssl_cn);
    if (!opts.ssl_cipher.empty()) appendTlv(v, kSslSubCipher, opts.ssl_cipher);
    if (v.size() > 65535) return Status::error("PROXY v2: SSL TLV longer than 65535 bytes");
    appendTlv(out, kTlvSsl, v);
  }
  if (opts.crc32c) appendTlv(out, kTlvCrc32c, std::string_view("\0\0\0\0", 4));
  if (out.size() > kV2MaxSize)
    return Status::error("PROXY v2: header would be " + std::to_string(out.size()) +
                         " bytes (max " + std::to_string(kV2MaxSize) + ")");
  putBe16(out, 14, static_cast<uint16_t>(out.size() - kV2FixedSize));
  if (opts.crc32c) putBe32(out, out.size() - 4, crc32c(out.data(), out.size()));
  return out;
}

uint32_t crc32c(const void* data, size_t n, uint32_t seed) {
  const auto* p = static_cast<const unsigned char*>(data);
  uint32_t c = ~seed;
  for (size_t i = 0; i < n; ++i) c = kCrc32cTable[(c ^ p[i]) & 0xffu] ^ (c >> 8);
  return ~c;
}

}  // namespace crescent::core::proxy
