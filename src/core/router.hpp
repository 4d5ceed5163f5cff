// The routing state of one event loop, as a sans-IO state machine.
//
// An engine feeds it events (a client connected, a frame arrived, bytes were
// written, a client stopped sending or left, time passed) and carries out
// what it asks for: write the queued bytes of the clients in `dirty()`, and
// the `actions()` (resume reading a paused sender, close a client). It owns
// no fd, reads no clock and makes no system call, which is what lets the
// tests drive it with a fake clock and a seeded simulation.
//
// Protocols (DESIGN.md 1 and 1b). Every client starts in v1; a hello (a v1
// frame to 0xFFFFFFFF that begins with "switchboard/") may upgrade it to v2.
// A frame carries its source to the destination, and the destination's
// version chooses the encoding: v1 gets payload + NUL, v2 a DELIVER with the
// sender's ID. A v2 sender hears why a frame went nowhere (ERROR frames).
//
// Time: call on_tick(now) once before the first event and then once per
// loop turn; the router's notion of "now" is the last tick.
//
// Thread: one owner (the loop that drives it). Memory: every client's
// outbound queue is bounded by max_pending (plus one frame, when the queue
// was empty, so that a frame larger than the limit can still be delivered),
// and all queues together by max_pending_total (see route()).
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "core/config.hpp"
#include "core/outbound_queue.hpp"
#include "core/stats.hpp"
#include "protocol/block_pool.hpp"
#include "protocol/client_id.hpp"
#include "protocol/frame_decoder.hpp"

namespace sb::core {

enum class CloseReason {
  peer_closed,      // FIN or RST from the client
  oversized_frame,  // a frame over --max-frame (v2: after ERROR too_large)
  slow_consumer,    // `disconnect` policy, or a backpressure stall
  io_error,         // an OS error on the socket other than a reset
  shutdown,         // still connected when the server stopped
  protocol_error,   // v2 bad_frame, or a malformed hello (after the reply)
  unauthenticated,  // no valid hello within --auth-timeout
  auth_failed,      // a hello with a missing or wrong token (after the reply)
};
std::string_view to_string(CloseReason r) noexcept;
// The closed_* counter a close with this reason adds to.
StatId close_counter(CloseReason r) noexcept;

// What became of one frame the engine handed in.
enum class RouteResult {
  queued,     // queued for its destination on this loop
  forwarded,  // for a client of another place: in that peer's batch (see Places below)
  dropped,    // dropped and counted (no route, slow consumer, not representable, not authenticated)
  handled,    // for the server itself (a hello, a PING), answered in the sender's queue
  upgraded,   // the hello was accepted: the sender's later bytes are v2 (FrameDecoder::upgrade)
  paused,     // backpressure: stop reading the sender and offer this frame again on resume
  closing,    // the sender is being closed (a rejected hello): stop reading it
};

// Requests for the engine.
struct ResumeReading {
  ClientId client;  // offer the held frame again, then read on
};
struct Close {
  ClientId client;  // close now; whatever is still queued for it is discarded (counted)
  CloseReason reason;
};
struct PauseReading {
  ClientId client;  // a destination in another place is full (backpressure): stop reading this sender
};
using Action = std::variant<ResumeReading, Close, PauseReading>;

// What /clients shows of one client (metrics; docs/OPERATIONS.md).
struct ClientView {
  ClientId id;
  std::uint64_t tag;
  int version;
  bool authenticated;
  bool paused;
  bool read_closed;
  std::size_t queued_bytes;
  std::uint64_t frames_in, bytes_in, frames_out, bytes_out;
  Time connected_at;
};

// Tokens from an --auth-token-file's text: one per line, surrounding blanks
// stripped, empty lines and lines starting with '#' skipped. Lines that are
// not valid tokens (1..256 bytes of 0x21..0x7E) are left out and counted in
// `rejected` (never echoed: they may be secrets with a typo).
struct TokenList {
  std::vector<std::string> tokens;
  std::size_t rejected = 0;
};
TokenList parse_token_file(std::string_view text);

class Router {
 public:
  explicit Router(RouterConfig config);
  ~Router();
  Router(const Router&) = delete;
  Router& operator=(const Router&) = delete;

  // A client connected. `tag` is the engine's own handle for it (an fd, say),
  // handed back by tag(). Its greeting is queued: the client is dirty.
  ClientId on_connect(std::uint64_t tag);

