#include "core/net/address.h"

#include <arpa/inet.h>

#include <charconv>
#include <cstring>

namespace crescent::core {
namespace {

Result<uint16_t> parsePort(std::string_view p, std::string_view whole) {
  if (p.empty()) return Status::error("missing port in address \"" + std::string(whole) + "\"");
  unsigned v = 0;
  auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), v);
  if (ec != std::errc() || end != p.data() + p.size())
    return Status::error("invalid port \"" + std::string(p) + "\" in address \"" +
                         std::string(whole) + "\"");
  if (v > 65535)
    return Status::error("invalid address \"" + std::string(whole) + "\" (port out of range)");
  return static_cast<uint16_t>(v);
}

}  // namespace

Result<Address> Address::parse(std::string_view text) {
  Address a;
  if (text.substr(0, 5) == "unix:") {
    std::string_view path = text.substr(5);
    if (path.empty())
      return Status::error("empty UNIX socket path in \"" + std::string(text) + "\"");
    sockaddr_un un{};
    un.sun_family = AF_UNIX;
    if (path.size() >= sizeof(un.sun_path))
      return Status::error("UNIX socket path too long (max 107 bytes): \"" + std::string(path) +
                           "\"");
    std::memcpy(un.sun_path, path.data(), path.size());
    socklen_t len = offsetof(sockaddr_un, sun_path) + path.size();
    if (path[0] == '@') {
      un.sun_path[0] = '\0';  // abstract namespace: no trailing NUL counted
    } else {
      len += 1;
    }
    std::memcpy(&a.ss_, &un, sizeof(un));
    a.len_ = len;
    a.family_ = Family::kUnix;
    return a;
  }
  std::string_view host, port;
  if (!text.empty() && text[0] == '[') {
    size_t close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':')
      return Status::error("invalid address \"" + std::string(text) + "\" (expected [ipv6]:port)");
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
    auto p = parsePort(port, text);
    if (!p) return p.status();
    sockaddr_in6 in6{};
    in6.sin6_family = AF_INET6;
    in6.sin6_port = htons(*p);
    std::string h(host);
    if (inet_pton(AF_INET6, h.c_str(), &in6.sin6_addr) != 1)
      return Status::error("invalid IPv6 address \"" + h + "\" in \"" + std::string(text) + "\"");
    std::memcpy(&a.ss_, &in6, sizeof(in6));
    a.len_ = sizeof(in6);
    a.family_ = Family::kIpv6;
    return a;
  }
  size_t colon = text.rfind(':');
  if (colon == std::string_view::npos)
    return Status::error("invalid address \"" + std::string(text) + "\" (expected host:port)");
  host = text.substr(0, colon);
  port = text.substr(colon + 1);
  if (host.find(':') != std::string_view::npos)
    return Status::error("invalid address \"" + std::string(text) +
                         "\" (write IPv6 addresses as [addr]:port)");
  auto p = parsePort(port, text);
  if (!p) return p.status();
  std::string h(host);
  if (h.empty() || h == "*" || h == "0.0.0.0") h = "0.0.0.0";
  if (h == "localhost") h = "127.0.0.1";
  sockaddr_in in{};
  in.sin_family = AF_INET;
  in.sin_port = htons(*p);
  if (inet_pton(AF_INET, h.c_str(), &in.sin_addr) != 1)
    return Status::error("invalid address \"" + std::string(text) + "\" (not an IPv4 address: \"" +
                         std::string(host) + "\")");
  std::memcpy(&a.ss_, &in, sizeof(in));
  a.len_ = sizeof(in);
  a.family_ = Family::kIpv4;
  return a;
}

Address Address::fromSockaddr(const sockaddr* sa, socklen_t len) {
  Address a;
  if (sa == nullptr || len == 0) return a;
  if (len > sizeof(a.ss_)) len = sizeof(a.ss_);
  std::memcpy(&a.ss_, sa, len);
  a.len_ = len;
  switch (sa->sa_family) {
    case AF_INET:
      a.family_ = Family::kIpv4;
      break;
    case AF_INET6:
      a.family_ = Family::kIpv6;
      break;
    case AF_UNIX:
      a.family_ = Family::kUnix;
      break;
    default:
      a.family_ = Family::kNone;
      break;
  }
  return a;
}

uint16_t Address::port() const {
  if (family_ == Family::kIpv4) return ntohs(reinterpret_cast<const sockaddr_in*>(&ss_)->sin_port);
  if (family_ == Family::kIpv6)
    return ntohs(reinterpret_cast<const sockaddr_in6*>(&ss_)->sin6_port);
  return 0;
}

void Address::setPort(uint16_t port) {
  if (family_ == Family::kIpv4) reinterpret_cast<sockaddr_in*>(&ss_)->sin_port = htons(port);
  if (family_ == Family::kIpv6) reinterpret_cast<sockaddr_in6*>(&ss_)->sin6_port = htons(port);
}

std::string Address::unixPath() const {
  if (family_ != Family::kUnix) return {};
  auto* un = reinterpret_cast<const sockaddr_un*>(&ss_);
  size_t n = len_ > offsetof(sockaddr_un, sun_path) ? len_ - offsetof(sockaddr_un, sun_path) : 0;
  if (n == 0) return {};
  if (un->sun_path[0] == '\0') return "@" + std::string(un->sun_path + 1, n - 1);
  return std::string(un->sun_path, strnlen(un->sun_path, n));
}

std::string Address::ip() const {
  char buf[INET6_ADDRSTRLEN] = {0};
  if (family_ == Family::kIpv4) {
    // Dotted quad by hand: inet_ntop goes through sprintf, and this runs for every
    // traffic log line.
    const auto* b = reinterpret_cast<const uint8_t*>(
        &reinterpret_cast<const sockaddr_in*>(&ss_)->sin_addr.s_addr);
    char* p = buf;
    for (int i = 0; i < 4; ++i) {
      unsigned v = b[i];
      if (v >= 100) *p++ = static_cast<char>('0' + v / 100);
      if (v >= 10) *p++ = static_cast<char>('0' + v / 10 % 10);
      *p++ = static_cast<char>('0' + v % 10);
      if (i < 3) *p++ = '.';
    }
    return std::string(buf, static_cast<size_t>(p - buf));
  }
  if (family_ == Family::kIpv6) {
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&ss_)->sin6_addr, buf, sizeof(buf));
    return buf;
  }
  if (family_ == Family::kUnix) {
    std::string p = unixPath();
    return p.empty() ? "unix" : p;
  }
  return "-";
}

std::string Address::toString() const {
  switch (family_) {
    case Family::kIpv4:
      return ip() + ":" + std::to_string(port());
    case Family::kIpv6:
      return "[" + ip() + "]:" + std::to_string(port());
    case Family::kUnix:
      return "unix:" + unixPath();
    case Family::kNone:
      break;
  }
  return "-";
}

bool Address::operator==(const Address& o) const {
  return family_ == o.family_ && len_ == o.len_ && std::memcmp(&ss_, &o.ss_, len_) == 0;
}

}  // namespace crescent::core
