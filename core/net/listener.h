#pragma once

#include <uv.h>

#include <memory>

#include "core/base/status.h"
#include "core/net/address.h"
#include "core/net/event_loop.h"
#include "core/net/stream.h"

namespace crescent::core {

/// Opens a listening socket for `addr` (non-blocking, close-on-exec, SO_REUSEADDR, and
/// SO_REUSEPORT so that a second process can bind during a binary upgrade). A stale UNIX
/// socket file (nobody accepting on it) is removed first. Returns the fd (the caller
/// owns it) or an error naming the address and errno text.
Result<int> openListenSocket(const Address& addr, int backlog = 1024);

/// The address a socket is bound to (resolves port 0 to the port the kernel chose).
Address socketLocalAddress(int fd);

/// A worker's accepting handle over a shared listening socket (DESIGN §2: one socket per
/// bind, opened once, each worker polls its own dup). Reports pending connections to a
/// callback, which either accepts now (acceptInto) or leaves the connection in the
/// kernel's queue: libuv then stops polling this socket until resume() accepts it, which
/// is how maxconn makes clients wait instead of being refused.
///
/// Owned through ListenerPtr (deleter closes; the object frees itself in its close cb,
/// or in the deleter when its handle closed already). A socket that can no longer accept
/// (accept fails with anything but a resource shortage, e.g. EINVAL after a reload shut a
/// removed bind down) closes the handle at once: libuv would otherwise retry the accept
/// in a loop.
class Listener {
 public:
  using OnPending = void (*)(void* ctx, Listener& l);
  struct Closer {
    void operator()(Listener* l) const { l->release(); }
  };

  /// Takes ownership of `fd` (a dup of the listening socket). Errors: libuv's text.
  static Result<std::unique_ptr<Listener, Closer>> open(EventLoop& loop, int fd, bool unix_socket,
                                                        OnPending cb, void* ctx);

  /// Accepts the pending connection into a new stream; null when it failed.
  StreamPtr accept();
  /// True while a connection waits because the callback did not accept it.
  bool paused() const { return paused_; }
  void setPaused() { paused_ = true; }
  bool unixSocket() const { return unix_; }

 private:
  // Closes the handle (idempotent); memory goes in onCloseCb once the owner released it.
  void close();
  // The owner lets go (ListenerPtr's deleter).
  void release();
  Listener(EventLoop& loop, bool unix_socket, OnPending cb, void* ctx);
  ~Listener() = default;
  static void onConnectionCb(uv_stream_t* s, int status);
  static void onCloseCb(uv_handle_t* h);

  union {
    uv_tcp_t tcp;
    uv_pipe_t pipe;
  } h_;
  EventLoop& loop_;
  bool unix_;
  OnPending cb_;
  void* ctx_;
  bool paused_ = false;
  bool closing_ = false;
  bool closed_ = false;  // the close callback ran
  bool owned_ = true;    // a ListenerPtr still holds it
};

using ListenerPtr = std::unique_ptr<Listener, Listener::Closer>;

}  // namespace crescent::core
