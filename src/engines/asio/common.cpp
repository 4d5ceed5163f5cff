#include "engines/asio/common.hpp"

#include "engines/asio/asio_engine.hpp"

#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <spdlog/sinks/sink.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <cerrno>
#include <csignal>
#include <thread>
#include <vector>

#include "net/socket.hpp"

namespace sb::engines::asio_engines {

namespace {

constexpr auto kAcceptBackoff = std::chrono::milliseconds{100};
// Connections taken per readiness of the listener, so that a flood of them
// does not hold the control strand for long.
constexpr int kAcceptBatch = 64;

net::Fd open_spare() {
  return net::Fd{::open("/dev/null", O_RDONLY | O_CLOEXEC)};
}

}  // namespace

// ---- AtomicStats ----

void AtomicStats::closed(core::CloseReason reason) noexcept {
  bump(core::StatId::connections_closed);
  bump(core::close_counter(reason));
}

void AtomicStats::add_pending(std::size_t n) noexcept {
  const std::uint64_t now = at(core::StatId::pending_bytes).fetch_add(n, std::memory_order_relaxed) + n;
  Counter& peak_counter = at(core::StatId::peak_pending_bytes);
  std::uint64_t peak = peak_counter.load(std::memory_order_relaxed);
  while (now > peak && !peak_counter.compare_exchange_weak(peak, now, std::memory_order_relaxed)) {
  }
}

core::Stats AtomicStats::snapshot() const noexcept {
  core::Stats s;
  for (std::size_t i = 0; i < core::kStatCount; ++i) s[core::StatId{i}] = values_[i].load(std::memory_order_relaxed);
  s.live_clients = live();
  return s;
}

// ---- small helpers ----

core::CloseReason close_reason(const error_code& ec) noexcept {
  if (ec == asio::error::eof || ec == asio::error::connection_reset || ec == asio::error::broken_pipe ||
      ec == asio::error::shut_down) {
    return core::CloseReason::peer_closed;
  }
  return core::CloseReason::io_error;
}

void log_exception(const std::exception_ptr& e) {
  if (!e) return;
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    spdlog::error("asio engine: a coroutine failed: {}", ex.what());
  } catch (...) {
    spdlog::error("asio engine: a coroutine failed with an unknown exception");
  }
}

unsigned thread_count(unsigned requested) noexcept {
  if (requested != 0) return requested;
  return std::max(1u, std::thread::hardware_concurrency());
}

void check_supported(const ServerOptions& options, std::string_view engine) {
  if (!options.auth_token_file.empty()) {
    throw net::StartupError("engine " + std::string{engine} +
                            " does not support protocol v2, so it cannot authenticate clients: "
                            "--auth-token-file needs --engine reactor");
  }
}

// ---- ThreadPool ----

ThreadPool::ThreadPool(asio::io_context& ctx, unsigned threads) : ctx_{ctx} {
  // Big read buffers (a frame parked near --max-frame) grow by doubling and
  // are freed on every step. With glibc's sliding mmap threshold, the first
  // free of a mapped buffer raises the threshold, later ones land in the
  // per-thread arenas and stay resident: a parked frame then costs more than
  // its own size. A fixed threshold keeps every buffer over 128 KiB mapped
  // and returned to the system when freed. Process-wide, and harmless for
  // the rest of the process.
  ::mallopt(M_MMAP_THRESHOLD, 128 * 1024);
  guard_.emplace(ctx_.get_executor());
  threads_.reserve(threads > 0 ? threads - 1 : 0);
  for (unsigned i = 1; i < threads; ++i) {
    try {
      threads_.emplace_back([this] { ctx_.run(); });
    } catch (const std::system_error& e) {
      const std::size_t started = threads_.size() + 1;
      stop_and_join();
      throw net::StartupError("cannot start " + std::to_string(threads) + " threads (" +
                              std::to_string(started) + " running): " + e.what());
    }
  }
}

ThreadPool::~ThreadPool() {
  stop_and_join();
}

void ThreadPool::run() {
  guard_.reset();
  ctx_.run();
  for (auto& t : threads_) t.join();
  threads_.clear();
}

