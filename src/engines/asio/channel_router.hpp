// The half that both channel designs share: the article's channel `Router`.
//
// One reader coroutine per connection sends its write half to a single
// dispatcher (`joined`), then every frame it decodes (`frame`), over one
// bounded channel. The article's two channel designs differ only in the dispatcher,
// and so do ours: channels_engine.cpp writes to the destination itself,
// channel_per_writer_engine.cpp hands the frame to the destination's own
// writer. This file is everything around the dispatcher: accepting, reading,
// and stopping.
//
// Thread: the readers run on every thread of the pool; the dispatcher is one
// coroutine, so the client table it owns needs no lock.
#pragma once

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/strand.hpp>
#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "engines/asio/common.hpp"

namespace sb::engines::asio_engines {

// The article's `enum Message { New(OwnedWriteHalf), Send(u32, Bytes) }`,
// plus what a real server needs: how a client leaves, and how it stops. (A
// tagged struct rather than a std::variant: moving a variant of these makes
// g++ 12 -O2 warn, wrongly, about uninitialised members.)
struct Message {
  enum class Kind {
    joined,        // New: a reader started; `conn` is its write half, for the dispatcher to greet and keep
    frame,         // Send: `wire` (payload + NUL, exactly what the destination receives) for `to`
    disconnected,  // a reader ended (always its last message): `conn`, and `reason`, which is
                   // `shutdown` when it stopped because the server is stopping
    stop,          // the server is stopping: dispatch until `readers` readers have disconnected, then close
    refused,       // `conn` sent a v2 hello: write it `wire` (the refusal), then close it. Its reader
                   // has stopped reading; its `disconnected` follows.
  };
  Kind kind = Kind::stop;
  std::shared_ptr<Connection> conn;
  ClientId to{};
  std::vector<char> wire;
  core::CloseReason reason = core::CloseReason::peer_closed;
  std::size_t readers = 0;

  static Message joined_by(std::shared_ptr<Connection> c) {
    Message m;
    m.kind = Kind::joined;
    m.conn = std::move(c);
    return m;
  }
  static Message frame_for(ClientId destination, std::span<const char> bytes) {
    Message m;
    m.kind = Kind::frame;
    m.to = destination;
    m.wire.assign(bytes.begin(), bytes.end());
    return m;
  }
  static Message disconnected_by(std::shared_ptr<Connection> c, core::CloseReason why) {
    Message m;
    m.kind = Kind::disconnected;
    m.conn = std::move(c);
    m.reason = why;
    return m;
  }
  static Message refusal_for(std::shared_ptr<Connection> c, std::string_view reply) {
    Message m;
    m.kind = Kind::refused;
    m.conn = std::move(c);
    m.wire.assign(reply.begin(), reply.end());
    return m;
  }
  static Message stop_after(std::size_t reader_count) {
    Message m;
    m.readers = reader_count;
    return m;
  }
};
using MessageChannel = asio::experimental::concurrent_channel<void(error_code, Message)>;

// The article's `mpsc::channel(100)`. Memory: at most this many frames wait
// in the channel, plus one per reader blocked on a full channel.
inline constexpr std::size_t kMessageCapacity = 100;

class ChannelRouter {
 public:
  // `dispatcher` is started by start(); it receives from messages() until
  // StopCondition says it is done, closes what is left, and returns. `name` is the engine's, for log lines.
  using Dispatcher = asio::awaitable<void> (*)(ChannelRouter&, WaitGroup::Token);

  ChannelRouter(asio::io_context& ctx, const ServerOptions& options, AtomicStats& stats,
                std::string_view name, Dispatcher dispatcher);

  // The whole of Engine::run() for both channel designs, which differ only in
  // their dispatcher: listen, start the readers and `dispatcher`, run the
  // pool until every coroutine has ended, return the exit code.
  static int serve(const ServerOptions& options, AtomicStats& stats, std::string_view name,
                   Dispatcher dispatcher);

  void start(tcp::acceptor& acceptor, ServerSignals& signals);

  // For the dispatcher (any thread).
  MessageChannel& messages() noexcept { return channel_; }
  asio::io_context& context() noexcept { return ctx_; }
  const ServerOptions& options() const noexcept { return options_; }
  AtomicStats& stats() noexcept { return stats_; }
  // Coroutines the dispatcher starts are counted here: stopping waits for them too.
  WaitGroup& tasks() noexcept { return tasks_; }
  // The drain timed out: everything is being shut down, so every close counts as `shutdown`.
  bool forced() const noexcept { return forced_; }
  SharedRateLimit& warnings() noexcept { return warnings_; }

 private:
  asio::awaitable<void> handle_connection(std::shared_ptr<Connection> conn);
  asio::awaitable<void> control(tcp::acceptor& acceptor, ServerSignals& signals);
  asio::awaitable<void> send(Message message);

  asio::io_context& ctx_;
  const ServerOptions& options_;
  AtomicStats& stats_;
  std::string_view name_;
  Dispatcher dispatcher_;
  asio::strand<asio::io_context::executor_type> control_;  // accept loop and control()
  std::size_t max_conns_;  // from the open-files limit at start-up, as announced
  LiveSockets live_;  // before anything that may hold a Connection: it must outlive them
  MessageChannel channel_;
  AcceptErrors accept_errors_;  // control strand only
  WaitGroup tasks_;          // the dispatcher and what it starts (not the readers: it outlives them)
  std::size_t readers_ = 0;  // readers started; control strand only
  std::atomic<bool> stopping_{false};
  std::atomic<bool> forced_{false};
  SharedRateLimit warnings_;
};

// The dispatcher's side of stopping: `stop` says how many readers there
// are, each one's `disconnected` is its last message, so once all have
// arrived every frame any reader sent has been dispatched.
class StopCondition {
 public:
  void on(const Message& m) noexcept {
    if (m.kind == Message::Kind::stop) expected_ = m.readers;
    if (m.kind == Message::Kind::disconnected) ++finished_;
  }
  bool done() const noexcept { return expected_ != kNotYet && finished_ >= expected_; }

 private:
  static constexpr std::size_t kNotYet = ~std::size_t{0};
  std::size_t expected_ = kNotYet;
  std::size_t finished_ = 0;
};

}  // namespace sb::engines::asio_engines
