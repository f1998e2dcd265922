#include "core/tls/client_verify.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <memory>

#include "core/tls/tls_context.h"

namespace crescent::core::tls {
namespace {

// The whole file, or an error naming why (strerror, "empty").
Result<std::string> readFile(const std::string& path) {
  errno = 0;
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!f) return Status::error(std::strerror(errno != 0 ? errno : ENOENT));
  std::string out;
  char buf[16384];
  size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof(buf), f.get())) > 0) {
    out.append(buf, n);
    if (out.size() > (64u << 20)) return Status::error("larger than 64 MiB");
  }
  if (std::ferror(f.get()) != 0) return Status::error(std::strerror(errno != 0 ? errno : EIO));
  return out;
}

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;

BioPtr memBio(const std::string& s) {
  return BioPtr(BIO_new_mem_buf(s.data(), static_cast<int>(s.size())));
}

// Every certificate of a PEM CA file goes into `store` and into the names announced to
// clients; an expired one is refused (it could only make clients fail later).
Status loadCaFile(const std::string& path, const std::string& pem, X509_STORE* store,
                  STACK_OF(X509_NAME) * names) {
  auto fail = [&](const std::string& why) {
    return Status::error(fmt::format("cannot load CA file \"{}\": {}", path, why));
  };
  BioPtr bio = memBio(pem);
  if (!bio) return fail("out of memory");
  int count = 0;
  ERR_clear_error();
  while (X509* x = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
    std::unique_ptr<X509, void (*)(X509*)> own(x, &X509_free);
    ++count;
    if (hasExpired(x))
      return Status::error(fmt::format("CA file \"{}\": certificate \"{}\" expired on {}", path,
                                       rfc2253(X509_get_subject_name(x)),
                                       isoTime(X509_get0_notAfter(x))));
    if (X509_STORE_add_cert(store, x) != 1) return fail(takeOpensslError("refused by OpenSSL"));
    if (X509_NAME* n = X509_NAME_dup(X509_get_subject_name(x)); n != nullptr)
      if (sk_X509_NAME_push(names, n) <= 0) X509_NAME_free(n);
  }
  // The loop ends on "no start line" at the end of the file; anything else is a fault.
  unsigned long e = ERR_peek_last_error();
  bool clean_end = ERR_GET_REASON(e) == PEM_R_NO_START_LINE;
  std::string why = takeOpensslError("no certificate in it");
  if (count == 0) return fail(clean_end ? "no certificate in it" : why);
  if (e != 0 && !clean_end) return fail(why);
  return Status();
}

Status loadCrlFile(const std::string& path, const std::string& pem, X509_STORE* store) {
  auto fail = [&](const std::string& why) {
    return Status::error(fmt::format("cannot load CRL file \"{}\": {}", path, why));
  };
  BioPtr bio = memBio(pem);
  if (!bio) return fail("out of memory");
  int count = 0;
  ERR_clear_error();
  while (X509_CRL* c = PEM_read_bio_X509_CRL(bio.get(), nullptr, nullptr, nullptr)) {
    ++count;
    int ok = X509_STORE_add_crl(store, c);
    X509_CRL_free(c);
    if (ok != 1) return fail(takeOpensslError("refused by OpenSSL"));
  }
  unsigned long e = ERR_peek_last_error();
  bool clean_end = ERR_GET_REASON(e) == PEM_R_NO_START_LINE;
  std::string why = takeOpensslError("no CRL in it");
  if (count == 0) return fail(clean_end ? "no CRL in it" : why);
  if (e != 0 && !clean_end) return fail(why);
  return Status();
}

// SSL ex_data slot: the first verification error of the handshake (+1; 0: none yet).
int firstErrorIndex() {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

// verify = "optional": accept every chain, and keep the first error as the result so that
// Lua sees the reason that matters ("certificate has expired"), not a later consequence.
int acceptAnyChain(int ok, X509_STORE_CTX* store) {
  auto* ssl =
      static_cast<SSL*>(X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx()));
  if (ssl == nullptr) return 1;
  auto first = reinterpret_cast<intptr_t>(SSL_get_ex_data(ssl, firstErrorIndex()));
  if (ok == 0 && first == 0) {
    first = X509_STORE_CTX_get_error(store) + 1;
    SSL_set_ex_data(ssl, firstErrorIndex(), reinterpret_cast<void*>(first));
  }
  if (first != 0) X509_STORE_CTX_set_error(store, static_cast<int>(first - 1));
  return 1;
}

std::string hexOf(const unsigned char* p, size_t n) {
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * n);
  for (size_t i = 0; i < n; ++i) {
    out.push_back(kHex[p[i] >> 4]);
    out.push_back(kHex[p[i] & 15]);
  }
  return out;
}

int64_t unixTime(const ASN1_TIME* t) {
  std::tm tm{};
  if (t == nullptr || ASN1_TIME_to_tm(t, &tm) != 1) return 0;
  return static_cast<int64_t>(timegm(&tm));
}

std::string serialOf(X509* x) {
  BIGNUM* bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), nullptr);
  if (bn == nullptr) return "";
  char* h = BN_bn2hex(bn);
  std::string out = h != nullptr ? h : "";
  OPENSSL_free(h);
  BN_free(bn);
  return out;
}

std::string commonName(X509* x) {
  X509_NAME* subject = X509_get_subject_name(x);
  int i = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
  if (i < 0) return "";
  unsigned char* utf8 = nullptr;
  int n = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, i)));
  std::string out =
      n >= 0 ? std::string(reinterpret_cast<char*>(utf8), static_cast<size_t>(n)) : "";
  OPENSSL_free(utf8);
  return out;
}

}  // namespace

