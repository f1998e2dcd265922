#pragma once

#include <uv.h>

#include <memory>
#include <vector>

#include "core/base/status.h"
#include "core/net/address.h"
#include "core/net/event_loop.h"
#include "core/net/stream.h"
#include "core/net/timer.h"

namespace crescent::core {

/// Opens a listening socket for `addr` (non-blocking, close-on-exec, SO_REUSEADDR, and
/// SO_REUSEPORT so that a second process can bind during a binary upgrade). A stale UNIX
/// socket file (nobody accepting on it) is removed first. Returns the fd (the caller
/// owns it) or an error naming the address and errno text.
Result<int> openListenSocket(const Address& addr, int backlog = 1024);

/// The address a socket is bound to (resolves port 0 to the port the kernel chose).
Address socketLocalAddress(int fd);

class Listener;

/// Receives a Listener's events, on the loop thread. A handler may release its
/// ListenerPtr from inside any of them (the memory stays until the close callback).
class ListenerHandler {
 public:
  virtual ~ListenerHandler() = default;
  /// A connection was taken off the socket: call accept() now to get it as a stream, or
  /// leave it (hold(), or just return): the listener then keeps it and stops polling, so
  /// the connections behind it wait in the kernel's queue, until accept() takes it
  /// (maxconn: clients wait, they are not refused).
  virtual void onListenerPending(Listener& l) = 0;
  /// accept(2) failed for want of a resource (UV_EMFILE, UV_ENFILE, UV_ENOBUFS,
  /// UV_ENOMEM): the listener paused itself; it polls again after kShortageRetryMs, or
  /// at resume(), whichever comes first. The refused connection waits in the kernel's
  /// queue: nothing is reset.
  virtual void onListenerShortage(Listener& l, int uv_error) {}
  /// The socket can no longer accept (UV_EINVAL: shut down, UV_EBADF, UV_ENOTSOCK,
  /// UV_ENOTSUP (EOPNOTSUPP), or an error polling it): the listener closed itself and calls
  /// nothing more. The owner still releases its ListenerPtr.
  virtual void onListenerClosed(Listener& l, int uv_error) {}
};

/// A worker's accepting handle over a shared listening socket (DESIGN §2: one socket per
/// bind, opened once, each worker polls its own dup).
///
/// It polls the socket (uv_poll_t) and calls accept4() itself, rather than uv_listen():
/// libuv's accept loop answers EMFILE by accepting and closing every queued connection
/// (its "EMFILE trick"), which resets the very clients that maxconn promised to queue,
/// and retries other errors at once. Here, per accept4() (errno as a libuv error):
///  - a connection: offered to onListenerPending;
///  - EAGAIN: none left, polling goes on;
///  - a shortage (EMFILE, ENFILE, ENOBUFS, ENOMEM): polling stops for kShortageRetryMs
///    or until resume(), and onListenerShortage says so (accept(2), "ERRORS");
///  - the socket is dead (EINVAL, EBADF, ENOTSOCK, EOPNOTSUPP): the handle closes and
///    onListenerClosed says so;
///  - anything else concerns that one connection (ECONNABORTED, EPROTO, EPERM, ENETDOWN,
///    ENOPROTOOPT, EHOSTDOWN, ENONET, EHOSTUNREACH, ENETUNREACH, ETIMEDOUT, ...; Linux
///    passes pending network errors of the new socket up through accept): it is
///    counted (skipped()) and accepting goes on.
/// Each accept first reserves a placeholder fd, released on the next loop turn, so that a
/// connection is taken only while an fd is left for its server connection: under a
/// shortage the pause comes while the sessions already accepted can still connect.
/// One readiness event accepts at most kMaxAcceptsPerEvent connections, so that other
/// workers polling the same socket, and this worker's sessions, get their turn.
///
/// Owned through ListenerPtr (deleter closes; the object frees itself in its close cb,
/// or in the deleter when its handle closed already). The fd is closed with the handle.
class Listener {
 public:
  struct Closer {
    void operator()(Listener* l) const { l->release(); }
  };
  static constexpr uint64_t kShortageRetryMs = 100;
  static constexpr int kMaxAcceptsPerEvent = 64;

