// core/metrics: the Prometheus text generated from SB_STATS (one HELP and
// TYPE per family, one sample per exported entry, values in place) and the
// RFC 3339 times of /clients.
#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <sstream>
#include <string>

#include "core/metrics.hpp"
#include "core/stats.hpp"

namespace {

using namespace std::chrono_literals;

TEST(MetricsTextTest, OneHelpAndTypePerFamilyAndOneSamplePerEntry) {
  sb::core::Stats stats;
  stats.frames_routed = 12345;
  stats.dropped_slow_consumer = 7;
  stats.live_clients = 3;
  const std::string text = sb::core::prometheus_text(stats);

  std::map<std::string, int> helps, types;
  int samples = 0;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("# HELP ", 0) == 0) {
      ++helps[line.substr(7, line.find(' ', 7) - 7)];
    } else if (line.rfind("# TYPE ", 0) == 0) {
      ++types[line.substr(7, line.find(' ', 7) - 7)];
    } else {
      ++samples;
    }
  }
  std::size_t exported = 0;
  for (const auto& info : sb::core::kStatInfo) {
    if (info.metric.empty()) continue;
    ++exported;
    EXPECT_EQ(helps[std::string(info.metric)], 1) << info.metric;
    EXPECT_EQ(types[std::string(info.metric)], 1) << info.metric;
  }
  EXPECT_EQ(static_cast<std::size_t>(samples), exported);
  EXPECT_NE(text.find("\nswitchboard_frames_routed_total 12345\n"), std::string::npos) << text;
  EXPECT_NE(text.find("\nswitchboard_frames_dropped_total{reason=\"slow_consumer\"} 7\n"), std::string::npos);
  EXPECT_NE(text.find("# TYPE switchboard_clients gauge\nswitchboard_clients 3\n"), std::string::npos);
  EXPECT_NE(text.find("# TYPE switchboard_frames_routed_total counter\n"), std::string::npos);
}

TEST(MetricsTextTest, ExtraFamiliesFollowTheCounters) {
  const sb::core::ExtraMetric extra{"switchboard_test_total",
                                    sb::core::StatKind::counter,
                                    "A test\\family",
                                    {{"code=\"200\"", 4}, {"", 5}}};
  const std::string text = sb::core::prometheus_text({}, std::span(&extra, 1));
  EXPECT_NE(
      text.find("# HELP switchboard_test_total A test\\\\family\n# TYPE switchboard_test_total counter\n"
                "switchboard_test_total{code=\"200\"} 4\nswitchboard_test_total 5\n"),
      std::string::npos)
      << text;
}

TEST(MetricsTextTest, Rfc3339InUtcWithMilliseconds) {
  EXPECT_EQ(sb::core::rfc3339_utc(0ns), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(sb::core::rfc3339_utc(1700000000123ms), "2023-11-14T22:13:20.123Z");
}

}  // namespace
