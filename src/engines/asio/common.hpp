// What the four Boost.Asio engines (the article's comparison designs) share:
// counters that several threads bump, ID allocation, the listener and its
// accept-error handling, and, for the three multi-threaded engines, the
// connection record, the registry used to wake readers at shutdown, a wait
// group for the drain, and the one-frame write with the slow-consumer policy.
//
// Everything here is plumbing; the designs themselves (who owns the write
// halves, who waits for whom) live in each engine's source file.
#pragma once

#include <array>
#include <atomic>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/experimental/concurrent_channel.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_set>
#include <vector>
#include <utility>

#include "core/config.hpp"
#include "core/router.hpp"
#include "core/stats.hpp"
#include "engines/engine.hpp"
#include "net/fd.hpp"
#include "net/log.hpp"
#include "protocol/client_id.hpp"
#include "protocol/frame_decoder.hpp"
#include "protocol/v2.hpp"

namespace sb::engines::asio_engines {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;

// As in Asio's examples: errors come back as values, never as exceptions.
inline constexpr auto kNothrowAwaitable = asio::as_tuple(asio::use_awaitable);

// One read brings at most this much (as the reactor's reads).
inline constexpr std::size_t kReadChunk = std::size_t{64} << 10;

// core::Stats as relaxed atomics: in the multi-threaded engines every thread
// bumps them. They are counters, not synchronisation. One atomic per entry
// of SB_STATS, so a counter added there is here too. live_clients is derived
// (accepted - closed), so every accepted connection must be closed exactly once.
class AtomicStats {
 public:
  void accepted() noexcept { bump(core::StatId::connections_accepted); }
  void rejected() noexcept { bump(core::StatId::connections_rejected); }
  void routed(std::size_t bytes) noexcept {
    bump(core::StatId::frames_routed);
    bump(core::StatId::bytes_routed, bytes);
  }
  void dropped_no_route() noexcept { bump(core::StatId::dropped_no_route); }
  void dropped_slow_consumer() noexcept { bump(core::StatId::dropped_slow_consumer); }
  void sender_paused() noexcept { bump(core::StatId::sender_pauses); }
  void closed(core::CloseReason reason) noexcept;
  void add_pending(std::size_t n) noexcept;
  // Clients accepted and not closed yet: what --max-conns limits. A client
  // stops counting when its close is counted, before its peer can see it.
  std::uint64_t live() const noexcept {
    const std::uint64_t closed = get(core::StatId::connections_closed);
    const std::uint64_t accepted = get(core::StatId::connections_accepted);
    return accepted > closed ? accepted - closed : 0;
  }
  void sub_pending(std::size_t n) noexcept {
    at(core::StatId::pending_bytes).fetch_sub(n, std::memory_order_relaxed);
  }

  core::Stats snapshot() const noexcept;

 private:
  using Counter = std::atomic<std::uint64_t>;
  Counter& at(core::StatId id) noexcept { return values_[static_cast<std::size_t>(id)]; }
  std::uint64_t get(core::StatId id) const noexcept {
    return values_[static_cast<std::size_t>(id)].load(std::memory_order_relaxed);
  }
  void bump(core::StatId id, std::uint64_t n = 1) noexcept { at(id).fetch_add(n, std::memory_order_relaxed); }

  std::array<Counter, core::kStatCount> values_{};
};

// IDs are unique and never reused while the server runs: a 32-bit counter
// that, once it wraps, skips the IDs still live, and never hands out the
// reserved IDs of protocol v2 (0xFFFFFF00..0xFFFFFFFF). Not thread-safe:
// whoever owns the client table owns the allocator.
class IdAllocator {
 public:
  explicit IdAllocator(std::uint32_t first) noexcept : next_{first} {}
  template <typename IsLive>
  ClientId next(IsLive&& is_live) {
    while (protocol::is_reserved(ClientId{next_}) || is_live(ClientId{next_})) ++next_;
    return ClientId{next_++};
  }

