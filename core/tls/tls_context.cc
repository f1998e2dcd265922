#include "core/tls/tls_context.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <mutex>

#include "core/tls/client_verify.h"

namespace crescent::core::tls {
namespace {

// ---- Small helpers ---------------------------------------------------------------------

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

// "1.0".."1.3" (validated by the config schema) -> OpenSSL's version; 0: the default.
int protoVersion(const std::string& v) {
  if (v == "1.0") return TLS1_VERSION;
  if (v == "1.1") return TLS1_1_VERSION;
  if (v == "1.2") return TLS1_2_VERSION;
  if (v == "1.3") return TLS1_3_VERSION;
  return 0;
}

// ALPN names in wire format (each prefixed by its length).
Result<std::string> alpnWire(const std::vector<std::string>& protos) {
  std::string wire;
  for (const std::string& p : protos) {
    if (p.empty() || p.size() > 255) return Status::error("invalid alpn \"" + p + "\"");
    wire.push_back(static_cast<char>(p.size()));
    wire += p;
  }
  return wire;
}

// Keys and passwords: a key file with a passphrase is refused instead of prompting on the
// terminal (OpenSSL's default callback would).
int noPassword(char*, int, int, void*) {
  return -1;
}

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;

Result<BioPtr> openFile(const std::string& path) {
  ERR_clear_error();
  errno = 0;
  BIO* b = BIO_new_file(path.c_str(), "r");
  if (b == nullptr) {
    int e = errno;
    std::string why = e != 0 ? std::strerror(e) : takeOpensslError("cannot open");
    ERR_clear_error();
    return Status::error(why);
  }
  return BioPtr(b);
}

// ---- Session ticket keys (process-wide) -----------------------------------------------

constexpr auto kTicketKeyLifetime = std::chrono::hours(12);

struct TicketKey {
  unsigned char name[16];
  unsigned char aes[32];
  unsigned char hmac[32];
};

class TicketKeys {
 public:
  void rotate() {
    std::lock_guard<std::mutex> lock(mu_);
    rotateLocked();
  }
  // The key that encrypts new tickets; rotated when it is older than its lifetime.
  bool forEncrypt(TicketKey& out) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!ready_ || std::chrono::steady_clock::now() - created_ >= kTicketKeyLifetime)
      rotateLocked();
    out = current_;
    return ready_;
  }
  // 1: the current key, 2: the previous one (renew the ticket), 0: unknown.
  int forDecrypt(const unsigned char* name, TicketKey& out) {
    std::lock_guard<std::mutex> lock(mu_);
    if (ready_ && std::memcmp(name, current_.name, sizeof(current_.name)) == 0) {
      out = current_;
      return 1;
    }
    if (has_previous_ && std::memcmp(name, previous_.name, sizeof(previous_.name)) == 0) {
      out = previous_;
      return 2;
    }
    return 0;
  }

 private:
  void rotateLocked() {
    TicketKey next;
    if (RAND_bytes(reinterpret_cast<unsigned char*>(&next), sizeof(next)) != 1) return;
    if (ready_) {
      previous_ = current_;
      has_previous_ = true;
    }
    current_ = next;
    ready_ = true;
    created_ = std::chrono::steady_clock::now();
  }

  std::mutex mu_;
  TicketKey current_{}, previous_{};  // guarded by mu_
  bool ready_ = false, has_previous_ = false;
  std::chrono::steady_clock::time_point created_;
};

TicketKeys& ticketKeys() {
  static TicketKeys keys;
  return keys;
}

