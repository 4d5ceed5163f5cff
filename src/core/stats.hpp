// Counters for everything the server does, drops or closes, and why.
//
// One list, SB_STATS below, is the only place a counter is named. It
// generates the Stats struct, the "stats:" line (Stats::summary), the sum over
// shards (Stats::operator+=), the Prometheus names (kStatInfo, read by the
// metrics endpoint), the atomic mirror the Asio engines bump from several
// threads, and the names the integration suite checks. Adding a counter here
// adds it everywhere (as Envoy's ALL_*_STATS(COUNTER, GAUGE) macros do).
//
// Each entry: X(member, kind, "line name", "metric family", "labels", "help")
//   kind    counter: only grows; gauge: a level now; peak: the highest level
//           seen. Summing shards adds counters and gauges and takes the
//           maximum of peaks.
//   metric  the Prometheus family, base units, `_total` on counters; entries
//           that share a family differ by their labels (`reason="..."`). An
//           empty family keeps the value out of the metrics (a sum of others).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace sb::core {

// clang-format off
#define SB_STATS(X)                                                                                              \
  X(connections_accepted, counter, "accepted", "switchboard_connections_accepted_total", "",                     \
    "Connections accepted and given an ID")                                                                      \
  X(connections_rejected, counter, "rejected", "switchboard_connections_rejected_total", "",                     \
    "Connections accepted and closed at once: over --max-conns or out of file descriptors")                      \
  X(connections_closed, counter, "closed", "", "", "Every close, whatever the reason (the closed_* below)")      \
  X(frames_routed, counter, "routed", "switchboard_frames_routed_total", "",                                      \
    "Frames queued for a live destination")                                                                      \
  X(bytes_routed, counter, "routed_bytes", "switchboard_routed_bytes_total", "",                                  \
    "Bytes of those frames as the destination receives them")                                                    \
  X(dropped_no_route, counter, "dropped_no_route", "switchboard_frames_dropped_total", "reason=\"no_route\"",    \
    "Frames dropped, by reason")                                                                                 \
  X(dropped_slow_consumer, counter, "dropped_slow_consumer", "switchboard_frames_dropped_total",                  \
    "reason=\"slow_consumer\"", "Frames dropped, by reason")                                                     \
  X(dropped_not_representable, counter, "dropped_not_representable", "switchboard_frames_dropped_total",          \
    "reason=\"not_representable\"", "Frames dropped, by reason")                                                \
  X(dropped_unauthenticated, counter, "dropped_unauthenticated", "switchboard_frames_dropped_total",              \
    "reason=\"unauthenticated\"", "Frames dropped, by reason")                                                  \
  X(closed_peer, counter, "closed_peer", "switchboard_connections_closed_total", "reason=\"peer_closed\"",       \
    "Connections closed, by reason")                                                                             \
  X(closed_oversized, counter, "closed_oversized", "switchboard_connections_closed_total",                       \
    "reason=\"oversized_frame\"", "Connections closed, by reason")                                               \
  X(closed_slow_consumer, counter, "closed_slow_consumer", "switchboard_connections_closed_total",                \
    "reason=\"slow_consumer\"", "Connections closed, by reason")                                                 \
  X(closed_io_error, counter, "closed_io_error", "switchboard_connections_closed_total", "reason=\"io_error\"",   \
    "Connections closed, by reason")                                                                             \
  X(closed_shutdown, counter, "closed_shutdown", "switchboard_connections_closed_total", "reason=\"shutdown\"",   \
    "Connections closed, by reason")                                                                             \
  X(closed_protocol_error, counter, "closed_protocol_error", "switchboard_connections_closed_total",              \
    "reason=\"protocol_error\"", "Connections closed, by reason")                                               \
  X(closed_unauthenticated, counter, "closed_unauthenticated", "switchboard_connections_closed_total",            \
    "reason=\"unauthenticated\"", "Connections closed, by reason")                                              \
  X(auth_failures, counter, "auth_failures", "switchboard_connections_closed_total", "reason=\"auth_failed\"",  \
    "Connections closed, by reason")                                                                             \
  X(upgrades, counter, "upgrades", "switchboard_hellos_total", "result=\"v2_welcome\"",                          \
    "Hellos answered, by result")                                                                                \
  X(hellos_v1, counter, "hellos_v1", "switchboard_hellos_total", "result=\"v1_ok\"", "Hellos answered, by result") \
  X(hellos_rejected, counter, "hellos_rejected", "switchboard_hellos_total", "result=\"rejected\"",             \
    "Hellos answered, by result")                                                                                \
  X(pongs, counter, "pongs", "switchboard_pongs_total", "", "PINGs answered")                                     \
  X(errors_sent, counter, "errors_sent", "switchboard_error_frames_total", "outcome=\"sent\"",                   \
    "v2 ERROR frames, queued to their sender or dropped because its queue was over --max-pending")               \
  X(errors_dropped, counter, "errors_dropped", "switchboard_error_frames_total", "outcome=\"dropped\"",           \
    "v2 ERROR frames, queued to their sender or dropped because its queue was over --max-pending")               \
  X(half_closed, counter, "half_closed", "switchboard_half_closed_total", "",                                     \
    "Clients kept as destinations after they stopped sending (FIN), until their queue was delivered")            \
  X(discarded_bytes, counter, "discarded_bytes", "switchboard_discarded_bytes_total", "",                         \
    "Queued output thrown away because its client was closed before it was written")                            \
  X(over_total_limit, counter, "over_total_limit", "switchboard_total_limit_actions_total", "",                   \
    "Times the slow-consumer policy acted because --max-pending-total was reached")                             \
  X(sender_pauses, counter, "sender_pauses", "switchboard_sender_pauses_total", "",                               \
    "Times a sender was paused by backpressure")                                                                 \
  X(frames_forwarded, counter, "forwarded", "switchboard_frames_forwarded_total", "",                            \
    "Frames handed to another shard or node for its client (routed there)")                                     \
  X(peer_errors, counter, "peer_errors", "switchboard_peer_errors_total", "",                                     \
    "Malformed messages from another shard or node, skipped")                                                     \
  X(cluster_published, counter, "cluster_published", "switchboard_cluster_messages_total",                      \
    "direction=\"published\"", "Batches of frames exchanged with other nodes through Redis (--cluster)")        \
  X(cluster_received, counter, "cluster_received", "switchboard_cluster_messages_total",                         \
    "direction=\"received\"", "Batches of frames exchanged with other nodes through Redis (--cluster)")         \
  X(cluster_lost_unreachable, counter, "cluster_lost_unreachable", "switchboard_cluster_frames_lost_total",      \
    "reason=\"redis_unreachable\"", "Frames for another node lost between nodes, by reason (--cluster)")        \
  X(cluster_lost_subscriber, counter, "cluster_lost_subscriber", "switchboard_cluster_frames_lost_total",        \
    "reason=\"subscriber_dropped\"", "Frames for another node lost between nodes, by reason (--cluster)")       \
  X(cluster_lost_node_gone, counter, "cluster_lost_node_gone", "switchboard_cluster_frames_lost_total",          \
    "reason=\"node_gone\"", "Frames for another node lost between nodes, by reason (--cluster)")                \
  X(cluster_reconnects, counter, "cluster_reconnects", "switchboard_cluster_reconnects_total", "",                \
    "Connections to Redis made again after one was lost (--cluster)")                                           \
  X(live_clients, gauge, "live", "switchboard_clients", "", "Clients connected now")                             \
  X(pending_bytes, gauge, "pending_bytes", "switchboard_pending_bytes", "",                                       \
    "Outbound bytes queued now, all destinations")                                                               \
  X(peak_pending_bytes, peak, "peak_pending_bytes", "switchboard_pending_bytes_peak", "",                         \
    "The most outbound bytes queued at once since start")