 private:
  std::uint32_t next_;
};

// Reads ended by these mean the peer left; anything else is an I/O error.
core::CloseReason close_reason(const error_code& ec) noexcept;

// co_spawn completion for coroutines that handle their own errors: anything
// that still escapes (bad_alloc) is logged instead of unwinding run().
void log_exception(const std::exception_ptr& e);

// ServerOptions::threads, with 0 meaning one per core.
unsigned thread_count(unsigned requested) noexcept;

// Throws net::StartupError for what these engines do not offer: protocol v2
// authentication (--auth-token-file). Called first thing in run().
void check_supported(const ServerOptions& options, std::string_view engine);

// The pool that runs `ctx`: its threads are started by the constructor, kept
// idle by a work guard, so that a thread the system refuses is a start-up
// error (net::StartupError, every started thread joined again) before the
// server says it listens. run() lets them work, runs `ctx` on the caller's
// thread too, and returns once it has run out of work and all are joined.
class ThreadPool {
 public:
  ThreadPool(asio::io_context& ctx, unsigned threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;
  void run();

 private:
  void stop_and_join() noexcept;

  asio::io_context& ctx_;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> guard_;
  std::vector<std::thread> threads_;
};

// Binds `where` (throws net::StartupError, with the reactor's messages: the
// socket comes from net::listen_tcp) and wraps it as an acceptor on `ex`.
tcp::acceptor open_acceptor(const asio::any_io_executor& ex, const net::Endpoint& where);
// Logs where the server listens and calls ServerOptions::on_listening with
// the endpoint actually bound (port 0 resolved).
void announce(const tcp::acceptor& acceptor, const ServerOptions& options, std::string_view engine,
              unsigned threads);

// Accept failures. Out of descriptors (EMFILE, ENFILE), the pending connection
// keeps the listener readable forever, so a spare descriptor is freed, the
// connection taken and closed at once (counted as rejected) and the spare
// reopened. One owner (the accept loop, or whoever shares its strand).
class AcceptErrors {
 public:
  // What the accept loop does next.
  enum class Next {
    accept,         // accept again at once
    wait_readable,  // the backlog is empty: wait for the listener to become readable. (Out of
                    // descriptors, accept() fails with EMFILE even when nothing is pending, so
                    // retrying at once would spin.)
    back_off,       // wait briefly, then accept again
  };
  AcceptErrors();
  Next on_error(tcp::acceptor& acceptor, const error_code& ec, AtomicStats& stats, std::string_view engine);
  // Returns true if the caller should back off briefly before accepting again.
  bool handle(tcp::acceptor& acceptor, const error_code& ec, AtomicStats& stats, std::string_view engine) {
    return on_error(acceptor, ec, stats, engine) == Next::back_off;
  }
  // Logs a refused connection, rate-limited.
  void log_reject(std::string_view engine, std::string_view why, const AtomicStats& stats);
  // Stops accepting for good: closes the acceptor and gives the spare
  // descriptor back, so that a server stopping while out of descriptors
  // has a couple to finish with.
  void stop_accepting(tcp::acceptor& acceptor) noexcept;

 private:
  net::Fd spare_;
  net::RateLimit log_;
};

// net::RateLimit for lines any thread may write (oversized frames, slow consumers).
class SharedRateLimit {
 public:
  bool allow(std::uint64_t& suppressed) {
    std::lock_guard lock{mutex_};
    return limit_.allow(suppressed);
  }

 private:
  std::mutex mutex_;
  net::RateLimit limit_;
};

// The log line for a client that is closed: a warning (rate-limited) for an
// oversized frame or a slow consumer, debug for the rest.
void log_closed(ClientId id, std::string_view peer, core::CloseReason reason, const ServerOptions& options,
                SharedRateLimit& warnings);

// ---- The three multi-threaded engines (mutex, channels, channel-per-writer) ----

class LiveSockets;

// One client. Asio has no split socket, so the article's read half and write
// half are one tcp::socket used by two parties: its reader coroutine (the
// only one that reads) and whoever owns the write half in that design (the
// only one that writes). Asio allows one read and one write in flight on a
// socket; starting them from two threads is safe because neither changes the
// socket object: it is made non-blocking before it is shared, and it is
// closed only by ~Connection, when the last owner has let go. Other parties
// that need to end the connection call shutdown(), a plain system call that
// makes the pending read and write complete.
struct Connection {
  Connection(tcp::socket s, LiveSockets& live);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;
  Connection(Connection&&) = delete;
  Connection& operator=(Connection&&) = delete;

