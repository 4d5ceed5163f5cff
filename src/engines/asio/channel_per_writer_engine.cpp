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
// channel is bounded by max_pending in bytes (see WriterQueue), and the
// dispatcher also handles clients that leave, v2 hellos, and the stop.
#include "engines/asio/channel_per_writer_engine.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <cassert>
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

// The channel is bounded in bytes, not frames, so that --max-pending means
// what it means on every engine: bytes queued for one destination. (An Asio
// channel counts messages; sized in frames of --max-frame, a channel of
// small frames filled after a handful and dropped what a reading client
// would have read.) Every frame holds at least its NUL, so the byte bound
// bounds the frame count too, and the channel's own capacity, set above
// it, is never what stops a send.
struct WriterQueue {
  WriterQueue(const asio::any_io_executor& ex, std::size_t max_pending)
      : frames{ex, max_pending + kSpareSlots}, room{ex, 1} {}

  // The greeting or a refusal, the end marker, and one frame let in over the limit.
  static constexpr std::size_t kSpareSlots = 4;

  WriterChannel frames;
  std::atomic<std::size_t> bytes{0};  // queued and not yet written
  std::atomic<bool> waiting{false};   // the dispatcher waits for `bytes` to go down
  // A token: `bytes` went down since the dispatcher began waiting. Capacity one;
  // a stale token only makes the dispatcher look at `bytes` again.
  asio::experimental::concurrent_channel<void(error_code)> room;
};

struct Writer {
  std::shared_ptr<Connection> conn;
  std::shared_ptr<WriterQueue> queue;
};
using Table = std::unordered_map<ClientId, Writer>;

// The article's `client_dispatcher`: the only coroutine that writes to this
// client's socket, so frames never interleave and keep their order.
asio::awaitable<void> client_writer(std::shared_ptr<Connection> conn, std::shared_ptr<WriterQueue> queue,
                                    AtomicStats& stats, WaitGroup::Token /*running*/) {
  bool broken = false;
  for (;;) {
    auto [ec, bytes] = co_await queue->frames.async_receive(kNothrowAwaitable);
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
    queue->bytes.fetch_sub(bytes.size());
    // After the subtraction (both sequentially consistent): either the
    // dispatcher sees the new count, or this sees that it waits.
    if (queue->waiting.load()) queue->room.try_send(error_code{});
  }
}

// Queues bytes the limit has admitted (or that bypass it: the greeting, a refusal).
void enqueue(WriterQueue& queue, std::vector<char> bytes, AtomicStats& stats) {
  const std::size_t size = bytes.size();
  stats.add_pending(size);  // before the writer can take it off
  queue.bytes.fetch_add(size);
  // Cannot fail: the byte bound keeps the channel below its capacity.
  const bool queued = queue.frames.try_send(error_code{}, std::move(bytes));
  assert(queued && "the byte bound keeps the channel below its capacity");
  (void)queued;
}

asio::awaitable<void> send_end_marker(std::shared_ptr<WriterQueue> queue) {
  std::vector<char> end;  // not a temporary in the co_await: see channel_router.cpp
  co_await queue->frames.async_send(error_code{}, std::move(end), kNothrowAwaitable);
}

// Tells a writer to stop once it has written what is queued. If its channel
// is full (it never should be: see WriterQueue), the marker goes from a task
// of its own (the article's remedy for a send that must not hold the
// dispatcher up).
void end_writer(ChannelRouter& router, const std::shared_ptr<WriterQueue>& queue) {
  if (queue->frames.try_send(error_code{}, std::vector<char>{})) return;
  asio::co_spawn(router.context(), send_end_marker(queue), log_exception);
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
    end_writer(router, it->second.queue);
    writers.erase(it);
  }
}

