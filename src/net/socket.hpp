// Thin wrappers over the socket calls every engine needs. Functions that can
// fail at start-up throw StartupError with a message meant for a person;
// data-plane helpers return errno-style results and never throw.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "net/fd.hpp"

namespace sb::net {

struct StartupError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// An address as a person writes it: HOST is an IPv4 literal, an IPv6
// literal (without its brackets) or a host name, resolved only when a socket
// is opened.
struct Endpoint {
  std::string host = "127.0.0.1";
  std::uint16_t port = 8080;
  // "HOST:PORT", an IPv6 literal in brackets: "[::1]:8080".
  std::string to_string() const;
};

// Parses "HOST:PORT" or "[IPv6]:PORT" (e.g. "127.0.0.1:8080", "[::1]:0",
// "localhost:8080"). Checks the syntax only, so it never waits on DNS;
// throws StartupError with a one-line reason.
Endpoint parse_endpoint(const std::string& text);

// One address getaddrinfo gave for an Endpoint.
struct SocketAddress {
  sockaddr_storage storage{};
  socklen_t size = 0;
  int family() const noexcept { return storage.ss_family; }
  std::string to_string() const;  // numeric: "127.0.0.1:8080", "[::1]:8080"
};

// The TCP addresses of `where`, in getaddrinfo's (RFC 6724) order; literals
// are not looked up. `passive`: for a listening socket. Throws StartupError
// when the host does not resolve.
std::vector<SocketAddress> resolve(const Endpoint& where, bool passive);

// A non-blocking, close-on-exec listening TCP socket with SO_REUSEADDR, on
// the first of resolve(where)'s addresses that binds (a host name such as
// "localhost" may have an IPv6 and an IPv4 address: one of them is used).
// Port 0 binds an ephemeral port; local_port() tells which.
// reuse_port: SO_REUSEPORT, so that several sockets (one per shard) listen
// on the same address and the kernel spreads new connections over them.
Fd listen_tcp(const Endpoint& where, int backlog = 4096, bool reuse_port = false);
std::uint16_t local_port(int fd);
// AF_INET or AF_INET6: the family of a bound socket (0 if unknown), so a
// wrapper such as an Asio acceptor can be told which protocol it holds.
int socket_family(int fd) noexcept;

// Socket options that count only when set before connect(), because the
// SYN announces them: a receive buffer set later no longer shrinks the
// window scale and the window already offered, and the MSS is fixed by the
// handshake. 0 leaves the kernel's choice.
struct ConnectOptions {
  int receive_buffer = 0;  // SO_RCVBUF in bytes (Linux doubles it for its bookkeeping)
  int max_segment = 0;     // TCP_MAXSEG: the largest segment the peer may send us
};

// A blocking connected TCP socket (for the client commands), connected to
// the first of the addresses that answers; throws StartupError.
Fd connect_tcp(const Endpoint& where, const ConnectOptions& options = {});
// The same from "HOST:PORT" text (parse_endpoint, then connect_tcp): what
// the client commands' --server address goes through.
Fd connect_tcp(const std::string& address);

// TCP_NODELAY: frames are small and latency matters more than segment count.
void set_nodelay(int fd) noexcept;

// The peer's "HOST:PORT" ("[V6]:PORT"), numeric, for log lines.
std::string peer_name(int fd);

// The descriptor limit of this process (RLIMIT_NOFILE soft limit).
std::uint64_t open_files_limit() noexcept;

// Ignore SIGPIPE process-wide: a write to a reset peer must return EPIPE.
void ignore_sigpipe() noexcept;

}  // namespace sb::net
