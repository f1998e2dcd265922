#pragma once

// The pages crescent serves for the responses it makes itself (400, 403, 408, 413, 500,
// 502, 503, 504...): HAProxy's `errorfile` and a Lua `error_page` function, looked up
// backend first, then frontend, then the defaults they were declared under.

#include <initializer_list>
#include <string_view>

#include "core/config/config.h"
#include "core/session/hooks.h"

namespace crescent::core {

/// Looks `status` up in `levels` (in order; null entries are skipped): at each level the
/// errorfile for the status, then its error_page hook run on `txn` (skipped when `txn` is
/// null; a hook id already tried at an earlier level is not run twice). A hook that raises
/// or returns something invalid is logged (naming `where`, e.g. `frontend "fe"`) and
/// passes on. True with `out` filled when a level gave a page; false: crescent's own page.
/// Runs Lua synchronously (an error_page never waits): not from inside a running hook.
bool resolveErrorPage(std::initializer_list<const ErrorPages*> levels, int status, ScriptTxn* txn,
                      bool with_txn, std::string_view where, ErrorPageResult& out);

/// crescent's own page for `status`: a small HTML body.
std::string defaultErrorBody(int status);

}  // namespace crescent::core
