// serve --cluster (docs/CLUSTER.md): nodes sharing one ID space through a
// real redis-server that each test starts on a free loopback port and stops
// by its PID. The conformance suites run on three nodes too
// (SB_INSTANTIATE_FOR_CLUSTER in their files); these are the cases only a
// cluster has: nodes that leave or die, Redis going away and coming back,
// a subscriber Redis drops, and the counters that say what was lost.
#include <signal.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "harness.hpp"
#include "redis_server.hpp"
#include "v2_client.hpp"

namespace sb::itest {
namespace {

class ClusterTest : public ::testing::Test {
 protected:
  void SetUp() override { redis_.emplace(RedisServer::start(0, redis_args_)); }

  // A node of cluster "ct" with `extra` flags.
  ServerProcess& start_node(const std::vector<std::string>& extra = {}) {
    std::vector<std::string> args = {"serve", "--listen", "127.0.0.1:0", "--cluster", redis_->url("ct")};
    args.insert(args.end(), extra.begin(), extra.end());
    nodes_.push_back(std::make_unique<ServerProcess>(ServerProcess::start(args)));
    std::vector<ServerProcess*> all;
    for (const auto& n : nodes_) all.push_back(n.get());
    wait_for_joins(all);
    return *nodes_.back();
  }

  void TearDown() override {
    if (HasFailure()) {
      for (const auto& n : nodes_) {
        std::cerr << "---- node stderr (" << n->listening_line() << ") ----\n" << tail(n->stderr_text());
      }
    }
    nodes_.clear();  // kills the nodes still running
    redis_.reset();
  }

  static Client connect_to(const ServerProcess& node, const ConnectOptions& options = {}) {
    return Client::connect(node.port(), after(kIoTimeout), options);
  }
  static V2Client connect_v2(const ServerProcess& node) {
    V2Client c(connect_to(node));
    c.upgrade();
    return c;
  }

  // `from` sends `to` a frame tagged `tag` every 100 ms until `to` gets one
  // (frames before it may be lost: that is what is being waited out), or
  // the deadline. Returns how many were sent.
  static std::size_t send_until_heard(Client& from, Client& to, const std::string& tag, Deadline deadline) {
    std::size_t sent = 0;
    while (Clock::now() < deadline) {
      from.send_frame(to.id(), tag, after(kIoTimeout));
      ++sent;
      if (pump({&from, &to}, std::min(deadline, after(std::chrono::milliseconds{100})),
               [&] { return to.available() > 0; })) {
        return sent;
      }
    }
    throw HarnessError("no frame from " + from.where() + " reached " + to.where() + " before the deadline");
  }

