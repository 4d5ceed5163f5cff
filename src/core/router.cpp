#include "core/router.hpp"

#include <algorithm>
#include <cassert>
#include <limits>

#include "protocol/wire.hpp"

namespace sb::core {

namespace {
constexpr std::size_t kOutBlockSize = 16 * 1024;  // 64 of them fill one writev with 1 MiB
constexpr std::size_t kOutPoolIdle = 1024;         // 16 MiB of idle blocks at most
constexpr std::size_t kMinSlots = 64;
}  // namespace

struct Router::Client {
  ClientId id;
  std::uint64_t tag;
  OutboundQueue out;
  bool dirty = false;    // listed in dirty_
  bool closing = false;  // a close was requested; frames to it are dropped
  bool paused = false;   // a sender waiting for `paused_on` to drain
  ClientId paused_on{};
  Time last_progress{};  // last write progress, or when the queue became non-empty
  std::vector<ClientId> waiters;  // senders paused on this destination
};

Router::Router(RouterConfig config)
    : config_{config}, out_pool_{kOutBlockSize, kOutPoolIdle}, slots_(kMinSlots), next_id_{config.first_id} {}

Router::~Router() = default;

Router::Client* Router::find(ClientId id) const noexcept {
  const auto& slot = slots_[to_u32(id) & (slots_.size() - 1)];
  return slot && slot->id == id ? slot.get() : nullptr;
}

ClientId Router::allocate_id() {
  // At most half the slots are live, so this ends after a few tries. Skipping
  // a taken slot also skips every live ID after the 32-bit counter wraps.
  for (;;) {
    const std::uint32_t candidate = next_id_++;
    if (!slots_[candidate & (slots_.size() - 1)]) return ClientId{candidate};
  }
}

void Router::grow() {
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
  Client& ref = *c;
  slots_[to_u32(id) & (slots_.size() - 1)] = std::move(c);
  ++stats_.connections_accepted;
  ++stats_.live_clients;
  const auto greeting = protocol::encode_greeting(id);
  enqueue(ref, greeting);
  return id;
}

RouteResult Router::on_frame(ClientId from, ClientId to, std::span<const char> wire) {
  Client* dest = find(to);
  if (dest == nullptr) {
    ++stats_.dropped_no_route;
    return RouteResult::delivered;
  }
  if (dest->closing) {
    ++stats_.dropped_slow_consumer;
    return RouteResult::delivered;
  }
  if (!dest->out.empty() && dest->out.size() + wire.size() > config_.max_pending) {
    switch (config_.policy) {
      case SlowConsumerPolicy::backpressure: {
        Client* sender = find(from);
        assert(sender != nullptr && "frames come from connected clients");
        sender->paused = true;
        sender->paused_on = to;
        if (dest->waiters.empty()) blocking_.push_back(to);
        dest->waiters.push_back(from);
        ++stats_.sender_pauses;
        return RouteResult::paused;
      }
      case SlowConsumerPolicy::disconnect:
        request_close(*dest, CloseReason::slow_consumer);
        ++stats_.dropped_slow_consumer;
        return RouteResult::delivered;
      case SlowConsumerPolicy::drop:
        ++stats_.dropped_slow_consumer;
        return RouteResult::delivered;
    }
  }
  enqueue(*dest, wire);
  ++stats_.frames_routed;
  stats_.bytes_routed += wire.size();
  return RouteResult::delivered;
}

void Router::enqueue(Client& dest, std::span<const char> bytes) {
  if (dest.out.empty()) dest.last_progress = now_;
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
  c->last_progress = now_;
  // Resume at half the limit, not just under it, so that a paused sender
  // gets room for many frames instead of flapping on every write.
  if (!c->waiters.empty() && c->out.size() <= config_.max_pending / 2) resume_waiters(*c);
}

void Router::resume_waiters(Client& c) {
  for (ClientId w : c.waiters) {
    Client* sender = find(w);
    if (sender == nullptr || !sender->paused) continue;  // left while it waited
    sender->paused = false;
    actions_.push_back({Action::Kind::resume_reading, w, CloseReason::peer_closed});
  }
  c.waiters.clear();
}

void Router::request_close(Client& c, CloseReason reason) {
  if (c.closing) return;
  c.closing = true;
  actions_.push_back({Action::Kind::close, c.id, reason});
}

void Router::on_disconnect(ClientId id, CloseReason reason) {
  Client* c = find(id);
  if (c == nullptr) return;
  ++stats_.connections_closed;
  switch (reason) {
    case CloseReason::peer_closed: ++stats_.closed_peer; break;
    case CloseReason::oversized_frame: ++stats_.closed_oversized; break;
    case CloseReason::slow_consumer: ++stats_.closed_slow_consumer; break;
    case CloseReason::io_error: ++stats_.closed_io_error; break;
    case CloseReason::shutdown: ++stats_.closed_shutdown; break;
  }
  stats_.pending_bytes -= c->out.size();
  c->out.clear(out_pool_);
  // A paused sender leaves its destination's waiter list first, so that a
  // destination nobody waits on any more is not closed as stalled, and a
  // client paused on itself is not asked to resume.
  if (c->paused) {
    if (Client* dest = find(c->paused_on)) std::erase(dest->waiters, id);
    c->paused = false;
  }
  resume_waiters(*c);
  slots_[to_u32(id) & (slots_.size() - 1)].reset();
  --stats_.live_clients;
}

void Router::on_tick(Time now) {
  now_ = now;
  if (blocking_.empty()) return;
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

}  // namespace sb::core