// OpenSSL's ticket callback: AES-256-CBC + HMAC-SHA256 with the process's keys.
// enc=1: returns 1 (ticket issued) or -1; enc=0: 1 (valid), 2 (valid, issue a new one:
// old key), 0 (unknown key: full handshake) or -1.
int onTicketKey(SSL*, unsigned char* key_name, unsigned char* iv, EVP_CIPHER_CTX* cctx,
                EVP_MAC_CTX* hctx, int enc) {
  TicketKey k;
  int ret = 1;
  if (enc != 0) {
    if (!ticketKeys().forEncrypt(k) || RAND_bytes(iv, 16) != 1) return -1;
    std::memcpy(key_name, k.name, sizeof(k.name));
    if (EVP_EncryptInit_ex(cctx, EVP_aes_256_cbc(), nullptr, k.aes, iv) != 1) ret = -1;
  } else {
    ret = ticketKeys().forDecrypt(key_name, k);
    if (ret == 0) return 0;
    if (EVP_DecryptInit_ex(cctx, EVP_aes_256_cbc(), nullptr, k.aes, iv) != 1) ret = -1;
  }
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, k.hmac, sizeof(k.hmac)),
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
      OSSL_PARAM_construct_end()};
  if (ret > 0 && EVP_MAC_CTX_set_params(hctx, params) != 1) ret = -1;
  OPENSSL_cleanse(&k, sizeof(k));
  return ret;
}

// ---- Certificates ------------------------------------------------------------------------

// The names a certificate serves: SAN DNS entries, else the subject's CN; lowercase.
std::vector<std::string> namesOf(X509* x) {
  std::vector<std::string> names;
  auto* gens =
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(x, NID_subject_alt_name, nullptr, nullptr));
  if (gens != nullptr) {
    for (int i = 0; i < sk_GENERAL_NAME_num(gens); ++i) {
      const GENERAL_NAME* g = sk_GENERAL_NAME_value(gens, i);
      if (g->type != GEN_DNS) continue;
      const ASN1_STRING* s = g->d.dNSName;
      names.push_back(lower({reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                             static_cast<size_t>(ASN1_STRING_length(s))}));
    }
    GENERAL_NAMES_free(gens);
  }
  if (!names.empty()) return names;
  X509_NAME* subject = X509_get_subject_name(x);
  int i = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
  if (i >= 0) {
    unsigned char* utf8 = nullptr;
    int n = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, i)));
    if (n >= 0) names.push_back(lower({reinterpret_cast<char*>(utf8), static_cast<size_t>(n)}));
    OPENSSL_free(utf8);
  }
  return names;
}

// SSL_CTX ex_data slot of a ClientContext's session cache: freed with the SSL_CTX, i.e.
// after the last connection made with it (a pooled connection may outlive its context).
struct SessionCache {
  std::mutex mu;
  SSL_SESSION* session = nullptr;  // guarded by mu
  std::string sni;                 // sessions are kept only for this name
};

void freeSessionCache(void*, void* ptr, CRYPTO_EX_DATA*, int, long, void*) {
  auto* cache = static_cast<SessionCache*>(ptr);
  if (cache == nullptr) return;
  if (cache->session != nullptr) SSL_SESSION_free(cache->session);
  delete cache;
}

int sessionCacheIndex() {
  static const int index =
      SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, &freeSessionCache);
  return index;
}

}  // namespace

std::string takeOpensslError(std::string_view fallback) {
  unsigned long e = ERR_get_error();  // the earliest: usually the most specific
  std::string out;
  if (e != 0) {
    const char* reason = ERR_reason_error_string(e);
    if (reason != nullptr) {
      out = reason;
    } else {
      char buf[256];
      ERR_error_string_n(e, buf, sizeof(buf));
      out = buf;
    }
  } else {
    out = std::string(fallback);
  }
  ERR_clear_error();
  return out;
}

void rotateTicketKeys() {
  ticketKeys().rotate();
}

// ---- ServerContext ----------------------------------------------------------------------

Result<std::unique_ptr<ServerContext>> ServerContext::create(const TlsBindConfig& cfg) {
  std::unique_ptr<ServerContext> c(new ServerContext());
  if (Status st = c->load(cfg); !st.ok()) return st;
  return c;
}

