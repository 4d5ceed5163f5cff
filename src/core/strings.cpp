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
    case CloseReason::protocol_error: return "protocol_error";
    case CloseReason::unauthenticated: return "unauthenticated";
    case CloseReason::auth_failed: return "auth_failed";
  }
  return "?";
}

StatId close_counter(CloseReason r) noexcept {
  switch (r) {
    case CloseReason::peer_closed: return StatId::closed_peer;
    case CloseReason::oversized_frame: return StatId::closed_oversized;
    case CloseReason::slow_consumer: return StatId::closed_slow_consumer;
    case CloseReason::io_error: return StatId::closed_io_error;
    case CloseReason::shutdown: return StatId::closed_shutdown;
    case CloseReason::protocol_error: return StatId::closed_protocol_error;
    case CloseReason::unauthenticated: return StatId::closed_unauthenticated;
    case CloseReason::auth_failed: return StatId::auth_failures;
  }
  return StatId::closed_io_error;
}

std::string Stats::summary() const {
  std::string line;
  const auto v = values();
  for (std::size_t i = 0; i < kStatCount; ++i) {
    if (i != 0) line += ' ';
    fmt::format_to(std::back_inserter(line), "{}={}", kStatInfo[i].line_name, v[i]);
  }
  return line;
}

}  // namespace sb::core
