// libFuzzer target for the PROXY protocol codec (core/proto/proxy_protocol.cc).
//
// Beyond "no crash, no leak, no sanitizer report", it traps when a property the proxy
// relies on fails:
//  - the outcome (state, bytes consumed, error, header) is the same one-shot, one byte
//    at a time, split in two, and in uneven pieces;
//  - nothing past the header is consumed: a v1 header ends at its CRLF within 107
//    bytes, a v2 header is exactly 16 + length bytes and within the limit; while more is
//    needed, every byte offered is taken;
//  - an error names its protocol; a parsed header's TLVs tile the bytes after the
//    address block exactly;
//  - a lower size limit changes nothing for headers that fit it and refuses the others
//    as "too large";
//  - re-encoding a parsed header (v1 or v2, with the TLVs the encoder knows) and parsing
//    it again gives the same addresses, command and TLV values.

#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include "core/proto/proxy_protocol.h"

namespace {

using namespace crescent::core;
using namespace crescent::core::proxy;

#define FUZZ_CHECK(cond)                                                                  \
  do {                                                                                    \
    if (!(cond)) {                                                                        \
      std::fprintf(stderr, "proxy_fuzz: check failed at line %d: %s\n", __LINE__, #cond); \
      __builtin_trap();                                                                   \
    }                                                                                     \
  } while (0)

struct Outcome {
  Parser::State state = Parser::State::kNeedMore;
  size_t consumed = 0;
  std::string error;
  Header header;
};

bool sameHeader(const Header& a, const Header& b) {
  if (a.version != b.version || a.command != b.command || a.has_addresses != b.has_addresses)
    return false;
  if (!(a.src == b.src) || !(a.dst == b.dst) || a.tlvs.size() != b.tlvs.size()) return false;
  for (size_t i = 0; i < a.tlvs.size(); ++i)
    if (a.tlvs[i].type != b.tlvs[i].type || a.tlvs[i].value != b.tlvs[i].value) return false;
  return true;
}

bool same(const Outcome& a, const Outcome& b) {
  return a.state == b.state && a.consumed == b.consumed && a.error == b.error &&
         (a.state != Parser::State::kDone || sameHeader(a.header, b.header));
}

// Feeds `in` in pieces of the given sizes (the last size repeats).
Outcome run(std::string_view in, const std::vector<size_t>& pieces, size_t limit) {
  Parser p(limit);
  Outcome o;
  size_t pos = 0, k = 0;
  while (pos < in.size()) {
    size_t want = pieces[k < pieces.size() ? k : pieces.size() - 1];
    ++k;
    size_t len = want < in.size() - pos ? want : in.size() - pos;
    if (len == 0) len = 1;
    size_t n = p.feed(in.data() + pos, len);
    FUZZ_CHECK(n <= len);
    if (p.state() == Parser::State::kNeedMore) FUZZ_CHECK(n == len);
    o.consumed += n;
    pos += len;
  }
  FUZZ_CHECK(p.consumed() == o.consumed);
  o.state = p.state();
  o.error = p.error();
  o.header = p.header();
  return o;
}

void checkShape(std::string_view in, const Outcome& o, size_t limit) {
  FUZZ_CHECK(o.consumed <= in.size());
  switch (o.state) {
    case Parser::State::kNeedMore:
      FUZZ_CHECK(o.consumed == in.size() && o.error.empty());
      break;
    case Parser::State::kError:
      FUZZ_CHECK(o.error.rfind("PROXY v1: ", 0) == 0 || o.error.rfind("PROXY v2: ", 0) == 0 ||
                 o.error.rfind("not a PROXY protocol header", 0) == 0);
      break;
    case Parser::State::kDone: {
      FUZZ_CHECK(o.error.empty());
      const Header& h = o.header;
      std::string_view hdr = in.substr(0, o.consumed);
      if (h.version == 1) {
        FUZZ_CHECK(hdr.size() <= kV1MaxLine && hdr.substr(0, 6) == "PROXY ");
        FUZZ_CHECK(hdr.substr(hdr.size() - 2) == "\r\n");
        FUZZ_CHECK(hdr.find('\n') == hdr.size() - 1);
        FUZZ_CHECK(h.tlvs.empty());
        if (h.has_addresses) FUZZ_CHECK(h.src.isIp() && h.src.family() == h.dst.family());
        FUZZ_CHECK(h.has_addresses == (h.command == Command::kProxy));
      } else {
        FUZZ_CHECK(h.version == 2);
        FUZZ_CHECK(hdr.size() >= kV2FixedSize && hdr.size() <= limit);
        size_t len = static_cast<uint8_t>(hdr[14]) << 8 | static_cast<uint8_t>(hdr[15]);
        FUZZ_CHECK(hdr.size() == kV2FixedSize + len);
        if (h.command == Command::kLocal) FUZZ_CHECK(!h.has_addresses && h.tlvs.empty());
        if (h.has_addresses) FUZZ_CHECK(h.src.family() == h.dst.family());
        if (h.command == Command::kProxy) {
          size_t tlv_bytes = 0;
          for (const Tlv& t : h.tlvs) tlv_bytes += 3 + t.value.size();
          size_t block = hdr.size() - kV2FixedSize - tlv_bytes;
          FUZZ_CHECK(block == 0 || block == 12 || block == 36 || block == 216);
          if (const Tlv* u = h.find(kTlvUniqueId)) FUZZ_CHECK(u->value.size() <= kUniqueIdMax);
          if (h.find(kTlvSsl) != nullptr) FUZZ_CHECK(h.ssl().has_value());
        }
      }
      break;
    }
  }
}

void checkReencode(const Header& h) {
  std::string out;
  if (h.version == 1) {
    out = h.has_addresses ? encodeV1(h.src, h.dst) : encodeV1(Address(), Address());
  } else {
    V2Options opts;
    opts.crc32c = h.find(kTlvCrc32c) != nullptr;
    opts.alpn = std::string(h.alpn().value_or(""));
    opts.authority = std::string(h.authority().value_or(""));
    opts.unique_id = std::string(h.uniqueId().value_or(""));
    if (auto ssl = h.ssl()) {
      opts.ssl = true;
      opts.ssl_version = ssl->version;
      opts.ssl_cipher = ssl->cipher;
    }
    auto r = h.has_addresses ? encodeV2(h.command, &h.src, &h.dst, opts)
                             : encodeV2(h.command, nullptr, nullptr, opts);
    FUZZ_CHECK(r.ok());
    out = *r;
  }
  Parser p(kV2MaxSize);
  FUZZ_CHECK(p.feed(out.data(), out.size()) == out.size());
  FUZZ_CHECK(p.state() == Parser::State::kDone);
  const Header& g = p.header();
  FUZZ_CHECK(g.version == h.version && g.command == h.command);
  FUZZ_CHECK(g.has_addresses == h.has_addresses);
  if (h.has_addresses) FUZZ_CHECK(g.src == h.src && g.dst == h.dst);
  if (h.version == 2 && h.command == Command::kProxy) {
    FUZZ_CHECK(g.alpn().value_or("") == h.alpn().value_or(""));
    FUZZ_CHECK(g.authority().value_or("") == h.authority().value_or(""));
    FUZZ_CHECK(g.uniqueId().value_or("") == h.uniqueId().value_or(""));
    FUZZ_CHECK(g.ssl().has_value() == h.ssl().has_value());
    if (h.ssl()) {
      FUZZ_CHECK(g.ssl()->version == h.ssl()->version);
      FUZZ_CHECK(g.ssl()->cipher == h.ssl()->cipher);
      FUZZ_CHECK(g.ssl()->client == kClientSsl && g.ssl()->verify == 0);
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  const size_t limit = kV2DefaultLimit;
  Outcome whole = run(in, {size + 1}, limit);
  checkShape(in, whole, limit);
  FUZZ_CHECK(same(run(in, {1}, limit), whole));
  FUZZ_CHECK(same(run(in, {size / 2, size + 1}, limit), whole));
  FUZZ_CHECK(same(run(in, {3, 1, 7, 2, 16, 5}, limit), whole));

  // A lower limit: the same for what fits it, "too large" for a v2 header that doesn't.
  const size_t small = 64;
  Outcome capped = run(in, {size + 1}, small);
  checkShape(in, capped, small);
  if (whole.state == Parser::State::kDone &&
      (whole.header.version == 1 || whole.consumed <= small)) {
    FUZZ_CHECK(same(capped, whole));
  } else if (whole.state == Parser::State::kDone) {
    FUZZ_CHECK(capped.state == Parser::State::kError &&
               capped.error.find("too large") != std::string::npos);
  }

  if (whole.state == Parser::State::kDone) checkReencode(whole.header);
  return 0;
}
