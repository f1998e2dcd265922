#pragma once

// PROXY protocol v1 and v2 codec (haproxy's doc/proxy-protocol.txt), sans-I/O: bytes
// in, a parsed Header out; a Header's addresses and TLVs in, header bytes out. No
// <uv.h>, no Lua. Section numbers below refer to proxy-protocol.txt.
//
// The receiver is strict by design (§2: "any sequence which does not exactly match the
// protocol must be discarded"): it never guesses whether a header is present, never
// consumes a byte past the header, and every refusal carries a precise reason for the
// log line. Unlike HAProxy, it waits for a header split across several reads (§2 allows
// it); the caller bounds the wait with its handshake timeout.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/base/status.h"
#include "core/net/address.h"

namespace crescent::core::proxy {

// v2 TLV types (§2.2) and the sub-types inside PP2_TYPE_SSL (§2.2.6).
inline constexpr uint8_t kTlvAlpn = 0x01;
inline constexpr uint8_t kTlvAuthority = 0x02;
inline constexpr uint8_t kTlvCrc32c = 0x03;
inline constexpr uint8_t kTlvNoop = 0x04;
inline constexpr uint8_t kTlvUniqueId = 0x05;
inline constexpr uint8_t kTlvSsl = 0x20;
inline constexpr uint8_t kSslSubVersion = 0x21;
inline constexpr uint8_t kSslSubCn = 0x22;
inline constexpr uint8_t kSslSubCipher = 0x23;
inline constexpr uint8_t kSslSubSigAlg = 0x24;
inline constexpr uint8_t kSslSubKeyAlg = 0x25;
inline constexpr uint8_t kTlvNetns = 0x30;
// Bits of the SSL TLV's <client> byte (§2.2.6).
inline constexpr uint8_t kClientSsl = 0x01;
inline constexpr uint8_t kClientCertConn = 0x02;
inline constexpr uint8_t kClientCertSess = 0x04;

/// Longest v1 line, CRLF included (§2.1: the "PROXY UNKNOWN" worst case).
inline constexpr size_t kV1MaxLine = 107;
/// Fixed part of a v2 header: signature, version/command, family/transport, length.
inline constexpr size_t kV2FixedSize = 16;
/// Largest v2 header the wire format can express: 16 + 65535 bytes.
inline constexpr size_t kV2MaxSize = kV2FixedSize + 65535;
/// Default cap on a received v2 header (bytes, fixed part included).
inline constexpr size_t kV2DefaultLimit = 4096;
/// Longest PP2_TYPE_UNIQUE_ID value (§2.2.5), bytes.
inline constexpr size_t kUniqueIdMax = 128;

/// v2 command (§2.2, 13th byte). LOCAL: a connection the proxy made itself (health
/// check); the receiver uses the real endpoints. A v1 "UNKNOWN" line is reported as
/// kLocal too, since it has the same meaning: use the real addresses.
enum class Command { kLocal, kProxy };

/// One v2 TLV as it was on the wire: type and value bytes (the 2-byte length is
/// value.size()).
struct Tlv {
  uint8_t type = 0;
  std::string value;
};

/// The decoded PP2_TYPE_SSL value (§2.2.6): the <client> bit field, the <verify> result
/// (0 when a client certificate was presented and verified) and the sub-TLVs this codec
/// knows; unknown sub-TLVs are skipped. Strings are empty when their sub-TLV is absent.
struct SslInfo {
  uint8_t client = 0;
  uint32_t verify = 0;
  std::string version, cn, cipher, sig_alg, key_alg;
  /// A client certificate was presented (PP2_CLIENT_CERT_CONN or _SESS) and verify is 0
  /// (§2.2.6: "zero if the client presented a certificate and it was successfully
  /// verified").
  bool verified() const {
    return (client & (kClientCertConn | kClientCertSess)) != 0 && verify == 0;
  }
};

/// What a received header says. A plain value; the Parser owns the one it fills.
struct Header {
  int version = 0;  // 1 or 2; 0 until a header has been parsed
  Command command = Command::kProxy;
  /// True only when src/dst hold the original endpoints: v1 TCP4/TCP6, v2 PROXY with
  /// INET, INET6 or UNIX over STREAM. False for v1 UNKNOWN, v2 LOCAL and v2 UNSPEC: the
  /// caller then uses the connection's real addresses.
  bool has_addresses = false;
  /// IPv4/IPv6 with ports, or UNIX (family kUnix: a path, "@name" for the abstract
  /// namespace, or unnamed when the 108-byte field is all zeros). Family kNone when
  /// !has_addresses.
  Address src, dst;
  /// v2 PROXY only: every TLV in wire order, NOOP included; the sub-TLVs of PP2_TYPE_SSL
  /// stay inside its value (use ssl()). Empty for v1 and for v2 LOCAL.
  std::vector<Tlv> tlvs;

