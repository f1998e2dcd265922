// HTTP/1.x body delimitation (RFC 9112 §6.3, §7.1). See http1.h for the contract.
//
// Payload bytes are passed through in bulk; only chunk framing (size lines, extensions,
// CRLFs, trailers) is walked byte by byte, one function per state of the chunk machine.

#include "core/proto/http1.h"

namespace crescent::core::http1 {

namespace {

constexpr size_t kMaxChunkLine = 4096;      // a size line with extensions, or a trailer line
constexpr size_t kMaxTrailerBytes = 16384;  // the whole trailer section
constexpr uint64_t kMaxChunkSize = 0x7fffffffffffffffULL;

bool isOws(char c) {
  return c == ' ' || c == '\t';
}

unsigned hexValue(char c) {
  if (c >= '0' && c <= '9') return static_cast<unsigned>(c - '0');
  if (c >= 'a' && c <= 'f') return static_cast<unsigned>(c - 'a' + 10);
  return static_cast<unsigned>(c - 'A' + 10);
}

// RFC 9110 §6.5.1: fields a sender must not put in trailers, as they frame, route,
// authenticate or modify the message, or are hop-by-hop (§7.6.1). They are dropped.
bool isForbiddenTrailer(std::string_view name) {
  static constexpr std::string_view kNames[] = {
      "transfer-encoding",
      "content-length",
      "host",
      "trailer",
      "te",
      "connection",
      "keep-alive",
      "proxy-connection",
      "upgrade",
      "cache-control",
      "expect",
      "max-forwards",
      "pragma",
      "range",
      "if-match",
      "if-none-match",
      "if-modified-since",
      "if-unmodified-since",
      "if-range",
      "authorization",
      "proxy-authorization",
      "www-authenticate",
      "proxy-authenticate",
      "cookie",
      "set-cookie",
      "age",
      "expires",
      "date",
      "location",
      "retry-after",
      "vary",
      "warning",
      "content-encoding",
      "content-type",
      "content-range",
  };
  for (std::string_view n : kNames)
    if (n.size() == name.size() && equalsNoCase(n, name)) return true;
  return false;
}

std::string_view trimOws(std::string_view s) {
  while (!s.empty() && isOws(s.front())) s.remove_prefix(1);
  while (!s.empty() && isOws(s.back())) s.remove_suffix(1);
  return s;
}

}  // namespace

void BodyDecoder::reset(BodyKind kind, uint64_t content_length) {
  kind_ = kind;
  state_ = State::kBody;
  chunk_ = Chunk::kSize;
  remaining_ = 0;
  payload_ = 0;
  line_len_ = 0;
  trailer_bytes_ = 0;
  size_digits_ = false;
  trailer_text_.clear();
  trailers_.clear();
  has_trailers_ = false;
  error_.status = 400;
  error_.reason.clear();
  if (kind == BodyKind::kContentLength) remaining_ = content_length;
  if (kind == BodyKind::kNone || (kind == BodyKind::kContentLength && content_length == 0))
    state_ = State::kDone;
}

size_t BodyDecoder::feed(const char* data, size_t len, BodySink* sink) {
  if (state_ != State::kBody || len == 0) return 0;
  switch (kind_) {
    case BodyKind::kContentLength: {
      size_t n = remaining_ < len ? static_cast<size_t>(remaining_) : len;
      if (sink != nullptr) sink->onData({data, n});
      remaining_ -= n;
      payload_ += n;
      if (remaining_ == 0) state_ = State::kDone;
      return n;
    }
    case BodyKind::kUntilClose:
      if (sink != nullptr) sink->onData({data, len});
      payload_ += len;
      return len;
    case BodyKind::kChunked:
      return feedChunked(data, len, sink);
    case BodyKind::kNone:
      break;
  }
  state_ = State::kDone;
  return 0;
}

void BodyDecoder::finish() {
  if (state_ != State::kBody) return;
  if (kind_ == BodyKind::kUntilClose) {
    state_ = State::kDone;
    return;
  }
  fail("truncated body");
}

bool BodyDecoder::fail(const char* reason) {
  state_ = State::kError;
  error_.status = 400;
  error_.reason = reason;
  return false;
}

size_t BodyDecoder::feedChunked(const char* data, size_t len, BodySink* sink) {
  size_t i = 0;
  while (i < len && state_ == State::kBody) {
    if (chunk_ == Chunk::kData) {
      i += chunkData(data + i, len - i, sink);
      continue;
    }
    const char c = data[i];
    bool ok = true;
    switch (chunk_) {
      case Chunk::kSize:
      case Chunk::kSizeWs:
        ok = chunkSizeByte(c);
        break;
      case Chunk::kExt:
        ok = chunkExtByte(c);
        break;
      case Chunk::kSizeLf:
        ok = expectByte(c, '\n', remaining_ == 0 ? Chunk::kTrailerName : Chunk::kData,
                        "missing LF after chunk size");
        break;
      case Chunk::kData:  // handled above
        break;
      case Chunk::kDataCr:
        ok = expectByte(c, '\r', Chunk::kDataLf, "missing CRLF after chunk data");
        break;
      case Chunk::kDataLf:
        ok = expectByte(c, '\n', Chunk::kSize, "missing CRLF after chunk data");
        break;
      case Chunk::kTrailerName:
        ok = trailerNameByte(c);
        break;
      case Chunk::kTrailerValue:
        ok = trailerValueByte(c);
        break;
      case Chunk::kTrailerLf:
        ok = expectByte(c, '\n', Chunk::kTrailerName, "bare CR in trailer");
        break;
      case Chunk::kLastLf:
        ok = expectByte(c, '\n', Chunk::kLastLf, "missing CRLF after last chunk");
        if (ok) {
          state_ = State::kDone;
          if (!trailer_text_.empty()) takeTrailers();
        }
        break;
    }
    if (!ok) return i;
    ++i;
  }
  return i;
}

// A framing byte that must be `want`; moves to `next` and starts a new line.
bool BodyDecoder::expectByte(char c, char want, Chunk next, const char* reason) {
  if (c != want) return fail(reason);
  chunk_ = next;
  line_len_ = 0;
  size_digits_ = false;
  return true;
}

size_t BodyDecoder::chunkData(const char* data, size_t len, BodySink* sink) {
  size_t n = remaining_ < len ? static_cast<size_t>(remaining_) : len;
  if (sink != nullptr) sink->onData({data, n});
  remaining_ -= n;
  payload_ += n;
  if (remaining_ == 0) chunk_ = Chunk::kDataCr;
  return n;
}

// chunk-size = 1*HEXDIG, then optional BWS before ';' and the extensions, then CRLF.
bool BodyDecoder::chunkSizeByte(char c) {
  if (++line_len_ > kMaxChunkLine) return fail("chunk size line too long");
  if (chunk_ == Chunk::kSize && detail::isHexDigit(c)) {
    unsigned d = hexValue(c);
    if (remaining_ > (kMaxChunkSize - d) / 16) return fail("chunk size overflow");
    remaining_ = remaining_ * 16 + d;
    size_digits_ = true;
    return true;
  }
  if (!size_digits_) return fail("bad chunk size");
  if (isOws(c)) {
    chunk_ = Chunk::kSizeWs;
  } else if (c == ';') {
    chunk_ = Chunk::kExt;
  } else if (c == '\r' && chunk_ == Chunk::kSize) {
    chunk_ = Chunk::kSizeLf;
  } else {
    return fail("bad chunk size");
  }
  return true;
}

// chunk-ext is not interpreted, only bounded and checked for control characters: a CR
// ends it, and a lone LF or any other CTL is refused (parsers that disagree on where an
// extension ends are a known desync vector).
bool BodyDecoder::chunkExtByte(char c) {
  if (++line_len_ > kMaxChunkLine) return fail("chunk size line too long");
  if (c == '\r') {
    chunk_ = Chunk::kSizeLf;
    return true;
  }
  if (!detail::isValueChar(c)) return fail("control character in chunk extension");
  return true;
}

// trailer-section = *( field-line CRLF ), then the final CRLF.
bool BodyDecoder::trailerNameByte(char c) {
  bool line_start = line_len_ == 0;
  if (++line_len_ > kMaxChunkLine || ++trailer_bytes_ > kMaxTrailerBytes)
    return fail("trailer section too long");
  if (line_start && c == '\r') {
    chunk_ = Chunk::kLastLf;
    return true;
  }
  if (detail::isTchar(c)) {
    trailer_text_.push_back(c);
    return true;
  }
  if (c == ':' && !line_start) {
    trailer_text_.push_back(':');
    chunk_ = Chunk::kTrailerValue;
    return true;
  }
  if (line_start && isOws(c)) return fail("obs-fold in trailer");
  return fail("invalid trailer field name");
}

bool BodyDecoder::trailerValueByte(char c) {
  if (++line_len_ > kMaxChunkLine || ++trailer_bytes_ > kMaxTrailerBytes)
    return fail("trailer section too long");
  if (c == '\r') {
    trailer_text_.push_back('\n');  // ends the line in trailer_text_
    chunk_ = Chunk::kTrailerLf;
    return true;
  }
  if (!detail::isValueChar(c)) return fail("control character in trailer");
  trailer_text_.push_back(c);
  return true;
}

// trailer_text_ holds "name:value\n" lines, already validated byte by byte.
void BodyDecoder::takeTrailers() {
  std::string_view text = trailer_text_;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    size_t colon = line.find(':');
    std::string_view name = line.substr(0, colon);
    if (isForbiddenTrailer(name)) continue;
    trailers_.add(name, trimOws(line.substr(colon + 1)));
    has_trailers_ = true;
  }
  trailer_text_.clear();
}

}  // namespace crescent::core::http1