ServerContext::~ServerContext() {
  for (Cert& c : certs_) {
    X509_free(c.x509);
    EVP_PKEY_free(c.key);
    sk_X509_pop_free(c.chain, X509_free);
  }
  SSL_CTX_free(ctx_);
}

namespace {

// Loads one `{ cert, key }`: the leaf, its chain, and the key (in `cert` when `key` is
// empty). Errors: `cannot load certificate "x.pem": reason` / `cannot load key ...`.
Status loadCertFile(const TlsBindConfig::Cert& in, X509*& x509, STACK_OF(X509) * &chain,
                    EVP_PKEY*& key) {
  auto certError = [&](const std::string& why) {
    return Status::error(fmt::format("cannot load certificate \"{}\": {}", in.cert, why));
  };
  auto bio = openFile(in.cert);
  if (!bio.ok()) return certError(bio.message());
  x509 = PEM_read_bio_X509_AUX(bio->get(), nullptr, &noPassword, nullptr);
  if (x509 == nullptr) return certError(takeOpensslError("no certificate in it"));
  chain = sk_X509_new_null();
  while (X509* ca = PEM_read_bio_X509(bio->get(), nullptr, &noPassword, nullptr))
    sk_X509_push(chain, ca);
  // The chain ends at the end of the file ("no start line"); anything else is an error.
  unsigned long e = ERR_peek_last_error();
  if (e != 0 && !(ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE))
    return certError(takeOpensslError("bad certificate chain"));
  ERR_clear_error();

  const std::string& key_file = in.key.empty() ? in.cert : in.key;
  auto kbio = openFile(key_file);
  if (!kbio.ok())
    return Status::error(fmt::format("cannot load key \"{}\": {}", key_file, kbio.message()));
  key = PEM_read_bio_PrivateKey(kbio->get(), nullptr, &noPassword, nullptr);
  if (key == nullptr) {
    std::string why = takeOpensslError("no private key in it");
    if (in.key.empty())
      return certError("no private key in it (" + why + "); put it in the file or give key");
    return Status::error(fmt::format("cannot load key \"{}\": {}", key_file, why));
  }
  if (X509_check_private_key(x509, key) != 1) {
    ERR_clear_error();
    return certError(fmt::format("the key \"{}\" does not match the certificate", key_file));
  }
  return Status();
}

}  // namespace

