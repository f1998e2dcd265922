#include "core/tls/tls_engine.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>

#include <cstring>

#include "core/tls/client_verify.h"
#include "core/tls/tls_context.h"

namespace crescent::core::tls {
namespace {

// Our memory BIO: reads come from the engine's kept input, writes go to its pooled output
// buffers. Created once per process; never freed (OpenSSL keeps no state in it).
BIO_METHOD* bioMethod(int (*rd)(BIO*, char*, size_t, size_t*),
                      int (*wr)(BIO*, const char*, size_t, size_t*),
                      long (*ctrl)(BIO*, int, long, void*)) {
  static BIO_METHOD* const method = [&] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "crescent-tls");
    if (m == nullptr) return m;
    BIO_meth_set_read_ex(m, rd);
    BIO_meth_set_write_ex(m, wr);
    BIO_meth_set_ctrl(m, ctrl);
    BIO_meth_set_create(m, [](BIO* b) {
      BIO_set_init(b, 1);
      return 1;
    });
    BIO_meth_set_destroy(m, [](BIO* b) {
      BIO_set_data(b, nullptr);  // the engine is not the BIO's to free
      return 1;
    });
    return m;
  }();
  return method;
}

}  // namespace

Engine::Engine(SSL* ssl) : ssl_(ssl) {}

Engine::~Engine() {
  // OpenSSL takes a connection freed without close_notify for a broken one and makes its
  // session unusable for resumption. Proxied connections often end that way (the peer
  // closes, a timeout, a pool evicts); only a failed one deserves it.
  if (done_ && !failed_) SSL_set_shutdown(ssl_, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
  SSL_free(ssl_);  // frees the BIO too
}

std::unique_ptr<Engine> Engine::accept(const ServerContext& ctx) {
  SSL* ssl = SSL_new(ctx.ctx());
  if (ssl == nullptr) return nullptr;
  BIO* bio = BIO_new(bioMethod(&Engine::bioRead, &Engine::bioWrite, &Engine::bioCtrl));
  if (bio == nullptr) {
    SSL_free(ssl);
    return nullptr;
  }
  std::unique_ptr<Engine> e(new Engine(ssl));
  BIO_set_data(bio, e.get());
  SSL_set_bio(ssl, bio, bio);  // one reference, used both ways
  SSL_set_accept_state(ssl);
  return e;
}

std::unique_ptr<Engine> Engine::connect(const ClientContext& ctx, std::string_view sni) {
  SSL* ssl = SSL_new(ctx.ctx());
  if (ssl == nullptr) return nullptr;
  BIO* bio = BIO_new(bioMethod(&Engine::bioRead, &Engine::bioWrite, &Engine::bioCtrl));
  if (bio == nullptr) {
    SSL_free(ssl);
    return nullptr;
  }
  std::unique_ptr<Engine> e(new Engine(ssl));
  BIO_set_data(bio, e.get());
  SSL_set_bio(ssl, bio, bio);
  SSL_set_connect_state(ssl);
  std::string name = sni.empty() ? ctx.sni() : std::string(sni);
  if (!name.empty()) {
    SSL_set_tlsext_host_name(ssl, name.c_str());
    if (ctx.verify()) SSL_set1_host(ssl, name.c_str());
    e->sni_sent_ = name;
  } else if (ctx.verify() && !ctx.verifyIp().empty()) {
    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), ctx.verifyIp().c_str());
  }
  if (name == ctx.sni()) ctx.offerSession(ssl);  // another name: another identity
  return e;
}

// ---- The BIO: OpenSSL's side of the pump ---------------------------------------------------

int Engine::bioRead(BIO* b, char* buf, size_t len, size_t* readbytes) {
  auto* self = static_cast<Engine*>(BIO_get_data(b));
  BIO_clear_retry_flags(b);
  *readbytes = 0;
  if (self == nullptr || self->in_bytes_ == 0) {
    BIO_set_retry_read(b);  // not EOF: more may come
    return 0;
  }
  size_t n = 0;
  size_t used = 0;  // input buffers emptied
  while (n < len && used < self->in_.size()) {
    Buffer& f = self->in_[used];
    size_t k = std::min(f.size(), len - n);
    std::memcpy(buf + n, f.data(), k);
    f.consume(k);
    n += k;
    if (f.empty()) ++used;
  }
  self->in_.erase(self->in_.begin(), self->in_.begin() + static_cast<ptrdiff_t>(used));
  self->in_bytes_ -= n;
  *readbytes = n;
  return 1;
}

int Engine::bioWrite(BIO* b, const char* buf, size_t len, size_t* written) {
  auto* self = static_cast<Engine*>(BIO_get_data(b));
  BIO_clear_retry_flags(b);
  if (self == nullptr) return 0;
  *written = len;
  while (len > 0) {
    if (self->out_.empty() || self->out_.back().tailroom() == 0)
      self->out_.push_back(BufferPool::local().take());
    size_t k = self->out_.back().append({buf, len});
    buf += k;
    len -= k;
  }
  return 1;
}

long Engine::bioCtrl(BIO* b, int cmd, long, void*) {
  auto* self = static_cast<Engine*>(BIO_get_data(b));
  switch (cmd) {
    case BIO_CTRL_FLUSH:
      return 1;  // output is complete as soon as it is written
    case BIO_CTRL_PENDING:
      return self != nullptr ? static_cast<long>(self->in_bytes_) : 0;
    case BIO_CTRL_WPENDING:
      return 0;
    default:
      return 0;
  }
}

