// libFuzzer target for the HTTP/1 codec (core/proto/http1*.cc).
//
// The input is read as a request stream and as a response stream. Beyond "no crash, no
// leak, no sanitizer report", it checks properties the proxy relies on and traps when
// one fails:
//  - the head parser gives the same outcome one-shot, one byte at a time (from a buffer
//    that grows and moves) and split in two;
//  - a parsed head only holds views into the input; names are tokens, values carry no
//    CR, LF, other CTLs or surrounding whitespace;
//  - serializing a parsed head and parsing it again gives the same head;
//  - the body decoder consumes the same bytes, ends in the same state and delivers the
//    same payload whatever the chunking of the bytes after the head.

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "core/proto/http1.h"

namespace {

using namespace crescent::core;
using namespace crescent::core::http1;

#define FUZZ_CHECK(cond)                                                                  \
  do {                                                                                    \
    if (!(cond)) {                                                                        \
      std::fprintf(stderr, "http1_fuzz: check failed at line %d: %s\n", __LINE__, #cond); \
      __builtin_trap();                                                                   \
    }                                                                                     \
  } while (0)

// Everything a caller can observe of one head parse.
struct HeadOutcome {
  ParseResult result = ParseResult::kIncomplete;
  size_t head_length = 0;
  int status = 0;
  std::string reason;  // Error::reason on kError
  std::string start;   // method/target or status/reason, version
  std::vector<std::string> fields;
  bool operator==(const HeadOutcome&) const = default;
};

HeadOutcome describe(ParseResult r, const HeadParser& p, const HttpHead& h, const Error& err) {
  HeadOutcome o;
  o.result = r;
  if (r == ParseResult::kError) {
    o.status = err.status;
    o.reason = err.reason;
  } else if (r == ParseResult::kComplete) {
    o.head_length = p.headLength();
    o.start = std::string(h.method) + ' ' + std::string(h.target) + ' ' + std::to_string(h.status) +
              ' ' + std::string(h.reason) + ' ' + std::to_string(h.version_minor);
    for (const HeaderField& f : h.headers)
      o.fields.push_back(std::string(f.name) + ':' + std::string(f.value));
  }
  return o;
}

ParseResult parseOnce(HeadParser& p, std::string_view buf, HttpHead& h, Error& err, bool request) {
  return request ? p.parseRequest(buf, h, err) : p.parseResponse(buf, h, err);
}

bool within(std::string_view view, std::string_view buf) {
  return view.empty() ||
         (view.data() >= buf.data() && view.data() + view.size() <= buf.data() + buf.size());
}

void checkHead(const HttpHead& h, std::string_view buf, size_t head_length, bool request) {
  FUZZ_CHECK(head_length >= 4 && head_length <= buf.size());
  std::string_view head_bytes = buf.substr(0, head_length);
  FUZZ_CHECK(head_bytes.substr(head_length - 4) == "\r\n\r\n");
  FUZZ_CHECK(within(h.method, head_bytes) && within(h.target, head_bytes));
  FUZZ_CHECK(within(h.reason, head_bytes));
  FUZZ_CHECK(h.version_minor == 0 || h.version_minor == 1);
  if (request) {
    FUZZ_CHECK(!h.method.empty() && !h.target.empty());
    for (char c : h.method) FUZZ_CHECK(detail::isTchar(c));
    for (char c : h.target) FUZZ_CHECK(detail::isTargetChar(c));
  } else {
    FUZZ_CHECK(h.status >= 100 && h.status <= 999);
  }
  for (const HeaderField& f : h.headers) {
    FUZZ_CHECK(within(f.name, head_bytes) && within(f.value, head_bytes));
    FUZZ_CHECK(!f.name.empty());
    for (char c : f.name) FUZZ_CHECK(detail::isTchar(c));
    for (char c : f.value) FUZZ_CHECK(detail::isValueChar(c));
    if (!f.value.empty()) {
      FUZZ_CHECK(f.value.front() != ' ' && f.value.front() != '\t');
      FUZZ_CHECK(f.value.back() != ' ' && f.value.back() != '\t');
    }
  }
}

// Serialize, parse again, compare.
void checkRoundTrip(const HttpHead& h, bool request) {
  std::string out;
  if (request)
    serializeRequestHead(h, out);
  else
    serializeResponseHead(h, out);
  HeadParser p(out.size() + 1);
  HttpHead again;
  Error err;
  ParseResult r = parseOnce(p, out, again, err, request);
  FUZZ_CHECK(r == ParseResult::kComplete);
  FUZZ_CHECK(p.headLength() == out.size());
  FUZZ_CHECK(again.method == h.method && again.target == h.target);
  FUZZ_CHECK(again.status == h.status && again.version_minor == h.version_minor);
  if (!h.reason.empty()) FUZZ_CHECK(again.reason == h.reason);
  FUZZ_CHECK(again.headers.size() == h.headers.size());
  for (size_t i = 0; i < h.headers.size(); ++i) {
    FUZZ_CHECK(again.headers[i].name == h.headers[i].name);
    FUZZ_CHECK(again.headers[i].value == h.headers[i].value);
  }
  // Hop-by-hop removal keeps framing fields and never grows the head.
  HttpHead copy = again;
  size_t cl = copy.count("content-length"), te = copy.count("transfer-encoding");
  removeHopByHop(copy, (out.size() & 1) != 0);
  FUZZ_CHECK(copy.headers.size() <= again.headers.size());
  FUZZ_CHECK(copy.count("content-length") == cl && copy.count("transfer-encoding") == te);
  FUZZ_CHECK(copy.find("connection") == nullptr);
}

struct BodyOutcome {
  size_t consumed = 0;
  BodyDecoder::State state = BodyDecoder::State::kBody;
  uint64_t payload_bytes = 0;
  std::string payload;
  std::string reason;
  bool operator==(const BodyOutcome&) const = default;
};

class StringSink : public BodySink {
 public:
  void onData(std::string_view d) override { data.append(d); }
  std::string data;
};

// Feeds `rest` in pieces of the given sizes (the last size repeats), then finish().
BodyOutcome decode(const Framing& fr, std::string_view rest, const std::vector<size_t>& pieces) {
  BodyDecoder d;
  StringSink sink;
  d.reset(fr.body, fr.content_length);
  BodyOutcome o;
  size_t pos = 0, k = 0;
  while (pos < rest.size() && d.state() == BodyDecoder::State::kBody) {
    size_t want = pieces[k < pieces.size() ? k : pieces.size() - 1];
    ++k;
    size_t len = want < rest.size() - pos ? want : rest.size() - pos;
    size_t n = d.feed(rest.data() + pos, len, &sink);
    FUZZ_CHECK(n <= len);
    FUZZ_CHECK(n == len || d.state() != BodyDecoder::State::kBody);
    pos += n;
    if (n < len) break;
  }
  d.finish();
  o.consumed = pos;
  o.state = d.state();
  o.payload_bytes = d.payloadBytes();
  o.payload = sink.data;
  if (o.state == BodyDecoder::State::kError) o.reason = d.error().reason;
  FUZZ_CHECK(o.state != BodyDecoder::State::kBody);  // finish() always concludes
  FUZZ_CHECK(o.payload.size() == o.payload_bytes);
  FUZZ_CHECK(o.payload_bytes <= o.consumed);
  if (fr.body == BodyKind::kContentLength) FUZZ_CHECK(o.consumed <= fr.content_length);
  if (fr.body == BodyKind::kUntilClose) FUZZ_CHECK(o.consumed == rest.size());
  return o;
}

void checkBody(const Framing& fr, std::string_view rest) {
  BodyOutcome whole = decode(fr, rest, {rest.size() + 1});
  FUZZ_CHECK(decode(fr, rest, {1}) == whole);
  FUZZ_CHECK(decode(fr, rest, {3, 1, 7, 2}) == whole);
  if (rest.size() <= 256) {
    for (size_t i = 1; i < rest.size(); ++i)
      FUZZ_CHECK(decode(fr, rest, {i, rest.size()}) == whole);
  }
}

// Parses `buf` as one head with different splits; when complete, analyzes it and
// decodes the body that follows.
void fuzzStream(std::string_view buf, bool request, std::string_view method, size_t max_head) {
  HeadParser p(max_head);
  HttpHead h;
  Error err;
  ParseResult r = parseOnce(p, buf, h, err, request);
  HeadOutcome whole = describe(r, p, h, err);
  if (r == ParseResult::kError) FUZZ_CHECK(err.status >= 400 && err.status <= 599);

  // One byte at a time from a growing (and therefore moving) buffer.
  {
    HeadParser q(max_head);
    HttpHead g;
    Error e;
    std::string grow;
    ParseResult s = ParseResult::kIncomplete;
    for (size_t i = 0; i < buf.size() && s == ParseResult::kIncomplete; ++i) {
      grow.push_back(buf[i]);
      s = parseOnce(q, grow, g, e, request);
    }
    if (buf.empty()) s = parseOnce(q, grow, g, e, request);
    // It stops at the first conclusive result, which must be the one-shot result.
    FUZZ_CHECK(describe(s, q, g, e) == whole);
  }
  // Two pieces.
  {
    HeadParser q(max_head);
    HttpHead g;
    Error e;
    size_t cut = buf.size() / 2;
    ParseResult s = parseOnce(q, buf.substr(0, cut), g, e, request);
    if (s == ParseResult::kIncomplete) s = parseOnce(q, buf, g, e, request);
    FUZZ_CHECK(describe(s, q, g, e) == whole);
  }

  if (r != ParseResult::kComplete) return;
  checkHead(h, buf, p.headLength(), request);
  checkRoundTrip(h, request);
  Framing fr;
  bool ok = request ? analyzeRequest(h, fr, err) : analyzeResponse(h, method, fr, err);
  if (!ok) {
    FUZZ_CHECK(err.status >= 400 && err.status <= 599 && !err.reason.empty());
    return;
  }
  if (request) FUZZ_CHECK(fr.body != BodyKind::kUntilClose);
  if (fr.body == BodyKind::kUntilClose) FUZZ_CHECK(!fr.keep_alive);
  checkBody(fr, buf.substr(p.headLength()));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  static const std::string_view kMethods[] = {"GET", "HEAD", "CONNECT", "POST"};
  fuzzStream(in, true, "", 16384);
  fuzzStream(in, false, kMethods[size % 4], 16384);
  fuzzStream(in, true, "", 48);  // exercises the 414/431 limits
  return 0;
}