  std::vector<std::string> redis_args_;
  std::optional<RedisServer> redis_;
  std::vector<std::unique_ptr<ServerProcess>> nodes_;
};

TEST_F(ClusterTest, TwoNodesExchangeTheArticlesMessages) {
  ServerProcess& n1 = start_node();
  ServerProcess& n2 = start_node();
  Client a = connect_to(n1);
  Client b = connect_to(n2);
  EXPECT_NE(a.id() >> 24, b.id() >> 24) << "the node's number is in the top 8 bits of its clients' IDs";
  a.send_frame(b.id(), "hello, number 2", after(kIoTimeout));
  EXPECT_EQ(b.read_frame(after(kIoTimeout)), "hello, number 2");
  b.send_frame(a.id(), "hello back, number 1", after(kIoTimeout));
  EXPECT_EQ(a.read_frame(after(kIoTimeout)), "hello back, number 1");

  const ExitInfo e1 = n1.stop();
  const ExitInfo e2 = n2.stop();
  ASSERT_TRUE(e1.clean()) << e1.describe();
  ASSERT_TRUE(e2.clean()) << e2.describe();
  EXPECT_EQ(e1.stat("forwarded"), 1u);
  EXPECT_EQ(e2.stat("routed"), 1u);
  EXPECT_EQ(e1.stat("cluster_published"), 1u);
  EXPECT_EQ(e2.stat("cluster_received"), 1u);
  EXPECT_EQ(e1.stat("cluster_lost_unreachable") + e1.stat("cluster_lost_node_gone") +
                e2.stat("cluster_lost_subscriber"),
            0u);
}

TEST_F(ClusterTest, ReactorAndShardedNodesMix) {
  ServerProcess& n1 = start_node();
  ServerProcess& n2 = start_node({"--engine", "sharded", "--threads", "4"});
  std::vector<Client> ones;
  std::vector<Client> twos;
  std::set<std::uint32_t> shards_seen;
  for (int i = 0; i < 8; ++i) {
    ones.push_back(connect_to(n1));
    twos.push_back(connect_to(n2));
    shards_seen.insert((twos.back().id() >> 20) & 0xF);
  }
  EXPECT_GE(shards_seen.size(), 2u) << "the sharded node's clients carry their shard in the ID";
  for (auto& a : ones) {
    for (auto& b : twos)
      round_trip(a, b, std::to_string(a.id()) + " and " + std::to_string(b.id()), after(kIoTimeout));
  }
  const ExitInfo e1 = n1.stop();
  const ExitInfo e2 = n2.stop();
  ASSERT_TRUE(e1.clean()) << e1.describe();
  ASSERT_TRUE(e2.clean()) << e2.describe();
  EXPECT_EQ(e1.stat("forwarded"), 64u);
  EXPECT_EQ(e2.stat("forwarded"), 64u);
  EXPECT_EQ(e1.stat("routed") + e2.stat("routed"), 128u);
}

TEST_F(ClusterTest, V2ReceiversSeeTheSenderOnAnotherNode) {
  ServerProcess& n1 = start_node();
  ServerProcess& n2 = start_node();
  V2Client a = connect_v2(n1);
  V2Client b = connect_v2(n2);
  const std::string bytes = all_bytes();
  a.send(b.id(), bytes);
  EXPECT_TRUE(is_deliver(b.next(after(kIoTimeout)), a.id(), bytes));
  b.send(a.id(), "answer");
  EXPECT_TRUE(is_deliver(a.next(after(kIoTimeout)), b.id(), "answer"));
  // An ID of a live node that has no such client: that node answers.
  const std::uint32_t nobody = b.id() + 1000;
  a.send(nobody, "x");
  EXPECT_TRUE(is_error(a.next(after(kIoTimeout)), no_route, nobody));
}

TEST_F(ClusterTest, EachNodeChecksItsOwnClientsTokens) {
  const std::string path =
      (std::filesystem::temp_directory_path() / ("switchboard-itest-ctokens-" + random_nonce())).string();
  std::ofstream(path) << "tok-cluster-1234\n";
  ServerProcess& n1 = start_node({"--auth-token-file", path});
  ServerProcess& n2 = start_node({"--auth-token-file", path});
  std::filesystem::remove(path);  // read at start already
  V2Client a(connect_to(n1));
  a.upgrade(" token=tok-cluster-1234");
  V2Client b(connect_to(n2));
  b.upgrade(" token=tok-cluster-1234");
  a.send(b.id(), "authenticated both");
  EXPECT_TRUE(is_deliver(b.next(after(kIoTimeout)), a.id(), "authenticated both"));
  // A client of node 2 that never authenticates: not a destination for a
  // sender on node 1 (no_route, as on one node), and what it sends is dropped.
  Client stranger = connect_to(n2);
  a.send(stranger.id(), "for a stranger");
  EXPECT_TRUE(is_error(a.next(after(kIoTimeout)), no_route, stranger.id()));
  stranger.send_frame(a.id(), "from a stranger", after(kIoTimeout));
  // Node 2 has read it once its counters say so (SIGUSR1 logs them).
  const Deadline read_by = after(kIoTimeout);
  while (n2.stderr_text().find("dropped_unauthenticated=1 ") == std::string::npos) {
    ASSERT_LT(Clock::now(), read_by) << "node 2 never counted the stranger's frame";
    n2.send_signal(SIGUSR1);
    pump({&stranger}, after(std::chrono::milliseconds{50}), [] { return false; });
  }
  const ExitInfo e2 = n2.stop();
  EXPECT_EQ(e2.stat("dropped_unauthenticated"), 1u) << "the stranger's frame";
  EXPECT_EQ(e2.stat("forwarded"), 0u) << "nothing of the stranger's left node 2";
  EXPECT_EQ(e2.stat("dropped_no_route"), 1u) << "the frame for the stranger";
}

TEST_F(ClusterTest, StartingWithoutRedisIsOneLineAndAnError) {
  const std::uint16_t port = redis_->port();
  redis_->kill();
  const ExitInfo e = ServerProcess::run_to_exit(
      {"serve", "--listen", "127.0.0.1:0", "--cluster", "redis://127.0.0.1:" + std::to_string(port) + "/ct"},
      kStartTimeout);
  EXPECT_TRUE(e.exited && e.code != 0) << e.describe();
  EXPECT_EQ(e.stdout_text, "");
  EXPECT_NE(e.stderr_text.find("cannot reach Redis at 127.0.0.1:" + std::to_string(port)), std::string::npos)
      << e.stderr_text;
}

TEST_F(ClusterTest, ANodeThatStopsGivesItsNumberBackAndItsIdsAreNoRoute) {
  // A long lease: only the node's own goodbye can make its IDs no_route in time.
  ServerProcess& n1 = start_node({"--cluster-lease", "30s"});
  ServerProcess& n2 = start_node({"--cluster-lease", "30s"});
  V2Client a = connect_v2(n1);
  Client b = connect_to(n2);
  const std::uint32_t gone = b.id();
  ASSERT_NE(redis_->command({"GET", "ct:lease:" + std::to_string(gone >> 24)}), "");
  const ExitInfo e2 = n2.stop();
  ASSERT_TRUE(e2.clean()) << e2.describe();
  EXPECT_EQ(redis_->command({"GET", "ct:lease:" + std::to_string(gone >> 24)}), "") << "lease not given back";
  // n1 hears the goodbye on the members channel and reads the leases.
  const Deadline deadline = after(std::chrono::seconds{5});
  for (;;) {
    a.send(gone, "anyone?");
    const V2Frame f = a.next(after(kIoTimeout));
    if (f.type == kError && f.code() == no_route) {
      EXPECT_EQ(f.subject(), gone);
      break;
    }
    ASSERT_LT(Clock::now(), deadline) << "still no no_route for a departed node's ID: " << f.describe();
  }
  const ExitInfo e1 = n1.stop();
  EXPECT_GE(e1.stat("dropped_no_route") + e1.stat("cluster_lost_node_gone"), 1u);
}

TEST_F(ClusterTest, SigtermOnANodeWhileAnotherRoutesToItLosesNothingUncounted) {
  ServerProcess& n1 = start_node({"--cluster-lease", "30s"});
  ServerProcess& n2 = start_node({"--cluster-lease", "30s"});
  Client sender = connect_to(n1);
  Client receiver = connect_to(n2);
  Client local = connect_to(n1);
  round_trip(sender, receiver, "before", after(kIoTimeout));
  // A stream of numbered frames from node 1 to node 2, before, during and
  // after node 2's drain and exit.
  std::size_t queued = 0;
  auto send_some = [&](std::size_t n) {
    for (std::size_t i = 0; i < n; ++i)
      sender.queue_frame(receiver.id(), "frame " + std::to_string(queued++));
  };
  send_some(20000);  // about 240 KB: still being written while node 2 stops
  pump({&sender, &receiver}, after(std::chrono::milliseconds{10}), [] { return false; });
  n2.send_signal(SIGTERM);
  const Deadline stopped_by = after(kStopTimeout);
  while (!n2.wait_exit(after(std::chrono::milliseconds{1})).has_value()) {
    ASSERT_LT(Clock::now(), stopped_by) << "node 2 did not stop";
    pump({&sender, &receiver}, after(std::chrono::milliseconds{1}), [] { return false; });
  }
  send_some(200);  // after node 2 is gone
  sender.flush(after(kIoTimeout));
  // Node 1 is still up, its local clients unaffected.
  round_trip(sender, local, "node 1 serves on", after(kIoTimeout));
  // What node 2 delivered before it closed the receiver: a prefix of the
  // stream, in order (what is lost is lost at the end).
  const auto closing = receiver.read_until_close(after(kIoTimeout));
  std::size_t delivered = 0;
  for (std::size_t from = 0, nul = 0; (nul = closing.data.find('\0', from)) != std::string::npos;
       from = nul + 1) {
    ASSERT_EQ(closing.data.substr(from, nul - from), "frame " + std::to_string(delivered));
    ++delivered;
  }
  const ExitInfo e2 = *n2.wait_exit(after(kIoTimeout));
  ASSERT_TRUE(e2.clean()) << e2.describe();
  const ExitInfo e1 = n1.stop();
  ASSERT_TRUE(e1.clean()) << e1.describe();
  const std::uint64_t counted = e1.stat("dropped_no_route") + e1.stat("cluster_lost_node_gone") +
                                e1.stat("cluster_lost_unreachable") + e2.stat("cluster_lost_subscriber");
  std::cerr << "sent " << queued << ", delivered " << delivered << ", no_route "
            << e1.stat("dropped_no_route") << ", node_gone " << e1.stat("cluster_lost_node_gone")
            << ", subscriber " << e2.stat("cluster_lost_subscriber") << ", discarded bytes at node 2 "
            << e2.stat("discarded_bytes") << "\n";
  EXPECT_EQ(e2.stat("discarded_bytes"), 0u) << "node 2 drained what it had for its client";
  EXPECT_EQ(delivered + counted, queued) << "every frame delivered or counted, once";
}

TEST_F(ClusterTest, AKilledNodesIdsBecomeNoRouteWhenItsLeaseLapses) {
  ServerProcess& n1 = start_node({"--cluster-lease", "1s"});
  ServerProcess& n2 = start_node({"--cluster-lease", "1s"});
  V2Client a = connect_v2(n1);
  Client b = connect_to(n2);
  const std::uint32_t gone = b.id();
  n2.send_signal(SIGKILL);
  ASSERT_TRUE(n2.wait_exit(after(kStopTimeout)).has_value());
  const Deadline deadline = after(std::chrono::seconds{10});
  std::size_t sent = 0;
  for (;;) {
    a.send(gone, "anyone?");
    ++sent;
    // Until the lease lapses the frames go to Redis and nobody hears them.
    if (pump({&a.raw()}, after(std::chrono::milliseconds{100}), [&] { return a.poll() > 0; })) {
      const V2Frame f = a.next(after(kIoTimeout));
      ASSERT_TRUE(is_error(f, no_route, gone));
      break;
    }
    ASSERT_LT(Clock::now(), deadline) << "no no_route 10 s after the node was killed (lease 1 s)";
  }
  const ExitInfo e1 = n1.stop();
  ASSERT_TRUE(e1.clean()) << e1.describe();
  // Every frame is accounted for: lost while the lease ran, then no_route.
  EXPECT_EQ(e1.stat("cluster_lost_node_gone") + e1.stat("dropped_no_route"), sent);
}

TEST_F(ClusterTest, RedisRestartedUnderTraffic) {
  ServerProcess& n1 = start_node();
  ServerProcess& n2 = start_node();
  Client local_a = connect_to(n1);
  Client local_b = connect_to(n1);
  Client far = connect_to(n2);
  round_trip(local_a, far, "before", after(kIoTimeout));

  redis_->kill();
  // The nodes stay up and local pairs go on.
  for (int i = 0; i < 20; ++i) round_trip(local_a, local_b, "during " + std::to_string(i), after(kIoTimeout));
  // Frames for the other node are lost, and counted.
  for (int i = 0; i < 10; ++i) local_a.send_frame(far.id(), "lost " + std::to_string(i), after(kIoTimeout));
  round_trip(local_a, local_b, "after the lost ones", after(kIoTimeout));

  redis_->restart();
  const auto back = Clock::now();
  const std::size_t tries = send_until_heard(local_a, far, "back", after(std::chrono::seconds{10}));
  const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - back);
  std::cerr << "cross-node traffic back " << took.count() << " ms after Redis (" << tries << " tries)\n";
  // Some of the later tries may still be on their way: count them in.
  local_a.send_frame(far.id(), "marker", after(kIoTimeout));
  std::size_t heard = 0;
  for (std::string f = far.read_frame(after(kIoTimeout)); f != "marker";
       f = far.read_frame(after(kIoTimeout))) {
    ASSERT_EQ(f, "back");
    ++heard;
  }
  round_trip(far, local_a, "both ways", after(kIoTimeout));

