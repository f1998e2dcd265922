#include "core/proto/tls_hello.h"

#include <algorithm>

namespace crescent::core::tls {
namespace {

constexpr uint8_t kHandshakeRecord = 22;
constexpr uint8_t kClientHelloType = 1;
constexpr size_t kMaxHello = 64 * 1024;
constexpr uint16_t kExtServerName = 0;
constexpr uint16_t kExtAlpn = 16;
constexpr uint16_t kExtSupportedVersions = 43;

// A bounds-checked reader over the reassembled handshake message.
class Reader {
 public:
  explicit Reader(std::string_view d) : d_(d) {}
  bool u8(uint8_t& v) {
    if (d_.size() < 1) return false;
    v = static_cast<uint8_t>(d_[0]);
    d_.remove_prefix(1);
    return true;
  }
  bool u16(uint16_t& v) {
    if (d_.size() < 2) return false;
    v = static_cast<uint16_t>((static_cast<uint8_t>(d_[0]) << 8) | static_cast<uint8_t>(d_[1]));
    d_.remove_prefix(2);
    return true;
  }
  bool bytes(size_t n, std::string_view& out) {
    if (d_.size() < n) return false;
    out = d_.substr(0, n);
    d_.remove_prefix(n);
    return true;
  }
  // A vector with a 1- or 2-byte length prefix.
  bool vec8(std::string_view& out) {
    uint8_t n;
    return u8(n) && bytes(n, out);
  }
  bool vec16(std::string_view& out) {
    uint16_t n;
    return u16(n) && bytes(n, out);
  }
  bool empty() const { return d_.empty(); }

