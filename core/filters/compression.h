#pragma once

// HTTP response compression (DESIGN §4: "response head -> http-response rules/hooks ->
// compression filter"), sans-I/O: content-coding negotiation, the decision whether a
// response is compressed, the edits of its head, and a streaming zlib encoder that turns
// payload bytes into pooled Buffers, optionally already framed as HTTP/1.1 chunks. No
// <uv.h> here; the session feeds it and writes what it returns.

#include <zlib.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/base/buffer.h"
#include "core/config/config.h"
#include "core/proto/http1.h"
#include "core/proto/http_head.h"

namespace crescent::core::compression {

/// A content coding the proxy can produce (RFC 9110 §8.4.1).
enum class Algo { kNone, kGzip, kDeflate };

/// "gzip", "deflate", or "identity" for kNone.
std::string_view algoName(Algo a);
/// The coding named `name` as written in a config ("gzip", "deflate"; ASCII
/// case-insensitive), kNone for anything else.
Algo algoFromName(std::string_view name);

/// The best coding among `algos` (config names in server preference order; unknown names
/// are skipped) that an Accept-Encoding field value accepts (RFC 9110 §12.5.3):
/// comma-separated codings, each optionally with ";q=<qvalue>"; names are ASCII
/// case-insensitive; "x-gzip" is gzip (§8.4.1.3); "*" gives its weight to every coding not
/// listed by name; q=0 means "not acceptable". The highest weight wins and server
/// preference breaks ties. Elements that are not a token, or whose qvalue is malformed
/// (not 0[.ddd] or 1[.000]), are ignored; other parameters are ignored. When a coding is
/// listed twice, its first element counts. "identity" never makes a coding acceptable.
/// Returns kNone when nothing is acceptable, and for an empty value.
Algo negotiate(std::string_view accept_encoding, const std::vector<std::string>& algos);
/// As above over every Accept-Encoding field of `req` (several fields are one list,
/// RFC 9110 §5.3). A request without the field gets kNone: RFC 9110 would allow any
/// coding, but like nginx and HAProxy the proxy compresses only for clients that ask.
Algo negotiate(const HttpHead& req, const std::vector<std::string>& algos);

/// What the request contributed to the decision, taken from its head before it was
/// forwarded (the request head is forwarded unchanged).
struct RequestFacts {
  Algo accepted = Algo::kNone;  ///< negotiate() with the effective config's algos
  bool head = false;            ///< method HEAD
  bool range = false;           ///< the request had a Range field
};

/// Why a response is (not) compressed. kCompress is the only "yes".
enum class Verdict {
  kCompress,
  kDisabled,     ///< no compression configured (never returned by decide())
  kNoBody,       ///< HEAD, 1xx/204/304, Content-Length: 0, a tunnel (101, CONNECT 2xx)
  kStatus,       ///< status other than 200
  kRange,        ///< the request had Range or the response has Content-Range
  kEncoded,      ///< the response already has Content-Encoding
  kNoTransform,  ///< Cache-Control: no-transform
  kType,         ///< no Content-Type, or one not in the list
  kTooSmall,     ///< Content-Length below min_size
  kNotAccepted,  ///< would be compressed, but the client accepts none of the algos
};

/// A short name for logs and tests ("compress", "type", "not-accepted", ...).
std::string_view verdictName(Verdict v);

/// The content types compressed when CompressionConfig::types is empty.
const std::vector<std::string>& defaultTypes();

/// Decides for a response head whose framing analyzeResponse() computed. Pure. Rules in
/// order: no body / tunnel, status != 200, Range/Content-Range, Content-Encoding present,
/// Cache-Control no-transform, Content-Type (the part before ';', trimmed, ASCII
/// case-insensitive) not in `cfg.types` (or defaultTypes(); an entry "text/*" matches every
/// text/ subtype), Content-Length < min_size,
/// and last the client's Accept-Encoding, so that kNotAccepted means "compressible, for a
/// client that asks" (the caller then adds Vary, as nginx's gzip_vary does). `cfg.enabled`
/// is not looked at: the caller picks the effective config.
Verdict decide(const CompressionConfig& cfg, const RequestFacts& req, const HttpHead& resp,
               const http1::Framing& framing);

/// Makes `resp` describe the compressed body: removes Content-Length and Accept-Ranges;
/// sets "Transfer-Encoding: chunked" when `chunked` (HTTP/1.1 client), else removes
/// Transfer-Encoding (the body is then delimited by close: the caller sends
/// "Connection: close"); sets Content-Encoding to algoName(a); adds Accept-Encoding to
/// Vary (addVary); turns a strong ETag into a weak one (`"x"` -> `W/"x"`, RFC 9110 §8.8.3:
/// the compressed bytes differ from the uncompressed ones).
void editResponseHead(HttpHead& resp, Algo a, bool chunked);

/// Appends "Accept-Encoding" to the last Vary field, or adds "Vary: Accept-Encoding";
/// nothing when a Vary field already lists it or "*".
void addVary(HttpHead& resp);

/// A streaming zlib compressor: payload in, compressed bytes out in Buffers taken from a
/// BufferPool, never the whole body in memory (zlib's own state is ~300 KB at most).
/// Input is compressed with Z_NO_FLUSH (no flush at the end of each input chunk); whatever
/// output zlib has produced by the end of a feed() is handed out at once, so it can be
/// forwarded as it appears. In chunked mode each Buffer is one complete HTTP/1.1 chunk
/// ("<hex size>\r\n<data>\r\n", built in place: no copy), and finish() ends with the last
/// chunk "0\r\n\r\n"; in raw mode Buffers hold only the coded bytes.
///
/// Usage: init() once, feed() any number of times, finish() once. Not copyable; the
/// destructor releases zlib's state and any held Buffer (to `pool`, which must outlive
/// this object and belong to the calling thread).
class Encoder {
 public:
  enum class Framing { kRaw, kChunked };

