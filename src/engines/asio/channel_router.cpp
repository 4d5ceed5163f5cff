// The article's channel `Router`:
//
//   Router::new: let (tx, rx) = mpsc::channel(100); spawn(dispatcher(rx))
//   handle_connections: loop { accept; spawn(handle_connection) }
//   handle_connection: split; tx.send(New(write)); loop { read; parse; tx.send(Send(dest, m)) }
#include "engines/asio/channel_router.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/signal_set.hpp>
#include <csignal>

#include "net/socket.hpp"
#include "protocol/frame_decoder.hpp"

namespace sb::engines::asio_engines {

ChannelRouter::ChannelRouter(asio::io_context& ctx, const ServerOptions& options, AtomicStats& stats,
                             std::string_view name, Dispatcher dispatcher)
    : ctx_{ctx},
      options_{options},
      stats_{stats},
      name_{name},
      dispatcher_{dispatcher},
      control_{asio::make_strand(ctx)},
      max_conns_{effective_max_conns(options)},
      channel_{ctx.get_executor(), kMessageCapacity},
      tasks_{ctx.get_executor()} {}

void ChannelRouter::start(tcp::acceptor& acceptor, ServerSignals& signals) {
  signals.start(control_);
  asio::co_spawn(ctx_, dispatcher_(*this, tasks_.add()), log_exception);
  // The accept loop and control() share a strand, so control() may close
  // the acceptor the loop waits on, and read readers_ without a lock.
  asio::co_spawn(control_,
                 accept_loop(acceptor, accept_errors_, max_conns_, live_, stats_, name_,
                             [this](std::shared_ptr<Connection> conn) {
                               ++readers_;
                               asio::co_spawn(ctx_, handle_connection(std::move(conn)), log_exception);
                             }),
                 log_exception);
  asio::co_spawn(control_, control(acceptor, signals), log_exception);
}

asio::awaitable<void> ChannelRouter::handle_connection(std::shared_ptr<Connection> conn) {
  // Sends on the channel never fail: it is neither closed nor cancelled.
  // They wait while it is full, which is how a busy dispatcher slows every
  // reader down. (Messages are built before the co_await, not inside it:
  // g++ 12 destroys some temporaries of a co_await expression twice.)

  // `self.tx.send(Message::New(write)).await`: the dispatcher picks the ID,
  // greets the client and keeps the write half.
  Message joined = Message::joined_by(conn);
  co_await channel_.async_send(error_code{}, std::move(joined), kNothrowAwaitable);

  protocol::FrameDecoder decoder{options_.max_frame};
  core::CloseReason reason = core::CloseReason::shutdown;
  bool refused = false;  // a v2 hello: the dispatcher answers and closes; nothing after it is read
  while (!stopping_ && !refused) {
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
    while (!refused && (status = decoder.peek(frame)) == protocol::DecodeStatus::frame) {
      switch (classify_reserved(frame)) {
        case ReservedFrame::no: {
          // `self.tx.send(Message::Send(dest, m)).await`
          Message send = Message::frame_for(frame.destination, frame.wire);
          co_await channel_.async_send(error_code{}, std::move(send), kNothrowAwaitable);
          break;
        }
        case ReservedFrame::drop:
          stats_.dropped_no_route();
          break;
        case ReservedFrame::hello: {
          refused = true;
          Message refusal = Message::refusal_for(conn, hello_refusal(frame.payload));
          co_await channel_.async_send(error_code{}, std::move(refusal), kNothrowAwaitable);
          break;
        }
      }
      decoder.pop();
    }
    if (status == protocol::DecodeStatus::too_large) {
      reason = core::CloseReason::oversized_frame;  // the dispatcher logs it, with the client's ID
      break;
    }
  }
  if (stopping_ && reason != core::CloseReason::oversized_frame) reason = core::CloseReason::shutdown;
  Message left = Message::disconnected_by(std::move(conn), reason);
  co_await channel_.async_send(error_code{}, std::move(left), kNothrowAwaitable);
}

asio::awaitable<void> ChannelRouter::control(tcp::acceptor& acceptor, ServerSignals& signals) {
  co_await signals.wait_stop(options_.drain_timeout);
  const auto deadline = std::chrono::steady_clock::now() + options_.drain_timeout;

  // Stop accepting and reading: readers blocked in a read see end-of-file,
  // the others finish sending what they have decoded; each then says `disconnected`.
  stopping_ = true;
  accept_errors_.stop_accepting(acceptor);
  live_.shutdown_all(tcp::socket::shutdown_receive);

  // Tell the dispatcher how many readers to wait for. From a task of its
  // own: the channel may be full, and the drain deadline must not wait for room.
  asio::co_spawn(ctx_, channel_.async_send(error_code{}, Message::stop_after(readers_), asio::use_awaitable),
                 log_exception);

  if (!co_await signals.wait_drained(tasks_, deadline)) {
    spdlog::warn("{}: drain timeout or second signal: shutting every connection down now", name_);
    // Pending writes fail at once, so the dispatcher and the writers run to the end.
    forced_ = true;
    live_.shutdown_all(tcp::socket::shutdown_both);
    co_await tasks_.wait_until(std::chrono::steady_clock::now() + std::chrono::hours{24});
  }
  signals.close();  // the last work: run() can return
}

int ChannelRouter::serve(const ServerOptions& options, AtomicStats& stats, std::string_view name,
                         Dispatcher dispatcher) {
  check_supported(options, name);
  net::ignore_sigpipe();  // Asio sends with MSG_NOSIGNAL already; this covers anything else
  const unsigned threads = thread_count(options.threads);
  asio::io_context ctx{static_cast<int>(threads)};
  tcp::acceptor acceptor = open_acceptor(ctx.get_executor(), options.listen);
  ChannelRouter router{ctx, options, stats, name, dispatcher};
  // Signals are taken and every thread runs before the server says it listens.
  ServerSignals signals{ctx, stats, name};
  ThreadPool pool{ctx, threads};  // throws StartupError if a thread cannot be made

  announce(acceptor, options, name, threads);
  router.start(acceptor, signals);
  pool.run();  // returns once every coroutine has ended
  return 0;
}

}  // namespace sb::engines::asio_engines
