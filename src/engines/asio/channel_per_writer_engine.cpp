// The article's "channel per writer" section, first variant:
//
//   async fn central_dispatcher(mut rx) {
//     let mut writers = Vec::new();
//     while let Some(msg) = rx.recv().await {
//       match msg {
//         New(connection) => { let (tx, rx) = mpsc::channel(100);
//                              spawn(client_dispatcher(connection, rx));
//                              tx.send(id.to_be_bytes()).await; writers.push(tx) }
//         Send(id, items) => writers[id].send(items).await,
//       }
//     }
//   }
//   async fn client_dispatcher(mut connection, mut rx) {
//     loop { let m = rx.recv().await; connection.write_all(&m).await }
//   }
//
// The readers and the shared channel are channel_router.cpp, as for
// `channels`. Here the Vec is a map keyed by ClientId, the per-writer
// channel is sized by max_pending, and the dispatcher also handles clients
// that leave and the stop.
#include "engines/asio/channel_per_writer_engine.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <unordered_map>

#include "engines/asio/channel_router.hpp"
#include "net/socket.hpp"
#include "protocol/wire.hpp"

namespace sb::engines::asio_engines {

namespace {

// One client's queue: whole frames (or its greeting), written in order. An
// empty vector is the end marker: write what is queued before it, then stop.
using WriterChannel = asio::experimental::concurrent_channel<void(error_code, std::vector<char>)>;

struct Writer {
  std::shared_ptr<Connection> conn;
  std::shared_ptr<WriterChannel> tx;
};
using Table = std::unordered_map<ClientId, Writer>;

// The article's `client_dispatcher`: the only coroutine that writes to this
// client's socket, so frames never interleave and keep their order.
asio::awaitable<void> client_writer(std::shared_ptr<Connection> conn, std::shared_ptr<WriterChannel> rx,
                                    AtomicStats& stats, WaitGroup::Token /*running*/) {
  bool broken = false;
  for (;;) {
    auto [ec, bytes] = co_await rx->async_receive(kNothrowAwaitable);
    if (ec || bytes.empty()) co_return;
    if (!broken) {
      auto [write_ec, n] = co_await asio::async_write(conn->socket, asio::buffer(bytes), kNothrowAwaitable);
      if (write_ec) {
        // The peer is gone, or the dispatcher shut the socket down. Make sure
        // the reader notices, and keep draining: the dispatcher must never
        // wait for room in a dead writer's channel.
        broken = true;
        error_code ignored;
        conn->socket.shutdown(tcp::socket::shutdown_both, ignored);
      }
    }
    stats.sub_pending(bytes.size());
  }
}

asio::awaitable<void> send_end_marker(std::shared_ptr<WriterChannel> tx) {
  std::vector<char> end;  // not a temporary in the co_await: see channel_router.cpp
  co_await tx->async_send(error_code{}, std::move(end), kNothrowAwaitable);
}

// Tells a writer to stop once it has written what is queued. If its channel
// is full, the marker goes from a task of its own (the article's remedy for
// a send that must not hold the dispatcher up).
void end_writer(ChannelRouter& router, const std::shared_ptr<WriterChannel>& tx) {
  if (tx->try_send(error_code{}, std::vector<char>{})) return;
  asio::co_spawn(router.context(), send_end_marker(tx), log_exception);
}

// Closes a client from the dispatcher's side: counts and logs it once, shuts
// its socket down (its writer's pending write fails, its reader ends and its
// `disconnected` then finds it closed) and ends its writer.
void close_client(ChannelRouter& router, Table& writers, Connection& c, core::CloseReason reason) {
  if (c.closed) return;
  c.closed = true;
  if (router.forced()) reason = core::CloseReason::shutdown;
  router.stats().closed(reason);
  log_closed(c.id, c.peer, reason, router.options(), router.warnings());
  error_code ignored;
  c.socket.shutdown(tcp::socket::shutdown_both, ignored);
  if (const auto it = writers.find(c.id); it != writers.end() && it->second.conn.get() == &c) {
    end_writer(router, it->second.tx);
    writers.erase(it);
  }
}

// `writers[id].send(items).await`: completes at once unless the destination's
// channel is full. Then the policy decides; under backpressure the
// dispatcher waits for room (and every sender with it), at most stall_timeout.
asio::awaitable<void> deliver(ChannelRouter& router, Table& writers, Writer w, std::vector<char> wire) {
  AtomicStats& stats = router.stats();
  const core::RouterConfig& config = router.options().router;
  const std::size_t size = wire.size();
  stats.add_pending(size);  // before the writer can take it off
  // try_send moves from `wire` only when it succeeds.
  if (w.tx->try_send(error_code{}, std::move(wire))) {
    stats.routed(size);
    co_return;
  }
  if (config.policy == core::SlowConsumerPolicy::backpressure) {
    stats.sender_paused();
    asio::steady_timer stall{router.context(), config.stall_timeout};
    // try_send above failed, so it left `wire` alone.
    auto group = asio::experimental::make_parallel_group(
        w.tx->async_send(error_code{}, std::move(wire), asio::deferred),  // NOLINT(bugprone-use-after-move)
        stall.async_wait(asio::deferred));
    auto [order, send_ec, timer_ec] =
        co_await std::move(group).async_wait(asio::experimental::wait_for_one(), asio::use_awaitable);
    if (order[0] == 0 && !send_ec) {
      stats.routed(size);
      co_return;
    }
  }
  stats.sub_pending(size);
  stats.dropped_slow_consumer();
  if (config.policy != core::SlowConsumerPolicy::drop) {
    close_client(router, writers, *w.conn, core::CloseReason::slow_consumer);
  }
}

asio::awaitable<void> central_dispatcher(ChannelRouter& router, WaitGroup::Token /*running*/) {
  // The article's `let mut writers = Vec::new()`: the dispatcher's alone.
  Table writers;
  IdAllocator ids{router.options().router.first_id};
  const std::size_t capacity =
      std::max<std::size_t>(1, router.options().router.max_pending / (router.options().max_frame + 1));
  StopCondition stop;

  while (!stop.done()) {
    auto [ec, message] = co_await router.messages().async_receive(kNothrowAwaitable);
    if (ec) break;  // not expected: the channel is never closed
    stop.on(message);

    switch (message.kind) {
      case Message::Kind::joined: {
        // `let (tx, rx) = mpsc::channel(..); spawn(client_dispatcher(connection, rx));
        //  tx.send(id).await; writers.push(tx)`
        Connection& c = *message.conn;
        c.id = ids.next([&writers](ClientId id) { return writers.contains(id); });
        auto tx = std::make_shared<WriterChannel>(router.context().get_executor(), capacity);
        asio::co_spawn(router.context(),
                       client_writer(message.conn, tx, router.stats(), router.tasks().add()), log_exception);
        // The greeting is the writer's first message; a new channel has room for it.
        const auto greeting = protocol::encode_greeting(c.id);
        router.stats().add_pending(greeting.size());
        tx->try_send(error_code{}, std::vector<char>(greeting.begin(), greeting.end()));
        writers.emplace(c.id, Writer{message.conn, std::move(tx)});
        spdlog::debug("client {} connected from {}", to_u32(c.id), c.peer);
        break;
      }
      case Message::Kind::frame: {
        const auto it = writers.find(message.to);
        if (it == writers.end()) {
          router.stats().dropped_no_route();
          break;
        }
        co_await deliver(router, writers, it->second, std::move(message.wire));
        break;
      }
      case Message::Kind::disconnected:
        // A reader that stopped for the drain leaves its client in the
        // table: frames for it may still be queued behind this message.
        if (message.reason != core::CloseReason::shutdown) {
          close_client(router, writers, *message.conn, message.reason);
        }
        break;
      case Message::Kind::stop:
        break;  // StopCondition took note
    }
  }

  // Every reader has ended and every frame they sent is queued: each writer
  // flushes its queue, then stops (control() waits for them, up to the drain timeout).
  for (auto& [id, w] : writers) {
    router.stats().closed(core::CloseReason::shutdown);
    log_closed(w.conn->id, w.conn->peer, core::CloseReason::shutdown, router.options(), router.warnings());
    end_writer(router, w.tx);
  }
  writers.clear();
}

}  // namespace

int ChannelPerWriterEngine::run() {
  return ChannelRouter::serve(options_, *stats_, "channel-per-writer", &central_dispatcher);
}

}  // namespace sb::engines::asio_engines