  Encoder(BufferPool& pool, Framing framing);
  ~Encoder();
  Encoder(const Encoder&) = delete;
  Encoder& operator=(const Encoder&) = delete;

  /// Sets up zlib for `a` (gzip: RFC 1952, windowBits 31; deflate: the zlib format of RFC
  /// 1950, windowBits 15, as RFC 9110 §8.4.1.2 defines "deflate") at `level` (clamped to
  /// 1..9). Returns false when zlib refuses (out of memory) or `a` is kNone; the caller
  /// then sends the response uncompressed.
  [[nodiscard]] bool init(Algo a, int level);

  /// Compresses `in` (may be empty) and appends the produced Buffers to `out` (none when
  /// zlib kept everything in its window). Returns false on a zlib error (after init(),
  /// only a programming error); the stream is then unusable.
  [[nodiscard]] bool feed(std::string_view in, std::vector<Buffer>& out);

  /// Ends the stream (Z_FINISH): appends the remaining coded bytes and, in chunked mode,
  /// the last chunk. Returns false on a zlib error. feed() and finish() must not be called
  /// after it.
  [[nodiscard]] bool finish(std::vector<Buffer>& out);

  Algo algo() const { return algo_; }
  uint64_t bytesIn() const { return bytes_in_; }
  uint64_t bytesOut() const { return bytes_out_; }

 private:
  static constexpr size_t kChunkHead = 10;  // up to 8 hex digits + CRLF, filled in last
  static constexpr size_t kChunkTail = 2;   // CRLF after the chunk data
  bool run(int flush, std::vector<Buffer>& out);
  size_t room() const;
  void openBuffer();
  void emit(std::vector<Buffer>& out);

  BufferPool& pool_;
  Framing framing_;
  Algo algo_ = Algo::kNone;
  bool ready_ = false;     // deflateInit2 succeeded: deflateEnd is owed
  bool finished_ = false;  // Z_STREAM_END seen
  z_stream zs_{};
  Buffer cur_;  // output being filled; in chunked mode its first kChunkHead bytes are reserved
  uint64_t bytes_in_ = 0;
  uint64_t bytes_out_ = 0;  // coded bytes, chunk framing excluded
};

}  // namespace crescent::core::compression
