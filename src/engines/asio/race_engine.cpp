// The article's "Race (select)" section:
//
//   loop {
//     let s1 = select_all(read_connections.map(|c| c.read()));      // Event::Read
//     let s2 = select_all(write_connections.map(|c| c.advance_send())); // pending forever if empty
//     let s3 = listener.accept();                                    // Event::Connection
//     match (s1, s2, s3).race().await {
//       Read(buf)       => if let Ok((dest, m)) = parse_message(buf) { write_connections[dest].send(&m) }
//       Connection(tcp) => { split; write_sock.send(id); push both halves }
//     }
//   }
//
// Here one ranged parallel group holds every operation (a write only for a
// client with output, as advance_send pends when there is none), each
// wrapped in a coroutine so that they share one type. Once one completes the
// rest are cancelled (WaitForOneBatch: wait_for_one, posted), and the group
// completes when all have: the winner and any that completed before their
// cancellation all report, and every one of them is handled. The signal set
// and the timers (drain deadline, stall checks) are raced the same way.
#include "engines/asio/race_engine.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/write.hpp>
#include <csignal>
#include <optional>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "engines/asio/common.hpp"
#include "net/socket.hpp"
#include "protocol/frame_decoder.hpp"
#include "protocol/wire.hpp"

namespace sb::engines::asio_engines {

namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kAcceptBackoff = std::chrono::milliseconds{100};
constexpr int kAcceptBatch = 256;  // connections taken per accept event

// What a raced operation reports. It carries back everything the operation
// worked on, so none of them needs a reference into the router's state.
struct Event {
  error_code ec;
  std::optional<tcp::socket> socket;  // accept: the new connection
  std::unique_ptr<char[]> data;       // read: the bytes that arrived
  std::vector<char> out;              // write: the client's output buffer, handed back
  std::size_t n = 0;                  // read: bytes read; write: bytes written
  int signal = 0;
};

// Every raced operation starts the same way. First it turns off
// throw-on-cancellation, so that it never loses what it carries (a write's
// buffer) to an exception; then, if the race was decided before it got to
// run, it does nothing and reports at once: a write must not start, because
// it could wait on a full socket while the whole turn waits for it.
bool decided(const asio::cancellation_state& state) noexcept {
  return state.cancelled() != asio::cancellation_type::none;
}

asio::awaitable<Event> accept_one(tcp::acceptor& acceptor) {
  co_await asio::this_coro::throw_if_cancelled(false);
  Event ev;
  if (decided(co_await asio::this_coro::cancellation_state)) {
    ev.ec = asio::error::operation_aborted;
    co_return ev;
  }
  auto [ec, socket] = co_await acceptor.async_accept(kNothrowAwaitable);
  ev.ec = ec;
  if (!ec) ev.socket.emplace(std::move(socket));
  co_return ev;
}

// Waits until the socket is readable, then reads into a buffer of its own:
// an idle client holds no read buffer.
asio::awaitable<Event> read_some(tcp::socket& socket) {
  co_await asio::this_coro::throw_if_cancelled(false);
  Event ev;
  if (decided(co_await asio::this_coro::cancellation_state)) {
    ev.ec = asio::error::operation_aborted;
    co_return ev;
  }
  auto [ec] = co_await socket.async_wait(tcp::socket::wait_read, kNothrowAwaitable);
  if (ec) {
    ev.ec = ec;
    co_return ev;
  }
  ev.data = std::make_unique_for_overwrite<char[]>(kReadChunk);
  ev.n = socket.read_some(asio::buffer(ev.data.get(), kReadChunk), ev.ec);  // non-blocking
  co_return ev;
}

// The article's advance_send: write the whole buffer (or as much as the race
// allows; the Event says how much).
asio::awaitable<Event> write_all(tcp::socket& socket, std::vector<char> out) {
  co_await asio::this_coro::throw_if_cancelled(false);
  Event ev;
  if (decided(co_await asio::this_coro::cancellation_state)) {
    ev.ec = asio::error::operation_aborted;
  } else {
    auto [ec, n] = co_await asio::async_write(socket, asio::buffer(out), kNothrowAwaitable);
    ev.ec = ec;
    ev.n = n;
  }
  ev.out = std::move(out);
  co_return ev;
}

asio::awaitable<Event> wait_signal(asio::signal_set& signals) {
  co_await asio::this_coro::throw_if_cancelled(false);
  Event ev;
  if (decided(co_await asio::this_coro::cancellation_state)) {
    ev.ec = asio::error::operation_aborted;
    co_return ev;
  }
  auto [ec, signo] = co_await signals.async_wait(kNothrowAwaitable);
  ev.ec = ec;
  ev.signal = signo;
  co_return ev;
}

asio::awaitable<Event> sleep_until(Clock::time_point when) {
  co_await asio::this_coro::throw_if_cancelled(false);
  Event ev;
  if (decided(co_await asio::this_coro::cancellation_state)) {
    ev.ec = asio::error::operation_aborted;
    co_return ev;
  }
  asio::steady_timer timer{co_await asio::this_coro::executor, when};
  auto [ec] = co_await timer.async_wait(kNothrowAwaitable);
  ev.ec = ec;
  co_return ev;
}

using Op = decltype(asio::co_spawn(std::declval<asio::any_io_executor>(),
                                   std::declval<asio::awaitable<Event>>(), asio::deferred));

// The group's cancellation condition: experimental::wait_for_one, except
// that the others are cancelled from a posted handler rather than at once.
// The reactor completes the operations of one epoll batch one after the
// other; cancelling at the first would throw the rest of the batch away (to
// be raced again next turn, one event per turn). Posted, the cancellation
// runs after them, and the turn handles the whole batch.
struct Turn {
  asio::cancellation_signal cancel;  // bound to the group: emitting it cancels every operation
  bool first_done = false;
  bool over = false;
};

class WaitForOneBatch {
 public:
  WaitForOneBatch(std::shared_ptr<Turn> turn, asio::any_io_executor ex)
      : turn_{std::move(turn)}, ex_{std::move(ex)} {}

