#pragma once

// Drives the HTTP/1 codec the way the proxy does: bytes arrive in pieces, the head is
// parsed from an accumulating buffer, then the body decoder takes what follows, then the
// next (pipelined) message starts. The transcript records everything a caller can see,
// so that runs over different splits of the same input can be compared.

#include <gtest/gtest.h>

#include <ostream>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/proto/http1.h"

namespace crescent::core::http1::testing {

struct Message {
  std::string method, target, reason;
  int status = 0;
  int version_minor = 0;
  std::vector<std::pair<std::string, std::string>> headers;
  size_t head_length = 0;
  BodyKind body = BodyKind::kNone;
  uint64_t content_length = 0;
  bool keep_alive = false, upgrade = false, expect_continue = false;
  size_t body_bytes = 0;  // raw bytes feed() said belong to the body (framing included)
  std::string payload;    // what the sink received
  bool body_done = false;
  std::vector<std::pair<std::string, std::string>> trailers;  // BodyDecoder::trailers()
  bool operator==(const Message&) const = default;
};

struct Transcript {
  std::vector<Message> messages;
  bool error = false;
  int status = 0;        // Error::status when error
  std::string stage;     // "head", "analyze" or "body"
  std::string reason;    // Error::reason when error
  std::string tunnel;    // bytes after an upgrade/tunnel, not parsed
  std::string leftover;  // bytes of an unfinished head at end of input
  bool operator==(const Transcript&) const = default;
};

inline std::ostream& operator<<(std::ostream& os, const Transcript& t) {
  os << "{messages=" << t.messages.size();
  for (const Message& m : t.messages)
    os << " [" << m.method << m.status << " " << m.target << " head=" << m.head_length
       << " fields=" << m.headers.size() << " body=" << static_cast<int>(m.body)
       << " cl=" << m.content_length << " bytes=" << m.body_bytes << " payload=" << m.payload
       << " done=" << m.body_done << " ka=" << m.keep_alive << " up=" << m.upgrade << "]";
  if (t.error) os << " error " << t.status << " at " << t.stage << ": " << t.reason;
  return os << " tunnel=" << t.tunnel.size() << " leftover=" << t.leftover.size() << "}";
}

class StringSink : public BodySink {
 public:
  void onData(std::string_view d) override { data.append(d); }
  std::string data;
};

struct Options {
  bool request = true;
  std::string_view request_method = "GET";  // for responses
  size_t max_head = 16384;
  size_t max_fields = HeadParser::kDefaultMaxFields;
};

/// Feeds `input` cut at the ascending offsets in `cuts`; at the end of input an
/// unfinished body gets finish() (a connection close).
inline Transcript run(std::string_view input, const std::vector<size_t>& cuts,
                      const Options& opt = {}) {
  Transcript t;
  HeadParser parser(opt.max_head, opt.max_fields);
  BodyDecoder decoder;
  StringSink sink;
  HttpHead head;
  Error err;
  std::string buf;
  bool in_body = false, stop = false;
  auto fail = [&](const char* stage, const Error& e) {
    t.error = true;
    t.status = e.status;
    t.stage = stage;
    t.reason = e.reason;
    stop = true;
  };
  auto step = [&]() {
    while (!stop) {
      if (!in_body) {
        ParseResult r = opt.request ? parser.parseRequest(buf, head, err)
                                    : parser.parseResponse(buf, head, err);
        if (r == ParseResult::kIncomplete) return;
        if (r == ParseResult::kError) return fail("head", err);
        Message m;
        m.method = head.method;
        m.target = head.target;
        m.reason = head.reason;
        m.status = head.status;
        m.version_minor = head.version_minor;
        m.head_length = parser.headLength();
        Framing fr;
        bool ok = opt.request ? analyzeRequest(head, fr, err)
                              : analyzeResponse(head, opt.request_method, fr, err);
        if (!ok) return fail("analyze", err);
        // After analyzeRequest: it may replace Host (absolute-form targets).
        for (const HeaderField& f : head.headers) m.headers.emplace_back(f.name, f.value);
        m.body = fr.body;
        m.content_length = fr.content_length;
        m.keep_alive = fr.keep_alive;
        m.upgrade = fr.upgrade;
        m.expect_continue = fr.expect_continue;
        t.messages.push_back(std::move(m));
        buf.erase(0, parser.headLength());
        parser.reset();
        decoder.reset(fr.body, fr.content_length);
        sink.data.clear();
        in_body = true;
      }
      Message& m = t.messages.back();
      size_t n = decoder.feed(buf.data(), buf.size(), &sink);
      m.body_bytes += n;
      m.payload = sink.data;
      buf.erase(0, n);
      if (decoder.state() == BodyDecoder::State::kError) return fail("body", decoder.error());
      if (!decoder.done()) return;  // needs more bytes
      m.body_done = true;
      if (const HttpHead* tr = decoder.trailers())
        for (const HeaderField& f : tr->headers) m.trailers.emplace_back(f.name, f.value);
      in_body = false;
      if (m.upgrade) {
        stop = true;  // the rest is a tunnel
        return;
      }
      if (buf.empty()) return;
    }
  };
  size_t prev = 0;
  for (size_t cut : cuts) {
    buf.append(input.substr(prev, cut - prev));
    prev = cut;
    step();
  }
  buf.append(input.substr(prev));
  step();
  if (!stop && in_body) {
    decoder.finish();
    if (decoder.state() == BodyDecoder::State::kError) {
      fail("body", decoder.error());
    } else {
      t.messages.back().body_done = decoder.done();
    }
  }
  if (!t.error && !t.messages.empty() && t.messages.back().upgrade)
    t.tunnel = buf;
  else if (!t.error)
    t.leftover = buf;
  return t;
}

inline Transcript runOneShot(std::string_view input, const Options& opt = {}) {
  return run(input, {}, opt);
}

/// One byte per piece.
inline Transcript runBytewise(std::string_view input, const Options& opt = {}) {
  std::vector<size_t> cuts;
  for (size_t i = 1; i < input.size(); ++i) cuts.push_back(i);
  return run(input, cuts, opt);
}

/// Asserts that every split of `input` gives the one-shot transcript: every cut into two
/// pieces, one byte at a time, and random cuts into several pieces. Returns the one-shot.
inline Transcript expectSplitInvariant(std::string_view input, const Options& opt = {}) {
  Transcript whole = runOneShot(input, opt);
  for (size_t i = 0; i <= input.size(); ++i) {
    Transcript split = run(input, {i}, opt);
    EXPECT_EQ(split, whole) << "split at " << i << " of " << input.size();
    if (split != whole) break;  // one report is enough
  }
  EXPECT_EQ(runBytewise(input, opt), whole) << "one byte at a time";
  std::mt19937 rng(42);
  for (int round = 0; round < 50 && input.size() > 2; ++round) {
    std::vector<size_t> cuts;
    for (size_t i = 1; i < input.size(); ++i)
      if (rng() % 7 == 0) cuts.push_back(i);
    Transcript split = run(input, cuts, opt);
    EXPECT_EQ(split, whole) << "random split round " << round;
    if (split != whole) break;
  }
  return whole;
}

}  // namespace crescent::core::http1::testing