void ThreadPool::stop_and_join() noexcept {
  if (threads_.empty()) return;
  guard_.reset();
  ctx_.stop();
  for (auto& t : threads_) t.join();
  threads_.clear();
}

tcp::acceptor open_acceptor(const asio::any_io_executor& ex, const net::Endpoint& where) {
  net::Fd listener = net::listen_tcp(where);  // throws StartupError
  // Asio takes ownership of a descriptor; net::Fd has no release(), so hand it a duplicate.
  const int fd = ::fcntl(listener.get(), F_DUPFD_CLOEXEC, 0);
  if (fd < 0) {
    const error_code ec{errno, boost::system::system_category()};
    throw net::StartupError("cannot listen on " + where.to_string() + ": " + ec.message());
  }
  tcp::acceptor acceptor{ex};
  error_code ec;
  acceptor.assign(net::socket_family(fd) == AF_INET6 ? tcp::v6() : tcp::v4(), fd, ec);
  if (ec) {
    ::close(fd);
    throw net::StartupError("cannot listen on " + where.to_string() + ": " + ec.message());
  }
  acceptor.non_blocking(true, ec);  // so that AcceptErrors can accept synchronously
  return acceptor;
}

void announce(const tcp::acceptor& acceptor, const ServerOptions& options, std::string_view engine,
              unsigned threads) {
  net::Endpoint bound = options.listen;
  error_code ec;
  bound.port = acceptor.local_endpoint(ec).port();
  spdlog::info("{}: listening on {} ({} thread{}, max {} connections, policy {}, max-pending {} bytes)",
               engine, bound.to_string(), threads, threads == 1 ? "" : "s", effective_max_conns(options),
               core::to_string(options.router.policy), options.router.max_pending);
  if (options.on_listening) options.on_listening(bound);
}

// ---- log lines ----

void log_closed(ClientId id, std::string_view peer, core::CloseReason reason, const ServerOptions& options,
                SharedRateLimit& warnings) {
  using core::CloseReason;
  if (reason == CloseReason::oversized_frame || reason == CloseReason::slow_consumer) {
    std::uint64_t suppressed = 0;
    if (!warnings.allow(suppressed)) return;
    if (reason == CloseReason::oversized_frame) {
      spdlog::warn(
          "client {} ({}) sent a frame over --max-frame ({} bytes): disconnected ({} lines suppressed)",
          to_u32(id), peer, options.max_frame, suppressed);
    } else {
      spdlog::warn(
          "client {} ({}) closed as a slow consumer (policy {}, stall timeout {} ms) ({} lines suppressed)",
          to_u32(id), peer, core::to_string(options.router.policy),
          std::chrono::duration_cast<std::chrono::milliseconds>(options.router.stall_timeout).count(),
          suppressed);
    }
    return;
  }
  spdlog::debug("client {} ({}) disconnected: {}", to_u32(id), peer, core::to_string(reason));
}

// ---- AcceptErrors ----

AcceptErrors::AcceptErrors() : spare_{open_spare()} {}

AcceptErrors::Next AcceptErrors::on_error(tcp::acceptor& acceptor, const error_code& ec, AtomicStats& stats,
                                          std::string_view engine) {
  if (ec == asio::error::would_block || ec == asio::error::try_again) return Next::wait_readable;
  if (ec == asio::error::connection_aborted || ec == asio::error::interrupted) return Next::accept;
  if (ec == asio::error::no_descriptors || ec.value() == ENFILE) {
    if (!spare_) {
      spare_ = open_spare();
      return Next::back_off;  // still none to spare: wait for descriptors to come back
    }
    spare_.reset();
    error_code ignored;
    tcp::socket victim = acceptor.accept(ignored);  // non-blocking: would_block if none is pending
    const bool took = victim.is_open();
    victim.close(ignored);  // before the spare is reopened: it holds the descriptor the spare gave up
    spare_ = open_spare();
    if (!took) return Next::wait_readable;
    stats.rejected();
    log_reject(engine, "out of file descriptors", stats);
    return Next::accept;
  }
  std::uint64_t suppressed = 0;
  if (log_.allow(suppressed)) {
    spdlog::warn("{}: accept failed: {} ({} similar lines suppressed)", engine, ec.message(), suppressed);
  }
  return Next::back_off;
}

