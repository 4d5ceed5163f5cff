#include "engines/common/router_upkeep.hpp"

#include <malloc.h>
#include <spdlog/spdlog.h>

#include <cstddef>
#include <cstdint>

namespace sb::engines {

namespace {
constexpr std::size_t kTrimSlack = std::size_t{16} << 20;
}  // namespace

void log_policy_counts(const core::Stats& now, core::Stats& logged, net::RateLimit& limit,
                       const core::RouterConfig& config) {
  const std::uint64_t no_route = now.dropped_no_route - logged.dropped_no_route;
  const std::uint64_t slow = now.dropped_slow_consumer - logged.dropped_slow_consumer;
  const std::uint64_t other = (now.dropped_not_representable - logged.dropped_not_representable) +
                              (now.dropped_unauthenticated - logged.dropped_unauthenticated);
  const std::uint64_t pauses = now.sender_pauses - logged.sender_pauses;
  const std::uint64_t capped = now.over_total_limit - logged.over_total_limit;
  if (no_route + slow + other + pauses + capped == 0) return;
  std::uint64_t suppressed = 0;
  if (!limit.allow(suppressed)) return;
  if (no_route + slow + other > 0) {
    spdlog::warn(
        "dropped {} frames for unknown or departed clients, {} for slow consumers (policy {}) and {} "
        "unauthenticated or not representable in v1",
        no_route, slow, core::to_string(config.policy), other);
  }
  if (capped > 0) {
    spdlog::warn(
        "--max-pending-total ({} bytes) reached: the slow-consumer policy acted {} times on the largest "
        "queues",
        config.max_pending_total, capped);
  }
  if (pauses > 0) {
    spdlog::info(
        "backpressure: paused senders {} times: their destinations were over --max-pending, or the way to "
        "another shard or node was full",
        pauses);
  }
  logged = now;
}

void give_memory_back(protocol::BlockPool& read_pool, core::Router& router) {
  read_pool.trim();
  router.out_pool().trim();
  const struct mallinfo2 heap = ::mallinfo2();
  if (heap.fordblks > kTrimSlack) ::malloc_trim(0);
}

void prepare_memory_upkeep() { static_cast<void>(::mallinfo2()); }

}  // namespace sb::engines
