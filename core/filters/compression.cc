#include "core/filters/compression.h"

#include <algorithm>
#include <cstring>
#include <limits>

namespace crescent::core::compression {
namespace {

constexpr int kUnlisted = -1;  // a coding the Accept-Encoding value does not name

bool isOws(char c) {
  return c == ' ' || c == '\t';
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && isOws(s.front())) s.remove_prefix(1);
  while (!s.empty() && isOws(s.back())) s.remove_suffix(1);
  return s;
}

bool isToken(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s)
    if (!http1::detail::isTchar(c)) return false;
  return true;
}

// qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] ), in thousandths; -1 when
// malformed (RFC 9110 §12.4.2).
int parseQvalue(std::string_view v) {
  if (v.empty() || (v[0] != '0' && v[0] != '1')) return -1;
  int q = v[0] == '1' ? 1000 : 0;
  if (v.size() == 1) return q;
  if (v[1] != '.' || v.size() > 5) return -1;
  int scale = 100;
  for (char c : v.substr(2)) {
    if (c < '0' || c > '9') return -1;
    if (q == 1000 && c != '0') return -1;
    q += (c - '0') * scale;
    scale /= 10;
  }
  return q;
}

// One element of the list: "coding *( OWS ; OWS param )". Fills the coding's name and
// weight; false when the element is to be ignored.
bool parseElement(std::string_view e, std::string_view& name, int& q) {
  size_t semi = e.find(';');
  name = trim(e.substr(0, semi));
  q = 1000;
  if (!isToken(name)) return false;
  while (semi != std::string_view::npos) {
    e.remove_prefix(semi + 1);
    semi = e.find(';');
    std::string_view param = trim(e.substr(0, semi));
    size_t eq = param.find('=');
    if (eq == std::string_view::npos) continue;  // not a weight: ignored
    if (!equalsNoCase(trim(param.substr(0, eq)), "q")) continue;
    q = parseQvalue(trim(param.substr(eq + 1)));
    if (q < 0) return false;
  }
  return true;
}

// Weights (thousandths) the client gave by name, kUnlisted when it did not name them.
struct Weights {
  int gzip = kUnlisted;
  int deflate = kUnlisted;
  int star = kUnlisted;

  void take(std::string_view value) {
    size_t start = 0;
    while (start <= value.size()) {
      size_t comma = value.find(',', start);
      if (comma == std::string_view::npos) comma = value.size();
      std::string_view name;
      int q;
      if (parseElement(value.substr(start, comma - start), name, q)) record(name, q);
      start = comma + 1;
    }
  }
  void record(std::string_view name, int q) {
    int* slot = nullptr;
    if (equalsNoCase(name, "gzip") || equalsNoCase(name, "x-gzip"))
      slot = &gzip;
    else if (equalsNoCase(name, "deflate"))
      slot = &deflate;
    else if (name == "*")
      slot = &star;
    if (slot != nullptr && *slot == kUnlisted) *slot = q;  // the first element counts
  }
  int of(Algo a) const {
    int w = a == Algo::kGzip ? gzip : a == Algo::kDeflate ? deflate : 0;
    if (w == kUnlisted) w = star == kUnlisted ? 0 : star;
    return w;
  }
};

Algo best(const Weights& w, const std::vector<std::string>& algos) {
  Algo pick = Algo::kNone;
  int best_q = 0;
  for (const std::string& name : algos) {
    Algo a = algoFromName(name);
    if (a == Algo::kNone) continue;
    int q = w.of(a);
    if (q > best_q) {  // strictly better: earlier (preferred) algos win ties
      best_q = q;
      pick = a;
    }
  }
  return pick;
}

bool typeListed(std::string_view type, const std::vector<std::string>& types) {
  for (const std::string& t : types) {
    std::string_view want = t;
    if (want.size() >= 2 && want.substr(want.size() - 2) == "/*") {
      std::string_view prefix = want.substr(0, want.size() - 1);  // "text/"
      if (type.size() > prefix.size() && equalsNoCase(type.substr(0, prefix.size()), prefix))
        return true;
    } else if (equalsNoCase(type, want)) {
      return true;
    }
  }
  return false;
}

}  // namespace

std::string_view algoName(Algo a) {
  switch (a) {
    case Algo::kGzip:
      return "gzip";
    case Algo::kDeflate:
      return "deflate";
    case Algo::kNone:
      break;
  }
  return "identity";
}