  const ExitInfo e1 = n1.stop();
  const ExitInfo e2 = n2.stop();
  ASSERT_TRUE(e1.clean()) << e1.describe();
  ASSERT_TRUE(e2.clean()) << e2.describe();
  // The 10 "lost" frames and the tries before the one heard, counted by
  // reason: no connection, or no subscriber yet on the way back.
  EXPECT_EQ(e1.stat("cluster_lost_unreachable") + e1.stat("cluster_lost_node_gone") +
                e2.stat("cluster_lost_subscriber") + e1.stat("dropped_no_route"),
            10 + tries - heard);
  EXPECT_GE(e1.stat("cluster_lost_unreachable"), 10u);
  EXPECT_GE(e1.stat("cluster_reconnects"), 1u);
  EXPECT_GE(e2.stat("cluster_reconnects"), 1u);
}

class ClusterDropTest : public ClusterTest {
 protected:
  ClusterDropTest() { redis_args_ = {"--client-output-buffer-limit", "pubsub 256kb 0 0"}; }
};

TEST_F(ClusterDropTest, ASubscriberRedisDropsHasItsLossCounted) {
  // A lease that outlasts the stop: the node is slow, not gone.
  ServerProcess& n1 = start_node({"--cluster-lease", "30s"});
  ServerProcess& n2 = start_node({"--cluster-lease", "30s"});
  Client sender = connect_to(n1);
  Client receiver = connect_to(n2);
  round_trip(sender, receiver, "ready", after(kIoTimeout));

  // Node 2 stops reading Redis: once the kernel's buffers are full, Redis'
  // output buffer for its subscriber passes 256 KiB and Redis drops it.
  n2.send_signal(SIGSTOP);
  const std::string payload = pattern(16 * 1024, 7);
  constexpr std::size_t kBurst = 2048;  // 32 MiB
  for (std::size_t i = 0; i < kBurst; ++i) sender.queue(frame(receiver.id(), payload));
  sender.flush(after(std::chrono::seconds{30}));
  // Wait until Redis has dropped it (it lists no subscriber on its channel).
  const std::string channel = "ct:node:" + std::to_string(receiver.id() >> 24);
  const auto subscribers = [&] { return redis_->command({"PUBSUB", "NUMSUB", channel}); };
  const Deadline dropped_by = after(std::chrono::seconds{20});
  while (subscribers() != channel + "\n0") {
    ASSERT_LT(Clock::now(), dropped_by) << "Redis did not drop the stopped node's subscriber";
    sender.send_frame(receiver.id(), payload, after(kIoTimeout));
  }
  n2.send_signal(SIGCONT);
  // Once it has subscribed again, a frame sent now arrives and shows the gap.
  const Deadline back_by = after(std::chrono::seconds{10});
  while (subscribers() != channel + "\n1") {
    ASSERT_LT(Clock::now(), back_by) << "the node did not subscribe again";
    pump({&receiver}, after(std::chrono::milliseconds{20}), [] { return false; });
  }
  sender.send_frame(receiver.id(), "end", after(kIoTimeout));
  std::size_t delivered = 0;
  for (;;) {
    const std::string f = receiver.read_frame(after(kIoTimeout));
    if (f == "end") break;
    ++delivered;
  }
  const ExitInfo e1 = n1.stop();
  const ExitInfo e2 = n2.stop();
  ASSERT_TRUE(e1.clean()) << e1.describe();
  ASSERT_TRUE(e2.clean()) << e2.describe();
  const std::uint64_t sent = e1.stat("forwarded") - 1 - 1;  // less "ready" and "end"
  const std::uint64_t lost = e1.stat("cluster_lost_unreachable") + e1.stat("cluster_lost_node_gone") +
                             e2.stat("cluster_lost_subscriber") + e1.stat("dropped_no_route");
  std::cerr << "sent " << sent << ", delivered " << delivered << ", lost: subscriber_dropped "
            << e2.stat("cluster_lost_subscriber") << ", node_gone " << e1.stat("cluster_lost_node_gone")
            << ", unreachable " << e1.stat("cluster_lost_unreachable") << "\n";
  EXPECT_GT(e2.stat("cluster_lost_subscriber"), 0u) << "Redis dropped the subscriber: frames were lost";
  EXPECT_EQ(delivered + lost, sent) << "every frame delivered or counted as lost, once";
}

}  // namespace
}  // namespace sb::itest
