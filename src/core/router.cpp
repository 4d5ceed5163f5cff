#include "core/router.hpp"

#include <algorithm>
#include <array>
#include <cassert>
#include <cstring>
#include <limits>
#include <utility>

#include "protocol/v2.hpp"
#include "protocol/wire.hpp"

namespace sb::core {

namespace {
constexpr std::size_t kOutBlockSize = 16 * 1024;  // 64 of them fill one writev with 1 MiB
constexpr std::size_t kOutPoolIdle = 1024;        // 16 MiB of idle blocks at most
constexpr std::size_t kMinSlots = 64;
constexpr std::size_t kErrorHeaderSize = 10;  // L, type, code, subject

using protocol::ErrorCode;

// Short reasons for ERROR frames: static text, so that a flood of bad
// frames costs no allocation. The subject and the code say the rest.
std::string_view error_reason(ErrorCode code) noexcept {
  switch (code) {
    case ErrorCode::no_route:
      return "no client with this ID";
    case ErrorCode::slow_consumer:
      return "the destination is not keeping up";
    case ErrorCode::not_representable:
      return "the destination speaks v1 and the payload holds a NUL";
    case ErrorCode::too_large:
      return "frame over max_frame";
    case ErrorCode::bad_frame:
      return "malformed frame";
  }
  return "";
}

// Messages between places, appended to a peer's batch (all integers
// big-endian, as on the wire):
//   frame   [1][u32 source][u32 destination][u8 flags][u32 n][n payload bytes][NUL if flag 2]
//           flags: 1 = the source speaks v2 (send ERRORs back), 2 = the payload holds no NUL
//           and a NUL follows it (a v1 sender's frame as it sent it: a v1 destination
//           queues payload and NUL in one copy)
//   error   [2][u32 to][u8 code][u32 subject]        an ERROR for a v2 sender of that place
//   pause   [3][u32 sender][u32 destination]         backpressure: stop reading that sender
//   resume  [4][u32 sender][u32 destination]         the destination drained, or left
// They never leave the process or the cluster's own channel, so they are
// not versioned beyond this list; a kind outside it is a peer error.
enum class PeerKind : std::uint8_t { frame = 1, error = 2, pause = 3, resume = 4 };
constexpr std::uint8_t kFromV2 = 1;
constexpr std::uint8_t kNulFree = 2;
constexpr std::size_t kPeerFrameHeader = 1 + 4 + 4 + 1 + 4;

void store_u32(char* at, std::uint32_t v) noexcept {
  const auto b = protocol::encode_be32(v);
  std::memcpy(at, b.data(), b.size());
}

void put_u32(std::vector<char>& out, std::uint32_t v) {
  const std::size_t at = out.size();
  out.resize(at + 4);
  store_u32(out.data() + at, v);
}

bool valid_token(std::string_view t) noexcept {
  if (t.empty() || t.size() > 256) return false;
  return std::all_of(t.begin(), t.end(), [](char ch) {
    const auto u = static_cast<unsigned char>(ch);
    return u >= 0x21 && u <= 0x7E;
  });
}
}  // namespace

// The fields every frame touches come first, in one cache line for the
// sender (its state and counters) and as few as can be for the destination.
struct Router::Client {
  ClientId id;
  std::uint8_t version = 1;
  bool authenticated = true;
  bool dirty = false;             // listed in dirty_
  bool closing = false;           // no longer a destination: frames to it are dropped
  bool paused = false;            // a sender holding a frame for `paused_on` (or a blocked peer) to drain
  bool close_requested = false;   // a Close action was issued
  bool flush_then_close = false;  // closing once its queue is written (a reply or an ERROR first)
  bool read_closed = false;       // FIN received: not read any more, still a destination
  bool paused_on_peer = false;    // ... the peer of place `paused_on_place`
  std::uint64_t frames_in = 0, bytes_in = 0, frames_out = 0;
  Time last_routed_to{};  // when a frame was last queued for it
  OutboundQueue out;
  Time last_progress{};  // last write progress, or when the queue became non-empty
  std::uint64_t bytes_out = 0;
  std::uint64_t tag;
  CloseReason close_reason = CloseReason::peer_closed;
  ClientId paused_on{};
  std::uint32_t paused_on_place = 0;
  std::vector<ClientId> remote_pauses;  // destinations elsewhere that asked it to pause
  Time connected_at{};
  std::vector<ClientId> waiters;  // senders paused on this destination
};

struct Router::Peer {
  std::vector<char> out;       // this turn's batch
  std::size_t frames = 0;      // client frames in `out`
  std::size_t last_batch = 0;  // the size of the last one handed over: the next one's first reservation
  bool dirty = false;          // listed in dirty_peers_
  bool reachable = false;
  bool blocked = false;           // the transport is full
  std::vector<ClientId> waiters;  // senders paused because it is blocked
};

Router::Router(RouterConfig config)
    : config_{config},
      out_pool_{kOutBlockSize, kOutPoolIdle},
      slots_(kMinSlots),
      counter_mask_{config.counter_bits >= 32 ? ~std::uint32_t{0}
                                              : (std::uint32_t{1} << config.counter_bits) - 1},
      prefix_{config.counter_bits >= 32 ? 0 : config.place << config.counter_bits},
      next_id_{config.first_id & counter_mask_} {
  assert(config.counter_bits >= 8 && config.counter_bits <= 32);
  if (config.counter_bits < 32) peers_.resize(std::size_t{1} << (32 - config.counter_bits));
}

Router::~Router() = default;

Router::Client* Router::find(ClientId id) const noexcept {
  const auto& slot = slots_[to_u32(id) & (slots_.size() - 1)];
  return slot && slot->id == id ? slot.get() : nullptr;
}

ClientId Router::allocate_id() {
  // At most half the slots are live, so this ends after a few tries. Skipping
  // a taken slot also skips every live ID after the 32-bit counter wraps;
  // the reserved IDs (0xFFFFFF00 and up) are never given out.
  for (;;) {
    const std::uint32_t candidate = prefix_ | (next_id_ & counter_mask_);
    next_id_ = (next_id_ + 1) & counter_mask_;
    if (candidate >= protocol::kFirstReservedId) {
      next_id_ = 0;
      continue;
    }
    if (!slots_[candidate & (slots_.size() - 1)]) return ClientId{candidate};
  }
}

void Router::grow() {
  // The table never outgrows one place's counter: at most half of it is live.
  assert(static_cast<std::uint64_t>(slots_.size()) * 2 <= std::uint64_t{counter_mask_} + 1);
  // Doubling keeps distinct slots distinct (id & 2m differs wherever id & m did).
  std::vector<std::unique_ptr<Client>> bigger(slots_.size() * 2);
  for (auto& c : slots_) {
    if (c) bigger[to_u32(c->id) & (bigger.size() - 1)] = std::move(c);
  }
  slots_ = std::move(bigger);
}

ClientId Router::on_connect(std::uint64_t tag) {
  if ((stats_.live_clients + 1) * 2 > slots_.size()) grow();
  const ClientId id = allocate_id();
  auto c = std::make_unique<Client>();
  c->id = id;
  c->tag = tag;
  c->connected_at = now_;
  c->last_routed_to = now_ - config_.half_close_linger;  // nothing routed to it yet
  c->authenticated = !config_.auth_required;
  Client& ref = *c;
  slots_[to_u32(id) & (slots_.size() - 1)] = std::move(c);
  ++stats_.connections_accepted;
  ++stats_.live_clients;
  if (!ref.authenticated) unauthenticated_.push_back(id);
  const auto greeting = protocol::encode_greeting(id);
  enqueue(ref, greeting);
  return id;
}

RouteResult Router::on_frame(ClientId from, protocol::FrameType type, ClientId to, const char* data,
                             std::size_t size, bool v1_wire) {
  Client* s = find(from);
  assert(s != nullptr && "frames come from connected clients");
  ++s->frames_in;
  s->bytes_in += size;
  const std::span<const char> payload{data, size};
  RouteResult result = RouteResult::dropped;
  switch (type) {
    case protocol::FrameType::v1:
      if (to_u32(to) == protocol::kServerId && protocol::is_hello(payload)) {
        result = on_hello(*s, payload);
      } else {
        result =
            route(*s, to,
                  {payload, true, v1_wire ? std::span<const char>{data, size + 1} : std::span<const char>{}});
      }
      break;
    case protocol::FrameType::send:
      result = route(*s, to, {payload, false, {}});
      break;
    case protocol::FrameType::ping:
      result = on_ping(*s, payload);
      break;
    default:
      assert(false && "the decoder yields only v1, SEND and PING frames");
      break;
  }
  // A sender closed by its own frame (the `disconnect` policy on itself)
  // must not be read further.
  if (s->closing && result != RouteResult::paused) return RouteResult::closing;
  return result;
}

RouteResult Router::route(Client& from, ClientId to, const Payload& p) {
  if (!from.authenticated) {
    ++stats_.dropped_unauthenticated;
    return RouteResult::dropped;
  }
  // One AND and a compare: with one place the mask is zero and this is never true.
  if ((to_u32(to) & ~counter_mask_) != prefix_ && !protocol::is_reserved(to)) return forward(from, to, p);
  Client* dest = find(to);
  if (dest == nullptr || !dest->authenticated) {
    ++stats_.dropped_no_route;
    send_error(from, ErrorCode::no_route, to_u32(to), error_reason(ErrorCode::no_route));
    return RouteResult::dropped;
  }
  if (dest->closing) {
    // Being closed: as a slow consumer, say so; otherwise it is as good as gone.
    if (dest->close_reason == CloseReason::slow_consumer) {
      ++stats_.dropped_slow_consumer;
      send_error(from, ErrorCode::slow_consumer, to_u32(to), error_reason(ErrorCode::slow_consumer));
    } else {
      ++stats_.dropped_no_route;
      send_error(from, ErrorCode::no_route, to_u32(to), error_reason(ErrorCode::no_route));
    }
    return RouteResult::dropped;
  }
  const bool to_v1 = dest->version == 1;
  if (to_v1 && !p.nul_free && std::memchr(p.bytes.data(), '\0', p.bytes.size()) != nullptr) {
    ++stats_.dropped_not_representable;
    send_error(from, ErrorCode::not_representable, to_u32(to), error_reason(ErrorCode::not_representable));
    return RouteResult::dropped;
  }
  const std::size_t n = to_v1 ? p.bytes.size() + 1 : protocol::kDeliverHeaderSize + p.bytes.size();
  if (const Admit why = admit(*dest, n); why != Admit::ok) {
    const RouteResult r = apply_policy(from, *dest, why);
    if (r != RouteResult::queued) return r;
  }
  queue_frame(*dest, from.id, p);
  return RouteResult::queued;
}

// The destination's encoding: v1 gets payload + NUL, v2 a DELIVER.
void Router::queue_frame(Client& dest, ClientId source, const Payload& p) {
  const bool to_v1 = dest.version == 1;
  const std::size_t n = to_v1 ? p.bytes.size() + 1 : protocol::kDeliverHeaderSize + p.bytes.size();
  if (to_v1) {
    if (!p.v1_wire.empty()) {
      enqueue(dest, p.v1_wire);  // the v1 -> v1 path: one copy, as the sender sent it
    } else {
      enqueue(dest, p.bytes);
      enqueue(dest, std::span<const char>("", 1));
    }
  } else {
    const auto header = protocol::encode_deliver_header(source, p.bytes.size());
    enqueue(dest, header);
    enqueue(dest, p.bytes);
  }
  ++dest.frames_out;
  dest.last_routed_to = now_;
  ++stats_.frames_routed;
  stats_.bytes_routed += n;
}

Router::Admit Router::admit(const Client& dest, std::size_t n) const noexcept {
  // A frame for an empty queue is always taken, so that a frame larger than
  // the limit can still be delivered.
  if (dest.out.empty()) return Admit::ok;
  if (dest.out.size() + n > config_.max_pending) return Admit::over_pending;
  if (config_.max_pending_total != 0 && stats_.pending_bytes + n > config_.max_pending_total) {
    // Over the global cap, the policy acts on the biggest holders only: a
    // destination holding more than an equal share of the cap. An honest
    // destination that keeps up holds little and goes on receiving, so one
    // attacker (or a few hundred) cannot take everyone's memory.
    const std::size_t share = config_.max_pending_total / std::max<std::size_t>(1, nonempty_queues_);
    if (dest.out.size() + n > share) return Admit::over_total;
    // Queues under their share may still take the total past the cap (the
    // share shrinks as queues fill); an eighth over it, every non-empty
    // queue is held to the policy, so the total stays below 9/8 of the cap
    // plus one frame per queue that was empty (docs/PROTOCOL.md).
    if (stats_.pending_bytes + n > config_.max_pending_total + config_.max_pending_total / 8) {
      return Admit::over_total;
    }
  }
  return Admit::ok;
}

RouteResult Router::apply_policy(Client& from, Client& dest, Admit why) {
  if (why == Admit::over_total) ++stats_.over_total_limit;
  switch (config_.policy) {
    case SlowConsumerPolicy::backpressure:
      from.paused = true;
      from.paused_on_peer = false;
      from.paused_on = dest.id;
      if (dest.waiters.empty()) blocking_.push_back(dest.id);
      dest.waiters.push_back(from.id);
      ++stats_.sender_pauses;
      return RouteResult::paused;
    case SlowConsumerPolicy::disconnect:
      if (why == Admit::over_total) {
        // Close the largest queues first until the rest fits; this
        // destination may or may not be one of them.
        shed_largest();
        if (!dest.closing) return RouteResult::queued;
      } else {
        request_close(dest, CloseReason::slow_consumer);
      }
      ++stats_.dropped_slow_consumer;
      send_error(from, ErrorCode::slow_consumer, to_u32(dest.id), error_reason(ErrorCode::slow_consumer));
      return RouteResult::dropped;
    case SlowConsumerPolicy::drop:
      ++stats_.dropped_slow_consumer;
      send_error(from, ErrorCode::slow_consumer, to_u32(dest.id), error_reason(ErrorCode::slow_consumer));
      return RouteResult::dropped;
  }
  return RouteResult::dropped;
}

// `disconnect` over --max-pending-total: as Redis' maxmemory-clients, the
// clients holding the most are closed, largest first, until the rest is
// under the cap. A full scan: this runs once per excursion over the cap, and
// each run frees at least one queue.
void Router::shed_largest() {
  std::vector<std::pair<std::size_t, ClientId>> holders;
  holders.reserve(nonempty_queues_);
  for (const auto& c : slots_) {
    if (c && !c->closing && !c->out.empty()) holders.emplace_back(c->out.size(), c->id);
  }
  std::sort(holders.begin(), holders.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  for (const auto& [size, id] : holders) {
    if (stats_.pending_bytes <= config_.max_pending_total) break;
    request_close(*find(id), CloseReason::slow_consumer);
  }
}

RouteResult Router::on_hello(Client& from, std::span<const char> payload) {
  const protocol::HelloParse h = protocol::parse_hello(payload);
  if (h.status != protocol::HelloParse::Status::ok) {
    ++stats_.hellos_rejected;
    enqueue_v1_reply(from, protocol::encode_hello_error(h.reply_version, h.nonce, h.reason));
    close_after_flush(from, CloseReason::protocol_error);
    return RouteResult::closing;
  }
  const protocol::Hello& hello = h.hello;
  if (!from.authenticated) {
    // Every listed token is compared, in constant time each, so neither the
    // answer's timing nor its content says which one (or how much) matched.
    bool listed = false;
    if (hello.token) {
      for (const std::string& t : tokens_) listed = protocol::tokens_equal(*hello.token, t) || listed;
    }
    if (!listed) {
      enqueue_v1_reply(from, protocol::encode_hello_error(hello.version, hello.nonce, "unauthorized"));
      close_after_flush(from, CloseReason::auth_failed);
      return RouteResult::closing;
    }
    from.authenticated = true;
  }
  if (hello.version == 1) {
    // A v1 client may say hello again and again: like a PONG, the answer
    // meets the sender's own limit, or its queue would grow without bound.
    const std::string reply = protocol::encode_v1_ok(from.id);
    if (const Admit why = admit(from, reply.size() + 1); why != Admit::ok) {
      const RouteResult r = apply_policy(from, from, why);
      if (r != RouteResult::queued) return r;
    }
    ++stats_.hellos_v1;
    enqueue_v1_reply(from, reply);
    return RouteResult::handled;
  }
  // The welcome is the last v1 delivery; everything queued after it is v2.
  ++stats_.upgrades;
  enqueue_v1_reply(from, protocol::encode_welcome(hello.nonce, from.id, config_.max_frame));
  from.version = 2;
  return RouteResult::upgraded;
}

RouteResult Router::on_ping(Client& from, std::span<const char> body) {
  // A PONG is a frame the sender sends itself: it joins the sender's one
  // queue, after everything already there, and its limit applies (a client
  // that pings without reading is a slow consumer of its own answers).
  const std::size_t n = protocol::kV2HeaderSize + body.size();
  if (const Admit why = admit(from, n); why != Admit::ok) {
    const RouteResult r = apply_policy(from, from, why);
    if (r != RouteResult::queued) return r;
  }
  enqueue(from, protocol::encode_pong_header(body.size()));
  enqueue(from, body);
  ++stats_.pongs;
  return RouteResult::handled;
}

void Router::on_decode_error(ClientId from, protocol::DecodeStatus status, std::string_view detail) {
  Client* c = find(from);
  if (c == nullptr || c->closing) return;
  const bool too_large = status == protocol::DecodeStatus::too_large;
  const CloseReason reason = too_large ? CloseReason::oversized_frame : CloseReason::protocol_error;
  if (c->version == 1) {
    request_close(*c, reason);  // v1 has no way to say why
    return;
  }
  if (too_large) {
    send_error(*c, ErrorCode::too_large, to_u32(c->id), error_reason(ErrorCode::too_large));
  } else {
    send_error(*c, ErrorCode::bad_frame, 0, detail.empty() ? error_reason(ErrorCode::bad_frame) : detail);
  }
  close_after_flush(*c, reason);
}

void Router::send_error(Client& to, ErrorCode code, std::uint32_t subject, std::string_view reason) {
  if (to.version != 2) return;  // a v1 client has no error channel
  if (to.out.size() > config_.max_pending) {
    ++stats_.errors_dropped;  // never allowed to grow a queue that is already over its limit
    return;
  }
  std::array<char, kErrorHeaderSize> header{};
  const auto length = protocol::encode_be32(static_cast<std::uint32_t>(1 + 1 + 4 + reason.size()));
  std::memcpy(header.data(), length.data(), 4);
  header[4] = static_cast<char>(protocol::FrameType::error);
  header[5] = static_cast<char>(code);
  const auto subj = protocol::encode_be32(subject);
  std::memcpy(header.data() + 6, subj.data(), 4);
  enqueue(to, header);
  enqueue(to, std::span<const char>(reason.data(), reason.size()));
  ++stats_.errors_sent;
}

void Router::enqueue_v1_reply(Client& c, std::string_view text) {
  enqueue(c, std::span<const char>(text.data(), text.size()));
  enqueue(c, std::span<const char>("", 1));
}

void Router::enqueue(Client& dest, std::span<const char> bytes) {
  if (bytes.empty()) return;
  if (dest.out.empty()) {
    dest.last_progress = now_;
    ++nonempty_queues_;
  }
  dest.out.append(bytes, out_pool_);
  stats_.pending_bytes += bytes.size();
  stats_.peak_pending_bytes = std::max(stats_.peak_pending_bytes, stats_.pending_bytes);
  mark_dirty(dest);
}

void Router::mark_dirty(Client& c) {
  if (c.dirty) return;
  c.dirty = true;
  dirty_.push_back(c.id);
}

void Router::clear_dirty() noexcept {
  for (ClientId id : dirty_) {
    if (Client* c = find(id)) c->dirty = false;
  }
  dirty_.clear();
}

std::size_t Router::gather(ClientId id, std::span<ConstBuffer> out) const noexcept {
  const Client* c = find(id);
  return c == nullptr ? 0 : c->out.gather(out);
}

void Router::on_written(ClientId id, std::size_t n) {
  Client* c = find(id);
  if (c == nullptr || n == 0) return;
  assert(n <= c->out.size());
  c->out.consume(n, out_pool_);
  stats_.pending_bytes -= n;
  c->bytes_out += n;
  c->last_progress = now_;
  if (c->out.empty()) {
    --nonempty_queues_;
    if (c->flush_then_close && !c->close_requested) {
      c->close_requested = true;
      actions_.push_back(Close{c->id, c->close_reason});
    } else if (c->read_closed && may_close_half_closed(*c)) {
      request_close(*c, CloseReason::peer_closed);
    }
  }
  // Resume at half the limit, not just under it, so that a paused sender
  // gets room for many frames instead of flapping on every write.
  if (!c->waiters.empty() && c->out.size() <= config_.max_pending / 2) resume_waiters(*c);
}

void Router::resume_waiters(Client& c) {
  for (ClientId w : c.waiters) {
    if (place_of(w) != config_.place) {
      std::vector<char>& out = peer_out(place_of(w));
      out.push_back(static_cast<char>(PeerKind::resume));
      put_u32(out, to_u32(w));
      put_u32(out, to_u32(c.id));
      continue;
    }
    Client* sender = find(w);
    if (sender == nullptr || !sender->paused || sender->paused_on_peer) continue;  // left while it waited
    resume_sender(*sender);
  }
  c.waiters.clear();
}

// Reading resumes when nothing holds the sender any more: neither a local
// destination or blocked peer (it holds a frame), nor a destination elsewhere.
bool Router::reading(const Client& c) const noexcept {
  return !c.paused && c.remote_pauses.empty();
}

void Router::resume_sender(Client& sender) {
  sender.paused = false;
  sender.paused_on_peer = false;
  if (reading(sender)) actions_.push_back(ResumeReading{sender.id});
}

// Close now: the queue is discarded at once (and counted), so that memory
// and the global cap see it go in this turn, not when the engine gets to it.
void Router::request_close(Client& c, CloseReason reason) {
  if (c.close_requested) return;
  c.closing = true;
  c.close_requested = true;
  c.close_reason = reason;
  if (!c.out.empty()) {
    stats_.discarded_bytes += c.out.size();
    stats_.pending_bytes -= c.out.size();
    c.out.clear(out_pool_);
    --nonempty_queues_;
  }
  actions_.push_back(Close{c.id, reason});
}

// Close once what is queued (a reply, an ERROR) is written, or after
// stall_timeout without write progress. It is no longer a destination.
void Router::close_after_flush(Client& c, CloseReason reason) {
  if (c.closing) return;
  c.closing = true;
  c.flush_then_close = true;
  c.close_reason = reason;
  if (c.out.empty()) {
    c.close_requested = true;
    actions_.push_back(Close{c.id, reason});
    return;
  }
  lingering_.push_back(c.id);
}

bool Router::may_close_half_closed(const Client& c) const noexcept {
  return c.out.empty() && !c.paused && now_ - c.last_routed_to >= config_.half_close_linger;
}

void Router::on_read_closed(ClientId id) {
  Client* c = find(id);
  if (c == nullptr || c->read_closed || c->closing) return;
  c->read_closed = true;
  ++stats_.half_closed;
  if (may_close_half_closed(*c)) {
    request_close(*c, CloseReason::peer_closed);
    return;
  }
  lingering_.push_back(id);
}

void Router::on_disconnect(ClientId id, CloseReason reason) {
  Client* c = find(id);
  if (c == nullptr) return;
  ++stats_.connections_closed;
  ++stats_[close_counter(reason)];
  if (!c->out.empty()) {
    stats_.discarded_bytes += c->out.size();
    stats_.pending_bytes -= c->out.size();
    c->out.clear(out_pool_);
    --nonempty_queues_;
  }
  // A paused sender leaves its destination's waiter list first, so that a
  // destination nobody waits on any more is not closed as stalled, and a
  // client paused on itself is not asked to resume.
  if (c->paused) {
    if (c->paused_on_peer) {
      if (Peer* pr = peer(c->paused_on_place)) std::erase(pr->waiters, id);
    } else if (Client* dest = find(c->paused_on)) {
      std::erase(dest->waiters, id);
    }
    c->paused = false;
  }
  resume_waiters(*c);
  slots_[to_u32(id) & (slots_.size() - 1)].reset();
  --stats_.live_clients;
}

void Router::on_tick(Time now) {
  now_ = now;
  if (!blocking_.empty()) {
    std::erase_if(blocking_, [this](ClientId id) {
      const Client* c = find(id);
      return c == nullptr || c->waiters.empty();
    });
    for (ClientId id : blocking_) {
      Client* c = find(id);
      if (!c->out.empty() && now_ - c->last_progress >= config_.stall_timeout) {
        request_close(*c, CloseReason::slow_consumer);
      }
    }
  }
  // Connection order is deadline order: stop at the first one still in time.
  while (!unauthenticated_.empty()) {
    Client* c = find(unauthenticated_.front());
    if (c != nullptr && !c->authenticated && !c->closing) {
      if (now_ - c->connected_at < config_.auth_timeout) break;
      request_close(*c, CloseReason::unauthenticated);
    }
    unauthenticated_.pop_front();
  }
  if (!lingering_.empty()) {
    std::erase_if(lingering_, [this](ClientId id) {
      Client* c = find(id);
      if (c == nullptr || c->close_requested) return true;
      if (c->flush_then_close) {
        if (now_ - c->last_progress < config_.stall_timeout) return false;
        request_close(*c, c->close_reason);  // it does not read its last words
        return true;
      }
      if (c->closing || !may_close_half_closed(*c)) return false;
      request_close(*c, CloseReason::peer_closed);
      return true;
    });
  }
}

void Router::set_tokens(std::vector<std::string> tokens) {
  tokens_ = std::move(tokens);
}

std::uint64_t Router::tag(ClientId id) const noexcept {
  const Client* c = find(id);
  return c == nullptr ? std::numeric_limits<std::uint64_t>::max() : c->tag;
}

std::size_t Router::pending_bytes(ClientId id) const noexcept {
  const Client* c = find(id);
  return c == nullptr ? 0 : c->out.size();
}

bool Router::is_paused(ClientId id) const noexcept {
  const Client* c = find(id);
  return c != nullptr && c->paused;
}

int Router::version(ClientId id) const noexcept {
  const Client* c = find(id);
  return c == nullptr ? 0 : c->version;
}

std::vector<ClientView> Router::clients() const {
  std::vector<ClientView> out;
  out.reserve(stats_.live_clients);
  for (const auto& c : slots_) {
    if (!c) continue;
    out.push_back({c->id, c->tag, c->version, c->authenticated, c->paused, c->read_closed, c->out.size(),
                   c->frames_in, c->bytes_in, c->frames_out, c->bytes_out, c->connected_at});
  }
  return out;
}

// ---- Places ----

Router::Peer* Router::peer(std::uint32_t place) noexcept {
  return place < peers_.size() ? peers_[place].get() : nullptr;
}

std::vector<char>& Router::peer_out(std::uint32_t place) {
  // Only called for places of valid IDs, so `place` is within peers_.
  auto& slot = peers_[place];
  if (!slot) slot = std::make_unique<Peer>();
  if (!slot->dirty) {
    slot->dirty = true;
    dirty_peers_.push_back(place);
    // One allocation for a turn's batch of small frames rather than a dozen
    // as it doubles; big batches (floods of big frames) grow as they need,
    // so that no batch holds much more memory than its bytes.
    slot->out.reserve(std::clamp<std::size_t>(slot->last_batch + slot->last_batch / 4, 4096, 64 * 1024));
  }
  return slot->out;
}

void Router::add_peer(std::uint32_t place) {
  if (place >= peers_.size() || place == config_.place) return;
  auto& slot = peers_[place];
  if (!slot) slot = std::make_unique<Peer>();
  slot->reachable = true;
}

void Router::remove_peer(std::uint32_t place) {
  Peer* pr = peer(place);
  if (pr == nullptr) return;
  pr->reachable = false;
  pr->blocked = false;
  // Its unsent batch goes nowhere: its frames are no_route, as the next
  // ones will be (a v2 sender hears so), the rest of it (verdicts for its
  // clients) is moot.
  drop_peer_batch(pr->out);
  stats_.discarded_bytes += pr->out.size();
  pr->out.clear();
  pr->frames = 0;
  // Senders waiting for its transport resume (their frames become no_route);
  // senders its clients paused resume; its clients stop being waiters here.
  std::vector<ClientId> waiters;
  waiters.swap(pr->waiters);
  for (ClientId w : waiters) {
    Client* s = find(w);
    if (s != nullptr && s->paused && s->paused_on_peer && s->paused_on_place == place) resume_sender(*s);
  }
  for (const auto& c : slots_) {
    if (!c) continue;
    std::erase_if(c->waiters, [&](ClientId w) { return place_of(w) == place; });
    const std::size_t before = c->remote_pauses.size();
    std::erase_if(c->remote_pauses, [&](ClientId d) { return place_of(d) == place; });
    if (before > 0 && c->remote_pauses.empty() && !c->paused) actions_.push_back(ResumeReading{c->id});
  }
}

void Router::drop_peer_batch(std::span<const char> batch) {
  std::size_t pos = 0;
  while (pos < batch.size()) {
    const auto kind = static_cast<PeerKind>(batch[pos]);
    if (kind == PeerKind::frame && batch.size() - pos >= kPeerFrameHeader) {
      const auto flags = static_cast<std::uint8_t>(batch[pos + 9]);
      const std::size_t body = protocol::load_be32(batch.data() + pos + 10) + ((flags & kNulFree) != 0 ? 1 : 0);
      ++stats_.dropped_no_route;
      if ((flags & kFromV2) != 0) {
        if (Client* from = find(ClientId{protocol::load_be32(batch.data() + pos + 1)})) {
          send_error(*from, ErrorCode::no_route, protocol::load_be32(batch.data() + pos + 5),
                     error_reason(ErrorCode::no_route));
        }
      }
      pos += kPeerFrameHeader + body;
    } else if (kind == PeerKind::error) {
      pos += 10;
    } else if (kind == PeerKind::pause || kind == PeerKind::resume) {
      pos += 9;
    } else {
      return;  // built here, so never: stop rather than guess
    }
  }
}

std::vector<char>* Router::take_peer_batch(std::uint32_t place, std::size_t& frames) {
  Peer* pr = peer(place);
  if (pr == nullptr) return nullptr;
  frames = std::exchange(pr->frames, 0);
  pr->last_batch = pr->out.size();
  pr->dirty = false;
  if (!pr->reachable) pr->out.clear();  // left with nobody to hand it to: counted in remove_peer
  return &pr->out;
}

void Router::recycle_peer_batch(std::vector<char>& batch) noexcept {
  constexpr std::size_t kKeep = std::size_t{1} << 20;
  if (batch.capacity() > kKeep) {
    std::vector<char>().swap(batch);  // a flood's batch: give its memory back
  } else {
    batch.clear();
  }
}

void Router::set_peer_blocked(std::uint32_t place, bool blocked) {
  Peer* pr = peer(place);
  if (pr == nullptr || pr->blocked == blocked) return;
  pr->blocked = blocked;
  if (blocked) return;
  std::vector<ClientId> waiters;
  waiters.swap(pr->waiters);
  for (ClientId w : waiters) {
    Client* s = find(w);
    if (s != nullptr && s->paused && s->paused_on_peer && s->paused_on_place == place) resume_sender(*s);
  }
}

RouteResult Router::forward(Client& from, ClientId to, const Payload& p) {
  const std::uint32_t place = place_of(to);
  Peer* pr = peer(place);
  if (pr == nullptr || !pr->reachable) {
    ++stats_.dropped_no_route;
    send_error(from, ErrorCode::no_route, to_u32(to), error_reason(ErrorCode::no_route));
    return RouteResult::dropped;
  }
  if (pr->blocked) {
    // The transport is full: hold this frame and stop reading, as for a
    // full destination; nothing is dropped and no thread blocks.
    from.paused = true;
    from.paused_on_peer = true;
    from.paused_on_place = place;
    pr->waiters.push_back(from.id);
    ++stats_.sender_pauses;
    return RouteResult::paused;
  }
  std::vector<char>& out = peer_out(place);
  // A v1 sender's payload goes with its NUL when the decoder has them
  // together (always, for frames read from a socket).
  const bool with_nul = p.nul_free && p.v1_wire.size() == p.bytes.size() + 1;
  std::array<char, kPeerFrameHeader> header{};
  header[0] = static_cast<char>(PeerKind::frame);
  store_u32(header.data() + 1, to_u32(from.id));
  store_u32(header.data() + 5, to_u32(to));
  header[9] = static_cast<char>((from.version == 2 ? kFromV2 : 0) | (with_nul ? kNulFree : 0));
  store_u32(header.data() + 10, static_cast<std::uint32_t>(p.bytes.size()));
  out.insert(out.end(), header.begin(), header.end());
  const std::span<const char> body = with_nul ? p.v1_wire : p.bytes;
  out.insert(out.end(), body.begin(), body.end());
  ++pr->frames;
  ++stats_.frames_forwarded;
  return RouteResult::forwarded;
}

void Router::peer_error(ClientId to, ErrorCode code, ClientId subject) {
  Peer* pr = peer(place_of(to));
  if (pr == nullptr || !pr->reachable) return;
  std::vector<char>& out = peer_out(place_of(to));
  out.push_back(static_cast<char>(PeerKind::error));
  put_u32(out, to_u32(to));
  out.push_back(static_cast<char>(code));
  put_u32(out, to_u32(subject));
}

// A frame from a client of another place, judged here as route() judges a
// local one; the verdicts that concern the sender travel back.
void Router::on_peer_frame(ClientId source, ClientId to, bool source_v2, const Payload& p) {
  Client* dest = protocol::is_reserved(to) ? nullptr : find(to);
  auto refuse = [&](ErrorCode code) {
    if (source_v2) peer_error(source, code, to);
  };
  if (dest == nullptr || !dest->authenticated ||
      (dest->closing && dest->close_reason != CloseReason::slow_consumer)) {
    ++stats_.dropped_no_route;
    refuse(ErrorCode::no_route);
    return;
  }
  if (dest->closing) {
    ++stats_.dropped_slow_consumer;
    refuse(ErrorCode::slow_consumer);
    return;
  }
  const bool to_v1 = dest->version == 1;
  if (to_v1 && !p.nul_free && std::memchr(p.bytes.data(), '\0', p.bytes.size()) != nullptr) {
    ++stats_.dropped_not_representable;
    refuse(ErrorCode::not_representable);
    return;
  }
  const std::size_t n = to_v1 ? p.bytes.size() + 1 : protocol::kDeliverHeaderSize + p.bytes.size();
  if (const Admit why = admit(*dest, n); why != Admit::ok) {
    if (why == Admit::over_total) ++stats_.over_total_limit;
    switch (config_.policy) {
      case SlowConsumerPolicy::backpressure:
        // Frames already in flight are taken past the limit (the transport
        // bounds them); the sender is asked once to pause until this drains.
        if (std::find(dest->waiters.begin(), dest->waiters.end(), source) == dest->waiters.end()) {
          if (dest->waiters.empty()) blocking_.push_back(dest->id);
          dest->waiters.push_back(source);
          std::vector<char>& out = peer_out(place_of(source));
          out.push_back(static_cast<char>(PeerKind::pause));
          put_u32(out, to_u32(source));
          put_u32(out, to_u32(to));
        }
        break;
      case SlowConsumerPolicy::disconnect:
        if (why == Admit::over_total) {
          shed_largest();
          if (!dest->closing) break;
        } else {
          request_close(*dest, CloseReason::slow_consumer);
        }
        ++stats_.dropped_slow_consumer;
        refuse(ErrorCode::slow_consumer);
        return;
      case SlowConsumerPolicy::drop:
        ++stats_.dropped_slow_consumer;
        refuse(ErrorCode::slow_consumer);
        return;
    }
  }
  queue_frame(*dest, source, p);
}

void Router::on_peer_batch(std::span<const char> batch) {
  std::size_t pos = 0;
  auto u32_at = [&](std::size_t at) { return protocol::load_be32(batch.data() + at); };
  while (pos < batch.size()) {
    const auto kind = static_cast<PeerKind>(batch[pos]);
    const std::size_t left = batch.size() - pos;
    if (kind == PeerKind::frame && left >= kPeerFrameHeader) {
      const std::uint32_t n = u32_at(pos + 10);
      const auto flags = static_cast<std::uint8_t>(batch[pos + 9]);
      const bool nul_free = (flags & kNulFree) != 0;
      const std::size_t body = std::size_t{n} + (nul_free ? 1 : 0);
      if (left - kPeerFrameHeader < body) break;
      const std::span<const char> wire =
          nul_free ? batch.subspan(pos + kPeerFrameHeader, body) : std::span<const char>{};
      if (nul_free && wire.back() != '\0') break;  // not framed as this list says
      const Payload p{batch.subspan(pos + kPeerFrameHeader, n), nul_free, wire};
      on_peer_frame(ClientId{u32_at(pos + 1)}, ClientId{u32_at(pos + 5)}, (flags & kFromV2) != 0, p);
      pos += kPeerFrameHeader + body;
    } else if (kind == PeerKind::error && left >= 10) {
      if (Client* c = find(ClientId{u32_at(pos + 1)})) {
        const auto code = static_cast<ErrorCode>(batch[pos + 5]);
        send_error(*c, code, u32_at(pos + 6), error_reason(code));
      }
      pos += 10;
    } else if ((kind == PeerKind::pause || kind == PeerKind::resume) && left >= 9) {
      const ClientId dest{u32_at(pos + 5)};
      Client* s = find(ClientId{u32_at(pos + 1)});
      pos += 9;
      if (s == nullptr || s->closing) continue;  // left meanwhile
      const auto at = std::find(s->remote_pauses.begin(), s->remote_pauses.end(), dest);
      if (kind == PeerKind::pause && at == s->remote_pauses.end()) {
        const bool was_reading = reading(*s);
        s->remote_pauses.push_back(dest);
        ++stats_.sender_pauses;
        if (was_reading) actions_.push_back(PauseReading{s->id});
      } else if (kind == PeerKind::resume && at != s->remote_pauses.end()) {
        s->remote_pauses.erase(at);
        if (reading(*s)) actions_.push_back(ResumeReading{s->id});
      }
    } else {
      break;
    }
  }
  if (pos != batch.size()) ++stats_.peer_errors;  // the rest cannot be framed: skipped
}

TokenList parse_token_file(std::string_view text) {
  TokenList list;
  while (!text.empty()) {
    const auto eol = text.find('\n');
    std::string_view line = text.substr(0, eol);
    text = eol == std::string_view::npos ? std::string_view{} : text.substr(eol + 1);
    const auto first = line.find_first_not_of(" \t\r\f\v");
    if (first == std::string_view::npos) continue;
    line = line.substr(first, line.find_last_not_of(" \t\r\f\v") - first + 1);
    if (line.front() == '#') continue;
    if (valid_token(line)) {
      list.tokens.emplace_back(line);
    } else {
      ++list.rejected;
    }
  }
  return list;
}

}  // namespace sb::core