Algo algoFromName(std::string_view name) {
  if (equalsNoCase(name, "gzip")) return Algo::kGzip;
  if (equalsNoCase(name, "deflate")) return Algo::kDeflate;
  return Algo::kNone;
}

Algo negotiate(std::string_view accept_encoding, const std::vector<std::string>& algos) {
  Weights w;
  w.take(accept_encoding);
  return best(w, algos);
}

Algo negotiate(const HttpHead& req, const std::vector<std::string>& algos) {
  Weights w;
  for (const HeaderField& f : req.headers)
    if (equalsNoCase(f.name, "accept-encoding")) w.take(f.value);
  return best(w, algos);
}

std::string_view verdictName(Verdict v) {
  switch (v) {
    case Verdict::kCompress:
      return "compress";
    case Verdict::kDisabled:
      return "disabled";
    case Verdict::kNoBody:
      return "no-body";
    case Verdict::kStatus:
      return "status";
    case Verdict::kRange:
      return "range";
    case Verdict::kEncoded:
      return "encoded";
    case Verdict::kNoTransform:
      return "no-transform";
    case Verdict::kType:
      return "type";
    case Verdict::kTooSmall:
      return "too-small";
    case Verdict::kNotAccepted:
      return "not-accepted";
  }
  return "?";
}

const std::vector<std::string>& defaultTypes() {
  static const std::vector<std::string> kTypes{
      "text/html",        "text/plain",      "text/css",
      "text/xml",         "text/javascript", "application/javascript",
      "application/json", "application/xml", "image/svg+xml",
  };
  return kTypes;
}

Verdict decide(const CompressionConfig& cfg, const RequestFacts& req, const HttpHead& resp,
               const http1::Framing& framing) {
  bool empty = framing.body == http1::BodyKind::kNone ||
               (framing.body == http1::BodyKind::kContentLength && framing.content_length == 0);
  if (req.head || framing.upgrade || empty) return Verdict::kNoBody;
  if (resp.status != 200) return Verdict::kStatus;
  if (req.range || resp.find("content-range") != nullptr) return Verdict::kRange;
  if (resp.find("content-encoding") != nullptr) return Verdict::kEncoded;
  for (const HeaderField& f : resp.headers)
    if (equalsNoCase(f.name, "cache-control") && http1::hasToken(f.value, "no-transform"))
      return Verdict::kNoTransform;
  const HeaderField* ct = resp.find("content-type");
  if (ct == nullptr) return Verdict::kType;
  std::string_view type = trim(ct->value.substr(0, ct->value.find(';')));
  if (!typeListed(type, cfg.types.empty() ? defaultTypes() : cfg.types)) return Verdict::kType;
  if (framing.body == http1::BodyKind::kContentLength && framing.content_length < cfg.min_size)
    return Verdict::kTooSmall;
  if (req.accepted == Algo::kNone) return Verdict::kNotAccepted;
  return Verdict::kCompress;
}

void addVary(HttpHead& resp) {
  HeaderField* last = nullptr;
  for (HeaderField& f : resp.headers) {
    if (!equalsNoCase(f.name, "vary")) continue;
    if (http1::hasToken(f.value, "accept-encoding") || http1::hasToken(f.value, "*")) return;
    last = &f;
  }
  if (last == nullptr) return resp.add("vary", "Accept-Encoding");
  std::string_view v = trim(last->value);
  last->value =
      v.empty() ? resp.own("Accept-Encoding") : resp.own(std::string(v) + ", Accept-Encoding");
}

void editResponseHead(HttpHead& resp, Algo a, bool chunked) {
  resp.remove("content-length");
  resp.remove("accept-ranges");
  if (chunked)
    resp.set("transfer-encoding", "chunked");
  else
    resp.remove("transfer-encoding");
  resp.set("content-encoding", algoName(a));
  addVary(resp);
  for (HeaderField& f : resp.headers) {
    if (!equalsNoCase(f.name, "etag")) continue;
    std::string_view v = trim(f.value);
    if (!v.empty() && v.front() == '"') f.value = resp.own("W/" + std::string(v));
  }
}

// ---------------------------------------------------------------- Encoder

Encoder::Encoder(BufferPool& pool, Framing framing) : pool_(pool), framing_(framing) {}

