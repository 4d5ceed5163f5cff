// The article's Channels section: the dispatcher.
//
//   async fn message_dispatcher(mut rx) {
//     let mut connections = Vec::new();
//     while let Some(msg) = rx.recv().await {
//       match msg {
//         New(mut connection) => { let id = connections.len();
//                                  connection.write_u32(id).await; connections.push(connection) }
//         Send(id, items)     => connections[id].write_all(&items).await,
//       }
//     }
//   }
//
// The readers and the channel are channel_router.cpp. Here the Vec is a map
// keyed by ClientId (IDs are never reused; departed clients are removed), and
// the dispatcher also handles clients that leave and the stop.
#include "engines/asio/channels_engine.hpp"

#include <spdlog/spdlog.h>

#include <unordered_map>

#include "engines/asio/channel_router.hpp"
#include "net/socket.hpp"
#include "protocol/wire.hpp"

namespace sb::engines::asio_engines {

namespace {

using Table = std::unordered_map<ClientId, std::shared_ptr<Connection>>;

// Closes a client from the dispatcher's side: counts and logs it once, shuts
// its socket down (so its reader ends; its `disconnected` then finds it closed)
// and forgets its write half. The socket closes with the last reference.
void close_client(ChannelRouter& router, Table& connections, Connection& c, core::CloseReason reason) {
  if (c.closed) return;
  c.closed = true;
  if (router.forced()) reason = core::CloseReason::shutdown;
  router.stats().closed(reason);
  log_closed(c.id, c.peer, reason, router.options(), router.warnings());
  error_code ignored;
  c.socket.shutdown(tcp::socket::shutdown_both, ignored);
  if (const auto it = connections.find(c.id); it != connections.end() && it->second.get() == &c) {
    connections.erase(it);
  }
}

asio::awaitable<void> message_dispatcher(ChannelRouter& router, WaitGroup::Token /*running*/) {
  // The article's `let mut connections = Vec::new()`: the dispatcher's alone,
  // so it needs no lock.
  Table connections;
  IdAllocator ids{router.options().router.first_id};
  const FrameWriter writer{router.options().router, router.stats(), router.tasks()};
  StopCondition stop;

  while (!stop.done()) {
    auto [ec, message] = co_await router.messages().async_receive(kNothrowAwaitable);
    if (ec) break;  // not expected: the channel is never closed
    stop.on(message);

    switch (message.kind) {
      case Message::Kind::joined: {
        // `let id = connections.len(); connection.write_u32(id).await; connections.push(connection)`
        Connection& c = *message.conn;
        c.id = ids.next([&connections](ClientId id) { return connections.contains(id); });
        connections.emplace(c.id, message.conn);
        spdlog::debug("client {} connected from {}", to_u32(c.id), c.peer);
        const auto greeting = protocol::encode_greeting(c.id);
        const WriteResult greeted = co_await writer.write(message.conn, greeting);
        if (greeted.status != WriteResult::Status::written) {
          close_client(router, connections, c,
                       greeted.status == WriteResult::Status::failed ? close_reason(greeted.ec)
                                                                     : core::CloseReason::slow_consumer);
        }
        break;
      }
      case Message::Kind::frame: {
        const auto it = connections.find(message.to);
        if (it == connections.end()) {
          router.stats().dropped_no_route();
          break;
        }
        // `connections[id].write_all(&items).await`: nothing else is
        // dispatched until this destination has taken the whole frame.
        const std::shared_ptr<Connection> dest = it->second;
        const WriteResult result = co_await writer.write(dest, message.wire);
        if (const auto reason = count_write(result, message.wire.size(), router.stats())) {
          close_client(router, connections, *dest, *reason);
        }
        break;
      }
      case Message::Kind::disconnected:
        // A reader that stopped for the drain leaves its client in the
        // table: frames for it may still be queued behind this message.
        if (message.reason != core::CloseReason::shutdown) {
          close_client(router, connections, *message.conn, message.reason);
        }
        break;
      case Message::Kind::refused: {
        // A v2 hello: written like a frame to the client, then the client is closed.
        Connection& c = *message.conn;
        if (c.closed) break;
        log_refused_hello(c.id, c.peer, "channels", router.warnings());
        const WriteResult result = co_await writer.write(message.conn, message.wire);
        close_client(router, connections, c,
                     result.status == WriteResult::Status::written  ? kRefusedHelloClose
                     : result.status == WriteResult::Status::failed ? close_reason(result.ec)
                                                                    : core::CloseReason::slow_consumer);
        break;
      }
      case Message::Kind::stop:
        break;  // StopCondition took note
    }
  }

  // Every reader has ended and every frame they sent has been written.
  for (auto& [id, conn] : connections) {
    router.stats().closed(core::CloseReason::shutdown);
    log_closed(conn->id, conn->peer, core::CloseReason::shutdown, router.options(), router.warnings());
  }
  connections.clear();  // the last references: the sockets close here
}

}  // namespace

int ChannelsEngine::run() {
  return ChannelRouter::serve(options_, *stats_, "channels", &message_dispatcher);
}

}  // namespace sb::engines::asio_engines
