#pragma once

// Small I/O helpers shared by the health checks and the agent checks (checker thread).

#include <string>

namespace crescent::core {

class Stream;

/// The text of a libuv error: strerror's for errno values ("Connection refused", as
/// HAProxy logs it), libuv's own for the rest (UV_EOF, getaddrinfo errors).
std::string checkErrorText(int uv_error);

/// Reads and discards the input the peer sent and the check did not read, so that the
/// close that follows sends FIN: a TCP socket closed with unread input sends RST instead.
/// Call just before closing `s`. Bounded, never blocks.
void drainCheckInput(Stream& s);

}  // namespace crescent::core