  tcp::socket socket;
  std::string peer;     // "HOST:PORT", for log lines
  ClientId id{};        // set by the owner of the client table, before it is routed to
  bool closed = false;  // counted as closed (channels designs); touched only by the dispatcher
  std::atomic<bool> tail_pending{false};  // FrameWriter is finishing a frame to it in the background

 private:
  LiveSockets& live_;
};

// Every open connection, so that the control coroutine can reach all of
// them at stop time without taking the design's own lock: SHUT_RD wakes idle
// readers; SHUT_RDWR, when the drain times out, fails every pending write.
// Thread-safe.
class LiveSockets {
 public:
  void add(Connection* c);
  void remove(Connection* c);
  void shutdown_all(tcp::socket::shutdown_type how);

 private:
  std::mutex mutex_;
  std::unordered_set<Connection*> conns_;
};

// Counts running coroutines; the control coroutine waits for zero. Thread-safe.
class WaitGroup {
 public:
  class Token {  // held by the coroutine being counted, released when it ends
   public:
    explicit Token(WaitGroup* group) noexcept : group_{group} {}
    Token(Token&& o) noexcept : group_{std::exchange(o.group_, nullptr)} {}
    Token& operator=(Token&&) = delete;
    Token(const Token&) = delete;
    Token& operator=(const Token&) = delete;
    ~Token() {
      if (group_ != nullptr) group_->done();
    }

   private:
    WaitGroup* group_;
  };

  explicit WaitGroup(const asio::any_io_executor& ex) : zero_{ex, 1} {}
  Token add() noexcept {
    count_.fetch_add(1);
    return Token{this};
  }
  // True once the count is zero, false if `deadline` passes first.
  asio::awaitable<bool> wait_until(std::chrono::steady_clock::time_point deadline);

 private:
  void done() noexcept {
    if (count_.fetch_sub(1) == 1) zero_.try_send(error_code{});
  }

  std::atomic<std::size_t> count_{0};
  // Capacity one: a token means "the count reached zero since you last looked".
  asio::experimental::concurrent_channel<void(error_code)> zero_;
};

// The signals of the three pool engines, taken from before the server says it
// listens until run() returns, so that none of them can kill it:
//   SIGINT, SIGTERM  the first starts the drain (wait_stop returns); another
//                    during the drain stops waiting for it (wait_drained)
//   SIGUSR1          logs the stats line, at any moment, whatever the log level
//   SIGHUP           logs that there is nothing to reload
// A signal that comes before start() waits in the signal_set. The
// destructor blocks these signals in the calling thread (by then the only
// one) before Asio gives their handlers back, so a late one waits
// harmlessly until the process exits. Thread: the control strand.
class ServerSignals {
 public:
  ServerSignals(asio::io_context& ctx, const AtomicStats& stats, std::string_view engine);
  ~ServerSignals();
  ServerSignals(const ServerSignals&) = delete;
  ServerSignals& operator=(const ServerSignals&) = delete;

  // Starts taking signals on `strand` (the control coroutine's).
  void start(const asio::any_io_executor& strand);
  // Returns at the first SIGINT or SIGTERM.
  asio::awaitable<void> wait_stop(std::chrono::milliseconds drain_timeout);
  // True once `group` is empty; false if `deadline` or another SIGINT or
  // SIGTERM (the operator insisting) comes first.
  asio::awaitable<bool> wait_drained(WaitGroup& group, std::chrono::steady_clock::time_point deadline);
  // Stops taking signals, so that the io_context can run out of work.
  void close();

