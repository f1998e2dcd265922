#pragma once

#include <string>
#include <vector>

#include "core/base/status.h"
#include "core/runtime/runtime_api.h"

namespace crescent::core {

/// Client side of the runtime API (protocol in runtime_api.h): blocking, no libuv, for the
/// CLI before or without a loop. Each call opens one connection, sends one command,
/// half-closes and reads until the server closes. `timeout_ms` bounds the whole call
/// (connect included); 0 or less: no bound.

/// Sends `command` + "\n" and returns the reply without its terminating empty line: the
/// reply's lines each end in "\n" ("" for an empty reply). An error reply ("error: ...",
/// "Success=0", see isErrorReply()) is a successful call.
/// Errors (the call got no complete reply), all starting "runtime socket PATH: ":
/// "connect: <strerror>", "connect: timed out after N ms", "no complete reply within N ms",
/// "connection closed before the end of the reply", and refusals of `command` (empty, or
/// holding a newline). File descriptors the server might send are closed.
Result<std::string> runtimeCommand(const std::string& socket_path, const std::string& command,
                                   int timeout_ms = 30000);

/// Asks `_getsocks` and receives the listening sockets (binary upgrade, `crescent -x SOCK`),
/// in the order the server listed them. The caller owns the returned fds; they are
/// close-on-exec. On any error (runtimeCommand's, an error reply such as "runtime socket
/// PATH: error: _getsocks: expose_fd_listeners is not enabled on this runtime socket", a
/// malformed reply, fewer or more fds than announced) every received fd is closed.
Result<std::vector<PassedSocket>> fetchListeners(const std::string& socket_path,
                                                 int timeout_ms = 10000);

/// `crescent ctl -s SOCK [-t MS] CMD [ARGS...]` and `crescent reload -s SOCK [-t MS]`:
/// argv starts at the subcommand ("ctl"/"reload"). ctl joins the remaining args with
/// spaces as the command; without one it sends each non-empty line of stdin in turn (one
/// connection each). reload sends "reload" and succeeds only on a "Success=1" reply.
/// Replies go to stdout, error replies and other errors to stderr; a refused reload's
/// "Success=0" reply goes to both (scripts read stdout). Returns the exit code:
/// 0 on success, 1 when a reply is an error, 2 on a usage error or when no reply came
/// (cannot connect, timeout).
int ctlMain(int argc, char** argv);

}  // namespace crescent::core
