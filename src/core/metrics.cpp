#include "core/metrics.hpp"

#include <fmt/format.h>

#include <ctime>
#include <nlohmann/json.hpp>

namespace sb::core {

namespace {

std::string_view type_name(StatKind k) {
  return k == StatKind::counter ? "counter" : "gauge";  // a peak is a level: a gauge
}

// HELP text escapes backslash and newline; label values are written by
// hand in stats.hpp and already quoted.
std::string escape_help(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

void sample(std::string& out, std::string_view family, std::string_view labels, std::uint64_t value) {
  if (labels.empty()) {
    fmt::format_to(std::back_inserter(out), "{} {}\n", family, value);
  } else {
    fmt::format_to(std::back_inserter(out), "{}{{{}}} {}\n", family, labels, value);
  }
}

}  // namespace

std::string prometheus_text(const Stats& stats, std::span<const ExtraMetric> extra) {
  const auto values = stats.values();
  std::string out;
  out.reserve(4096);
  // Families in order of first appearance; a family's entries need not be
  // next to each other in the list, but its samples must be in the output.
  std::array<bool, kStatCount> done{};
  for (std::size_t i = 0; i < kStatCount; ++i) {
    const StatInfo& info = kStatInfo[i];
    if (done[i] || info.metric.empty()) continue;
    fmt::format_to(std::back_inserter(out), "# HELP {} {}\n# TYPE {} {}\n", info.metric,
                   escape_help(info.help), info.metric, type_name(info.kind));
    for (std::size_t j = i; j < kStatCount; ++j) {
      if (kStatInfo[j].metric != info.metric) continue;
      done[j] = true;
      sample(out, info.metric, kStatInfo[j].labels, values[j]);
    }
  }
  for (const ExtraMetric& m : extra) {
    fmt::format_to(std::back_inserter(out), "# HELP {} {}\n# TYPE {} {}\n", m.family, escape_help(m.help),
                   m.family, type_name(m.kind));
    for (const auto& [labels, value] : m.samples) sample(out, m.family, labels, value);
  }
  return out;
}

std::string rfc3339_utc(std::chrono::nanoseconds since_epoch) {
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(since_epoch).count();
  const std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  ::gmtime_r(&secs, &tm);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", tm.tm_year + 1900, tm.tm_mon + 1,
                     tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms % 1000);
}

std::string clients_json(std::span<const ClientView> clients,
                         const std::function<std::string(const ClientView&)>& peer,
                         std::chrono::nanoseconds wall_minus_steady) {
  nlohmann::json array = nlohmann::json::array();
  for (const ClientView& c : clients) {
    array.push_back({
        {"id", to_u32(c.id)},
        {"peer", peer(c)},
        {"protocol_version", c.version},
        {"authenticated", c.authenticated},
        {"paused", c.paused},
        {"read_closed", c.read_closed},
        {"queued_bytes", c.queued_bytes},
        {"frames_in", c.frames_in},
        {"bytes_in", c.bytes_in},
        {"frames_out", c.frames_out},
        {"bytes_out", c.bytes_out},
        {"connected_since", rfc3339_utc(c.connected_at + wall_minus_steady)},
    });
  }
  // Replace, not throw, on bytes that are not UTF-8 (none expected: peers
  // are addresses).
  return array.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

}  // namespace sb::core
