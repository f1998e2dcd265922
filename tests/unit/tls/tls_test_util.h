// Test certificates made with the OpenSSL API in a temporary directory (no CLI needed),
// and a pump that moves bytes between two tls::Engine instances in memory.
#pragma once

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdlib.h>

#include <cstdio>
#include <filesystem>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "core/base/buffer.h"
#include "core/tls/tls_engine.h"

namespace crescent::core::tls::testing {

/// A temporary directory of PEM files, removed with the object.
class CertDir {
 public:
  CertDir() {
    char tmpl[] = "/tmp/crescent-tls-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
  }
  ~CertDir() {
    for (auto& k : keys_) EVP_PKEY_free(k.second);
    for (auto& c : certs_) X509_free(c.second);
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  std::string path(const std::string& name) const { return dir_ + "/" + name; }

  /// A self-signed CA named `name`; files name.crt / name.key.
  void makeCa(const std::string& name) { make(name, name, {}, "", true); }

  /// A leaf certificate signed by CA `ca` with subject CN `cn` and SAN entries such as
  /// "DNS:a.test" or "IP:127.0.0.1" (none: no SAN extension). Files name.crt, name.key
  /// and name.pem (certificate and key together).
  void makeLeaf(const std::string& name, const std::string& ca, const std::string& cn,
                const std::vector<std::string>& san) {
    make(name, cn, san, ca, false);
  }

  static std::string read(const std::string& path) {
    std::string out;
    FILE* f = std::fopen(path.c_str(), "r");
    if (f == nullptr) return out;
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) out.append(buf, n);
    std::fclose(f);
    return out;
  }

  /// Writes `text` to a file of the directory; returns its path.
  std::string write(const std::string& name, const std::string& text) {
    std::string p = path(name);
    FILE* f = std::fopen(p.c_str(), "w");
    std::fwrite(text.data(), 1, text.size(), f);
    std::fclose(f);
    return p;
  }

 private:
  void make(const std::string& name, const std::string& cn, const std::vector<std::string>& san,
            const std::string& ca, bool is_ca) {
    EVP_PKEY* key = EVP_EC_gen("P-256");
    ASSERT_NE(key, nullptr);
    X509* x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), static_cast<long>(++serial_ + 1000));
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_NAME* subject = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
    X509_set_pubkey(x, key);
    X509* issuer = is_ca ? x : certs_.at(ca);
    EVP_PKEY* issuer_key = is_ca ? key : keys_.at(ca);
    X509_set_issuer_name(x, X509_get_subject_name(issuer));
    X509V3_CTX v3;
    X509V3_set_ctx(&v3, issuer, x, nullptr, nullptr, 0);
    auto add = [&](int nid, const std::string& value) {
      X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &v3, nid, value.c_str());
      ASSERT_NE(ext, nullptr) << value;
      X509_add_ext(x, ext, -1);
      X509_EXTENSION_free(ext);
    };
    if (is_ca) {
      add(NID_basic_constraints, "critical,CA:TRUE");
      add(NID_key_usage, "critical,keyCertSign,cRLSign");
    } else {
      add(NID_basic_constraints, "CA:FALSE");
      add(NID_ext_key_usage, "serverAuth,clientAuth");
    }
    if (!san.empty()) {
      std::string v;
      for (const auto& s : san) v += (v.empty() ? "" : ",") + s;
      add(NID_subject_alt_name, v);
    }
    ASSERT_GT(X509_sign(x, issuer_key, EVP_sha256()), 0);
    std::string cert_pem = pem([&](BIO* b) { PEM_write_bio_X509(b, x); });
    std::string key_pem = pem(
        [&](BIO* b) { PEM_write_bio_PrivateKey(b, key, nullptr, nullptr, 0, nullptr, nullptr); });
    write(name + ".crt", cert_pem);
    write(name + ".key", key_pem);
    write(name + ".pem", cert_pem + key_pem);
    certs_[name] = x;
    keys_[name] = key;
  }

  template <class F>
  static std::string pem(F f) {
    BIO* b = BIO_new(BIO_s_mem());
    f(b);
    char* data = nullptr;
    long n = BIO_get_mem_data(b, &data);
    std::string out(data, static_cast<size_t>(n));
    BIO_free(b);
    return out;
  }

  std::string dir_;
  int serial_ = 0;
  std::map<std::string, X509*> certs_;
  std::map<std::string, EVP_PKEY*> keys_;
};

/// Concatenates buffers.
inline std::string join(std::vector<Buffer>& bufs) {
  std::string s;
  for (auto& b : bufs) s.append(b.view());
  bufs.clear();
  return s;
}

/// Splits `bytes` into buffers at random points (1..max_piece bytes each).
inline std::vector<Buffer> pieces(const std::string& bytes, std::mt19937& rng, size_t max_piece) {
  std::vector<Buffer> out;
  std::uniform_int_distribution<size_t> len(1, max_piece);
  size_t at = 0;
  while (at < bytes.size()) {
    size_t n = std::min(len(rng), bytes.size() - at);
    Buffer b = BufferPool::local().take();
    n = b.append(std::string_view(bytes).substr(at, n));
    at += n;
    out.push_back(std::move(b));
  }
  return out;
}

/// Moves one engine's output into the other's input, in one buffer or in random pieces.
inline void transfer(Engine& from, Engine& to, std::mt19937* rng = nullptr, size_t max_piece = 1) {
  std::vector<Buffer> out;
  from.takeOutput(out);
  if (rng == nullptr) {
    for (auto& b : out) to.input(std::move(b));
    return;
  }
  for (auto& b : pieces(join(out), *rng, max_piece)) to.input(std::move(b));
}

/// Runs both handshakes to their end (at most 20 round trips). True when both are done.
inline bool handshake(Engine& client, Engine& server) {
  for (int i = 0; i < 20; ++i) {
    auto c = client.handshake();
    transfer(client, server);
    auto s = server.handshake();
    transfer(server, client);
    if (c == StreamFilter::Progress::kFailed || s == StreamFilter::Progress::kFailed) return false;
    if (c == StreamFilter::Progress::kDone && s == StreamFilter::Progress::kDone) return true;
  }
  return false;
}

/// Reads every plaintext byte `e` can decode now.
inline std::string drain(Engine& e, StreamFilter::ReadResult* last = nullptr) {
  std::string got;
  for (;;) {
    Buffer b = BufferPool::local().take();
    auto r = e.read(b);
    if (r != StreamFilter::ReadResult::kData) {
      if (last != nullptr) *last = r;
      return got;
    }
    got.append(b.view());
  }
}

}  // namespace crescent::core::tls::testing
