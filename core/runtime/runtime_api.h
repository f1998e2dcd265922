#pragma once

#include <sys/types.h>
#include <uv.h>

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "core/base/status.h"

namespace crescent::core {

/// One listening socket handed to an upgrading process. `key` identifies the bind
/// (the caller's choice, e.g. "tcp:127.0.0.1:8080" or "unix:/run/x.sock"; any bytes, even
/// empty), `fd` the socket.
struct PassedSocket {
  std::string key;
  int fd = -1;
};

struct RuntimeApiOptions {
  std::string path;                  ///< filesystem path of the UNIX socket (no abstract names)
  int mode = 0600;                   ///< permissions of the socket file
  bool expose_fd_listeners = false;  ///< allow `_getsocks` (binary upgrade)
  /// A client connection that neither sends a byte nor takes a byte of its reply for this
  /// long (ms) is closed; 0: never. A Handler running does not count as idle.
  int idle_timeout_ms = 60000;
  /// Connections served at once; one more is told "error: too many connections ..." and
  /// closed.
  int max_connections = 100;
};

/// The runtime API's wire protocol (DESIGN §8), line based like HAProxy's stats socket:
///
/// - The client sends command lines ending in "\n" ("\r\n" accepted). Each non-empty line
///   gets one reply, in order; several commands may share a connection. The client may
///   half-close after its last command: pending replies are sent, then the server closes.
/// - A reply is the Handler's text with every line ending in "\n", followed by one empty
///   line: "line1\nline2\n\n". An empty reply is just "\n". Because an empty line ends a
///   reply, empty lines inside a Handler's text are removed.
/// - A line longer than kRuntimeApiMaxLine bytes (not counting "\r\n") is answered with
///   "error: command line too long (max 65536 bytes)" and the connection is closed. A line
///   holding a control byte (0x00-0x1f but \t, or 0x7f) is answered with
///   "error: malformed command line"; the connection stays.
/// - A reply is an error when its first line starts with "error: " or is "Success=0".
///
/// `_getsocks` (binary upgrade, only with expose_fd_listeners) is answered by the transport:
///
///   "_getsocks v1 <N>\n"            N: number of sockets
///   "key <escaped key>\n"  x N      in the order of the fds; escapeSocketKey()
///   "fds <K>\n"            ...      each such line is sent by one sendmsg(2) whose
///                                   SCM_RIGHTS carries the next K fds (1 <= K <= 200);
///                                   the K's add up to N
///   "\n"                            end of the reply
///
/// Both ends rely on the kernel keeping fds in stream order and never merging the fds of
/// two sendmsg calls into one recvmsg; the receiver collects fds in arrival order and
/// checks the count. Nothing else is written while a `_getsocks` reply is sent.
inline constexpr size_t kRuntimeApiMaxLine = 65536;
/// File descriptors per sendmsg in a `_getsocks` reply (the kernel's SCM_MAX_FD is 253).
inline constexpr size_t kRuntimeApiFdsPerMessage = 200;

/// Escapes a socket key for one `_getsocks` line: '%', control bytes and 0x7f become %XX
/// (upper-case hex); everything else is kept.
std::string escapeSocketKey(std::string_view key);
/// The inverse of escapeSocketKey(); false on a malformed escape.
bool unescapeSocketKey(std::string_view text, std::string& key);
/// True when a reply (as runtimeCommand() returns it) is an error per the protocol.
bool isErrorReply(std::string_view reply);

/// The server side of the runtime API: a listening UNIX socket on the main thread's loop.
///
/// Lifetime: the libuv handles (the listening socket and one pipe + timer per client)
/// live in memory the handles own, freed in their uv_close callbacks, so this object may be
/// destroyed as soon as close() was called (the destructor calls it). The owner must then
/// let the loop run so those callbacks fire (uv_loop_close() fails until they did).
/// Loop-thread-only, like everything on `loop`. The process must ignore SIGPIPE (libuv
/// writes replies with write(2); a client leaving mid-reply must not kill the process).
///
/// Binary upgrade: the new process calls fetchListeners() on the old process's socket
/// first, then opens its own RuntimeApi on the same path, which takes the path over; the
/// old process's close() then leaves it alone.
class RuntimeApi {
 public:
  /// One command line (no trailing newline, \r stripped, never empty) -> the reply text.
  /// Called on the loop's thread; may take a while (a reload) — blocking the loop during
  /// it is accepted. May call close() or destroy the RuntimeApi; the connection that
  /// asked is then closed without sending the reply.
  using Handler = std::function<std::string(std::string_view line)>;
  /// The listening sockets to pass for `_getsocks`. The fds stay owned by the caller: they
  /// are sent with SCM_RIGHTS (the kernel duplicates them) and never closed here.
  using SocketLister = std::function<std::vector<PassedSocket>()>;

  /// Creates the socket at opt.path: binds "<path>.<pid>.tmp", chmods it to opt.mode,
  /// listens, then rename()s it over opt.path, so that a process replacing another's
  /// socket (binary upgrade) never leaves the path missing or with the wrong mode.
  /// Refuses a path that exists and is not a socket, and paths too long for sun_path
  /// (with the ".<pid>.tmp" suffix). Errors: "runtime socket PATH: <what>: <strerror>".
  /// When libuv refuses the socket (rare), its handle is already closing: run the loop
  /// before uv_loop_close() in that case too.
  static Result<std::unique_ptr<RuntimeApi>> open(uv_loop_t* loop, const RuntimeApiOptions& opt,
                                                  Handler handler, SocketLister lister);
  ~RuntimeApi();
  RuntimeApi(const RuntimeApi&) = delete;
  RuntimeApi& operator=(const RuntimeApi&) = delete;

  /// Stops listening and closes every client connection (pending replies are dropped).
  /// Unlinks the path only if it still names our socket (st_dev/st_ino taken at bind):
  /// after a binary upgrade the new process has replaced it. Idempotent; may be called
  /// from inside the Handler.
  void close();
  const std::string& path() const { return opt_.path; }
  /// Client connections currently open (for `show info` and tests).
  size_t connectionCount() const { return connections_.size(); }

 private:
  class Connection;
  struct ListenHandle;
  /// What connections call; shared so that a Handler destroying the RuntimeApi does not
  /// destroy the std::function running it.
  struct Callbacks {
    Handler handler;
    SocketLister lister;
    bool expose_fd_listeners = false;
  };

  RuntimeApi(uv_loop_t* loop, const RuntimeApiOptions& opt, Handler handler, SocketLister lister);
  Status bindAndListen();
  static void onConnectionCb(uv_stream_t* server, int status);
  void acceptOne();
  void forget(Connection* c) { connections_.erase(c); }

  uv_loop_t* loop_;
  RuntimeApiOptions opt_;
  std::shared_ptr<Callbacks> callbacks_;
  ListenHandle* listen_ = nullptr;               // owned by its handle: freed in its close callback
  std::unordered_set<Connection*> connections_;  // each owned by its handles
  dev_t dev_ = 0;
  ino_t ino_ = 0;
  bool bound_ = false;  // dev_/ino_ name our socket file
  bool closed_ = false;
};

}  // namespace crescent::core
