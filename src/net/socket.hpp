// Thin wrappers over the socket calls every engine needs. Functions that can
// fail at start-up throw StartupError with a message meant for a person;
// data-plane helpers return errno-style results and never throw.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

#include "net/fd.hpp"

namespace sb::net {

struct StartupError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Endpoint {
  std::string host = "127.0.0.1";
  std::uint16_t port = 8080;
  std::string to_string() const { return host + ":" + std::to_string(port); }
};

// Parses "HOST:PORT" (IPv4 dotted quad or "localhost"); throws StartupError.
Endpoint parse_endpoint(const std::string& text);

// A non-blocking, close-on-exec listening TCP socket with SO_REUSEADDR.
// Port 0 binds an ephemeral port; local_port() tells which.
Fd listen_tcp(const Endpoint& where, int backlog = 4096);
std::uint16_t local_port(int fd);

// A blocking connected TCP socket (for the client commands); throws StartupError.
Fd connect_tcp(const Endpoint& where);

// TCP_NODELAY: frames are small and latency matters more than segment count.
void set_nodelay(int fd) noexcept;

// The peer's "HOST:PORT", for log lines.
std::string peer_name(int fd);

// The descriptor limit of this process (RLIMIT_NOFILE soft limit).
std::uint64_t open_files_limit() noexcept;

// Ignore SIGPIPE process-wide: a write to a reset peer must return EPIPE.
void ignore_sigpipe() noexcept;

}  // namespace sb::net