void AcceptErrors::stop_accepting(tcp::acceptor& acceptor) noexcept {
  error_code ignored;
  acceptor.close(ignored);
  spare_.reset();
}

void AcceptErrors::log_reject(std::string_view engine, std::string_view why, const AtomicStats& stats) {
  std::uint64_t suppressed = 0;
  if (log_.allow(suppressed)) {
    spdlog::warn("{}: refused a connection: {} ({} refused in all, {} similar lines suppressed)", engine, why,
                 stats.snapshot().connections_rejected, suppressed);
  }
}

// ---- Connection, LiveSockets ----

Connection::Connection(tcp::socket s, LiveSockets& live) : socket{std::move(s)}, live_{live} {
  error_code ec;
  const auto remote = socket.remote_endpoint(ec);
  peer = ec ? std::string{"?"} : remote.address().to_string() + ":" + std::to_string(remote.port());
  live_.add(this);
}

Connection::~Connection() {
  live_.remove(this);  // before the socket closes, so shutdown_all never sees a dead descriptor
}

void LiveSockets::add(Connection* c) {
  std::lock_guard lock{mutex_};
  conns_.insert(c);
}

void LiveSockets::remove(Connection* c) {
  std::lock_guard lock{mutex_};
  conns_.erase(c);
}

void LiveSockets::shutdown_all(tcp::socket::shutdown_type how) {
  std::lock_guard lock{mutex_};
  for (Connection* c : conns_) {
    error_code ignored;
    c->socket.shutdown(how, ignored);
  }
}

// ---- WaitGroup ----

asio::awaitable<bool> WaitGroup::wait_until(std::chrono::steady_clock::time_point deadline) {
  asio::steady_timer timer{co_await asio::this_coro::executor, deadline};
  // A token left from an earlier time the count touched zero is harmless:
  // the loop looks at the count again.
  while (count_.load() != 0) {
    auto [order, receive_ec, timer_ec] =
        co_await asio::experimental::make_parallel_group(zero_.async_receive(asio::deferred),
                                                         timer.async_wait(asio::deferred))
            .async_wait(asio::experimental::wait_for_one(), asio::use_awaitable);
    if (order[0] == 1) co_return count_.load() == 0;
  }
  co_return true;
}

// ---- ServerSignals ----

ServerSignals::ServerSignals(asio::io_context& ctx, const AtomicStats& stats, std::string_view engine)
    : set_{ctx, SIGINT, SIGTERM, SIGUSR1}, stats_{stats}, engine_{engine}, stops_{ctx.get_executor(), 2} {
  set_.add(SIGHUP);  // throws on failure, as the constructor does: a start-up error either way
}

ServerSignals::~ServerSignals() {
  sigset_t mask;
  sigemptyset(&mask);
  for (const int s : {SIGINT, SIGTERM, SIGUSR1, SIGHUP}) sigaddset(&mask, s);
  ::pthread_sigmask(SIG_BLOCK, &mask, nullptr);
}

void ServerSignals::start(const asio::any_io_executor& strand) {
  asio::co_spawn(strand, take_signals(), log_exception);
}

void ServerSignals::close() {
  error_code ignored;
  set_.cancel(ignored);
}

asio::awaitable<void> ServerSignals::take_signals() {
  for (;;) {
    auto [ec, signo] = co_await set_.async_wait(kNothrowAwaitable);
    if (ec) co_return;  // close()
    switch (signo) {
      case SIGUSR1:
        log_stats_now(stats_);
        break;
      case SIGHUP:
        spdlog::info("{}: SIGHUP: nothing to reload (this engine reads no file)", engine_);
        break;
      default:
        // A third SIGTERM finds the channel full: the second already stops the drain.
        stops_.try_send(error_code{}, signo);
        break;
    }
  }
}

asio::awaitable<void> ServerSignals::wait_stop(std::chrono::milliseconds drain_timeout) {
  auto [ec, signo] = co_await stops_.async_receive(kNothrowAwaitable);
  spdlog::info("{}: signal {}: no longer accepting or reading; draining for up to {} ms", engine_, signo,
               drain_timeout.count());
}