  template <typename... Args>
  asio::cancellation_type_t operator()(const Args&... /*result*/) {
    if (!turn_->first_done) {
      turn_->first_done = true;
      asio::post(ex_, [turn = turn_] {
        if (!turn->over) turn->cancel.emit(asio::cancellation_type::terminal);
      });
    }
    return asio::cancellation_type::none;
  }

 private:
  std::shared_ptr<Turn> turn_;
  asio::any_io_executor ex_;
};

class Router {
 public:
  Router(tcp::acceptor& acceptor, const ServerOptions& options, AtomicStats& stats)
      : acceptor_{acceptor},
        signals_{acceptor.get_executor(), SIGINT, SIGTERM, SIGUSR1},
        options_{options},
        stats_{stats},
        max_conns_{effective_max_conns(options)},
        ids_{options.router.first_id} {}

  asio::awaitable<void> handle_connections();

 private:
  struct Client {
    Client(ClientId i, tcp::socket s, std::size_t max_frame)
        : id{i}, socket{std::move(s)}, decoder{max_frame} {}
    ClientId id;
    tcp::socket socket;
    std::string peer;
    protocol::FrameDecoder decoder;               // the article's ReadSocket buffer
    std::vector<char> out;                        // the article's WriteSocket buffer: whole frames, in order
    std::optional<ClientId> paused_on;            // backpressure: waits for this destination to drain
    std::optional<Clock::time_point> stalled_on;  // senders wait on it; no write progress since
    bool closing = false;
  };
  struct Tag {
    enum class Kind { accept, signal, timer, read, write } kind;
    ClientId id{};
  };
  enum class Route { delivered, paused };

  void on_accepted(Event& ev, Clock::time_point now);
  void add_client(tcp::socket socket);
  void on_read(ClientId id, Event& ev);
  void on_written(ClientId id, const std::exception_ptr& failure, Event& ev, Clock::time_point now);
  void on_signal(const Event& ev, Clock::time_point now);
  void process_frames(Client& c, Clock::time_point now);
  Route route(Client& from, ClientId to, std::span<const char> wire, Clock::time_point now);
  void after_turn(Clock::time_point now);
  void close(Client& c, core::CloseReason reason);
  void reap();
  Client* find(ClientId id) noexcept;
  bool output_pending() const noexcept;
  std::optional<Clock::time_point> next_stall_check() const;

