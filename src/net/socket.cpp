#include "net/socket.hpp"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <netdb.h>
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

std::string errno_text(int err) {
  return std::strerror(err);
}

bool is_ipv6_literal(const std::string& host) {
  in6_addr a{};
  return ::inet_pton(AF_INET6, host.c_str(), &a) == 1;
}

// Host names as RFC 1123 allows them (letters, digits, '-', '.'), plus '_'
// which some resolvers accept; anything else is a typo worth reporting
// before a DNS query is made.
bool is_host_name(const std::string& host) {
  if (host.empty() || host.size() > 253) return false;
  for (const char c : host) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                    c == '.' || c == '_';
    if (!ok) return false;
  }
  return true;
}

std::string format_address(const sockaddr* addr, socklen_t len) {
  char host[NI_MAXHOST] = {};
  char serv[NI_MAXSERV] = {};
  if (::getnameinfo(addr, len, host, sizeof host, serv, sizeof serv, NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
    return "?";
  }
  // fmt rather than string concatenation, which sets off GCC 12's false
  // -Wrestrict warning in release builds.
  if (addr->sa_family == AF_INET6) return fmt::format("[{}]:{}", host, serv);
  return fmt::format("{}:{}", host, serv);
}

}  // namespace

std::string Endpoint::to_string() const {
  const std::string port_text = std::to_string(port);
  return host.find(':') != std::string::npos ? "[" + host + "]:" + port_text : host + ":" + port_text;
}

std::string SocketAddress::to_string() const {
  return format_address(reinterpret_cast<const sockaddr*>(&storage), size);
}

Endpoint parse_endpoint(const std::string& text) {
  const auto colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == text.size()) {
    throw StartupError("address '" + text +
                       "' is not HOST:PORT (e.g. 127.0.0.1:8080, [::1]:8080, localhost:8080)");
  }
  Endpoint e;
  e.host = text.substr(0, colon);
  if (e.host.size() >= 2 && e.host.front() == '[' && e.host.back() == ']') {
    e.host = e.host.substr(1, e.host.size() - 2);
    if (!is_ipv6_literal(e.host))
      throw StartupError("'" + e.host + "' in '" + text + "' is not an IPv6 address");
  } else if (e.host.find(':') != std::string::npos) {
    throw StartupError("address '" + text + "': an IPv6 address goes in brackets, as in [::1]:8080");
  } else if (!is_host_name(e.host)) {
    throw StartupError("'" + e.host + "' in '" + text + "' is not an IP address or host name");
  }
  unsigned port = 0;
  const char* first = text.data() + colon + 1;
  const char* last = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(first, last, port);
  if (ec != std::errc{} || ptr != last || port > 65535) {
    throw StartupError("port in '" + text + "' is not a number from 0 to 65535");
  }
  e.port = static_cast<std::uint16_t>(port);
  return e;
}

std::vector<SocketAddress> resolve(const Endpoint& where, bool passive) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_protocol = IPPROTO_TCP;
  hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
  addrinfo* list = nullptr;
  const std::string port = std::to_string(where.port);
  const int rc = ::getaddrinfo(where.host.c_str(), port.c_str(), &hints, &list);
  if (rc != 0) {
    throw StartupError("cannot resolve '" + where.host +
                       "': " + (rc == EAI_SYSTEM ? errno_text(errno) : std::string(::gai_strerror(rc))));
  }
  std::vector<SocketAddress> out;
  for (const addrinfo* ai = list; ai != nullptr; ai = ai->ai_next) {
    if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6) continue;
    if (ai->ai_addrlen > sizeof(sockaddr_storage)) continue;
    SocketAddress a;
    std::memcpy(&a.storage, ai->ai_addr, ai->ai_addrlen);
    a.size = ai->ai_addrlen;
    out.push_back(a);
  }
  ::freeaddrinfo(list);
  if (out.empty()) throw StartupError("cannot resolve '" + where.host + "': no IPv4 or IPv6 address");
  return out;
}

Fd listen_tcp(const Endpoint& where, int backlog, bool reuse_port) {
  std::string failure;
  for (const SocketAddress& addr : resolve(where, /*passive=*/true)) {
    Fd fd{::socket(addr.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)};
    if (!fd) {
      failure = "cannot create a socket: " + errno_text(errno);
      continue;
    }
    const int one = 1;
    ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (reuse_port && ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) {
      failure = "cannot set SO_REUSEPORT: " + errno_text(errno);
      continue;
    }
    if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr.storage), addr.size) != 0 ||
        ::listen(fd.get(), backlog) != 0) {
      const int err = errno;
      if (failure.empty()) {  // the first address's reason is the one a person expects
        failure = "cannot listen on " + where.to_string() + ": " + errno_text(err) +
                  (err == EADDRINUSE ? " (is another server running there?)" : "");
      }
      continue;
    }
    return fd;
  }
  throw StartupError(failure);
}

std::uint16_t local_port(int fd) {
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return 0;
  if (addr.ss_family == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6*>(&addr)->sin6_port);
  return ntohs(reinterpret_cast<const sockaddr_in*>(&addr)->sin_port);
}

int socket_family(int fd) noexcept {
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return 0;
  return addr.ss_family;
}

Fd connect_tcp(const Endpoint& where, const ConnectOptions& options) {
  std::string failure;
  for (const SocketAddress& addr : resolve(where, /*passive=*/false)) {
    Fd fd{::socket(addr.family(), SOCK_STREAM | SOCK_CLOEXEC, 0)};
    if (!fd) {
      failure = "cannot create a socket: " + errno_text(errno);
      continue;
    }
    if (options.receive_buffer > 0 && ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVBUF, &options.receive_buffer,
                                                   sizeof options.receive_buffer) != 0) {
      failure = "cannot set SO_RCVBUF: " + errno_text(errno);
      continue;
    }
    if (options.max_segment > 0 && ::setsockopt(fd.get(), IPPROTO_TCP, TCP_MAXSEG, &options.max_segment,
                                                sizeof options.max_segment) != 0) {
      failure = "cannot set TCP_MAXSEG: " + errno_text(errno);
      continue;
    }
    if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr.storage), addr.size) != 0) {
      const int err = errno;
      const std::string numeric = addr.to_string();
      failure = "cannot connect to " + where.to_string() +
                (numeric == where.to_string() ? "" : " (" + numeric + ")") + ": " + errno_text(err);
      continue;
    }
    set_nodelay(fd.get());
    return fd;
  }
  throw StartupError(failure);
}

Fd connect_tcp(const std::string& address) {
  return connect_tcp(parse_endpoint(address));
}

void set_nodelay(int fd) noexcept {
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

std::string peer_name(int fd) {
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return "?";
  return format_address(reinterpret_cast<const sockaddr*>(&addr), len);
}

std::uint64_t open_files_limit() noexcept {
  rlimit lim{};
  if (::getrlimit(RLIMIT_NOFILE, &lim) != 0) return 1024;
  return lim.rlim_cur;
}

void ignore_sigpipe() noexcept {
  ::signal(SIGPIPE, SIG_IGN);
}

}  // namespace sb::net
