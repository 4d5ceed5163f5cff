// Names of the core's enums and the stats line, for logs, flags and tests.
#include <fmt/format.h>

#include "core/config.hpp"
#include "core/router.hpp"
#include "core/stats.hpp"

namespace sb::core {

std::string_view to_string(SlowConsumerPolicy p) noexcept {
  switch (p) {
    case SlowConsumerPolicy::backpressure: return "backpressure";
    case SlowConsumerPolicy::disconnect: return "disconnect";
    case SlowConsumerPolicy::drop: return "drop";
  }
  return "?";
}

std::optional<SlowConsumerPolicy> parse_policy(std::string_view name) noexcept {
  for (auto p : {SlowConsumerPolicy::backpressure, SlowConsumerPolicy::disconnect, SlowConsumerPolicy::drop}) {
    if (to_string(p) == name) return p;
  }
  return std::nullopt;
}

std::string_view to_string(CloseReason r) noexcept {
  switch (r) {
    case CloseReason::peer_closed: return "peer_closed";
    case CloseReason::oversized_frame: return "oversized_frame";
    case CloseReason::slow_consumer: return "slow_consumer";
    case CloseReason::io_error: return "io_error";
    case CloseReason::shutdown: return "shutdown";
  }
  return "?";
}

std::string Stats::summary() const {
  return fmt::format(
      "accepted={} rejected={} closed={} routed={} routed_bytes={} dropped_no_route={} "
      "dropped_slow_consumer={} closed_peer={} closed_oversized={} closed_slow_consumer={} "
      "closed_io_error={} closed_shutdown={} sender_pauses={} live={} pending_bytes={} peak_pending_bytes={}",
      connections_accepted, connections_rejected, connections_closed, frames_routed, bytes_routed,
      dropped_no_route, dropped_slow_consumer, closed_peer, closed_oversized, closed_slow_consumer,
      closed_io_error, closed_shutdown, sender_pauses, live_clients, pending_bytes, peak_pending_bytes);
}

}  // namespace sb::core
