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
  ASSERT_EQ(all.size(), engines::kEngineNames.size() + 3);
  for (std::size_t i = 0; i < engines::kEngineNames.size(); ++i)
    EXPECT_EQ(all[i].engine, engines::kEngineNames[i]);
  EXPECT_EQ(all[all.size() - 3].kind, TargetKind::nats);
  EXPECT_EQ(all[all.size() - 3].label, "nats");
  EXPECT_EQ(all[all.size() - 2].kind, TargetKind::redis);
  EXPECT_EQ(all[all.size() - 2].label, "redis");
  EXPECT_EQ(all.back().kind, TargetKind::cluster);
  EXPECT_EQ(all.back().label, "cluster");
}

TEST(Targets, ClusterIsASwitchboardTargetButNotAnEngine) {
  const auto t = parse_targets({"reactor,cluster", "nats"});
  ASSERT_EQ(t.size(), 3u);
  EXPECT_EQ(t[1].kind, TargetKind::cluster);
  EXPECT_EQ(t[1].label, "cluster");
  EXPECT_EQ(t[1].engine, "");
  // Its clients speak switchboard's protocol, so --protocol v2 applies to it.
  EXPECT_TRUE(t[1].switchboard());
  EXPECT_EQ(t[1].protocol(), PeerProtocol::switchboard);
  TargetSpec v2 = t[1];
  v2.version = 2;
  EXPECT_EQ(v2.protocol(), PeerProtocol::switchboard_v2);
  EXPECT_TRUE(t[0].switchboard());
  EXPECT_FALSE(t[2].switchboard());
  EXPECT_FALSE(parse_targets({"redis"})[0].switchboard());
  // "engines" is the engines' names only.
  for (const auto& e : parse_targets({"engines"})) EXPECT_NE(e.kind, TargetKind::cluster);
  try {
    parse_targets({"clusters"});
    ADD_FAILURE() << "clusters was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("cluster,"), std::string::npos) << e.what();
  }
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

// Every stream's ends, as the plans give them for one run.
struct Ends {
  std::vector<std::vector<bool>> sends;     // per plan, per local client
  std::vector<std::vector<bool>> receives;  // per plan, per local client
};

Ends ends_of(const std::vector<WorkerPlan>& plans) {
  Ends e;
  for (const auto& p : plans) {
    std::vector<bool> sends(p.clients, false);
    std::vector<bool> receives(p.clients, false);
    for (const auto& s : p.streams) {
      sends.at(s.from) = true;
      receives.at(s.to) = true;
    }
    e.sends.push_back(std::move(sends));
    e.receives.push_back(std::move(receives));
  }
  return e;
}

TEST(Plans, SplitEndpointsGiveEveryScenarioSendersAndReceiversThatDoNotMix) {
  BenchOptions o;
  o.pairs = 5;
  o.threads = 2;
  o.conns = 7;  // odd: one more even client than odd ones
  o.probe_pairs = 40;
  o.senders = 3;
  const net::Endpoint a{"127.0.0.1", 1111};
  const net::Endpoint b{"127.0.0.1", 2222};
  for (Scenario scenario : kAllScenarios) {
    SCOPED_TRACE(std::string(to_string(scenario)));
    const auto plans = make_plans(scenario, o, PeerProtocol::switchboard, Endpoints{a, b});
    ASSERT_FALSE(plans.empty());
    const Ends e = ends_of(plans);
    std::size_t streams = 0;
    for (std::size_t i = 0; i < plans.size(); ++i) {
      EXPECT_EQ(plans[i].endpoint.port, a.port);
      ASSERT_TRUE(plans[i].receiver_endpoint.has_value());
      EXPECT_EQ(plans[i].receiver_endpoint->port, b.port);
      for (std::uint32_t c = 0; c < plans[i].clients; ++c)
        EXPECT_FALSE(e.sends[i][c] && e.receives[i][c]) << "client " << c << " of plan " << i;
      streams += plans[i].streams.size();
    }
    EXPECT_GT(streams, 0u);
  }
}

TEST(Plans, OneEndpointLeavesThePlansAsTheyWere) {
  BenchOptions o;
  o.pairs = 4;
  o.threads = 2;
  o.conns = 50;
  o.probe_pairs = 10;
  const net::Endpoint a{"127.0.0.1", 1111};
  for (Scenario scenario : kAllScenarios) {
    SCOPED_TRACE(std::string(to_string(scenario)));
    for (const auto& p : make_plans(scenario, o, PeerProtocol::switchboard, Endpoints{a, std::nullopt})) {
      EXPECT_EQ(p.endpoint.port, a.port);
      EXPECT_FALSE(p.receiver_endpoint.has_value());
    }
  }
  // conns draws its probe pairs from every client, as before: with seed 1
  // some sender is odd or some receiver even.
  const auto conns = make_plans(Scenario::conns, o, PeerProtocol::switchboard, Endpoints{a, std::nullopt});
  bool mixed = false;
  for (const auto& s : conns.at(0).streams) mixed = mixed || s.from % 2 == 1 || s.to % 2 == 0;
  EXPECT_TRUE(mixed);
}

// The sharded engine's planned placement: every load thread sends to and
// receives from each shard alike; in blocks of N pairs, the first block
// stays on its shards and each later one is shifted by one more shard. 16
// pairs over 2 threads: 8 cross with 2 shards (as chance does on average)
// and 8 with 4 (a block of 4 local, a block of 4 crossing per thread).
TEST(Plans, ShardedPlacementBalancesShardsAndCrossesInBlocks) {
  BenchOptions o;
  o.pairs = 16;
  o.threads = 2;
  const net::Endpoint a{"127.0.0.1", 1111};
  for (std::uint32_t shards : {2U, 4U}) {
    SCOPED_TRACE(shards);
    const auto plans = make_plans(Scenario::throughput, o, PeerProtocol::switchboard, Endpoints{a, std::nullopt},
                                  shards);
    ASSERT_EQ(plans.size(), 2u);
    std::uint32_t crossing = 0;
    for (const auto& p : plans) {
      EXPECT_EQ(p.shards, shards);
      ASSERT_EQ(p.client_shard.size(), p.clients);
      std::vector<std::uint32_t> senders(shards, 0);
      std::vector<std::uint32_t> receivers(shards, 0);
      for (const auto& s : p.streams) {
        ASSERT_LT(p.client_shard[s.from], shards);
        ASSERT_LT(p.client_shard[s.to], shards);
        ++senders[p.client_shard[s.from]];
        ++receivers[p.client_shard[s.to]];
        if (p.client_shard[s.from] != p.client_shard[s.to]) ++crossing;
      }
      for (std::uint32_t i = 0; i < shards; ++i) {
        EXPECT_EQ(senders[i], p.streams.size() / shards) << "shard " << i;
        EXPECT_EQ(receivers[i], p.streams.size() / shards) << "shard " << i;
      }
    }
    EXPECT_EQ(crossing, 8u);
  }
  // The stall flood crosses from shard 0 to shard 1.
  const auto stall = make_plans(Scenario::stall, o, PeerProtocol::switchboard, Endpoints{a, std::nullopt}, 2);
  const StreamPlan& flood = stall.at(0).streams.back();
  ASSERT_TRUE(flood.flood);
  EXPECT_EQ(stall[0].client_shard.at(flood.from), 0u);
  EXPECT_EQ(stall[0].client_shard.at(flood.to), 1u);
  // Every pair across, or none.
  for (Placement placement : {Placement::crossing, Placement::local}) {
    for (const auto& p :
         make_plans(Scenario::throughput, o, PeerProtocol::switchboard, Endpoints{a, std::nullopt}, 4, placement)) {
      for (const auto& s : p.streams) {
        EXPECT_EQ(p.client_shard.at(s.from) != p.client_shard.at(s.to), placement == Placement::crossing);
      }
    }
  }
  // One shard, or no sharded target: nothing is placed.
  for (const auto& p : make_plans(Scenario::throughput, o, PeerProtocol::switchboard, Endpoints{a, std::nullopt})) {
    EXPECT_TRUE(p.client_shard.empty());
  }
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