 private:
  std::string_view d_;
};

ClientHello notTls() {
  ClientHello h;
  h.state = ClientHello::State::kNotTls;
  return h;
}

ClientHello invalid(const char* why) {
  ClientHello h;
  h.state = ClientHello::State::kInvalid;
  h.error = why;
  return h;
}

// server_name (RFC 6066 §3): a list of (type, name); type 0 is host_name.
bool parseServerName(std::string_view ext, std::string& sni) {
  Reader r(ext);
  std::string_view list;
  if (!r.vec16(list) || !r.empty()) return false;
  Reader l(list);
  while (!l.empty()) {
    uint8_t type;
    std::string_view name;
    if (!l.u8(type) || !l.vec16(name)) return false;
    if (type != 0 || !sni.empty()) continue;
    if (name.empty()) return false;
    for (char c : name) {
      unsigned char u = static_cast<unsigned char>(c);
      if (u <= 0x20 || u >= 0x7f) return false;  // a DNS name: no controls, no spaces
    }
    sni.assign(name);
    std::transform(sni.begin(), sni.end(), sni.begin(),
                   [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; });
  }
  return true;
}

// ALPN (RFC 7301 §3.1): a list of non-empty protocol names.
bool parseAlpn(std::string_view ext, std::vector<std::string>& out) {
  Reader r(ext);
  std::string_view list;
  if (!r.vec16(list) || !r.empty() || list.empty()) return false;
  Reader l(list);
  while (!l.empty()) {
    std::string_view p;
    if (!l.vec8(p) || p.empty()) return false;
    out.emplace_back(p);
  }
  return true;
}

// supported_versions (RFC 8446 §4.2.1) in a ClientHello: a list of versions; the highest
// one that is not a GREASE value (RFC 8701: 0x?A?A).
bool parseVersions(std::string_view ext, uint16_t& best) {
  Reader r(ext);
  std::string_view list;
  if (!r.vec8(list) || !r.empty() || list.size() % 2 != 0) return false;
  Reader l(list);
  while (!l.empty()) {
    uint16_t v = 0;
    l.u16(v);
    if ((v & 0x0f0f) == 0x0a0a) continue;
    best = std::max(best, v);
  }
  return true;
}

ClientHello parseBody(std::string_view body) {
  ClientHello h;
  Reader r(body);
  uint16_t legacy;
  std::string_view random, session, suites, compression;
  if (!r.u16(legacy) || !r.bytes(32, random) || !r.vec8(session) || !r.vec16(suites) ||
      !r.vec8(compression)) {
    return invalid("truncated ClientHello");
  }
  if (session.size() > 32) return invalid("session id longer than 32 bytes");
  if (suites.empty() || suites.size() % 2 != 0) return invalid("bad cipher suite list");
  if (compression.empty()) return invalid("no compression method");
  h.version = legacy;
  if (!r.empty()) {  // extensions (absent only in old SSL 3.0-era hellos)
    std::string_view exts;
    if (!r.vec16(exts) || !r.empty()) return invalid("bad extensions block");
    Reader e(exts);
    while (!e.empty()) {
      uint16_t type;
      std::string_view data;
      if (!e.u16(type) || !e.vec16(data)) return invalid("truncated extension");
      if (type == kExtServerName && !parseServerName(data, h.sni))
        return invalid("bad server_name extension");
      if (type == kExtAlpn && !parseAlpn(data, h.alpn)) return invalid("bad ALPN extension");
      if (type == kExtSupportedVersions && !parseVersions(data, h.version))
        return invalid("bad supported_versions extension");
    }
  }
  h.state = ClientHello::State::kHello;
  return h;
}

}  // namespace

ClientHello parseClientHello(std::string_view data) {
  ClientHello need;  // kNeedMore
  // Handshake bytes gathered from consecutive records (a hello may span several).
  std::string handshake;
  size_t pos = 0;
  for (;;) {
    if (data.size() - pos < 5) {
      // Decide what can be decided from a partial record header.
      if (data.size() > pos && static_cast<uint8_t>(data[pos]) != kHandshakeRecord)
        return pos == 0 ? notTls() : invalid("record type");
      if (data.size() > pos + 1 && static_cast<uint8_t>(data[pos + 1]) != 3)
        return pos == 0 ? notTls() : invalid("record version");
      return need;
    }
    auto b = [&](size_t i) { return static_cast<uint8_t>(data[pos + i]); };
    if (b(0) != kHandshakeRecord || b(1) != 3) {
      return pos == 0 ? notTls() : invalid("a non-handshake record inside the ClientHello");
    }
    size_t len = (static_cast<size_t>(b(3)) << 8) | b(4);
    if (len == 0 || len > 16384 + 2048) return invalid("bad record length");
    if (data.size() - pos - 5 < len) {
      // The record is incomplete; what is there may still be judged.
      handshake.append(data.substr(pos + 5));
      break;
    }
    handshake.append(data.substr(pos + 5, len));
    pos += 5 + len;
    if (handshake.size() >= 4) {
      size_t want = 4 + ((static_cast<size_t>(static_cast<uint8_t>(handshake[1])) << 16) |
                         (static_cast<size_t>(static_cast<uint8_t>(handshake[2])) << 8) |
                         static_cast<uint8_t>(handshake[3]));
      if (handshake.size() >= want) break;
    }
    if (handshake.size() > kMaxHello) return invalid("ClientHello too large");
  }
  if (handshake.empty()) return need;
  if (static_cast<uint8_t>(handshake[0]) != kClientHelloType)
    return invalid("the first handshake message is not a ClientHello");
  if (handshake.size() < 4) return need;
  size_t body_len = (static_cast<size_t>(static_cast<uint8_t>(handshake[1])) << 16) |
                    (static_cast<size_t>(static_cast<uint8_t>(handshake[2])) << 8) |
                    static_cast<uint8_t>(handshake[3]);
  if (body_len > kMaxHello) return invalid("ClientHello too large");
  if (handshake.size() - 4 < body_len) return need;
  return parseBody(std::string_view(handshake).substr(4, body_len));
}

}  // namespace crescent::core::tls
