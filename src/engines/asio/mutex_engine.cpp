// The article's Mutex section, "more correct" version:
//
//   struct Server { listener, connections: tokio::sync::Mutex<Vec<OwnedWriteHalf>> }
//   handle_connection: split the socket; lock, take an ID, write the
//   greeting, push the write half; then loop { read; parse; lock; write to
//   connections[dest] }   -- the lock is held across the write.
//
// Here: Server is the class below, the Vec is a map keyed by ClientId (IDs
// are never reused, and departed clients are removed), the tokio mutex is
// AsyncMutex, and every frame of a read is routed, not just the first.
#include "engines/asio/mutex_engine.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <csignal>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>

#include "engines/asio/common.hpp"
#include "net/socket.hpp"
#include "protocol/frame_decoder.hpp"
#include "protocol/wire.hpp"

namespace sb::engines::asio_engines {

namespace {

using asio::use_awaitable;

// Asio has no async mutex; this is the smallest correct one, as in Asio's
// mutual_exclusion examples: a channel with room for one message. lock()
// sends into it, which completes at once when the buffer is empty and waits
// otherwise; unlock() takes the message back out, which admits the oldest
// waiting sender (waiters are served in order). A concurrent_channel, because
// the coroutines that lock it run on every thread of the pool.
class AsyncMutex {
 public:
  class Guard {
   public:
    explicit Guard(AsyncMutex* m) noexcept : mutex_{m} {}
    Guard(Guard&& o) noexcept : mutex_{std::exchange(o.mutex_, nullptr)} {}
    Guard& operator=(Guard&&) = delete;
    Guard(const Guard&) = delete;
    Guard& operator=(const Guard&) = delete;
    // try_receive can only fail if its internal mutex does, which nothing survives anyway.
    ~Guard() {  // NOLINT(bugprone-exception-escape)
      if (mutex_ != nullptr) mutex_->unlock();
    }

   private:
    AsyncMutex* mutex_;
  };

  explicit AsyncMutex(const asio::any_io_executor& ex) : token_{ex, 1} {}

  // Never fails: the channel is never cancelled or closed.
  asio::awaitable<Guard> lock() {
    co_await token_.async_send(use_awaitable);
    co_return Guard{this};
  }

 private:
  void unlock() {
    token_.try_receive([](auto...) {});
  }

  asio::experimental::concurrent_channel<void()> token_;
};

class Server {
 public:
  Server(asio::io_context& ctx, const ServerOptions& options, AtomicStats& stats)
      : ctx_{ctx},
        options_{options},
        stats_{stats},
        control_{asio::make_strand(ctx)},
        max_conns_{effective_max_conns(options)},
        lock_{ctx.get_executor()},
        ids_{options.router.first_id},
        tasks_{ctx.get_executor()},
        writer_{options.router, stats, tasks_} {}

  // The accept loop and the control coroutine share one strand, so the
  // control coroutine may close the acceptor the loop is waiting on.
  void start(tcp::acceptor& acceptor, ServerSignals& signals) {
    signals.start(control_);
    asio::co_spawn(
        control_,
        accept_loop(acceptor, accept_errors_, max_conns_, live_, stats_, "mutex",
                    [this](std::shared_ptr<Connection> conn) {
                      asio::co_spawn(ctx_, handle_connection(std::move(conn), tasks_.add()), log_exception);
                    }),
        log_exception);
    asio::co_spawn(control_, control(acceptor, signals), log_exception);
  }

 private:
  using Table = std::unordered_map<ClientId, std::shared_ptr<Connection>>;

  asio::awaitable<void> handle_connection(std::shared_ptr<Connection> conn, WaitGroup::Token token);
  asio::awaitable<void> route(const protocol::Frame& frame);
  asio::awaitable<void> refuse_hello(std::shared_ptr<Connection> conn, std::string reply);
  void close_locked(Table::iterator it, core::CloseReason reason);
  asio::awaitable<void> control(tcp::acceptor& acceptor, ServerSignals& signals);