// clang-format on

enum class StatKind { counter, gauge, peak };

// What the list says of one entry, for code that walks every counter.
struct StatInfo {
  StatKind kind;
  std::string_view line_name;  // in the "stats:" line
  std::string_view metric;     // Prometheus family; empty: not exported
  std::string_view labels;     // e.g. reason="no_route"; may be empty
  std::string_view help;
};

#define SB_STATS_INFO(member, kind, line, metric, labels, help) StatInfo{StatKind::kind, line, metric, labels, help},
inline constexpr std::array kStatInfo = {SB_STATS(SB_STATS_INFO)};
#undef SB_STATS_INFO
inline constexpr std::size_t kStatCount = kStatInfo.size();

// An entry's position in the list, for arrays of counters (the atomic mirror).
enum class StatId : std::size_t {
#define SB_STATS_ID(member, ...) member,
  SB_STATS(SB_STATS_ID)
#undef SB_STATS_ID
};

struct Stats {
#define SB_STATS_MEMBER(member, ...) std::uint64_t member = 0;
  SB_STATS(SB_STATS_MEMBER)
#undef SB_STATS_MEMBER

  std::uint64_t& operator[](StatId id) noexcept;
  std::uint64_t operator[](StatId id) const noexcept;

  // The values in list order (kStatInfo's).
  std::array<std::uint64_t, kStatCount> values() const noexcept {
#define SB_STATS_VALUE(member, ...) member,
    return {SB_STATS(SB_STATS_VALUE)};
#undef SB_STATS_VALUE
  }

  // Summing shards: counters and gauges add, peaks take the maximum.
  Stats& operator+=(const Stats& o) noexcept {
#define SB_STATS_ADD(member, kind, ...) member = combine(StatKind::kind, member, o.member);
    SB_STATS(SB_STATS_ADD)
#undef SB_STATS_ADD
    return *this;
  }

  // One line, `name=value` pairs in list order, for logs and tests.
  std::string summary() const;

 private:
  static constexpr std::uint64_t combine(StatKind k, std::uint64_t a, std::uint64_t b) noexcept {
    return k == StatKind::peak ? (a > b ? a : b) : a + b;
  }
};

#define SB_STATS_POINTER(member, ...) &Stats::member,
inline constexpr std::array<std::uint64_t Stats::*, kStatCount> kStatMembers = {SB_STATS(SB_STATS_POINTER)};
#undef SB_STATS_POINTER

inline std::uint64_t& Stats::operator[](StatId id) noexcept {
  return this->*kStatMembers[static_cast<std::size_t>(id)];
}
inline std::uint64_t Stats::operator[](StatId id) const noexcept {
  return this->*kStatMembers[static_cast<std::size_t>(id)];
}

}  // namespace sb::core