bool hasExpired(const X509* x) {
  return X509_cmp_current_time(X509_get0_notAfter(x)) < 0;
}

std::string isoTime(const ASN1_TIME* t) {
  std::tm tm{};
  if (t == nullptr || ASN1_TIME_to_tm(t, &tm) != 1) return "?";
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string rfc2253(const X509_NAME* name) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || X509_NAME_print_ex(bio.get(), name, 0, XN_FLAG_RFC2253) < 0) return "";
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  return n > 0 ? std::string(data, static_cast<size_t>(n)) : "";
}

Status setupClientVerify(SSL_CTX* ctx, const TlsBindConfig& cfg) {
  using V = TlsBindConfig::Verify;
  if (cfg.verify == V::kNone) return Status();
  if (cfg.ca.empty()) return Status::error("verify needs a CA file (ca = \"clients-ca.pem\")");
  auto ca = readFile(cfg.ca);
  if (!ca.ok())
    return Status::error(fmt::format("cannot load CA file \"{}\": {}", cfg.ca, ca.message()));
  X509_STORE* store = SSL_CTX_get_cert_store(ctx);
  STACK_OF(X509_NAME)* names = sk_X509_NAME_new_null();
  if (names == nullptr) return Status::error("out of memory");
  if (Status st = loadCaFile(cfg.ca, *ca, store, names); !st.ok()) {
    sk_X509_NAME_pop_free(names, X509_NAME_free);
    return st;
  }
  SSL_CTX_set_client_CA_list(ctx, names);  // takes ownership
  std::string crl;
  if (!cfg.crl.empty()) {
    auto c = readFile(cfg.crl);
    if (!c.ok())
      return Status::error(fmt::format("cannot load CRL file \"{}\": {}", cfg.crl, c.message()));
    if (Status st = loadCrlFile(cfg.crl, *c, store); !st.ok()) return st;
    X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK);  // the leaf; intermediates are not
    crl = std::move(*c);
  }
  if (cfg.verify_depth >= 0) SSL_CTX_set_verify_depth(ctx, cfg.verify_depth);
  if (cfg.verify == V::kRequired) {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  } else {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, &acceptAnyChain);
  }
  // A session is resumed only where it would have been verified the same way.
  unsigned char sid[EVP_MAX_MD_SIZE];
  unsigned int sid_len = 0;
  EVP_MD_CTX* md = EVP_MD_CTX_new();
  std::string mode =
      fmt::format("crescent mtls {} {}", static_cast<int>(cfg.verify), cfg.verify_depth);
  bool ok = md != nullptr && EVP_DigestInit_ex(md, EVP_sha256(), nullptr) == 1 &&
            EVP_DigestUpdate(md, mode.data(), mode.size()) == 1 &&
            EVP_DigestUpdate(md, ca->data(), ca->size()) == 1 &&
            EVP_DigestUpdate(md, crl.data(), crl.size()) == 1 &&
            EVP_DigestFinal_ex(md, sid, &sid_len) == 1;
  EVP_MD_CTX_free(md);
  if (!ok || SSL_CTX_set_session_id_context(ctx, sid, std::min(sid_len, 32u)) != 1)
    return Status::error("cannot set the session id context: " + takeOpensslError("?"));
  return Status();
}

std::optional<ClientCert> clientCertOf(SSL* ssl) {
  X509* x = SSL_get0_peer_certificate(ssl);
  if (x == nullptr) return std::nullopt;
  ClientCert c;
  c.verify_code = SSL_get_verify_result(ssl);
  c.verified = c.verify_code == X509_V_OK;
  if (!c.verified) c.error = X509_verify_cert_error_string(c.verify_code);
  c.subject = rfc2253(X509_get_subject_name(x));
  c.issuer = rfc2253(X509_get_issuer_name(x));
  c.cn = commonName(x);
  c.serial = serialOf(x);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int md_len = 0;
  if (X509_digest(x, EVP_sha256(), md, &md_len) == 1) c.sha256 = hexOf(md, md_len);
  c.not_before = unixTime(X509_get0_notBefore(x));
  c.not_after = unixTime(X509_get0_notAfter(x));
  return c;
}

CertSummary summarize(X509* x) {
  CertSummary s;
  s.subject = rfc2253(X509_get_subject_name(x));
  s.issuer = rfc2253(X509_get_issuer_name(x));
  s.not_after = isoTime(X509_get0_notAfter(x));
  auto* gens =
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(x, NID_subject_alt_name, nullptr, nullptr));
  for (int i = 0; gens != nullptr && i < sk_GENERAL_NAME_num(gens); ++i) {
    const GENERAL_NAME* g = sk_GENERAL_NAME_value(gens, i);
    if (g->type == GEN_DNS) {
      const ASN1_STRING* d = g->d.dNSName;
      s.sans.push_back("DNS:" + std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(d)),
                                            static_cast<size_t>(ASN1_STRING_length(d))));
    } else if (g->type == GEN_IPADD) {
      const ASN1_OCTET_STRING* ip = g->d.iPAddress;
      char buf[64] = "?";
      int fam = ASN1_STRING_length(ip) == 4 ? AF_INET : AF_INET6;
      if (ASN1_STRING_length(ip) == 4 || ASN1_STRING_length(ip) == 16)
        inet_ntop(fam, ASN1_STRING_get0_data(ip), buf, sizeof(buf));
      s.sans.push_back(std::string("IP:") + buf);
    }
  }
  GENERAL_NAMES_free(gens);
  ERR_clear_error();
  return s;
}

}  // namespace crescent::core::tls