 private:
  asio::awaitable<void> take_signals();

  asio::signal_set set_;
  const AtomicStats& stats_;
  std::string_view engine_;
  // SIGINT and SIGTERM, handed from take_signals() to the waits above.
  asio::experimental::concurrent_channel<void(error_code, int)> stops_;
};

// Logs the stats line at info level, or straight to the log's sinks when
// the level hides info: SIGUSR1 asks for it whatever the level.
void log_stats_now(const AtomicStats& stats);

// The article's "accept, spawn a task per connection" loop: accepts until the
// acceptor is closed, refuses connections while `max_conns` are live, and
// hands every other one (no-delay, non-blocking, registered in `live`) to
// `on_connection`.
asio::awaitable<void> accept_loop(tcp::acceptor& acceptor, AcceptErrors& errors, std::size_t max_conns,
                                  LiveSockets& live, AtomicStats& stats, std::string_view engine,
                                  std::function<void(std::shared_ptr<Connection>)> on_connection);

// Writes one whole frame to a connection whose reader may be reading on
// another thread, as `mutex` (with the lock held) and `channels` (in the
// dispatcher) do. These designs have no queue of their own: the kernel's send
// buffer is the destination's queue, so "the destination is full" means "the
// write would block". Then the policy decides:
//   backpressure  wait for it, which is the head-of-line blocking these
//                 designs show, but at most stall_timeout, then report
//                 slow_consumer;
//   disconnect    report slow_consumer at once;
//   drop          report dropped. If part of the frame is already out, the
//                 rest (at most one frame per destination) is written by a
//                 task of its own, counted in `tasks`, and frames for that
//                 destination are dropped until it is done: frames arrive
//                 whole or not at all, and nobody waits.
//
// A write that has to wait (backpressure) counts a sender pause when the
// wait begins, so that the counter shows senders blocked now, not only
// those that were blocked.
struct WriteResult {
  enum class Status { written, dropped, slow_consumer, failed } status = Status::written;
  error_code ec;  // for `failed`
};
class FrameWriter {
 public:
  FrameWriter(const core::RouterConfig& config, AtomicStats& stats, WaitGroup& tasks) noexcept
      : config_{config}, stats_{stats}, tasks_{tasks} {}
  asio::awaitable<WriteResult> write(std::shared_ptr<Connection> dest, std::span<const char> bytes) const;

 private:
  const core::RouterConfig& config_;
  AtomicStats& stats_;
  WaitGroup& tasks_;
};

// Counts what happened to a frame of `bytes` bytes; returns why its
// destination must now be closed, if it must.
std::optional<core::CloseReason> count_write(const WriteResult& result, std::size_t bytes,
                                             AtomicStats& stats);

// ---- Protocol v2, which these engines refuse (DESIGN.md 1b) ----
//
// A v1 frame to the server (0xFFFFFFFF) whose payload begins with
// `switchboard/` is a hello: it is answered with the v1 delivery
// `switchboard/2 error[ nonce=<NONCE>] unsupported` and the connection is
// closed once that is written. Any other frame to a reserved ID is no_route.
enum class ReservedFrame {
  no,     // an ordinary frame: route it
  hello,  // refuse the upgrade, then close
  drop,   // to a reserved ID: dropped as no_route
};
ReservedFrame classify_reserved(const protocol::Frame& frame) noexcept;
// The refusal's bytes as the client receives them (payload and its NUL).
// The nonce is echoed whenever the hello held a well-formed one, as
// protocol::parse_hello reads it.
std::string hello_refusal(std::span<const char> hello_payload);
// How a refused client's close is counted: as a hello the server could not
// accept (closed_protocol_error), as the reactor counts a malformed one.
inline constexpr core::CloseReason kRefusedHelloClose = core::CloseReason::protocol_error;
// The log line for it (info, rate-limited: a client can cause it at will).
void log_refused_hello(ClientId id, std::string_view peer, std::string_view engine, SharedRateLimit& limit);

}  // namespace sb::engines::asio_engines