  asio::io_context& ctx_;
  const ServerOptions& options_;
  AtomicStats& stats_;
  asio::strand<asio::io_context::executor_type> control_;
  std::size_t max_conns_;  // from the open-files limit at start-up, as announced
  LiveSockets live_;  // before anything that may hold a Connection: it must outlive them

  // The article's `connections: Mutex<Vec<OwnedWriteHalf>>`. Whoever holds
  // lock_ may look up, add, remove and write to connections.
  AsyncMutex lock_;
  Table connections_;  // guarded by lock_
  IdAllocator ids_;    // guarded by lock_

  AcceptErrors accept_errors_;  // control strand only
  WaitGroup tasks_;  // readers (handle_connection), and FrameWriter's background tails
  FrameWriter writer_;
  std::atomic<bool> stopping_{false};  // no more reading: the drain has begun
  std::atomic<bool> forced_{false};    // the drain timed out: everything is being shut down
  SharedRateLimit warn_log_;
};

asio::awaitable<void> Server::handle_connection(std::shared_ptr<Connection> conn,
                                                WaitGroup::Token /*running*/) {
  {
    // As in the article: lock, take the next ID, write the greeting with the
    // lock held, add the write half to the table.
    auto guard = co_await lock_.lock();
    conn->id = ids_.next([this](ClientId id) { return connections_.contains(id); });
    const auto greeting = protocol::encode_greeting(conn->id);
    const WriteResult greeted = co_await writer_.write(conn, greeting);
    if (greeted.status != WriteResult::Status::written) {
      stats_.closed(greeted.status == WriteResult::Status::failed ? close_reason(greeted.ec)
                                                                  : core::CloseReason::slow_consumer);
      co_return;
    }
    connections_.emplace(conn->id, conn);
  }
  spdlog::debug("client {} connected from {}", to_u32(conn->id), conn->peer);

  // The read half is this coroutine's alone: read, decode every complete
  // frame, route each one (taking the lock per frame, as the article does).
  protocol::FrameDecoder decoder{options_.max_frame};
  core::CloseReason reason = core::CloseReason::shutdown;
  std::optional<std::string> refusal;  // set by a v2 hello: answer it, then close
  while (!stopping_ && !refusal) {
    const std::span<char> space = decoder.prepare(kReadChunk);
    auto [ec, n] = co_await conn->socket.async_read_some(
        asio::buffer(space.data(), std::min(space.size(), kReadChunk)), kNothrowAwaitable);
    if (ec) {
      reason = close_reason(ec);  // a partial frame in the decoder is discarded with it
      break;
    }
    decoder.commit(n);
    protocol::Frame frame{};
    protocol::DecodeStatus status;
    while (!refusal && (status = decoder.peek(frame)) == protocol::DecodeStatus::frame) {
      switch (classify_reserved(frame)) {
        case ReservedFrame::no:
          co_await route(frame);
          break;
        case ReservedFrame::drop:
          stats_.dropped_no_route();
          break;
        case ReservedFrame::hello:
          refusal = hello_refusal(frame.payload);  // what follows it is never read
          break;
      }
      decoder.pop();
    }
    if (status == protocol::DecodeStatus::too_large) {
      reason = core::CloseReason::oversized_frame;
      break;
    }
  }
  if (refusal) {
    co_await refuse_hello(std::move(conn), std::move(*refusal));
    co_return;
  }

  // While draining, the connection stays in the table: other readers may
  // still deliver the frames they hold to it. control() closes it at the end.
  if (stopping_ && reason != core::CloseReason::oversized_frame) co_return;
  auto guard = co_await lock_.lock();
  const auto it = connections_.find(conn->id);
  if (it != connections_.end() && it->second == conn) close_locked(it, reason);
  // Otherwise a writer closed it already (slow consumer, broken pipe) and counted it.
}

asio::awaitable<void> Server::route(const protocol::Frame& frame) {
  // `self.connections.lock().await[dest].write_all(&m).await`: the lock is
  // held until the destination's socket has taken the whole frame, so every
  // other sender waits for this one destination. That is the design.
  auto guard = co_await lock_.lock();
  const auto it = connections_.find(frame.destination);
  if (it == connections_.end()) {
    stats_.dropped_no_route();
    co_return;
  }
  const WriteResult result = co_await writer_.write(it->second, frame.wire);
  if (const auto reason = count_write(result, frame.wire.size(), stats_)) close_locked(it, *reason);
}

// A v2 hello: the refusal is written like any frame to the client (with the
// lock held), then the client is closed.
asio::awaitable<void> Server::refuse_hello(std::shared_ptr<Connection> conn, std::string reply) {
  auto guard = co_await lock_.lock();
  const auto it = connections_.find(conn->id);
  if (it == connections_.end() || it->second != conn) co_return;  // a writer closed it already
  log_refused_hello(conn->id, conn->peer, "mutex", warn_log_);
  const WriteResult result = co_await writer_.write(conn, reply);
  if (result.status == WriteResult::Status::failed) {
    close_locked(it, close_reason(result.ec));
  } else if (result.status != WriteResult::Status::written) {
    close_locked(it, core::CloseReason::slow_consumer);
  } else {
    close_locked(it, kRefusedHelloClose);
  }
}

// Removes a client from the table (the caller holds lock_), counts and logs
// it, and shuts its socket down so that its reader ends; the reader's is the
// last reference, and the socket closes with it.
void Server::close_locked(Table::iterator it, core::CloseReason reason) {
  Connection& c = *it->second;
  if (forced_) reason = core::CloseReason::shutdown;
  stats_.closed(reason);
  log_closed(c.id, c.peer, reason, options_, warn_log_);
  error_code ignored;
  c.socket.shutdown(tcp::socket::shutdown_both, ignored);
  connections_.erase(it);
}

asio::awaitable<void> Server::control(tcp::acceptor& acceptor, ServerSignals& signals) {
  co_await signals.wait_stop(options_.drain_timeout);

  // Stop accepting and reading. Readers blocked in a read see end-of-file;
  // the others finish routing the frames they hold, then end.
  stopping_ = true;
  accept_errors_.stop_accepting(acceptor);
  live_.shutdown_all(tcp::socket::shutdown_receive);

  const auto deadline = std::chrono::steady_clock::now() + options_.drain_timeout;
  if (!co_await signals.wait_drained(tasks_, deadline)) {
    spdlog::warn("mutex: drain timeout or second signal: shutting every connection down now");
    // Pending writes fail at once, the lock passes quickly, every reader ends.
    forced_ = true;
    live_.shutdown_all(tcp::socket::shutdown_both);
    co_await tasks_.wait_until(std::chrono::steady_clock::now() + std::chrono::hours{24});
  }

  // No reader is left, so nobody writes: close whatever is still connected.
  auto guard = co_await lock_.lock();
  for (auto& [id, conn] : connections_) {
    stats_.closed(core::CloseReason::shutdown);
    log_closed(conn->id, conn->peer, core::CloseReason::shutdown, options_, warn_log_);
  }
  connections_.clear();  // the last references: the sockets close here
  signals.close();       // the last work: run() can return
}

}  // namespace

int MutexEngine::run() {
  check_supported(options_, "mutex");
  net::ignore_sigpipe();  // Asio sends with MSG_NOSIGNAL already; this covers anything else
  const unsigned threads = thread_count(options_.threads);
  asio::io_context ctx{static_cast<int>(threads)};
  tcp::acceptor acceptor = open_acceptor(ctx.get_executor(), options_.listen);
  Server server{ctx, options_, *stats_};
  // Signals are taken and every thread runs before the server says it listens.
  ServerSignals signals{ctx, *stats_, "mutex"};
  ThreadPool pool{ctx, threads};  // throws StartupError if a thread cannot be made

  announce(acceptor, options_, "mutex", threads);
  server.start(acceptor, signals);
  pool.run();  // returns once every coroutine has ended
  return 0;
}

}  // namespace sb::engines::asio_engines
