// The routing state of one event loop, as a sans-IO state machine.
//
// An engine feeds it events (a client connected, a frame arrived, bytes were
// written, a client left, time passed) and carries out what it asks for:
// write the queued bytes of the clients in `dirty()`, and the `actions()`
// (resume reading a paused sender, close a client). It owns no fd, reads no
// clock and makes no system call, which is what lets the tests drive it with
// a fake clock and a seeded simulation.
//
// Time: call on_tick(now) once before the first event and then once per
// loop turn; the router's notion of "now" is the last tick.
//
// Thread: one owner (the loop that drives it). Memory: every client's
// outbound queue is bounded by max_pending (plus one frame, when the queue
// was empty, so that a frame larger than the limit can still be delivered).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "core/config.hpp"
#include "core/outbound_queue.hpp"
#include "core/stats.hpp"
#include "protocol/block_pool.hpp"
#include "protocol/client_id.hpp"

namespace sb::core {

enum class CloseReason { peer_closed, oversized_frame, slow_consumer, io_error, shutdown };
std::string_view to_string(CloseReason r) noexcept;

enum class RouteResult {
  delivered,  // queued for the destination (or dropped and counted: the sender goes on)
  paused,     // backpressure: the sender must stop reading and offer this frame again on resume
};

struct Action {
  enum class Kind { resume_reading, close };
  Kind kind;
  ClientId client;
  CloseReason reason;  // for `close`
};

class Router {
 public:
  explicit Router(RouterConfig config);
  ~Router();
  Router(const Router&) = delete;
  Router& operator=(const Router&) = delete;

  // A client connected. `tag` is the engine's own handle for it (an fd, say),
  // handed back by tag(). Its greeting is queued: the client is dirty.
  ClientId on_connect(std::uint64_t tag);

  // `from` sent a complete frame for `to`; `wire` is payload plus NUL.
  RouteResult on_frame(ClientId from, ClientId to, std::span<const char> wire);

  // The queued output of `id`, for one writev; returns the entries used.
  std::size_t gather(ClientId id, std::span<ConstBuffer> out) const noexcept;
  // `n` bytes of `id`'s queued output were written.
  void on_written(ClientId id, std::size_t n);

  // The client is gone (closed by either side). Its queue is freed and the
  // senders paused on it resume. Unknown IDs are ignored.
  void on_disconnect(ClientId id, CloseReason reason);

  // A connection was refused (over --max-conns, out of fds).
  void on_rejected() noexcept { ++stats_.connections_rejected; }

  // Time passes: checks backpressure stalls against --stall-timeout.
  void on_tick(Time now);

  // Clients with output to write; the engine flushes them, then clear_dirty().
  std::span<const ClientId> dirty() const noexcept { return dirty_; }
  void clear_dirty() noexcept;

  // Requests for the engine, in order; it carries them out, then clear_actions().
  std::span<const Action> actions() const noexcept { return actions_; }
  void clear_actions() noexcept { actions_.clear(); }

  bool contains(ClientId id) const noexcept { return find(id) != nullptr; }
  std::uint64_t tag(ClientId id) const noexcept;
  std::size_t pending_bytes(ClientId id) const noexcept;
  bool is_paused(ClientId id) const noexcept;
  const Stats& stats() const noexcept { return stats_; }
  const RouterConfig& config() const noexcept { return config_; }

 private:
  struct Client;
  Client* find(ClientId id) const noexcept;
  ClientId allocate_id();
  void insert(std::unique_ptr<Client> c);
  void grow();
  void enqueue(Client& dest, std::span<const char> bytes);
  void mark_dirty(Client& c);
  void resume_waiters(Client& c);
  void request_close(Client& c, CloseReason reason);

  RouterConfig config_;
  protocol::BlockPool out_pool_;
  // Open addressing with no probing: client `id` lives in slot id & mask.
  // allocate_id() skips an ID whose slot is taken, so lookups are one index
  // and one compare. IDs stay unique and increasing (not always consecutive).
  std::vector<std::unique_ptr<Client>> slots_;
  std::uint32_t next_id_;
  std::vector<ClientId> dirty_;
  std::vector<Action> actions_;
  std::vector<ClientId> blocking_;  // destinations with paused senders (stall checks)
  Time now_{};
  Stats stats_;
};

}  // namespace sb::core
