#include "core/proto/http_head.h"

#include <algorithm>

namespace crescent::core {

bool equalsNoCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    unsigned char x = static_cast<unsigned char>(a[i]), y = static_cast<unsigned char>(b[i]);
    if (x >= 'A' && x <= 'Z') x += 32;
    if (y >= 'A' && y <= 'Z') y += 32;
    if (x != y) return false;
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
  storage_.emplace_back(s);
  return storage_.back();
}

void HttpHead::clear() {
  method = target = reason = {};
  status = 0;
  version_minor = 1;
  headers.clear();
  storage_.clear();
}

}  // namespace crescent::core
