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
  SlowConsumerPolicy policy = SlowConsumerPolicy::backpressure;
  Time stall_timeout = std::chrono::seconds{10};
  std::uint32_t first_id = 0;  // where ID allocation starts (tests start near the wrap)
};

}  // namespace sb::core
