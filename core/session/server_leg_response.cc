// ServerLeg, the response: the head read across reads, interim responses, the body
// decoded into payload, the end of the response and the server's faults.
#include <fmt/format.h>

#include "core/base/log.h"
#include "core/session/error_capture.h"
#include "core/session/server_leg.h"

namespace crescent::core {
namespace {

// The idle time a server announces with `Keep-Alive: timeout=N` (RFC 2068 §19.7.1.1, as
// Node.js and Apache send it), less a tenth (at least 100 ms) so that the pool lets go of
// the connection before the server closes it: 0 when the field says nothing usable.
uint64_t keepAliveMs(std::string_view v) {
  size_t at = v.find("timeout=");
  if (at == std::string_view::npos) return 0;
  uint64_t secs = 0;
  size_t i = at + 8;
  for (; i < v.size() && v[i] >= '0' && v[i] <= '9' && secs < 86400; ++i)
    secs = secs * 10 + (v[i] - '0');
  if (i == at + 8 || secs == 0) return 0;
  uint64_t ms = secs * 1000;
  return ms - std::max<uint64_t>(ms / 10, 100);
}

}  // namespace

void ServerLeg::onStreamData(Stream& s, Buffer data) {
  if (&s != stream_.get() || failed_) return;
  if (paused_) {
    held_.push_back(std::move(data));
    stream_->readStop();
    return;
  }
  Alive alive(*this);
  if (!head_done_ && !readHead(data)) return;
  if (alive && !data.empty()) readBody(std::move(data));
}

void ServerLeg::pauseResponse() {
  paused_ = true;
  if (stream_) stream_->readStop();
}

void ServerLeg::resumeResponse() {
  if (!paused_) return;
  paused_ = false;
  // What was read while paused goes first; the owner may pause again (or destroy us:
  // then `alive` tells).
  Alive alive(*this);
  deliver();
  if (!alive || paused_ || failed_) return;
  if (head_done_ && resp_done_) return reportEnd();
  while (!held_.empty() && !paused_ && !failed_) {
    Buffer b = std::move(held_.front());
    held_.pop_front();
    bool go_on = head_done_ || readHead(b);
    if (!alive) return;
    if (go_on && !b.empty()) readBody(std::move(b));
    if (!alive) return;
  }
  if (paused_ || failed_ || resp_done_) return;
  if (eof_held_) return finishOnEof();
  if (stream_) stream_->readStart();
}

void ServerLeg::reportEnd() {
  if (end_reported_) return;
  end_reported_ = true;
  held_.clear();
  keep_ = keep_ && framing_.keep_alive;
  owner_.onLegEnd(body_.trailers());
}

// Accumulates response head bytes in head_buf_ (at most bufsize). On a complete final
// head, hands it over and leaves in `data` the bytes of `data` that follow it; returns
// true when the caller should go on with `data`, false while more is needed or when the
// leg moved on (error, head handed over with nothing left).
bool ServerLeg::readHead(Buffer& data) {
  if (!head_buf_) {
    head_buf_ = std::move(data);
  } else {
    head_buf_.compact();
    size_t n = head_buf_.append(data.view());
    data.consume(n);
    if (data.empty()) data.release();
  }
  for (;;) {
    http1::Error err;
    auto r = parser_.parseResponse(head_buf_.view(), resp_, err);
    const std::string& be = wg_->config().backends[backend_].name;
    if (r == http1::ParseResult::kIncomplete) {
      // Only a head that does not fit is too large: bytes left in `data` mean the buffer
      // is full and the head is still not complete.
      if (head_buf_.tailroom() == 0 || !data.empty()) {
        logWarning("backend \"{}\": 502: response head from server \"{}\" too large", be,
                   log_srv_ ? log_srv_->name() : "?");
        fail(502, "PH");
      }
      return false;
    }
    if (r == http1::ParseResult::kError) {
      logWarning("backend \"{}\": 502: invalid response from server \"{}\": {}", be,
                 log_srv_ ? log_srv_->name() : "?", err.reason);
      captureError(err, head_buf_.view(), err.offset);
      fail(502, "PH");
      return false;
    }
    size_t head_len = parser_.headLength();
    Buffer rest;
    if (head_buf_.size() > head_len) {
      rest = BufferPool::local().take();
      rest.append(head_buf_.view().substr(head_len));
    }
    if (resp_.status >= 100 && resp_.status < 200 && resp_.status != 101) {
      // Interim response (100 Continue, 103): passed on, then the final one is awaited.
      Alive alive(*this);
      owner_.onLegInterim(resp_);
      if (!alive || failed_) return false;
      parser_.reset();
      resp_.clear();
      head_buf_ = std::move(rest);
      if (!head_buf_) {
        if (data.empty()) return false;
        head_buf_ = std::move(data);
        data = Buffer();
      }
      continue;
    }
    // The bytes of `data` that did not fit follow `rest`: held until resumeResponse().
    if (!data.empty()) held_.push_front(std::move(data));
    data = Buffer();
    onHead(std::move(rest));
    return false;
  }
}

// An invalid response for `show errors`: the head's bytes, the fault at `offset`.
void ServerLeg::captureError(const http1::Error& err, std::string_view bytes, size_t offset) {
  CapturedError e;
  e.request = false;
  e.proxy = wg_->config().backends[backend_].name;
  e.server = log_srv_ ? log_srv_->name() : "?";
  e.source = log_srv_ ? log_srv_->address().toString() : "?";
  e.reason = err.reason;
  e.status = 502;
  ErrorCaptures::process().capture(std::move(e), bytes, offset);
}

void ServerLeg::onHead(Buffer rest) {
  t_resp_ = w_.loop().now();
  head_done_ = true;
  status_ = resp_.status;
  const std::string& be = wg_->config().backends[backend_].name;
  if (srv_ != nullptr) {
    srv_->recordResponseTime(t_resp_ - t_connect_start_ - t_queue_);
    srv_->observe(resp_.status < 500, "HTTP status 5xx", true);
  }
  http1::Error err;
  if (!http1::analyzeResponse(resp_, req_->method, framing_, err)) {
    logWarning("backend \"{}\": 502: invalid response from server \"{}\": {}", be,
               log_srv_ ? log_srv_->name() : "?", err.reason);
    std::string_view head = head_buf_.view().substr(0, parser_.headLength());
    captureError(err, head, http1::faultOffset(err, head, head.size()));
    head_done_ = false;
    return fail(502, "PH");
  }
  bool tunnel = framing_.upgrade && (resp_.status == 101 || req_->method == "CONNECT");
  keep_ = framing_.keep_alive && !tunnel;
  if (const HeaderField* ka = resp_.find("keep-alive")) server_idle_ms_ = keepAliveMs(ka->value);
  http1::removeHopByHop(resp_, tunnel);
  resp_.remove("transfer-encoding");
  BodyLength body;
  switch (framing_.body) {
    case http1::BodyKind::kNone:
      body = BodyLength::none();
      break;
    case http1::BodyKind::kContentLength:
      body = BodyLength::of(framing_.content_length);
      break;
    case http1::BodyKind::kChunked:
    case http1::BodyKind::kUntilClose:
      resp_.remove("content-length");
      body = BodyLength::stream();
      break;
  }
  body_.reset(framing_.body, framing_.content_length);
  // head_buf_ stays: resp_ points into it until the leg goes (hooks, the log phase)
  Buffer payload;
  if (!tunnel && rest && !rest.empty()) {
    // The body bytes that came with the head, decoded (the rest after a complete body
    // means the server sent more than the response: the connection is not reused). The
    // first piece goes with the head, any other waits in decoded_ for resumeResponse().
    if (!decode(rest)) return fail(502, "SD");
    if (!decoded_.empty()) {
      payload = std::move(decoded_.front());
      decoded_.pop_front();
    }
  } else if (tunnel) {
    payload = std::move(rest);  // the server's first tunnel bytes, for the client
  }
  paused_ = true;  // until the owner is ready for the body (resumeResponse)
  if (stream_) stream_->readStop();
  if (!tunnel && body_.done()) resp_done_ = true;
  owner_.onLegResponse(resp_, body, tunnel, std::move(payload));
}

// Decodes `data` (response body bytes) into payload pieces appended to decoded_. Bytes
// after the end of the body make the connection unusable. False on a framing error
// (logged): the caller fails the leg. Calls nobody out: the leg is still there after.
bool ServerLeg::decode(Buffer& data) {
  size_t n;
  if (framing_.body == http1::BodyKind::kChunked) {
    // Chunk payload is gathered into pooled buffers, one piece per full buffer.
    struct Sink : http1::BodySink {
      BufferQueue* out;
      Buffer cur;
      void onData(std::string_view d) override {
        while (!d.empty()) {
          if (!cur) cur = BufferPool::local().take();
          d.remove_prefix(cur.append(d));
          if (!d.empty()) out->push_back(std::move(cur));
        }
      }
    } sink;
    sink.out = &decoded_;
    n = body_.feed(data.data(), data.size(), &sink);
    if (sink.cur && !sink.cur.empty()) decoded_.push_back(std::move(sink.cur));
  } else {
    n = body_.feed(data.data(), data.size());
    if (n == data.size()) {
      if (n > 0) decoded_.push_back(std::move(data));
    } else if (n > 0) {
      Buffer part = BufferPool::local().take();
      part.append(data.view().substr(0, n));
      decoded_.push_back(std::move(part));
    }
  }
  if (body_.state() == http1::BodyDecoder::State::kError) {
    logWarning("backend \"{}\": invalid response body from server \"{}\": {}",
               wg_->config().backends[backend_].name, log_srv_ ? log_srv_->name() : "?",
               body_.error().reason);
    decoded_.clear();
    return false;
  }
  if (body_.done() && n < data.size()) keep_ = false;  // the server sent more than the response
  return true;
}

// Hands decoded_ to the owner in order, until it pauses or the leg failed.
void ServerLeg::deliver() {
  Alive alive(*this);
  while (!decoded_.empty() && !paused_ && !failed_) {
    Buffer b = std::move(decoded_.front());
    decoded_.pop_front();
    owner_.onLegData(std::move(b));
    if (!alive) return;
  }
}

void ServerLeg::readBody(Buffer data) {
  if (resp_done_) {
    keep_ = false;  // bytes after the response
    return;
  }
  if (!decode(data)) return fail(502, "SD");
  if (body_.done()) resp_done_ = true;
  Alive alive(*this);
  deliver();
  if (!alive || failed_ || paused_) return;  // resumeResponse() goes on
  if (resp_done_) reportEnd();
}

void ServerLeg::onStreamEof(Stream& s) {
  if (&s != stream_.get() || failed_) return;
  keep_ = false;
  if (!head_done_) {
    if (retryOnFreshConnection()) return;
    logWarning("backend \"{}\": 502: server \"{}\" closed the connection without a response",
               wg_->config().backends[backend_].name, log_srv_ ? log_srv_->name() : "?");
    return fail(502, "SH");
  }
  if (paused_) {
    // The end is seen once what was held has been given: after resumeResponse().
    eof_held_ = true;
    return;
  }
  finishOnEof();
}

void ServerLeg::finishOnEof() {
  if (resp_done_) return;
  body_.finish();
  if (body_.done()) {
    resp_done_ = true;
    return reportEnd();
  }
  fail(502, "SD");
}

void ServerLeg::onStreamError(Stream& s, int) {
  if (&s != stream_.get() || failed_) return;
  if (!head_done_ && retryOnFreshConnection()) return;
  fail(502, head_done_ ? "SD" : "SH");
}

StreamPtr ServerLeg::takeStream(std::deque<Buffer>& held) {
  if (stream_) {
    stream_->readStop();
    stream_->setHandler(nullptr);
  }
  keep_ = false;
  for (Buffer& b : held_) held.push_back(std::move(b));
  held_.clear();
  return std::move(stream_);
}

}  // namespace crescent::core
