// What the metrics endpoint says, as text: the counters in Prometheus'
// exposition format (generated from SB_STATS, so a counter added there is
// exported with no other change) and the clients as a JSON array. Pure
// functions of their arguments: no sockets, no clock.
#pragma once

#include <chrono>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/router.hpp"
#include "core/stats.hpp"

namespace sb::core {

// One more family to append after the counters (the engine's own, such as
// the metrics endpoint's request counts).
struct ExtraMetric {
  std::string family;  // e.g. switchboard_metrics_requests_total
  StatKind kind;
  std::string help;
  std::vector<std::pair<std::string, std::uint64_t>> samples;  // labels (may be empty), value
};

// Prometheus text format 0.0.4: # HELP and # TYPE once per family, then
// one sample per entry of that family.
std::string prometheus_text(const Stats& stats, std::span<const ExtraMetric> extra = {});

// A JSON array, one object per client: id, peer, protocol_version,
// authenticated, paused, read_closed, queued_bytes, frames_in, bytes_in,
// frames_out, bytes_out, connected_since (RFC 3339, UTC, milliseconds).
// `peer` names a client's address; `wall_minus_steady` turns the router's
// steady-clock times into wall-clock ones (system_clock::now() minus
// steady_clock::now(), taken by the caller).
std::string clients_json(std::span<const ClientView> clients,
                         const std::function<std::string(const ClientView&)>& peer,
                         std::chrono::nanoseconds wall_minus_steady);

// `t` (nanoseconds since the Unix epoch) as 2024-05-01T12:34:56.789Z.
std::string rfc3339_utc(std::chrono::nanoseconds since_epoch);

}  // namespace sb::core
