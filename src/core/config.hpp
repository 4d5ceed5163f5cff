// Routing limits and policies (DESIGN.md sections 1 and 3).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace sb::core {

// The core reads no clock: engines pass time in, as a duration since an
// epoch of their choosing (steady_clock's, in practice).
using Time = std::chrono::nanoseconds;

enum class SlowConsumerPolicy {
  backpressure,  // pause the senders of the full destination until it drains
  disconnect,    // close the full destination at once
  drop,          // drop the frame that does not fit
};

std::string_view to_string(SlowConsumerPolicy p) noexcept;
std::optional<SlowConsumerPolicy> parse_policy(std::string_view name) noexcept;

struct RouterConfig {
  std::size_t max_pending = std::size_t{8} << 20;  // outbound bytes queued per destination
  // Outbound bytes queued for all clients together (--max-pending-total);
  // 0 means no such cap. Over it, the policy acts on the largest queues.
  std::size_t max_pending_total = 0;
  SlowConsumerPolicy policy = SlowConsumerPolicy::backpressure;
  Time stall_timeout = std::chrono::seconds{10};
  std::size_t max_frame = std::size_t{1} << 20;  // told to v2 clients in the welcome
  // Authentication (--auth-token-file): clients must present a listed token
  // in a hello; until then their frames are dropped, and after auth_timeout
  // they are closed. The tokens themselves are given with Router::set_tokens.
  bool auth_required = false;
  Time auth_timeout = std::chrono::seconds{5};
  // A client that stopped sending (FIN) stays a destination until its
  // queue is written and nothing was routed to it for this long.
  Time half_close_linger = std::chrono::seconds{1};
  std::uint32_t first_id = 0;  // where ID allocation starts (tests start near the wrap)
  // Where IDs live (docs/ARCHITECTURE.md, "IDs and places"): an ID is
  // [place: 32 - counter_bits][counter: counter_bits], a place being one
  // shard of one node. 32: one place, every ID is local (the reactor alone).
  // The counter part of first_id is where this place's counter starts.
  unsigned counter_bits = 32;
  std::uint32_t place = 0;
};

}  // namespace sb::core
