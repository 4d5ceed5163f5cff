#include "net/socket.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <cerrno>
#include <charconv>
#include <cstring>

namespace sb::net {

namespace {

sockaddr_in to_sockaddr(const Endpoint& where) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(where.port);
  const std::string host = where.host == "localhost" ? "127.0.0.1" : where.host;
  if (::inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1) {
    throw StartupError("invalid IPv4 address '" + where.host + "'");
  }
  return addr;
}

std::string errno_text(int err) { return std::strerror(err); }

}  // namespace

Endpoint parse_endpoint(const std::string& text) {
  const auto colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == text.size()) {
    throw StartupError("address '" + text + "' is not HOST:PORT");
  }
  Endpoint e;
  e.host = text.substr(0, colon);
  unsigned port = 0;
  const char* first = text.data() + colon + 1;
  const char* last = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(first, last, port);
  if (ec != std::errc{} || ptr != last || port > 65535) {
    throw StartupError("port in '" + text + "' is not a number from 0 to 65535");
  }
  e.port = static_cast<std::uint16_t>(port);
  to_sockaddr(e);  // validates the host
  return e;
}

Fd listen_tcp(const Endpoint& where, int backlog) {
  const sockaddr_in addr = to_sockaddr(where);
  Fd fd{::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)};
  if (!fd) throw StartupError("cannot create a socket: " + errno_text(errno));
  const int one = 1;
  ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    const int err = errno;
    throw StartupError("cannot listen on " + where.to_string() + ": " + errno_text(err) +
                       (err == EADDRINUSE ? " (is another server running there?)" : ""));
  }
  if (::listen(fd.get(), backlog) != 0) {
    throw StartupError("cannot listen on " + where.to_string() + ": " + errno_text(errno));
  }
  return fd;
}

std::uint16_t local_port(int fd) {
  sockaddr_in addr{};
  socklen_t len = sizeof addr;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return 0;
  return ntohs(addr.sin_port);
}

Fd connect_tcp(const Endpoint& where) {
  const sockaddr_in addr = to_sockaddr(where);
  Fd fd{::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)};
  if (!fd) throw StartupError("cannot create a socket: " + errno_text(errno));
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    throw StartupError("cannot connect to " + where.to_string() + ": " + errno_text(errno));
  }
  set_nodelay(fd.get());
  return fd;
}

void set_nodelay(int fd) noexcept {
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

std::string peer_name(int fd) {
  sockaddr_in addr{};
  socklen_t len = sizeof addr;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return "?";
  char buf[INET_ADDRSTRLEN] = {};
  ::inet_ntop(AF_INET, &addr.sin_addr, buf, sizeof buf);
  return std::string(buf) + ":" + std::to_string(ntohs(addr.sin_port));
}

std::uint64_t open_files_limit() noexcept {
  rlimit lim{};
  if (::getrlimit(RLIMIT_NOFILE, &lim) != 0) return 1024;
  return lim.rlim_cur;
}

void ignore_sigpipe() noexcept { ::signal(SIGPIPE, SIG_IGN); }

}  // namespace sb::net
