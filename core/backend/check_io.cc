#include "core/backend/check_io.h"

#include <sys/socket.h>
#include <uv.h>

#include <cerrno>
#include <cstring>

#include "core/net/stream.h"

namespace crescent::core {

std::string checkErrorText(int uv_error) {
  if (uv_error < 0 && uv_error > -3000) {
    char buf[128];
    return strerror_r(-uv_error, buf, sizeof(buf));
  }
  return uv_strerror(uv_error);
}

// On Linux MSG_TRUNC discards TCP input without copying it. Stops at the peer's FIN (0),
// when nothing more is there (EAGAIN) or on an error; bounded so that a peer that streams
// forever cannot hold the loop.
void drainCheckInput(Stream& s) {
  uv_os_fd_t fd = -1;
  if (uv_fileno(reinterpret_cast<uv_handle_t*>(s.uv()), &fd) != 0 || fd < 0) return;
  char scratch[4096];
  for (int i = 0; i < 64; ++i) {
    ssize_t n = s.kind() == Stream::Kind::kTcp
                    ? ::recv(fd, nullptr, 1 << 20, MSG_TRUNC | MSG_DONTWAIT)
                    : ::recv(fd, scratch, sizeof(scratch), MSG_DONTWAIT);
    if (n > 0 || (n < 0 && errno == EINTR)) continue;
    return;
  }
}

}  // namespace crescent::core
