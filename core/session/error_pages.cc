#include "core/session/error_pages.h"

#include <fmt/format.h>

#include <array>

#include "core/base/log.h"
#include "core/proto/http1.h"

namespace crescent::core {

bool resolveErrorPage(std::initializer_list<const ErrorPages*> levels, int status, ScriptTxn* txn,
                      bool with_txn, std::string_view where, ErrorPageResult& out) {
  std::array<int, 4> tried{};
  size_t n_tried = 0;
  for (const ErrorPages* pages : levels) {
    if (pages == nullptr) continue;
    if (auto it = pages->files.find(status); it != pages->files.end()) {
      const ErrorFile& f = it->second;
      out = ErrorPageResult();
      out.page = true;
      out.status = f.status;
      out.reason = f.reason;
      out.headers = f.headers;
      out.body = f.body;
      return true;
    }
    if (pages->hook <= 0 || txn == nullptr) continue;
    bool seen = false;
    for (size_t i = 0; i < n_tried; ++i) seen = seen || tried[i] == pages->hook;
    if (seen) continue;
    if (n_tried < tried.size()) tried[n_tried++] = pages->hook;
    out = ErrorPageResult();
    txn->errorPage(pages->hook, status, with_txn, out);
    if (!out.error.empty()) {
      logError("{}: error_page for {} failed: {}", where, status, out.error);
      continue;
    }
    if (out.page) return true;
  }
  return false;
}

std::string defaultErrorBody(int status) {
  return fmt::format("<html><body><h1>{} {}</h1></body></html>\n", status,
                     http1::reasonPhrase(status));
}

}  // namespace crescent::core