Encoder::~Encoder() {
  if (ready_) deflateEnd(&zs_);
}

bool Encoder::init(Algo a, int level) {
  if (ready_ || a == Algo::kNone) return false;
  level = std::clamp(level, 1, 9);
  int window_bits = a == Algo::kGzip ? 15 + 16 : 15;  // +16: gzip wrapper instead of zlib's
  if (deflateInit2(&zs_, level, Z_DEFLATED, window_bits, 8, Z_DEFAULT_STRATEGY) != Z_OK)
    return false;
  ready_ = true;
  algo_ = a;
  return true;
}

size_t Encoder::room() const {
  size_t tail = framing_ == Framing::kChunked ? kChunkTail : 0;
  size_t free = cur_.tailroom();
  return free > tail ? free - tail : 0;
}

void Encoder::openBuffer() {
  cur_ = pool_.take();
  if (framing_ == Framing::kChunked) cur_.commit(kChunkHead);  // the size line goes here
}

// Hands the current buffer out when it holds coded bytes; in chunked mode writes the size
// line right-aligned into the reserved head (dropping the unused part) and the CRLF after.
void Encoder::emit(std::vector<Buffer>& out) {
  if (!cur_) return;
  if (framing_ == Framing::kRaw) {
    if (!cur_.empty()) out.push_back(std::move(cur_));
    return;
  }
  size_t payload = cur_.size() - kChunkHead;
  if (payload == 0) return;  // kept for the next feed
  char hex[16];
  size_t n = 0;
  for (size_t v = payload; v != 0; v >>= 4) hex[n++] = "0123456789abcdef"[v & 15];
  char* line = cur_.data() + kChunkHead - 2 - n;
  for (size_t i = 0; i < n; ++i) line[i] = hex[n - 1 - i];
  line[n] = '\r';
  line[n + 1] = '\n';
  cur_.consume(kChunkHead - 2 - n);
  cur_.append("\r\n");
  out.push_back(std::move(cur_));
}

// Calls deflate() until it has taken all input (Z_NO_FLUSH) or ended the stream
// (Z_FINISH), handing out every buffer it fills.
bool Encoder::run(int flush, std::vector<Buffer>& out) {
  for (;;) {
    if (!cur_) openBuffer();
    size_t avail = room();
    if (avail == 0) return false;  // pool chunks too small to hold a chunk's framing
    zs_.next_out = reinterpret_cast<Bytef*>(cur_.data() + cur_.size());
    zs_.avail_out = static_cast<uInt>(avail);
    int r = deflate(&zs_, flush);
    if (r == Z_STREAM_ERROR) return false;
    size_t produced = avail - zs_.avail_out;
    cur_.commit(produced);
    bytes_out_ += produced;
    if (r == Z_STREAM_END) {
      finished_ = true;
      return true;
    }
    if (zs_.avail_out != 0) {
      // Output space left over: with Z_NO_FLUSH all input was taken. With Z_FINISH
      // deflate() only stops early for lack of output space, so this means no progress.
      return flush == Z_NO_FLUSH && zs_.avail_in == 0;
    }
    emit(out);  // full: more output may be pending in zlib
  }
}

bool Encoder::feed(std::string_view in, std::vector<Buffer>& out) {
  if (!ready_ || finished_) return false;
  bytes_in_ += in.size();
  constexpr size_t kMaxStep = std::numeric_limits<uInt>::max();
  while (!in.empty()) {
    size_t step = std::min(in.size(), kMaxStep);
    zs_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
    zs_.avail_in = static_cast<uInt>(step);
    if (!run(Z_NO_FLUSH, out)) return false;
    in.remove_prefix(step);
  }
  zs_.next_in = nullptr;
  emit(out);
  return true;
}

bool Encoder::finish(std::vector<Buffer>& out) {
  if (!ready_ || finished_) return false;
  size_t first = out.size();
  zs_.next_in = nullptr;
  zs_.avail_in = 0;
  if (!run(Z_FINISH, out)) return false;
  emit(out);
  cur_.release();
  if (framing_ == Framing::kChunked) {
    constexpr std::string_view kLast = "0\r\n\r\n";
    if (out.size() == first || out.back().tailroom() < kLast.size()) out.push_back(pool_.take());
    out.back().append(kLast);
  }
  return true;
}

}  // namespace crescent::core::compression