  /// Takes ownership of `fd` (a dup of the listening socket, closed on failure too) and
  /// starts polling it. `handler` must outlive the listener's handle. Errors: libuv's text.
  static Result<std::unique_ptr<Listener, Closer>> open(EventLoop& loop, int fd, bool unix_socket,
                                                        ListenerHandler& handler);

  /// The connection being offered (or held) as a new stream (non-blocking, close-on-exec);
  /// null when there is none or libuv cannot take the fd. Polling goes on after a held
  /// connection is taken. Never calls the handler.
  StreamPtr accept();
  /// Keeps the connection being offered and stops polling, until accept() takes it.
  void hold();
  /// Polls again after a shortage pause (before kShortageRetryMs); the next connection is
  /// offered on a later loop turn. No effect on a closed or held listener.
  void resume();
  /// True while a connection is held (hold(), or not taken by onListenerPending).
  bool held() const { return held_; }
  /// True while paused for a shortage.
  bool shortPaused() const { return short_; }
  /// True once the handle closed or is closing (dead socket, or released).
  bool closed() const { return closing_; }
  /// True while the socket is still a listening one (SO_ACCEPTCONN): false once it was
  /// shut down (a reload that removed the bind) or the listener closed.
  bool listening() const;
  bool unixSocket() const { return unix_; }
  /// The call that takes a connection off the socket: accept4(fd, nullptr, nullptr,
  /// SOCK_NONBLOCK | SOCK_CLOEXEC) unless replaced; returns the new fd, or -1 with errno
  /// set. Replaced by tests to produce the errors a kernel gives rarely (EPROTO, EPERM).
  using AcceptCall = int (*)(int listen_fd);
  void setAcceptCall(AcceptCall call) { accept_call_ = call; }
  /// Accepts refused for a shortage, and per-connection errors skipped, since open().
  uint64_t shortages() const { return shortages_; }
  uint64_t skipped() const { return skipped_; }

 private:
  // Closes the handle and the fd (idempotent); memory goes in onCloseCb once released.
  void close();
  // The owner lets go (ListenerPtr's deleter).
  void release();
  void updatePoll();
  // Takes the next connection off the socket into pending_fd_; false when there is none
  // (or a shortage paused, or the socket died).
  bool takeOne();
  void keepPlaceholder(int fd);
  void releasePlaceholders();
  static void onReleaseCb(void* ctx);
  void shortage(int uv_error);
  void dead(int uv_error);
  Listener(EventLoop& loop, int fd, bool unix_socket, ListenerHandler& handler);
  ~Listener() = default;
  static void onPollCb(uv_poll_t* p, int status, int events);
  static void onRetryCb(void* ctx);
  static void onCloseCb(uv_handle_t* h);

  uv_poll_t poll_{};
  EventLoop& loop_;
  int fd_;
  bool unix_;
  ListenerHandler& handler_;
  TimerPtr retry_;                 // the shortage pause; made on the first shortage
  TimerPtr release_;               // closes placeholders_ on the next loop turn
  std::vector<int> placeholders_;  // one fd per connection just accepted (takeOne())
  AcceptCall accept_call_;
  int pending_fd_ = -1;  // the connection offered or held; -1: none
  uint64_t shortages_ = 0;
  uint64_t skipped_ = 0;
  bool polling_ = false;
  bool held_ = false;
  bool short_ = false;
  bool closing_ = false;
  bool closed_ = false;  // the close callback ran
  bool owned_ = true;    // a ListenerPtr still holds it
};

using ListenerPtr = std::unique_ptr<Listener, Listener::Closer>;

}  // namespace crescent::core