  tcp::acceptor& acceptor_;
  asio::signal_set signals_;
  const ServerOptions& options_;
  AtomicStats& stats_;
  std::size_t max_conns_;
  IdAllocator ids_;
  AcceptErrors accept_errors_;
  SharedRateLimit warnings_;
  // The article's read_connections and write_connections, as one table.
  // unique_ptr: a raced operation holds a client's socket by reference, so
  // clients must not move; they are erased only between turns.
  std::unordered_map<ClientId, std::unique_ptr<Client>> clients_;
  Clock::time_point accept_resume_{};  // after an accept error that needs a pause
  bool stopping_ = false;
  bool stop_now_ = false;
  Clock::time_point drain_deadline_{};
};

asio::awaitable<void> Router::handle_connections() {
  const asio::any_io_executor ex = co_await asio::this_coro::executor;
  for (;;) {
    Clock::time_point now = Clock::now();
    if (stop_now_) break;
    if (stopping_) {
      if (!output_pending()) break;
      if (now >= drain_deadline_) {
        std::size_t abandoned = 0;
        for (const auto& [id, c] : clients_) abandoned += c->out.size();
        spdlog::warn("race: drain timeout: {} queued bytes were not delivered", abandoned);
        break;
      }
    }

    // Build this turn's race.
    std::vector<Op> ops;
    std::vector<Tag> tags;
    auto race = [&](Tag tag, asio::awaitable<Event> op) {
      tags.push_back(tag);
      ops.push_back(asio::co_spawn(ex, std::move(op), asio::deferred));
    };
    race({Tag::Kind::signal}, wait_signal(signals_));
    if (stopping_) {
      race({Tag::Kind::timer}, sleep_until(drain_deadline_));
    } else if (now < accept_resume_) {
      race({Tag::Kind::timer}, sleep_until(accept_resume_));
    } else {
      race({Tag::Kind::accept}, accept_one(acceptor_));
    }
    for (auto& [id, c] : clients_) {
      if (!stopping_ && !c->paused_on) race({Tag::Kind::read, id}, read_some(c->socket));
      if (!c->out.empty()) race({Tag::Kind::write, id}, write_all(c->socket, std::exchange(c->out, {})));
    }
    if (const auto check = next_stall_check()) race({Tag::Kind::timer}, sleep_until(*check));

    // Race it: the first completion cancels the others (posted); all report.
    auto turn = std::make_shared<Turn>();
    auto group = asio::experimental::make_parallel_group(std::move(ops));
    auto [order, failures, events] = co_await std::move(group).async_wait(
        WaitForOneBatch{turn, ex}, asio::bind_cancellation_slot(turn->cancel.slot(), asio::use_awaitable));
    turn->over = true;
    turn->cancel.slot().clear();

    // Handle the events, with exclusive access to everything. Output buffers
    // come back first, so that no frame routed this turn lands in a buffer
    // that is still out with its write.
    now = Clock::now();
    for (const std::size_t i : order) {
      if (tags[i].kind == Tag::Kind::write) on_written(tags[i].id, failures[i], events[i], now);
    }
    for (const std::size_t i : order) {
      switch (tags[i].kind) {
        case Tag::Kind::accept:
          if (!failures[i]) on_accepted(events[i], now);
          break;
        case Tag::Kind::signal:
          if (!failures[i]) on_signal(events[i], now);
          break;
        case Tag::Kind::read:
          if (!failures[i]) on_read(tags[i].id, events[i]);
          break;
        case Tag::Kind::timer:  // stall checks and deadlines run below, every turn
        case Tag::Kind::write:
          break;
      }
    }
    after_turn(now);
  }

  for (auto& [id, c] : clients_) close(*c, core::CloseReason::shutdown);
  reap();
}

void Router::on_accepted(Event& ev, Clock::time_point now) {
  if (ev.ec) {
    if (ev.ec != asio::error::operation_aborted && accept_errors_.handle(acceptor_, ev.ec, stats_, "race")) {
      accept_resume_ = now + kAcceptBackoff;
    }
    return;
  }
  add_client(std::move(*ev.socket));
  // The listener is ready: take what else waits in its backlog now (the
  // acceptor is non-blocking), rather than one connection per turn, since a
  // turn costs an operation per client.
  for (int i = 1; i < kAcceptBatch; ++i) {
    error_code ec;
    tcp::socket more = acceptor_.accept(ec);
    if (ec) {
      if (ec != asio::error::would_block && ec != asio::error::try_again &&
          accept_errors_.handle(acceptor_, ec, stats_, "race")) {
        accept_resume_ = now + kAcceptBackoff;
      }
      return;
    }
    add_client(std::move(more));
  }
}

void Router::add_client(tcp::socket socket) {
  if (stats_.live() >= max_conns_) {
    stats_.rejected();
    accept_errors_.log_reject("race", "connection limit reached", stats_);
    return;  // the socket closes as it goes out of scope
  }
  error_code ec;
  socket.set_option(tcp::no_delay(true), ec);
  socket.non_blocking(true, ec);  // read_some() reads after a readiness wait
  const ClientId id = ids_.next([this](ClientId candidate) { return clients_.contains(candidate); });
  auto c = std::make_unique<Client>(id, std::move(socket), options_.max_frame);
  const auto remote = c->socket.remote_endpoint(ec);
  c->peer = ec ? std::string{"?"} : remote.address().to_string() + ":" + std::to_string(remote.port());
  // `write_sock.send(&id.to_be_bytes())`: the greeting waits in the output
  // buffer like any frame.
  const auto greeting = protocol::encode_greeting(id);
  c->out.assign(greeting.begin(), greeting.end());
  stats_.add_pending(greeting.size());
  stats_.accepted();
  spdlog::debug("client {} connected from {}", to_u32(id), c->peer);
  clients_.emplace(id, std::move(c));
}

void Router::on_read(ClientId id, Event& ev) {
  Client* c = find(id);
  if (c == nullptr || c->closing) return;
  if (ev.ec) {
    if (ev.ec == asio::error::operation_aborted || ev.ec == asio::error::would_block ||
        ev.ec == asio::error::try_again) {
      return;  // nothing was read
    }
    close(*c, close_reason(ev.ec));  // a partial frame in the decoder is discarded with it
    return;
  }
  // `Event::Read(bytes_mut) => parse_message(..)`: every complete frame, not just the first.
  c->decoder.feed({ev.data.get(), ev.n});
  process_frames(*c, Clock::now());
}

void Router::on_written(ClientId id, const std::exception_ptr& failure, Event& ev, Clock::time_point now) {
  Client* c = find(id);
  if (c == nullptr) return;
  if (failure) {
    // Not expected (write_all does not throw); its buffer is lost, and a
    // stream with a hole in it is of no use to the client.
    log_exception(failure);
    close(*c, core::CloseReason::io_error);
    return;
  }
  c->out = std::move(ev.out);
  c->out.erase(c->out.begin(), c->out.begin() + static_cast<std::ptrdiff_t>(ev.n));
  stats_.sub_pending(ev.n);
  if (ev.n > 0 && c->stalled_on) c->stalled_on = now;  // progress: the stall clock starts again
  if (ev.ec && ev.ec != asio::error::operation_aborted) close(*c, close_reason(ev.ec));
}

void Router::on_signal(const Event& ev, Clock::time_point now) {
  if (ev.ec) return;
  if (ev.signal == SIGUSR1) {
    spdlog::info("stats: {}", stats_.snapshot().summary());
    return;
  }
  if (stopping_) {
    spdlog::warn("race: second signal: stopping without waiting for the drain");
    stop_now_ = true;
    return;
  }
  spdlog::info("race: signal {}: no longer accepting or reading; draining for up to {} ms", ev.signal,
               options_.drain_timeout.count());
  stopping_ = true;
  drain_deadline_ = now + options_.drain_timeout;
  accept_errors_.stop_accepting(acceptor_);
}

void Router::process_frames(Client& c, Clock::time_point now) {
  protocol::Frame frame{};
  for (;;) {
    const protocol::DecodeStatus status = c.decoder.peek(frame);
    if (status == protocol::DecodeStatus::need_more) break;
    if (status == protocol::DecodeStatus::too_large) {
      close(c, core::CloseReason::oversized_frame);
      return;
    }
    if (route(c, frame.destination, frame.wire, now) == Route::paused) return;  // the frame stays
    c.decoder.pop();
    if (c.closing) return;  // it was its own destination, closed as a slow consumer
  }
  c.decoder.release_if_empty();  // idle clients hold no buffer
}

// `write_connections[dest].send(&m)`, bounded by max_pending (plus one frame
// when the buffer is empty, so that any frame can be delivered).
Router::Route Router::route(Client& from, ClientId to, std::span<const char> wire, Clock::time_point now) {
  Client* dest = find(to);
  if (dest == nullptr || dest->closing) {
    stats_.dropped_no_route();
    return Route::delivered;
  }
  const core::RouterConfig& config = options_.router;
  if (!dest->out.empty() && dest->out.size() + wire.size() > config.max_pending) {
    switch (config.policy) {
      case core::SlowConsumerPolicy::drop:
        stats_.dropped_slow_consumer();
        return Route::delivered;
      case core::SlowConsumerPolicy::disconnect:
        stats_.dropped_slow_consumer();
        close(*dest, core::CloseReason::slow_consumer);
        return Route::delivered;
      case core::SlowConsumerPolicy::backpressure:
        from.paused_on = to;
        if (!dest->stalled_on) dest->stalled_on = now;
        stats_.sender_paused();
        return Route::paused;
    }
  }
  dest->out.insert(dest->out.end(), wire.begin(), wire.end());
  stats_.routed(wire.size());
  stats_.add_pending(wire.size());
  return Route::delivered;
}

void Router::after_turn(Clock::time_point now) {
  const core::RouterConfig& config = options_.router;
  // Destinations that senders wait on and that made no write progress for
  // stall_timeout are closed as slow consumers.
  std::unordered_set<ClientId> waited_on;
  for (const auto& [id, c] : clients_) {
    if (c->paused_on && !c->closing) waited_on.insert(*c->paused_on);
  }
  for (auto& [id, d] : clients_) {
    if (!d->stalled_on) continue;
    if (d->closing || !waited_on.contains(id)) {
      d->stalled_on.reset();
    } else if (now - *d->stalled_on >= config.stall_timeout) {
      close(*d, core::CloseReason::slow_consumer);
    }
  }
  // Senders whose destination drained below half (or left) go on with the
  // frames they hold; they may pause again, on another destination.
  for (auto& [id, c] : clients_) {
    if (!c->paused_on || c->closing) continue;
    const Client* dest = find(*c->paused_on);
    if (dest != nullptr && !dest->closing && dest->out.size() > config.max_pending / 2) continue;
    c->paused_on.reset();
    process_frames(*c, now);
  }
  reap();
}

void Router::close(Client& c, core::CloseReason reason) {
  if (c.closing) return;
  c.closing = true;
  stats_.closed(reason);
  log_closed(c.id, c.peer, reason, options_, warnings_);
}

void Router::reap() {
  for (auto it = clients_.begin(); it != clients_.end();) {
    if (it->second->closing) {
      stats_.sub_pending(it->second->out.size());  // undelivered output goes with it
      it = clients_.erase(it);                     // and the socket closes
    } else {
      ++it;
    }
  }
}

Router::Client* Router::find(ClientId id) noexcept {
  const auto it = clients_.find(id);
  return it == clients_.end() ? nullptr : it->second.get();
}

bool Router::output_pending() const noexcept {
  for (const auto& [id, c] : clients_) {
    if (!c->closing && !c->out.empty()) return true;
  }
  return false;
}

std::optional<Clock::time_point> Router::next_stall_check() const {
  std::optional<Clock::time_point> next;
  for (const auto& [id, c] : clients_) {
    if (!c->stalled_on) continue;
    const auto when =
        *c->stalled_on + std::chrono::duration_cast<Clock::duration>(options_.router.stall_timeout);
    if (!next || when < *next) next = when;
  }
  return next;
}

}  // namespace

int RaceEngine::run() {
  net::ignore_sigpipe();  // Asio sends with MSG_NOSIGNAL already; this covers anything else
  asio::io_context ctx{1};
  tcp::acceptor acceptor = open_acceptor(ctx.get_executor(), options_.listen);
  Router router{acceptor, options_, *stats_};

  announce(acceptor, options_, "race", 1);
  asio::co_spawn(ctx, router.handle_connections(), log_exception);
  ctx.run();  // returns once the router's coroutine has ended
  return 0;
}

}  // namespace sb::engines::asio_engines
