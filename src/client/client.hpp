// A blocking client for protocol v2 (DESIGN.md section 1b), for applications,
// the `listen`/`send` commands and tests. No event loop and no Asio: every
// call that waits does so with poll() and a timeout, so nothing here can
// hang longer than the caller allows.
//
//   auto c = sb::client::Client::connect("localhost", 8080);  // hello, welcome
//   c.send(7, "hello");
//   if (auto ev = c.receive(5s)) { ... Message{source, payload} or ErrorFrame ... }
//   c.ping(5s);  // a barrier: every frame sent before it has been routed
//
// The upgrade follows the nonce rule: connect() sends a hello with a random
// nonce; every v1 delivery that arrives before the welcome carrying that
// nonce is a message someone sent before the upgrade, handed to the
// application with an unknown source (Message::source is nullopt). A server
// that answers the hello with `switchboard/2 error ... unsupported`, closes
// the connection, or sends no welcome within the timeout is reported as
// NotV2Error ("server does not speak protocol v2").
//
// Threads: a Client is used by one thread at a time (it owns a socket and
// two buffers, nothing shared). It is movable, not copyable; destroying it
// closes the connection.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <variant>

#include "net/fd.hpp"
#include "protocol/v2.hpp"

namespace sb::client {

using Timeout = std::chrono::milliseconds;
inline constexpr Timeout kDefaultTimeout{5000};

// Every failure is a ClientError whose what() is a sentence for a person.
struct ClientError : std::runtime_error {
  using std::runtime_error::runtime_error;
};
// The server answered the hello with `unsupported`, closed the connection
// after it, or sent no welcome in time: it speaks protocol v1 only (or is not
// a switchboard server).
struct NotV2Error : ClientError {
  using ClientError::ClientError;
};
// The server requires a token and the one given (or none) is not listed.
struct AuthError : ClientError {
  using ClientError::ClientError;
};
// The connection ended (the server closed it, or it was reset). Events
// received before the end are still returned by receive() first.
struct ConnectionClosed : ClientError {
  using ClientError::ClientError;
};
// A wait (connect, send, ping) did not finish within its timeout.
struct TimeoutError : ClientError {
  using ClientError::ClientError;
};

using ErrorCode = protocol::ErrorCode;

// A message for this client. `source` is the sender's ID; nullopt for a
// message delivered in v1 before the upgrade (v1 does not say who sent it).
struct Message {
  std::optional<std::uint32_t> source;
  std::string payload;  // any bytes, 0x00 included
};

// An ERROR frame from the server about a frame this client sent: the code
// (see DESIGN.md 1b's table), its subject (the destination for no_route,
// slow_consumer and not_representable) and the server's reason text.
struct ErrorFrame {
  ErrorCode code{};
  std::uint32_t subject = 0;
  std::string reason;
};

// One line for a person: "no client 7 (no_route)".
std::string describe(const ErrorFrame& e);

using Event = std::variant<Message, ErrorFrame>;

class Client {
 public:
  // Resolves `host` (a name, an IPv4 or IPv6 literal) with getaddrinfo,
  // connects, reads the ID, sends the hello (with `token` if given) and waits
  // for the welcome, all within `timeout`. Throws NotV2Error, AuthError,
  // TimeoutError (TCP connect too slow) or ClientError (cannot resolve or
  // connect, bad token, ...).
  static Client connect(const std::string& host, std::uint16_t port,
                        const std::optional<std::string>& token = std::nullopt,
                        Timeout timeout = kDefaultTimeout);

  Client(Client&&) noexcept = default;
  Client& operator=(Client&&) noexcept = default;
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;
  ~Client() = default;

  // From the welcome.
  std::uint32_t id() const noexcept { return id_; }
  std::size_t max_frame() const noexcept { return max_frame_; }

  // Sends one message (any bytes, up to max_frame()) to `destination`.
  // Blocks until the kernel took it, reading what arrives meanwhile so two
  // clients sending to each other never deadlock. Throws ClientError when the
  // payload is over max_frame (the server would close the connection),
  // ConnectionClosed, or TimeoutError if the kernel has not taken it all
  // within `timeout` (the server is not reading: see --slow-consumer).
  void send(std::uint32_t destination, std::string_view payload, Timeout timeout = kDefaultTimeout);

  // The next event, waiting up to `timeout` for one; nullopt if none came.
  // Timeout{0} only returns what already arrived. Throws ConnectionClosed
  // once the connection has ended and every event before the end was
  // returned, ClientError if the server breaks the protocol.
  std::optional<Event> receive(Timeout timeout);

  // Sends a PING with a body no other ping of this client used and waits for
  // its PONG: when it returns, every frame sent before has been routed, and
  // every ERROR the server decided about them on this node is queued here.
  // Events that arrive meanwhile are kept for receive(). Throws TimeoutError.
  void ping(Timeout timeout = kDefaultTimeout);

  // For poll()ing this client beside other descriptors: when it is readable,
  // or has_event() is true, receive(Timeout{0}) has something to do.
  int fd() const noexcept { return fd_.get(); }
  bool has_event() const noexcept { return !events_.empty(); }

  // Closes the connection now (the destructor does the same).
  void close() noexcept { fd_.reset(); }

 private:
  Client() = default;
  using Clock = std::chrono::steady_clock;

  // Reads what the socket has (waiting until `deadline`); false on timeout.
  // Sets closed_ on EOF or reset.
  bool read_some(Clock::time_point deadline);
  // Decodes every complete v2 frame in in_ into events_ (PONGs go to
  // pongs_seen_). Throws ClientError on a frame the server may not send.
  void decode();
  void write_all(std::string_view bytes, Clock::time_point deadline);
  // connect()'s steps.
  void handshake(const std::optional<std::string>& token, Clock::time_point deadline, Timeout timeout);
  bool take_hello_reply(std::string_view payload);

  net::Fd fd_;
  std::uint32_t id_ = 0;
  std::size_t max_frame_ = 0;
  std::string nonce_;
  std::string peer_;  // "host:port", for messages
  std::string in_;
  std::size_t in_head_ = 0;
  std::deque<Event> events_;
  std::deque<std::string> pongs_;
  std::uint64_t next_ping_ = 0;
  bool had_token_ = false;
  bool closed_ = false;
  std::string close_reason_;
};

}  // namespace sb::client
