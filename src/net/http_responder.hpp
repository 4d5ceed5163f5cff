// A small HTTP/1.1 responder that runs as handlers on a net::Loop, for the
// metrics endpoint: GET (or HEAD) of a few fixed paths, one request per
// connection, then Connection: close.
//
// Why hand-written: Debian 12 packages no Prometheus client for C++
// (libprometheus-cpp-dev does not exist there), and the HTTP servers it has
// (libmicrohttpd, cpp-httplib, Boost.Beast) bring their own threads or their
// own event loop. The answers read the router, which belongs to the loop's
// thread: serving them from that thread, as handlers like any other, means
// no lock and no race, and a small GET-only responder is simpler than
// bridging a library's threads back onto the loop.
//
// Bounds, so that a scraper can never stall or swell the server: at most
// `max_conns` connections at once (more are answered 503 and closed), a
// request of at most `max_request` bytes (else 431), and `deadline` for the
// whole exchange (a client that never sends its request, or never reads the
// answer, is closed when it passes; one that has its answer but keeps the
// connection open, too). Reads and writes are non-blocking.
//
// Thread: the loop's owner thread only, like the loop itself.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "net/fd.hpp"
#include "net/log.hpp"
#include "net/loop.hpp"
#include "net/socket.hpp"

namespace sb::net {

class HttpResponder {
 public:
  struct Response {
    std::string content_type;
    std::string body;
  };
  // Path (without the query string) to what GET answers with 200.
  using Routes = std::map<std::string, std::function<Response()>, std::less<>>;

  struct Limits {
    std::size_t max_conns = 16;
    std::size_t max_request = std::size_t{8} * 1024;
    std::chrono::milliseconds deadline{5000};
  };

  // What happened to requests and connections, for the endpoint's own
  // metrics. Every connection ends in exactly one of these.
  struct Counts {
    std::uint64_t ok = 0;            // 200
    std::uint64_t bad_request = 0;   // 400: not an HTTP/1.x request line
    std::uint64_t not_found = 0;     // 404
    std::uint64_t bad_method = 0;    // 405: not GET or HEAD
    std::uint64_t too_large = 0;     // 431: no end of headers within max_request
    std::uint64_t over_limit = 0;    // 503: max_conns already open
    std::uint64_t timed_out = 0;     // the deadline passed first
    std::uint64_t closed_early = 0;  // the client left before its answer was written
  };

  // Binds `where` (port 0: any free port) and watches it on `loop`; throws
  // StartupError if it cannot.
  HttpResponder(Loop& loop, const Endpoint& where, Routes routes, Limits limits);
  ~HttpResponder();
  HttpResponder(const HttpResponder&) = delete;
  HttpResponder& operator=(const HttpResponder&) = delete;

  std::uint16_t port() const noexcept { return port_; }
  const Counts& counts() const noexcept { return counts_; }
  std::size_t open_connections() const noexcept { return conns_.size(); }

  // Call now and then (every loop turn is fine): closes connections past
  // their deadline, re-arms the listener after running out of descriptors.
  void on_tick();

 private:
  struct Conn;

  void on_accept();
  void on_conn_event(Conn& c, std::uint32_t events);
  void read_request(Conn& c);
  void answer(Conn& c, int status, std::string_view content_type, std::string_view body, bool head);
  void write_answer(Conn& c);
  void linger(Conn& c);
  void close(Conn& c);
  void reap();

  Loop& loop_;
  Routes routes_;
  Limits limits_;
  Fd listener_;
  std::uint16_t port_ = 0;
  FunctionHandler listener_handler_;
  Token listener_token_ = Token::none;
  bool listener_paused_ = false;  // out of descriptors: not watched until the next tick
  std::vector<std::unique_ptr<Conn>> conns_;
  bool reap_posted_ = false;
  Counts counts_;
  RateLimit log_;
};

}  // namespace sb::net