asio::awaitable<bool> ServerSignals::wait_drained(WaitGroup& group, std::chrono::steady_clock::time_point deadline) {
  const asio::any_io_executor ex = co_await asio::this_coro::executor;
  auto race = asio::experimental::make_parallel_group(asio::co_spawn(ex, group.wait_until(deadline), asio::deferred),
                                                      stops_.async_receive(asio::deferred));
  auto [order, failed, drained, stop_ec, signo] =
      co_await std::move(race).async_wait(asio::experimental::wait_for_one(), asio::use_awaitable);
  co_return order[0] == 0 && !failed && drained;
}

void log_stats_now(const AtomicStats& stats) {
  const std::string line = "stats: " + stats.snapshot().summary();
  auto logger = spdlog::default_logger();
  if (logger->should_log(spdlog::level::info)) {
    logger->info("{}", line);
    return;
  }
  // The level hides info lines: hand this one to the sinks directly, in the
  // log's own format.
  const spdlog::details::log_msg msg{logger->name(), spdlog::level::info, line};
  for (const auto& sink : logger->sinks()) {
    sink->log(msg);
    sink->flush();
  }
}

// ---- accept_loop ----

asio::awaitable<void> accept_loop(tcp::acceptor& acceptor, AcceptErrors& errors, std::size_t max_conns,
                                  LiveSockets& live, AtomicStats& stats, std::string_view engine,
                                  std::function<void(std::shared_ptr<Connection>)> on_connection) {
  // As the reactor: wait until the listener is readable, then take what its
  // backlog holds with non-blocking accepts. (Not async_accept: out of
  // descriptors, it fails at once however often it is retried, even with
  // nothing to accept, and the loop would spin.)
  asio::steady_timer backoff{co_await asio::this_coro::executor};
  while (acceptor.is_open()) {
    auto [wait_ec] = co_await acceptor.async_wait(tcp::acceptor::wait_read, kNothrowAwaitable);
    if (wait_ec == asio::error::operation_aborted || !acceptor.is_open()) break;
    for (int i = 0; i < kAcceptBatch && acceptor.is_open(); ++i) {
      error_code ec;
      tcp::socket socket = acceptor.accept(ec);  // the acceptor is non-blocking
      if (ec) {
        const AcceptErrors::Next next = errors.on_error(acceptor, ec, stats, engine);
        if (next == AcceptErrors::Next::accept) continue;
        if (next == AcceptErrors::Next::back_off) {
          backoff.expires_after(kAcceptBackoff);
          co_await backoff.async_wait(kNothrowAwaitable);
        }
        break;
      }
      if (stats.live() >= max_conns) {
        stats.rejected();
        errors.log_reject(engine, "connection limit reached", stats);
        continue;  // the socket closes as it goes out of scope
      }
      socket.set_option(tcp::no_delay(true), ec);
      // Set before the socket is shared: see Connection.
      socket.non_blocking(true, ec);
      auto conn = std::make_shared<Connection>(std::move(socket), live);
      stats.accepted();
      on_connection(std::move(conn));
    }
  }
}

// ---- FrameWriter ----

namespace {

asio::awaitable<void> finish_tail(std::shared_ptr<Connection> dest, std::vector<char> tail,
                                  AtomicStats& stats, WaitGroup::Token /*running*/) {
  stats.add_pending(tail.size());
  co_await asio::async_write(dest->socket, asio::buffer(tail), kNothrowAwaitable);
  stats.sub_pending(tail.size());
  dest->tail_pending.store(false, std::memory_order_release);  // errors: its reader sees them too
}

}  // namespace