  /// The first TLV of this type, or nullptr. Borrowed from this Header.
  const Tlv* find(uint8_t type) const;
  /// Values of PP2_TYPE_ALPN, PP2_TYPE_AUTHORITY (SNI) and PP2_TYPE_UNIQUE_ID when
  /// present. The views borrow this Header's storage.
  std::optional<std::string_view> alpn() const;
  std::optional<std::string_view> authority() const;
  std::optional<std::string_view> uniqueId() const;
  /// PP2_TYPE_SSL decoded, or nullopt when absent or malformed (the Parser refuses
  /// malformed ones, so for a parsed header nullopt means absent).
  std::optional<SslInfo> ssl() const;
};

/// Incremental receiver of one PROXY header, v1 or v2, chosen by the first bytes (§2.2
/// "identifying the protocol version"): 'P' may start "PROXY " (v1), 0x0D may start the
/// v2 signature; any other first byte, or a byte that leaves neither possible, is
/// "not a PROXY protocol header" at once. A prefix that can still become a header waits.
///
/// feed() takes any split of the input and never consumes a byte past the header: bytes
/// not consumed belong to the application stream and stay with the caller. The outcome
/// (state, header, error, bytes consumed in total) does not depend on the split.
///
/// Refused, with error() naming the reason ("PROXY v1: ...", "PROXY v2: ..."):
///  v1 (§2.1): not exactly "PROXY" SP protocol, protocol other than TCP4/TCP6/UNKNOWN,
///   fields not separated by exactly one space or a wrong number of them, an address
///   that is not of the announced family (IPv4: dotted quad, no leading zeros; IPv6:
///   what inet_pton accepts), ports not 0..65535 in decimal without sign or leading
///   zeros, LF without CR, CR not followed by LF, no CRLF within 107 bytes (refused as
///   soon as the 107th byte arrives without completing the line). After UNKNOWN,
///   anything up to the CRLF is accepted and ignored.
///  v2 (§2.2): version other than 2, command other than LOCAL/PROXY, a family/transport
///   byte other than 0x00, 0x11, 0x12, 0x21, 0x22, 0x31, 0x32; for PROXY, DGRAM
///   (crescent proxies streams) and a length shorter than the family's address block
///   (12, 36, 216 bytes); a header larger than the limit ("too large", checked as soon
///   as the 16 fixed bytes are in); a TLV or SSL sub-TLV not lying exactly within its
///   container; a CRC32C TLV whose length is not 4, that appears twice or whose value
///   does not match (§2.2.3); a UNIQUE_ID longer than 128 bytes; an SSL TLV shorter than
///   its 5 fixed bytes. LOCAL (§2.2: "must accept this connection as valid ... and
///   discard the protocol block including the family"): the family/transport byte must
///   still be one of the seven (DGRAM included), then its `length` bytes are skipped
///   unread: no addresses, no TLVs, no CRC check.
class Parser {
 public:
  enum class State { kNeedMore, kDone, kError };

  /// v2_limit: largest v2 header accepted, in bytes including the 16 fixed ones; clamped
  /// to [16, 16 + 65535]. v1 lines are always limited to 107 bytes.
  explicit Parser(size_t v2_limit = kV2DefaultLimit);

  /// Offers n bytes (the next ones of the stream). Returns how many were consumed: all
  /// of them while the header is incomplete, only the header's remaining bytes on the
  /// call that completes it, 0 once state() is kDone or kError. On the call that fails,
  /// the count runs up to the byte that made the input invalid (for a fault in a v2
  /// address block or TLV: the end of the header). data may be null when n is 0.
  size_t feed(const char* data, size_t n);