Status ServerContext::load(const TlsBindConfig& cfg) {
  ERR_clear_error();
  ctx_ = SSL_CTX_new(TLS_server_method());
  if (ctx_ == nullptr) return Status::error(takeOpensslError("cannot create a TLS context"));
  SSL_CTX_set_mode(ctx_, SSL_MODE_RELEASE_BUFFERS);
  // No renegotiation: client-initiated renegotiation is a cheap CPU attack on servers.
  SSL_CTX_set_options(ctx_, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  SSL_CTX_set_default_passwd_cb(ctx_, &noPassword);
  static const unsigned char kSidCtx[] = "crescent";
  SSL_CTX_set_session_id_context(ctx_, kSidCtx, sizeof(kSidCtx) - 1);
  if (int v = protoVersion(cfg.min_version); v != 0) SSL_CTX_set_min_proto_version(ctx_, v);
  if (!cfg.ciphers.empty() && SSL_CTX_set_cipher_list(ctx_, cfg.ciphers.c_str()) != 1)
    return Status::error(fmt::format("invalid ciphers \"{}\": {}", cfg.ciphers,
                                     takeOpensslError("no cipher matches")));
  if (!cfg.ciphersuites.empty() && SSL_CTX_set_ciphersuites(ctx_, cfg.ciphersuites.c_str()) != 1)
    return Status::error(fmt::format("invalid ciphersuites \"{}\": {}", cfg.ciphersuites,
                                     takeOpensslError("no suite matches")));

  for (const TlsBindConfig::Cert& in : cfg.certs) {
    certs_.emplace_back();
    Cert& c = certs_.back();
    if (Status st = loadCertFile(in, c.x509, c.chain, c.key); !st.ok()) return st;
    if (hasExpired(c.x509))  // it would only make every client fail later
      return Status::error(fmt::format("certificate \"{}\" expired on {}", in.cert,
                                       isoTime(X509_get0_notAfter(c.x509))));
    c.names = namesOf(c.x509);
    c.summary = summarize(c.x509);
    for (const std::string& n : c.names) {
      if (n.size() > 2 && n.compare(0, 2, "*.") == 0)
        wildcard_.emplace(n.substr(2), certs_.size() - 1);  // the first certificate wins
      else
        exact_.emplace(n, certs_.size() - 1);
    }
  }
  if (certs_.empty()) return Status::error("no certificate");
  const Cert& def = certs_.front();
  if (SSL_CTX_use_cert_and_key(ctx_, def.x509, def.key, def.chain, 1) != 1)
    return Status::error(fmt::format("cannot load certificate \"{}\": {}", cfg.certs[0].cert,
                                     takeOpensslError("refused by OpenSSL")));
  SSL_CTX_set_tlsext_servername_callback(ctx_, &ServerContext::onServerName);
  SSL_CTX_set_tlsext_servername_arg(ctx_, this);

  auto alpn = alpnWire(cfg.alpn);
  if (!alpn.ok()) return alpn.status();
  alpn_ = std::move(*alpn);
  if (!alpn_.empty()) SSL_CTX_set_alpn_select_cb(ctx_, &ServerContext::onAlpn, this);

  if (Status st = setupClientVerify(ctx_, cfg); !st.ok()) return st;

  if (cfg.tickets) {
    SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx_, &onTicketKey);
  } else {
    SSL_CTX_set_options(ctx_, SSL_OP_NO_TICKET);
  }
  return Status();
}

size_t ServerContext::certFor(std::string_view server_name) const {
  std::string name = lower(server_name);
  if (!name.empty() && name.back() == '.') name.pop_back();
  if (auto it = exact_.find(name); it != exact_.end()) return it->second;
  size_t dot = name.find('.');
  if (dot != std::string::npos && dot > 0) {
    if (auto it = wildcard_.find(name.substr(dot + 1)); it != wildcard_.end()) return it->second;
  }
  return 0;
}

// During the ClientHello: serve the certificate for the name asked, if it is not the
// default one already installed from the SSL_CTX.
int ServerContext::onServerName(SSL* ssl, int* alert, void* arg) {
  const auto* self = static_cast<const ServerContext*>(arg);
  const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  if (name == nullptr) return SSL_TLSEXT_ERR_NOACK;  // no SNI: the default certificate
  size_t i = self->certFor(name);
  if (i != 0) {
    const Cert& c = self->certs_[i];
    SSL_certs_clear(ssl);  // else a default of another key type could still be chosen
    if (SSL_use_cert_and_key(ssl, c.x509, c.key, c.chain, 1) != 1) {
      *alert = SSL_AD_INTERNAL_ERROR;
      return SSL_TLSEXT_ERR_ALERT_FATAL;
    }
  }
  return SSL_TLSEXT_ERR_OK;
}

// The bind's first protocol that the client offers; none in common: no ALPN (NOACK), the
// handshake goes on.
int ServerContext::onAlpn(SSL*, const unsigned char** out, unsigned char* outlen,
                          const unsigned char* in, unsigned int inlen, void* arg) {
  const auto* self = static_cast<const ServerContext*>(arg);
  const std::string& ours = self->alpn_;
  for (size_t i = 0; i < ours.size(); i += 1 + static_cast<unsigned char>(ours[i])) {
    std::string_view want(ours.data() + i + 1, static_cast<unsigned char>(ours[i]));
    for (unsigned int j = 0; j < inlen;) {
      unsigned int n = in[j];
      if (j + 1 + n > inlen) break;  // malformed offer: stop looking
      if (std::string_view(reinterpret_cast<const char*>(in + j + 1), n) == want) {
        *out = in + j + 1;
        *outlen = static_cast<unsigned char>(n);
        return SSL_TLSEXT_ERR_OK;
      }
      j += 1 + n;
    }
  }
  return SSL_TLSEXT_ERR_NOACK;
}