  // `from` sent a complete frame (v1, SEND or PING), as its decoder gave it.
  // Inline, so that the frame's fields reach the router one by one in
  // registers: the decoder has just stored them, and a 16-byte load of a
  // span written as two 8-byte halves is a store-forwarding stall on every
  // frame (a profile put a third of the routing time there).
  RouteResult on_frame(ClientId from, const protocol::Frame& frame) {
    const bool wire = frame.type == protocol::FrameType::v1 &&
                      frame.wire.size() == frame.payload.size() + 1 &&
                      frame.wire.data() == frame.payload.data();
    return on_frame(from, frame.type, frame.destination, frame.payload.data(), frame.payload.size(), wire);
  }

  // `from`'s decoder reported too_large or bad_frame (`detail`: the
  // decoder's error_detail()). A v2 client is sent ERROR too_large or
  // bad_frame and closed once that is written; a v1 client is closed at once.
  void on_decode_error(ClientId from, protocol::DecodeStatus status, std::string_view detail);

  // The client will send nothing more (FIN: TCP half-close). The engine
  // stops reading it; the router keeps delivering to it until its queue is
  // empty and nothing has been routed to it for half_close_linger, then
  // asks for it to be closed (peer_closed). Frames it sent before the FIN
  // are still routed.
  void on_read_closed(ClientId id);

  // The queued output of `id`, for one writev; returns the entries used.
  std::size_t gather(ClientId id, std::span<ConstBuffer> out) const noexcept;
  // `n` bytes of `id`'s queued output were written.
  void on_written(ClientId id, std::size_t n);

  // The client is gone (closed by either side). Its queue is freed (the
  // bytes counted as discarded) and the senders paused on it resume.
  // Unknown IDs are ignored.
  void on_disconnect(ClientId id, CloseReason reason);

  // A connection was refused (over --max-conns, out of fds).
  void on_rejected() noexcept { ++stats_.connections_rejected; }

  // Time passes: backpressure stalls, the auth timeout, half-closed and
  // closing clients.
  void on_tick(Time now);

  // ---- Places: shards and nodes (docs/ARCHITECTURE.md) ----
  //
  // A frame for an ID of another place is appended to that peer's batch
  // (RouteResult::forwarded) with its source, so the receiver's place can
  // encode it for the destination's version. Once per loop turn the engine
  // takes the batch of every peer in dirty_peers() and hands it to the
  // transport (a ring between shards, Redis between nodes); the receiving
  // place feeds it to on_peer_batch(). The destination's place applies the
  // slow-consumer policy; its verdicts travel back in batches too: ERRORs
  // for v2 senders, and under backpressure a pause of that one sender
  // (PauseReading) and later its resume (ResumeReading). Frames in flight
  // when a pause is decided are accepted past --max-pending.

  // The place of an ID (0 when there is one place).
  std::uint32_t place_of(ClientId id) const noexcept {
    return static_cast<std::uint32_t>(static_cast<std::uint64_t>(to_u32(id)) >> config_.counter_bits);
  }
  // IDs of `place` become routable / no_route. Removing a peer resumes the
  // senders its clients had paused and drops its unsent batch (its frames
  // count as dropped_no_route, and v2 senders get ERROR no_route).
  void add_peer(std::uint32_t place);
  void remove_peer(std::uint32_t place);
  bool has_peer_output() const noexcept { return !dirty_peers_.empty(); }
  // Hands the batch built for each peer since the last call to
  // `hand(place, std::vector<char>& batch, std::size_t frames)` (`frames`:
  // how many client frames it holds, for the transport's loss counters):
  // the last thing of a loop turn, after the clients' writes (which can
  // resume remote senders). `hand` may move the batch away (a ring takes
  // it whole) or copy it (a socket): what it leaves is cleared and its
  // memory kept for the next turn's batch (up to 1 MiB), so a transport
  // that copies does not make the router fill fresh pages every turn.
  template <class Hand>
  void flush_peers(Hand&& hand) {
    while (!dirty_peers_.empty()) {
      const std::uint32_t place = dirty_peers_.back();
      dirty_peers_.pop_back();
      std::size_t frames = 0;
      std::vector<char>* batch = take_peer_batch(place, frames);
      if (batch == nullptr) continue;
      if (!batch->empty()) hand(place, *batch, frames);
      recycle_peer_batch(*batch);
    }
  }
  // The transport to `place` is full: senders with frames for it pause
  // (RouteResult::paused) until it is unblocked, then resume.
  void set_peer_blocked(std::uint32_t place, bool blocked);
  // A batch from another place. Malformed batches (a bug, or a transport
  // that corrupts) are counted in peer_errors and the rest is skipped.
  void on_peer_batch(std::span<const char> batch);

