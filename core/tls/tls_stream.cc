#include "core/tls/tls_stream.h"

#include "core/tls/tls_context.h"

namespace crescent::core::tls {

int startTls(Stream& s, const ServerContext& ctx, Buffer already_read) {
  if (s.filter() != nullptr || s.closing()) return UV_EINVAL;
  std::unique_ptr<Engine> e = Engine::accept(ctx);
  if (e == nullptr) return UV_ENOMEM;
  return s.startFilter(std::move(e), std::move(already_read));
}

int startTls(Stream& s, const ClientContext& ctx, std::string_view sni) {
  if (s.filter() != nullptr || s.closing()) return UV_EINVAL;
  std::unique_ptr<Engine> e = Engine::connect(ctx, sni);
  if (e == nullptr) return UV_ENOMEM;
  return s.startFilter(std::move(e));
}

const Info* tlsInfo(const Stream& s) {
  // Only core/tls installs filters today; the cast still checks, for the day another does.
  const auto* e = dynamic_cast<const Engine*>(s.filter());
  return e != nullptr && e->handshakeDone() ? &e->info() : nullptr;
}

}  // namespace crescent::core::tls