// ---- ClientContext ----------------------------------------------------------------------

Result<std::unique_ptr<ClientContext>> ClientContext::create(const TlsServerConfig& cfg,
                                                             const Address& server) {
  std::unique_ptr<ClientContext> c(new ClientContext());
  if (Status st = c->load(cfg, server); !st.ok()) return st;
  return c;
}

ClientContext::~ClientContext() {
  SSL_CTX_free(ctx_);  // the session cache goes with the last reference to it
}

Status ClientContext::load(const TlsServerConfig& cfg, const Address& server) {
  ERR_clear_error();
  ctx_ = SSL_CTX_new(TLS_client_method());
  if (ctx_ == nullptr) return Status::error(takeOpensslError("cannot create a TLS context"));
  SSL_CTX_set_mode(ctx_, SSL_MODE_RELEASE_BUFFERS);
  SSL_CTX_set_default_passwd_cb(ctx_, &noPassword);
  if (int v = protoVersion(cfg.min_version); v != 0) SSL_CTX_set_min_proto_version(ctx_, v);
  verify_ = cfg.verify;
  if (verify_) {
    SSL_CTX_set_verify(ctx_, SSL_VERIFY_PEER, nullptr);
    if (cfg.ca.empty()) {
      if (SSL_CTX_set_default_verify_paths(ctx_) != 1)
        return Status::error("cannot load the system CA store: " + takeOpensslError("?"));
    } else if (SSL_CTX_load_verify_locations(ctx_, cfg.ca.c_str(), nullptr) != 1) {
      std::string why = takeOpensslError("no certificate in it");
      if (::access(cfg.ca.c_str(), R_OK) != 0) why = std::strerror(errno);
      return Status::error(fmt::format("cannot load CA file \"{}\": {}", cfg.ca, why));
    }
  } else {
    SSL_CTX_set_verify(ctx_, SSL_VERIFY_NONE, nullptr);
  }
  auto alpn = alpnWire(cfg.alpn);
  if (!alpn.ok()) return alpn.status();
  if (!alpn->empty() &&
      SSL_CTX_set_alpn_protos(ctx_, reinterpret_cast<const unsigned char*>(alpn->data()),
                              static_cast<unsigned int>(alpn->size())) != 0)  // 0 is success
    return Status::error("invalid alpn: " + takeOpensslError("refused"));
  if (!cfg.cert.empty()) {
    if (SSL_CTX_use_certificate_chain_file(ctx_, cfg.cert.c_str()) != 1)
      return Status::error(fmt::format("cannot load certificate \"{}\": {}", cfg.cert,
                                       takeOpensslError("unreadable")));
    const std::string& key = cfg.key.empty() ? cfg.cert : cfg.key;
    if (SSL_CTX_use_PrivateKey_file(ctx_, key.c_str(), SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx_) != 1)
      return Status::error(
          fmt::format("cannot load key \"{}\": {}", key, takeOpensslError("unreadable")));
  }
  sni_ = cfg.sni;
  in6_addr ip{};
  if (inet_pton(AF_INET, sni_.c_str(), &ip) == 1 || inet_pton(AF_INET6, sni_.c_str(), &ip) == 1) {
    verify_ip_ = sni_;  // SNI carries host names only: verify it, do not send it
    sni_.clear();
  } else if (sni_.empty() && server.isIp()) {
    verify_ip_ = server.ip();
  }

  // Resumption: the newest session for our name, kept outside OpenSSL's internal store.
  auto* cache = new SessionCache();
  cache->sni = sni_;
  SSL_CTX_set_ex_data(ctx_, sessionCacheIndex(), cache);  // freed with ctx_
  SSL_CTX_set_session_cache_mode(ctx_, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
  SSL_CTX_sess_set_new_cb(ctx_, &ClientContext::onNewSession);
  return Status();
}

// A new session (TLS 1.3: a ticket after the handshake) for the name of the context: a
// copy is kept, replacing the previous one. A copy, because OpenSSL marks a connection's
// own session not resumable when the connection is freed without close_notify, which is
// how most proxied connections end. Returns 0: OpenSSL keeps its reference.
int ClientContext::onNewSession(SSL* ssl, SSL_SESSION* session) {
  auto* cache =
      static_cast<SessionCache*>(SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), sessionCacheIndex()));
  const char* sent = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  if (cache == nullptr || std::string_view(sent != nullptr ? sent : "") != cache->sni) return 0;
  SSL_SESSION* copy = SSL_SESSION_dup(session);
  if (copy == nullptr) return 0;
  std::lock_guard<std::mutex> lock(cache->mu);
  if (cache->session != nullptr) SSL_SESSION_free(cache->session);
  cache->session = copy;
  return 0;
}