  State state() const { return state_; }
  /// The parsed header; meaningful only in kDone.
  const Header& header() const { return header_; }
  /// Why the input was refused; empty unless kError.
  const std::string& error() const { return error_; }
  /// Bytes consumed so far (in kDone: the header's size on the wire).
  size_t consumed() const { return buf_.size(); }
  /// Back to the initial state for another connection; keeps the limit.
  void reset();

 private:
  enum class Phase { kDetect, kV1Line, kV2Fixed, kV2Rest, kDone, kError };

  size_t onDetect(const char* data, size_t n);
  size_t onV1Line(const char* data, size_t n);
  size_t onV2Fixed(const char* data, size_t n);
  size_t onV2Rest(const char* data, size_t n);
  void fail(std::string reason);
  void finishV1();
  void finishV2();
  bool checkV2Fixed();
  bool parseV2Tlvs(size_t offset);

  size_t limit_;
  Phase phase_ = Phase::kDetect;
  State state_ = State::kNeedMore;
  std::string buf_;      // the header bytes consumed so far
  size_t v2_total_ = 0;  // whole v2 header size, known once the fixed part is in
  Header header_;
  std::string error_;
};

/// A v1 line (§2.1): "PROXY TCP4|TCP6 <src> <dst> <sport> <dport>\r\n" when src and dst
/// are both IPv4 or both IPv6, else "PROXY UNKNOWN\r\n" (UNIX, kNone, mixed families).
std::string encodeV1(const Address& src, const Address& dst);

/// What encodeV2 adds after the addresses; empty strings and ssl=false add nothing.
struct V2Options {
  bool crc32c = false;              // PP2_TYPE_CRC32C, written last and filled over the header
  std::string alpn;                 // PP2_TYPE_ALPN, e.g. "h2"
  std::string authority;            // PP2_TYPE_AUTHORITY, the client's SNI
  std::string unique_id;            // PP2_TYPE_UNIQUE_ID, at most 128 bytes
  bool ssl = false;                 // PP2_TYPE_SSL, with the <client> and <verify> below
  uint8_t ssl_client = kClientSsl;  // bits kClientSsl | kClientCertConn | kClientCertSess
  uint32_t ssl_verify = 0;          // 0: no certificate, or one that was verified (§2.2.6)
  std::string ssl_version;          // sub-TLV PP2_SUBTYPE_SSL_VERSION, e.g. "TLSv1.3"
  std::string ssl_cn;               // sub-TLV PP2_SUBTYPE_SSL_CN, the client certificate's CN
  std::string ssl_cipher;           // sub-TLV PP2_SUBTYPE_SSL_CIPHER
};

/// A v2 header (§2.2). kLocal (health checks: no client, so nothing to describe) writes
/// the 16 fixed bytes only, family UNSPEC, length 0; src, dst and opts are ignored and
/// src/dst may be null. kProxy writes the address block, then the TLVs opts asks for in
/// this order: ALPN, AUTHORITY, UNIQUE_ID, SSL (sub-TLVs VERSION, CN, CIPHER), CRC32C
/// (its value computed last, over the whole header). The block is INET or INET6 over
/// STREAM when both are IP (an IPv4 one is written IPv4-mapped when the other is IPv6),
/// UNIX over STREAM when both are UNIX (the sun_path bytes, zero-padded to 108), and
/// empty with family UNSPEC when either is null or kNone, or one is IP and the other
/// UNIX. Errors: unique_id longer than 128 bytes, or a header that would exceed 16 +
/// 65535 bytes.
Result<std::string> encodeV2(Command cmd, const Address* src, const Address* dst,
                             const V2Options& opts);

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78; RFC 4960 appendix B) of n
/// bytes, own table-driven implementation. `seed` is a previous result, so
/// crc32c(b, nb, crc32c(a, na)) == crc32c of a followed by b; crc32c("123456789") is
/// 0xE3069283.
uint32_t crc32c(const void* data, size_t n, uint32_t seed = 0);

}  // namespace crescent::core::proxy