  // The tokens a hello may present (--auth-token-file, re-read on SIGHUP).
  // Sessions already authenticated stay; new hellos are checked against
  // this list.
  void set_tokens(std::vector<std::string> tokens);

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
  int version(ClientId id) const noexcept;
  const Stats& stats() const noexcept { return stats_; }
  const RouterConfig& config() const noexcept { return config_; }
  // Every live client, for /clients. O(clients): not for the data path.
  std::vector<ClientView> clients() const;
  // The pool of outbound blocks, so that the engine can give idle memory
  // back (BlockPool::trim) once a burst is over.
  protocol::BlockPool& out_pool() noexcept { return out_pool_; }

 private:
  struct Client;
  struct Peer;
  // Where one frame's bytes come from, for the destination's encoding.
  struct Payload {
    std::span<const char> bytes;    // without any v1 NUL or v2 header
    bool nul_free;                  // a v1 sender's payload: it cannot hold a NUL
    std::span<const char> v1_wire;  // bytes + NUL when the sender's buffer has them contiguous, else empty
  };
  enum class Admit { ok, over_pending, over_total };

  Client* find(ClientId id) const noexcept;
  ClientId allocate_id();
  void grow();
  // The per-frame path (route, admit, queue_frame, enqueue, mark_dirty) is
  // inlined into on_frame: out of line, the calls and the Payload passed
  // through memory cost the v1 path measurably (docs/BENCHMARKS.md). What
  // only a dropped or refused frame needs is cold.
  // The frame of on_frame(ClientId, const Frame&); `v1_wire`: a v1 payload
  // followed by its NUL in the same buffer.
  RouteResult on_frame(ClientId from, protocol::FrameType type, ClientId to, const char* data,
                       std::size_t size, bool v1_wire);
  [[gnu::always_inline]] inline RouteResult route(Client& from, ClientId to, const Payload& p);
  RouteResult forward(Client& from, ClientId to, const Payload& p);
  [[gnu::always_inline]] inline void queue_frame(Client& dest, ClientId source, const Payload& p);
  void on_peer_frame(ClientId source, ClientId to, bool source_v2, const Payload& p);
  void peer_error(ClientId to, protocol::ErrorCode code, ClientId subject);
  Peer* peer(std::uint32_t place) noexcept;
  std::vector<char>* take_peer_batch(std::uint32_t place, std::size_t& frames);
  static void recycle_peer_batch(std::vector<char>& batch) noexcept;
  void drop_peer_batch(std::span<const char> batch);
  std::vector<char>& peer_out(std::uint32_t place);
  void resume_sender(Client& sender);
  bool reading(const Client& c) const noexcept;
  RouteResult on_hello(Client& from, std::span<const char> payload);
  RouteResult on_ping(Client& from, std::span<const char> body);
  [[gnu::always_inline]] inline Admit admit(const Client& dest, std::size_t n) const noexcept;
  [[gnu::cold]] RouteResult apply_policy(Client& from, Client& dest, Admit why);
  [[gnu::always_inline]] inline void enqueue(Client& dest, std::span<const char> bytes);
  void enqueue_v1_reply(Client& c, std::string_view text);
  [[gnu::cold]] void send_error(Client& to, protocol::ErrorCode code, std::uint32_t subject,
                                std::string_view reason);
  [[gnu::always_inline]] inline void mark_dirty(Client& c);
  void resume_waiters(Client& c);
  void request_close(Client& c, CloseReason reason);
  void close_after_flush(Client& c, CloseReason reason);
  bool may_close_half_closed(const Client& c) const noexcept;
  void shed_largest();

  RouterConfig config_;
  protocol::BlockPool out_pool_;
  // Open addressing with no probing: client `id` lives in slot id & mask.
  // allocate_id() skips an ID whose slot is taken, so lookups are one index
  // and one compare. IDs stay unique and increasing (not always consecutive).
  std::vector<std::unique_ptr<Client>> slots_;
  std::uint32_t counter_mask_;  // the counter part of an ID
  std::uint32_t prefix_;        // this place's ID bits
  std::uint32_t next_id_;
  std::vector<ClientId> dirty_;
  std::vector<Action> actions_;
  std::vector<ClientId> blocking_;            // destinations with paused senders (stall checks)
  std::vector<std::unique_ptr<Peer>> peers_;  // by place; empty with one place
  std::vector<std::uint32_t> dirty_peers_;
  std::vector<ClientId> lingering_;       // half-closed or closing-after-flush clients (tick checks)
  std::deque<ClientId> unauthenticated_;  // in connection order: the auth deadline check
  std::vector<std::string> tokens_;
  std::size_t nonempty_queues_ = 0;  // clients with queued output, for the fair share
  std::string scratch_;              // encoding space for frames that change framing
  Time now_{};
  Stats stats_;
};

}  // namespace sb::core