void ClientContext::offerSession(SSL* ssl) const {
  auto* cache = static_cast<SessionCache*>(SSL_CTX_get_ex_data(ctx_, sessionCacheIndex()));
  if (cache == nullptr) return;
  SSL_SESSION* copy = nullptr;
  {
    std::lock_guard<std::mutex> lock(cache->mu);
    if (cache->session == nullptr || SSL_SESSION_is_resumable(cache->session) != 1) return;
    // A copy: OpenSSL spends a TLS 1.3 session once used, and the next connection, maybe
    // on another worker at the same moment, wants it too (as HAProxy reuses its own).
    copy = SSL_SESSION_dup(cache->session);
  }
  if (copy == nullptr) return;
  SSL_set_session(ssl, copy);  // takes its own reference
  SSL_SESSION_free(copy);
}

// ---- Contexts ---------------------------------------------------------------------------

const ServerContext* Contexts::bind(size_t frontend, size_t bind) const {
  if (frontend >= binds_.size() || bind >= binds_[frontend].size()) return nullptr;
  return binds_[frontend][bind].get();
}

const ClientContext* Contexts::server(size_t backend, size_t server) const {
  if (backend >= servers_.size() || server >= servers_[backend].size()) return nullptr;
  return servers_[backend][server].get();
}

Result<std::shared_ptr<const Contexts>> buildContexts(const Config& config) {
  auto out = std::make_shared<Contexts>();
  out->binds_.resize(config.frontends.size());
  for (size_t i = 0; i < config.frontends.size(); ++i) {
    const FrontendConfig& fe = config.frontends[i];
    out->binds_[i].resize(fe.binds.size());
    for (size_t j = 0; j < fe.binds.size(); ++j) {
      const BindConfig& b = fe.binds[j];
      if (!b.tls.enabled()) continue;
      auto c = ServerContext::create(b.tls);
      if (!c.ok())
        return Status::error(fmt::format("{}:{}: frontend \"{}\": bind: {}", config.path, b.line,
                                         fe.name, c.message()));
      out->binds_[i][j] = std::move(*c);
    }
  }
  out->servers_.resize(config.backends.size());
  for (size_t i = 0; i < config.backends.size(); ++i) {
    const BackendConfig& be = config.backends[i];
    out->servers_[i].resize(be.servers.size());
    for (size_t j = 0; j < be.servers.size(); ++j) {
      const ServerConfig& s = be.servers[j];
      if (!s.tls.enabled) continue;
      auto c = ClientContext::create(s.tls, s.address);
      if (!c.ok())
        return Status::error(fmt::format("{}:{}: backend \"{}\": server \"{}\": {}", config.path,
                                         s.line, be.name, s.name, c.message()));
      out->servers_[i][j] = std::move(*c);
    }
  }
  return std::shared_ptr<const Contexts>(std::move(out));
}

}  // namespace crescent::core::tls