// ---- The engine: our side ----------------------------------------------------------------

void Engine::input(Buffer wire) {
  if (wire.empty()) return;
  in_bytes_ += wire.size();
  // Small pieces join the last kept buffer rather than holding a chunk each.
  if (!in_.empty() && in_.back().tailroom() >= wire.size()) {
    in_.back().append(wire.view());
    return;
  }
  in_.push_back(std::move(wire));
}

bool Engine::hasInput() const {
  return in_bytes_ > 0 || SSL_has_pending(ssl_) == 1;
}

StreamFilter::Progress Engine::handshake() {
  if (done_) return Progress::kDone;
  if (failed_) return Progress::kFailed;
  ERR_clear_error();
  int r = SSL_do_handshake(ssl_);
  if (r == 1) {
    done_ = true;
    fillInfo();
    return Progress::kDone;
  }
  int e = SSL_get_error(ssl_, r);
  if (e == SSL_ERROR_WANT_READ) return Progress::kWant;
  fail(e, nullptr);
  return Progress::kFailed;
}

StreamFilter::ReadResult Engine::read(Buffer& out) {
  if (failed_) return ReadResult::kFailed;
  if (peer_closed_) return ReadResult::kClosed;
  if (!done_ || out.tailroom() == 0) return ReadResult::kNeedMore;
  ERR_clear_error();
  size_t n = 0;
  int r = SSL_read_ex(ssl_, out.data() + out.size(), out.tailroom(), &n);
  if (r == 1) {
    out.commit(n);
    return ReadResult::kData;
  }
  int e = SSL_get_error(ssl_, r);
  if (e == SSL_ERROR_WANT_READ) return ReadResult::kNeedMore;
  if (e == SSL_ERROR_ZERO_RETURN) {
    peer_closed_ = true;
    return ReadResult::kClosed;
  }
  fail(e, "read");
  return ReadResult::kFailed;
}

bool Engine::write(const char* p, size_t n) {
  if (!done_ || failed_ || closed_) return false;
  if (n == 0) return true;
  ERR_clear_error();
  size_t w = 0;
  int r = SSL_write_ex(ssl_, p, n, &w);
  if (r == 1 && w == n) return true;  // our BIO takes everything: no partial writes
  fail(SSL_get_error(ssl_, r), "write");
  return false;
}

void Engine::close() {
  if (!done_ || failed_ || closed_) return;
  closed_ = true;
  ERR_clear_error();
  SSL_shutdown(ssl_);  // sends close_notify; we do not wait for the peer's
  ERR_clear_error();
}

void Engine::takeOutput(std::vector<Buffer>& out) {
  for (Buffer& b : out_) out.push_back(std::move(b));
  out_.clear();
}

size_t Engine::outputBytes() const {
  size_t n = 0;
  for (const Buffer& b : out_) n += b.size();
  return n;
}

// Records why the connection failed, one line: the certificate check's verdict when it
// failed ("certificate verify failed: ..." for a server's, "client certificate: ..." for
// a client's on a bind with `verify`), else OpenSSL's reason ("unsupported protocol",
// "tlsv1 alert unknown ca", ...), after `during` ("read", "write"; null for the handshake).
void Engine::fail(int ssl_error, const char* during) {
  failed_ = true;
  const bool server = SSL_is_server(ssl_) == 1;
  long verify = SSL_get_verify_result(ssl_);
  if (!done_ && verify != X509_V_OK) {
    error_ = std::string(server ? "client certificate: " : "certificate verify failed: ") +
             X509_verify_cert_error_string(verify);
    ERR_clear_error();
    return;
  }
  if (!done_ && server &&
      ERR_GET_REASON(ERR_peek_error()) == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE) {
    error_ = "client certificate: none sent";
    ERR_clear_error();
    return;
  }
  std::string why;
  switch (ssl_error) {
    case SSL_ERROR_ZERO_RETURN:
      why = "closed by the peer (close_notify)";
      break;
    case SSL_ERROR_SYSCALL:
      why = takeOpensslError("unexpected end of stream");
      break;
    default:
      why = takeOpensslError("error");
  }
  error_ = during != nullptr ? std::string(during) + ": " + why : why;
}

void Engine::fillInfo() {
  info_.version = SSL_get_version(ssl_);
  if (const SSL_CIPHER* c = SSL_get_current_cipher(ssl_)) info_.cipher = SSL_CIPHER_get_name(c);
  if (SSL_is_server(ssl_) == 1) {
    const char* name = SSL_get_servername(ssl_, TLSEXT_NAMETYPE_host_name);
    if (name != nullptr) info_.sni = name;
  } else {
    info_.sni = sni_sent_;
  }
  const unsigned char* alpn = nullptr;
  unsigned int alpn_len = 0;
  SSL_get0_alpn_selected(ssl_, &alpn, &alpn_len);
  if (alpn != nullptr) info_.alpn.assign(reinterpret_cast<const char*>(alpn), alpn_len);
  info_.resumed = SSL_session_reused(ssl_) == 1;
  if (SSL_is_server(ssl_) == 1) info_.client = clientCertOf(ssl_);
}

}  // namespace crescent::core::tls
