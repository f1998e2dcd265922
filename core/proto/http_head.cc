#include "core/proto/http_head.h"

#include <cstdint>
#include <cstring>

#include <algorithm>

namespace crescent::core {

bool equalsNoCase(std::string_view a, std::string_view b) {
  size_t n = a.size();
  if (n != b.size()) return false;
  const char* x = a.data();
  const char* y = b.data();
  // Eight bytes at a time: equal words, or words that differ only in bit 0x20 of bytes
  // that are letters in both (then they are equal ignoring case).
  constexpr uint64_t kCase = 0x2020202020202020ULL;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t u, v;
    std::memcpy(&u, x + i, 8);
    std::memcpy(&v, y + i, 8);
    uint64_t d = u ^ v;
    if (d == 0) continue;
    if ((d & ~kCase) != 0) return false;
    for (size_t k = i; k < i + 8; ++k) {
      unsigned char c = static_cast<unsigned char>(x[k]) | 0x20;
      if (x[k] != y[k] && (c < 'a' || c > 'z')) return false;
    }
  }
  for (; i < n; ++i) {
    unsigned char c = static_cast<unsigned char>(x[i]), d = static_cast<unsigned char>(y[i]);
    if (c == d) continue;
    if ((c ^ d) != 0x20) return false;
    c |= 0x20;
    if (c < 'a' || c > 'z') return false;
  }
  return true;
}

std::string_view HttpHead::path() const {
  std::string_view t = target;
  if (t == "*") return t;
  size_t scheme = t.find("://");
  if (!t.empty() && t[0] != '/' && scheme != std::string_view::npos) {
    size_t slash = t.find('/', scheme + 3);
    if (slash == std::string_view::npos) return "/";
    t = t.substr(slash);
  }
  size_t q = t.find('?');
  return q == std::string_view::npos ? t : t.substr(0, q);
}

std::string_view HttpHead::query() const {
  size_t q = target.find('?');
  if (q == std::string_view::npos) return {};
  std::string_view rest = target.substr(q + 1);
  size_t hash = rest.find('#');
  return hash == std::string_view::npos ? rest : rest.substr(0, hash);
}

const HeaderField* HttpHead::find(std::string_view name) const {
  for (const auto& h : headers)
    if (equalsNoCase(h.name, name)) return &h;
  return nullptr;
}

size_t HttpHead::count(std::string_view name) const {
  size_t n = 0;
  for (const auto& h : headers)
    if (equalsNoCase(h.name, name)) ++n;
  return n;
}

void HttpHead::set(std::string_view name, std::string_view value) {
  remove(name);
  add(name, value);
}

void HttpHead::add(std::string_view name, std::string_view value) {
  headers.push_back({own(name), own(value)});
}

size_t HttpHead::remove(std::string_view name) {
  size_t before = headers.size();
  headers.erase(std::remove_if(headers.begin(), headers.end(),
                               [&](const HeaderField& h) { return equalsNoCase(h.name, name); }),
                headers.end());
  return before - headers.size();
}

std::string_view HttpHead::own(std::string_view s) {
  storage_.emplace_front(s);
  return storage_.front();
}

void HttpHead::clear() {
  method = target = reason = {};
  status = 0;
  version_minor = 1;
  headers.clear();
  storage_.clear();
}

}  // namespace crescent::core
