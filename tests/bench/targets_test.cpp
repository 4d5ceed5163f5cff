// Target and scenario parsing, and the child-process handling the bench
// relies on to stop only what it started.
#include "bench/targets.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <stdexcept>
#include <thread>

#include "bench/process.hpp"
#include "bench/scenarios.hpp"
#include "engines/engine_names.hpp"

namespace sb::bench {
namespace {

TEST(Targets, CommaSeparatedAndRepeated) {
  const auto t = parse_targets({"reactor,nats", " redis ", "addr:127.0.0.1:9000"});
  ASSERT_EQ(t.size(), 4u);
  EXPECT_EQ(t[0].kind, TargetKind::engine);
  EXPECT_EQ(t[0].engine, "reactor");
  EXPECT_EQ(t[0].protocol(), PeerProtocol::switchboard);
  EXPECT_EQ(t[1].kind, TargetKind::nats);
  EXPECT_EQ(t[1].protocol(), PeerProtocol::nats);
  EXPECT_EQ(t[2].kind, TargetKind::redis);
  EXPECT_EQ(t[2].label, "redis");
  EXPECT_EQ(t[3].kind, TargetKind::address);
  EXPECT_EQ(t[3].address.port, 9000);
  EXPECT_EQ(t[3].protocol(), PeerProtocol::switchboard);
}

TEST(Targets, UnknownNamesAndBadAddressesAreRejected) {
  EXPECT_THROW(parse_targets({"kafka"}), std::invalid_argument);
  EXPECT_THROW(parse_targets({"addr:nowhere"}), std::invalid_argument);
  EXPECT_THROW(parse_targets({"addr:127.0.0.1:99999"}), std::invalid_argument);
}

TEST(Targets, EnginesAndAllExpandToEveryEngineOfTheBuild) {
  const auto engines = parse_targets({"engines"});
  ASSERT_EQ(engines.size(), engines::kEngineNames.size());
  for (std::size_t i = 0; i < engines.size(); ++i) {
    EXPECT_EQ(engines[i].kind, TargetKind::engine);
    EXPECT_EQ(engines[i].engine, engines::kEngineNames[i]);
    EXPECT_EQ(engines[i].label, engines::kEngineNames[i]);
  }
  EXPECT_EQ(parse_targets({"all-engines"}).size(), engines::kEngineNames.size());
  const auto all = parse_targets({"all"});
  ASSERT_EQ(all.size(), engines::kEngineNames.size() + 2);
  EXPECT_EQ(all[all.size() - 2].kind, TargetKind::nats);
  EXPECT_EQ(all[all.size() - 2].label, "nats");
  EXPECT_EQ(all.back().kind, TargetKind::redis);
  EXPECT_EQ(all.back().label, "redis");
}

TEST(Scenarios, FaninAndAll) {
  const auto s = parse_scenarios({"fanin"});
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0], Scenario::fanin);
  EXPECT_EQ(to_string(Scenario::fanin), "fanin");
  // `all`: stall right after throughput, so the throughput run is its baseline.
  const auto all = parse_scenarios({"all"});
  const std::vector<Scenario> expected = {Scenario::throughput, Scenario::stall, Scenario::latency,
                                          Scenario::conns, Scenario::fanin};
  EXPECT_EQ(all, expected);
}

TEST(Scenarios, Parse) {
  const auto s = parse_scenarios({"throughput,stall", "conns"});
  ASSERT_EQ(s.size(), 3u);
  EXPECT_EQ(s[0], Scenario::throughput);
  EXPECT_EQ(s[1], Scenario::stall);
  EXPECT_EQ(s[2], Scenario::conns);
  EXPECT_THROW(parse_scenarios({"soak"}), std::invalid_argument);
}

TEST(ChildProcess, StopsWithSigtermAndReports) {
  auto child = ChildProcess::spawn({"/bin/sleep", "30"}, "/dev/null", false);
  EXPECT_TRUE(child.running());
  EXPECT_EQ(child.stop(std::chrono::seconds{5}), "signal 15");
  EXPECT_FALSE(child.running());
}

TEST(ChildProcess, KillsWhatIgnoresSigterm) {
  // The shell creates `ready` once its trap is set; wait for that, with a deadline.
  const std::filesystem::path ready = std::filesystem::path(::testing::TempDir()) / "sigterm-trap-ready";
  std::filesystem::remove(ready);
  auto child = ChildProcess::spawn({"/bin/sh", "-c", "trap '' TERM; : > '" + ready.string() + "'; sleep 30"},
                                   "/dev/null", false);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds{10};
  while (!std::filesystem::exists(ready) && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
  ASSERT_TRUE(std::filesystem::exists(ready)) << "the shell never set its trap";
  const std::string how = child.stop(std::chrono::milliseconds{200});
  EXPECT_EQ(how.rfind("signal 9", 0), 0u) << how;
}

TEST(ChildProcess, AMissingProgramIsAnError) {
  EXPECT_THROW(ChildProcess::spawn({"/nonexistent/server"}, "/dev/null", false), std::runtime_error);
}

TEST(Proc, ReadsThisProcessMemoryAndCpu) {
  const auto m = read_memory(::getpid());
  ASSERT_TRUE(m.has_value());
  EXPECT_GT(m->rss_kib, 0u);
  EXPECT_GE(m->hwm_kib, m->rss_kib);
  EXPECT_TRUE(process_cpu_seconds(::getpid()).has_value());
  EXPECT_FALSE(read_memory(-5).has_value());
  EXPECT_NE(find_free_port(), 0);
}

}  // namespace
}  // namespace sb::bench