// Backpressure: waits until the writer has brought the queue down to half
// the limit (as the reactor resumes a paused sender), at most stall_timeout.
// False if the time ran out.
asio::awaitable<bool> wait_for_room(ChannelRouter& router, WriterQueue& queue) {
  const core::RouterConfig& config = router.options().router;
  asio::steady_timer stall{router.context(), config.stall_timeout};
  queue.waiting.store(true);
  bool room = true;
  while (queue.bytes.load() > config.max_pending / 2) {
    auto [order, room_ec, timer_ec] =
        co_await asio::experimental::make_parallel_group(queue.room.async_receive(asio::deferred),
                                                         stall.async_wait(asio::deferred))
            .async_wait(asio::experimental::wait_for_one(), asio::use_awaitable);
    if (order[0] == 1) {
      room = false;
      break;
    }
  }
  queue.waiting.store(false);
  co_return room;
}

// `writers[id].send(items).await`: completes at once unless the frame would
// take the destination's queue over --max-pending (a frame to an empty
// queue always goes in). Then the policy decides; under backpressure the
// dispatcher waits for room (and every sender with it), at most stall_timeout.
asio::awaitable<void> deliver(ChannelRouter& router, Table& writers, Writer w, std::vector<char> wire) {
  AtomicStats& stats = router.stats();
  const core::RouterConfig& config = router.options().router;
  const std::size_t size = wire.size();
  const std::size_t queued = w.queue->bytes.load();
  if (queued != 0 && queued + size > config.max_pending) {
    bool admitted = false;
    if (config.policy == core::SlowConsumerPolicy::backpressure) {
      stats.sender_paused();  // counted as the wait begins
      admitted = co_await wait_for_room(router, *w.queue);
    }
    if (!admitted) {
      stats.dropped_slow_consumer();
      if (config.policy != core::SlowConsumerPolicy::drop) {
        close_client(router, writers, *w.conn, core::CloseReason::slow_consumer);
      }
      co_return;
    }
  }
  enqueue(*w.queue, std::move(wire), stats);
  stats.routed(size);
}

asio::awaitable<void> central_dispatcher(ChannelRouter& router, WaitGroup::Token /*running*/) {
  // The article's `let mut writers = Vec::new()`: the dispatcher's alone.
  Table writers;
  IdAllocator ids{router.options().router.first_id};
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
        auto queue =
            std::make_shared<WriterQueue>(router.context().get_executor(), router.options().router.max_pending);
        asio::co_spawn(router.context(),
                       client_writer(message.conn, queue, router.stats(), router.tasks().add()), log_exception);
        // The greeting is the writer's first message.
        const auto greeting = protocol::encode_greeting(c.id);
        enqueue(*queue, std::vector<char>(greeting.begin(), greeting.end()), router.stats());
        writers.emplace(c.id, Writer{message.conn, std::move(queue)});
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
      case Message::Kind::refused: {
        // A v2 hello: the refusal goes last into the client's queue, and the
        // writer closes the connection once it has written it (the socket
        // closes with the writer's reference, the last one).
        Connection& c = *message.conn;
        const auto it = writers.find(c.id);
        if (c.closed || it == writers.end()) break;
        c.closed = true;
        router.stats().closed(kRefusedHelloClose);
        log_refused_hello(c.id, c.peer, "channel-per-writer", router.warnings());
        enqueue(*it->second.queue, std::move(message.wire), router.stats());
        end_writer(router, it->second.queue);
        writers.erase(it);
        break;
      }
      case Message::Kind::stop:
        break;  // StopCondition took note
    }
  }

  // Every reader has ended and every frame they sent is queued: each writer
  // flushes its queue, then stops (control() waits for them, up to the drain timeout).
  for (auto& [id, w] : writers) {
    router.stats().closed(core::CloseReason::shutdown);
    log_closed(w.conn->id, w.conn->peer, core::CloseReason::shutdown, router.options(), router.warnings());
    end_writer(router, w.queue);
  }
  writers.clear();
}

}  // namespace

int ChannelPerWriterEngine::run() {
  return ChannelRouter::serve(options_, *stats_, "channel-per-writer", &central_dispatcher);
}

}  // namespace sb::engines::asio_engines