asio::awaitable<WriteResult> FrameWriter::write(std::shared_ptr<Connection> dest,
                                                std::span<const char> bytes) const {
  using Status = WriteResult::Status;
  if (dest->tail_pending.load(std::memory_order_acquire)) {
    // The rest of an earlier frame is still on its way (drop policy only).
    co_return WriteResult{Status::dropped, {}};
  }
  // Most writes fit in the socket buffer: try without waiting (the socket is
  // non-blocking, and Asio sends with MSG_NOSIGNAL, so a reset peer is an
  // error code, never SIGPIPE).
  error_code ec;
  std::size_t done = dest->socket.write_some(asio::buffer(bytes.data(), bytes.size()), ec);
  if (ec == asio::error::would_block || ec == asio::error::try_again) {
    ec.clear();
    done = 0;
  }
  if (ec) co_return WriteResult{Status::failed, ec};
  if (done == bytes.size()) co_return WriteResult{Status::written, {}};
  const std::span<const char> rest = bytes.subspan(done);

  // The destination is full: a slow consumer.
  switch (config_.policy) {
    case core::SlowConsumerPolicy::disconnect:
      co_return WriteResult{Status::slow_consumer, {}};
    case core::SlowConsumerPolicy::drop:
      if (done == 0) co_return WriteResult{Status::dropped, {}};
      dest->tail_pending.store(true, std::memory_order_relaxed);  // set before the task can clear it
      asio::co_spawn(dest->socket.get_executor(),
                     finish_tail(dest, std::vector<char>(rest.begin(), rest.end()), stats_, tasks_.add()),
                     log_exception);
      co_return WriteResult{Status::written, {}};
    case core::SlowConsumerPolicy::backpressure:
      break;
  }
  stats_.sender_paused();  // counted as the wait begins: it may last up to stall_timeout
  asio::steady_timer stall{dest->socket.get_executor(), config_.stall_timeout};
  auto [order, write_ec, written, timer_ec] =
      co_await asio::experimental::make_parallel_group(
          asio::async_write(dest->socket, asio::buffer(rest.data(), rest.size()), asio::deferred),
          stall.async_wait(asio::deferred))
          .async_wait(asio::experimental::wait_for_one(), asio::use_awaitable);
  if (order[0] == 1) co_return WriteResult{Status::slow_consumer, {}};
  if (write_ec) co_return WriteResult{Status::failed, write_ec};
  co_return WriteResult{Status::written, {}};
}

std::optional<core::CloseReason> count_write(const WriteResult& result, std::size_t bytes,
                                             AtomicStats& stats) {
  switch (result.status) {
    case WriteResult::Status::written:
      stats.routed(bytes);
      return std::nullopt;
    case WriteResult::Status::dropped:
      stats.dropped_slow_consumer();
      return std::nullopt;
    case WriteResult::Status::slow_consumer:
      stats.dropped_slow_consumer();
      return core::CloseReason::slow_consumer;
    case WriteResult::Status::failed:
      stats.dropped_no_route();
      return close_reason(result.ec);  // it is gone
  }
  return std::nullopt;
}

// ---- Protocol v2 refusal ----

ReservedFrame classify_reserved(const protocol::Frame& frame) noexcept {
  if (!protocol::is_reserved(frame.destination)) return ReservedFrame::no;
  const std::string_view payload{frame.payload.data(), frame.payload.size()};
  if (to_u32(frame.destination) == protocol::kServerId && payload.starts_with(protocol::kHelloPrefix)) {
    return ReservedFrame::hello;
  }
  return ReservedFrame::drop;
}

std::string hello_refusal(std::span<const char> hello_payload) {
  // The nonce is echoed whenever the hello held a well-formed one, valid
  // hello or not (DESIGN.md 1b).
  const protocol::HelloParse h = protocol::parse_hello(hello_payload);
  const std::string_view nonce = h.status == protocol::HelloParse::Status::ok ? h.hello.nonce : h.nonce;
  std::string reply = "switchboard/2 error ";
  if (!nonce.empty()) {
    reply += "nonce=";
    reply += nonce;
    reply += ' ';
  }
  reply += "unsupported";
  reply += '\0';  // every v1 delivery ends with its NUL
  return reply;
}

void log_refused_hello(ClientId id, std::string_view peer, std::string_view engine, SharedRateLimit& limit) {
  std::uint64_t suppressed = 0;
  if (!limit.allow(suppressed)) return;
  spdlog::info("client {} ({}) asked for protocol v2, which engine {} does not support: refused, closing ({} lines suppressed)",
               to_u32(id), peer, engine, suppressed);
}

AsioEngine::AsioEngine(ServerOptions options)
    : options_{std::move(options)}, stats_{std::make_unique<AtomicStats>()} {}

AsioEngine::~AsioEngine() = default;

core::Stats AsioEngine::stats() const {
  return stats_->snapshot();
}

}  // namespace sb::engines::asio_engines
