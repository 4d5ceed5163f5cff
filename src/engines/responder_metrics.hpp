// The metrics endpoint's own counters as Prometheus families, for both
// places that serve it (the reactor and MetricsThread).
#pragma once

#include <array>

#include "core/metrics.hpp"
#include "net/http_responder.hpp"

namespace sb::engines {

inline std::array<core::ExtraMetric, 2> responder_metrics(const net::HttpResponder::Counts& n) {
  return {
      core::ExtraMetric{"switchboard_metrics_responses_total",
                        core::StatKind::counter,
                        "Answers of the metrics endpoint, by HTTP status",
                        {{"code=\"200\"", n.ok},
                         {"code=\"400\"", n.bad_request},
                         {"code=\"404\"", n.not_found},
                         {"code=\"405\"", n.bad_method},
                         {"code=\"431\"", n.too_large}}},
      core::ExtraMetric{"switchboard_metrics_connections_dropped_total",
                        core::StatKind::counter,
                        "Metrics connections closed without an answer (over_limit: answered 503), by reason",
                        {{"reason=\"over_limit\"", n.over_limit},
                         {"reason=\"timeout\"", n.timed_out},
                         {"reason=\"closed_early\"", n.closed_early}}},
  };
}

}  // namespace sb::engines
