#pragma once

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "core/base/status.h"

namespace crescent::core {

/// A socket address: IPv4, IPv6 or UNIX (path or Linux abstract namespace).
/// A plain value type; copying is cheap (sockaddr_storage).
class Address {
 public:
  enum class Family { kNone, kIpv4, kIpv6, kUnix };

  Address() = default;

  /// Parses a bind or server address as written in a config:
  ///   "1.2.3.4:80", ":8080" (all IPv4 interfaces), "*:8080", "[::1]:80", "[::]:80",
  ///   "localhost:80" (resolved only for the literal name localhost -> 127.0.0.1),
  ///   "unix:/run/x.sock", "unix:@name" (abstract namespace).
  /// Ports are 0..65535 (0 lets the kernel choose, useful for binds in tests) and are
  /// required for IP addresses. Errors name the reason, e.g. `port out of range`.
  static Result<Address> parse(std::string_view text);

  /// Builds from a kernel sockaddr (accept/getpeername results). len is its length.
  static Address fromSockaddr(const sockaddr* sa, socklen_t len);

  Family family() const { return family_; }
  bool isIp() const { return family_ == Family::kIpv4 || family_ == Family::kIpv6; }
  bool isUnix() const { return family_ == Family::kUnix; }
  const sockaddr* sockaddrPtr() const { return reinterpret_cast<const sockaddr*>(&ss_); }
  socklen_t sockaddrLen() const { return len_; }
  /// Port in host order; 0 for UNIX addresses.
  uint16_t port() const;
  void setPort(uint16_t port);
  /// For UNIX addresses: the path, with a leading '@' for the abstract namespace.
  std::string unixPath() const;

  /// "1.2.3.4", "::1", or the UNIX path ("unix" for an unnamed peer).
  std::string ip() const;
  /// "1.2.3.4:80", "[::1]:80", "unix:/path".
  std::string toString() const;

  bool operator==(const Address& o) const;

 private:
  Family family_ = Family::kNone;
  sockaddr_storage ss_{};
  socklen_t len_ = 0;
};

}  // namespace crescent::core
