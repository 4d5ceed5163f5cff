// Protocol v2 and authentication (DESIGN.md 1b) over real loopback sockets:
// the upgrade and its welcome, every frame type, every ERROR code, mixed
// versions, the hello's edge cases, reserved IDs, tokens, the auth timeout,
// SIGHUP reloads and the counters that say what happened.
//
// The engines that implement v2 run it (reactor, sharded, race); the
// fixture is parameterized so that another one joins with one line.
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <fstream>
#include <random>
#include <regex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "harness.hpp"
#include "v2_client.hpp"

namespace sb::itest {
namespace {

// SIGUSR1, then the stats line it makes the server write.
Stats stats_now(ServerProcess& server) {
  const auto count_lines = [](const std::string& s) {
    std::size_t n = 0;
    for (auto at = s.find("stats: "); at != std::string::npos; at = s.find("stats: ", at + 1)) ++n;
    return n;
  };
  const std::size_t before = count_lines(server.stderr_text());
  server.send_signal(SIGUSR1);
  const Deadline deadline = after(kIoTimeout);
  for (;;) {
    const std::string text = server.stderr_text();
    if (count_lines(text) > before && text.find('\n', text.rfind("stats: ")) != std::string::npos) {
      if (auto s = parse_stats(text)) return *s;
    }
    if (Clock::now() >= deadline) throw HarnessError("no stats line after SIGUSR1; stderr:\n" + text);
    std::this_thread::sleep_for(10ms);
  }
}
std::uint64_t stat(const Stats& s, std::string_view name) {
  const auto it = s.find(name);
  if (it == s.end()) throw HarnessError("no counter \"" + std::string(name) + "\" in the stats line");
  return it->second;
}

// Waits (bounded) until the server's stderr contains `text`.
bool wait_for_log(ServerProcess& server, std::string_view text, Clock::duration timeout = kIoTimeout) {
  const Deadline deadline = after(timeout);
  while (Clock::now() < deadline) {
    if (server.stderr_text().find(text) != std::string::npos) return true;
    std::this_thread::sleep_for(10ms);
  }
  return false;
}

class V2Test : public EngineTest {
 protected:
  V2Client connect_v2(const std::string& extra_fields = "", const ConnectOptions& options = {}) {
    V2Client c(connect(options));
    c.upgrade(extra_fields);
    c.raw().set_label("v2 client " + std::to_string(c.id()));
    return c;
  }
};
INSTANTIATE_TEST_SUITE_P(Engines, V2Test,
                         ::testing::Values(std::string_view("reactor"), std::string_view("sharded"), kSharded4,
                                           std::string_view("race")),
                         engine_test_name);
SB_INSTANTIATE_FOR_CLUSTERS(V2Test);

// ---------------------------------------------------------------------------
// The upgrade

TEST_P(V2Test, WelcomeNamesTheIdAndMaxFrame) {
  start_server({"--max-frame", "64K"});
  Client c = connect();
  const std::string nonce = random_nonce();
  c.send_frame(kServerId, "switchboard/2 nonce=" + nonce, after(kIoTimeout));
  const std::string welcome = c.read_frame(after(kIoTimeout));
  EXPECT_EQ(welcome, "switchboard/2 ok nonce=" + nonce + " id=" + std::to_string(c.id()) + " max_frame=65536");
  // Nothing but that one delivery and its NUL before v2 starts: a PING's
  // PONG is the next thing on the wire.
  c.send_raw(v2_ping("after the welcome"), after(kIoTimeout));
  EXPECT_TRUE(same_bytes(v2_frame(kPong, "after the welcome"), c.read_exact(5 + 17, after(kIoTimeout))));

  const ExitInfo info = stop_server();
  EXPECT_EQ(info.stat("upgrades"), 1u);
  EXPECT_EQ(info.stat("pongs"), 1u);
}

TEST_P(V2Test, DefaultMaxFrameIsOneMiB) {
  start_server();
  V2Client c = connect_v2();
  EXPECT_TRUE(std::regex_match(c.welcome(), std::regex("switchboard/2 ok nonce=[0-9a-f]{32} id=" +
                                                       std::to_string(c.id()) + " max_frame=1048576")))
      << c.welcome();
  stop_server();
}

// SEND carries any bytes; DELIVER names the sender; to itself too; an empty
// payload is a frame.
TEST_P(V2Test, SendDeliversAnyBytesWithTheSource) {
  start_server();
  V2Client a = connect_v2();
  V2Client b = connect_v2();
  const std::string binary = all_bytes() + all_bytes();
  a.send(b.id(), binary);
  EXPECT_TRUE(is_deliver(b.next(after(kIoTimeout)), a.id(), binary));
  a.send(b.id(), "");
  EXPECT_TRUE(is_deliver(b.next(after(kIoTimeout)), a.id(), ""));
  b.send(b.id(), std::string("\0to myself\0", 11));
  EXPECT_TRUE(is_deliver(b.next(after(kIoTimeout)), b.id(), std::string("\0to myself\0", 11)));
  b.send(a.id(), "answer");
  EXPECT_TRUE(is_deliver(a.next(after(kIoTimeout)), b.id(), "answer"));
  // The largest frame the default limit allows, 1 MiB of payload.
  const std::string big = pattern(std::size_t{1} << 20, 7);
  a.raw().queue(v2_send(b.id(), big));
  const V2Frame got = [&] {
    pump({&a.raw(), &b.raw()}, after(kIoTimeout), [&] { return b.poll() > 0; });
    return b.next(after(kIoTimeout));
  }();
  EXPECT_TRUE(is_deliver(got, a.id(), big));

  const ExitInfo info = stop_server();
  EXPECT_EQ(info.stat("routed"), 5u);
  EXPECT_EQ(info.stat("errors_sent"), 0u);
}

TEST_P(V2Test, PingIsAnsweredWithItsBody) {
  start_server();
  V2Client c = connect_v2();
  std::string max_body = all_bytes().substr(0, 64);
  for (const std::string& body : {std::string{}, std::string("x"), std::string("\0\xff", 2), max_body}) {
    c.ping(body);
    const V2Frame f = c.next(after(kIoTimeout));
    EXPECT_EQ(f.type, kPong) << f.describe();
    EXPECT_TRUE(same_bytes(body, f.body));
  }
  EXPECT_EQ(stop_server().stat("pongs"), 4u);
}

// The PONG comes once everything sent before the PING is routed: all 286
// ERRORs for an unknown destination arrive before it, and a third client
// writing to the receiver after the PONG lands behind all 2,000 frames.
TEST_P(V2Test, PingIsABarrier) {
  start_server();
  V2Client a = connect_v2();
  Client b = connect();  // v1: its bytes interleave by frame only
  Client c = connect();
  constexpr int kFrames = 2000;
  constexpr std::uint32_t kNobody = 0x00ABCDEF;
  std::string expected;
  for (int i = 0; i < kFrames; ++i) {
    const std::string payload = "frame " + std::to_string(i) + " " + pattern(static_cast<std::size_t>(i % 97), i);
    a.queue_send(b.id(), payload);
    expected += payload + '\0';
    if (i % 7 == 0) a.queue_send(kNobody, "nobody");
  }
  b.set_reading(false);
  Client* background[] = {&b};
  auto errors = a.barrier("barrier", background);
  // On the sharded engine (and across nodes) the PONG means "handed to
  // the destination's shard (node)": an ERROR decided there (kNobody's
  // shard may be another) and the delivery itself may come after it
  // (DESIGN.md 1b, docs/PROTOCOL.md).
  const bool sharded = engine() == "sharded" || clustered();
  while (sharded && errors.size() < 286u) errors.push_back(a.next(after(kIoTimeout)));
  ASSERT_EQ(errors.size(), 286u);  // ceil(2000 / 7): one ERROR per frame to nobody, none lost
  for (const auto& f : errors) EXPECT_TRUE(is_error(f, no_route, kNobody));

  c.send_frame(b.id(), "after the barrier", after(kIoTimeout));
  const std::string last = std::string("after the barrier") + '\0';
  b.set_reading(true);
  ASSERT_TRUE(pump({&b, &c}, after(kIoTimeout), [&] { return b.available() >= expected.size() + last.size(); }))
      << b.where() << " expected " << expected.size() + last.size();
  std::string got = b.take_all();
  if (sharded) {
    // a's frames in order; c's frame somewhere between two of them.
    const std::size_t at = got.find(last);
    ASSERT_NE(at, std::string::npos);
    EXPECT_TRUE(at == 0 || got[at - 1] == '\0');
    got.erase(at, last.size());
    EXPECT_TRUE(same_bytes(expected, got));
  } else {
    EXPECT_TRUE(same_bytes(expected + last, got));
  }
  stop_server();
}

// ---------------------------------------------------------------------------
// ERROR codes

TEST_P(V2Test, NoRouteForUnknownAndDepartedDestinations) {
  start_server();
  V2Client a = connect_v2();
  a.send(0x00123456, "to nobody");
  EXPECT_TRUE(is_error(a.next(after(kIoTimeout)), no_route, 0x00123456));

  Client gone = connect();
  const std::uint32_t gone_id = gone.id();
  a.send(gone_id, "still here");
  ASSERT_EQ(gone.read_frame(after(kIoTimeout)), "still here");
  gone.abort();
  // The server learns of the reset when it next polls: ask until it has.
  bool refused = false;
  for (int i = 0; i < 200 && !refused; ++i) {
    a.send(gone_id, "after the reset");
    const auto before = a.barrier("probe " + std::to_string(i));
    for (const auto& f : before) refused = refused || is_error(f, no_route, gone_id);
    if (!refused) std::this_thread::sleep_for(10ms);
  }
  EXPECT_TRUE(refused) << "no ERROR no_route for the departed client " << gone_id;
  // The sender is unaffected.
  a.send(a.id(), "fine");
  EXPECT_TRUE(is_deliver(a.next(after(kIoTimeout)), a.id(), "fine"));
  const ExitInfo info = stop_server();
  EXPECT_GE(info.stat("dropped_no_route"), 2u);
  EXPECT_EQ(info.stat("errors_sent"), info.stat("dropped_no_route"));
}

// Floods a receiver that never reads until the sender hears ERROR
// slow_consumer (bounded in bytes and time); returns the errors seen.
std::vector<V2Frame> flood_until_slow_consumer(V2Client& a, Client& receiver, std::uint32_t dest) {
  const std::string payload = pattern(1000, 3);
  std::vector<V2Frame> errors;
  const Deadline deadline = after(30s);
  std::uint64_t queued = 0;
  while (errors.empty()) {
    if (Clock::now() >= deadline || queued >= (256ull << 20)) {
      throw HarnessError("no ERROR slow_consumer after " + std::to_string(queued) + " bytes");
    }
    while (a.raw().outbox_size() < (256u << 10)) {
      a.queue_send(dest, payload);
      queued += payload.size() + 9;
    }
    pump({&a.raw(), &receiver}, std::min(after(50ms), deadline), [&] { return a.poll() > 0; });
    while (!a.frames().empty()) {
      errors.push_back(std::move(a.frames().front()));
      a.frames().pop_front();
    }
  }
  return errors;
}

TEST_P(V2Test, SlowConsumerUnderDropPolicy) {
  start_server({"--slow-consumer", "drop", "--max-pending", "64K"});
  V2Client a = connect_v2();
  V2Client b = connect_v2("", {.rcvbuf = 16 << 10});
  b.raw().set_reading(false);
  const auto errors = flood_until_slow_consumer(a, b.raw(), b.id());
  EXPECT_TRUE(is_error(errors.front(), slow_consumer, b.id()));
  // Both stay connected: the sender is told, the receiver keeps its queue.
  ASSERT_NO_THROW(a.raw().flush(after(kIoTimeout)));
  a.barrier("still connected");
  b.raw().abort();  // else the stop would wait out the drain for it
  const ExitInfo info = stop_server();
  EXPECT_GE(info.stat("dropped_slow_consumer"), 1u);
  EXPECT_EQ(info.stat("closed_slow_consumer"), 0u);
}

TEST_P(V2Test, SlowConsumerUnderDisconnectPolicy) {
  start_server({"--slow-consumer", "disconnect", "--max-pending", "64K"});
  V2Client a = connect_v2();
  V2Client b = connect_v2("", {.rcvbuf = 16 << 10});
  b.raw().set_reading(false);
  const auto errors = flood_until_slow_consumer(a, b.raw(), b.id());
  EXPECT_TRUE(is_error(errors.front(), slow_consumer, b.id()));
  const auto closing = b.raw().read_until_close(after(kIoTimeout));
  EXPECT_NE(closing.how, Client::End::open) << "the slow consumer was not closed";
  // Once it is gone, frames to it are no_route; before, slow_consumer.
  a.raw().flush(after(kIoTimeout));
  const auto late = a.barrier("after the close");
  a.send(b.id(), "to the departed");
  EXPECT_TRUE(is_error(a.barrier("last").at(0), no_route, b.id()));
  for (const auto& f : late) {
    EXPECT_TRUE(is_error(f, slow_consumer, b.id()) || is_error(f, no_route, b.id())) << f.describe();
  }
  const ExitInfo info = stop_server();
  EXPECT_EQ(info.stat("closed_slow_consumer"), 1u);
}

TEST_P(V2Test, NotRepresentableForAV1Destination) {
  start_server();
  V2Client a = connect_v2();
  Client v1 = connect();
  a.send(v1.id(), std::string("has a \0 inside", 14));
  EXPECT_TRUE(is_error(a.next(after(kIoTimeout)), not_representable, v1.id()));
  a.send(v1.id(), "plain text");
  EXPECT_EQ(v1.read_frame(after(kIoTimeout)), "plain text") << "the NUL frame must have been dropped";
  const ExitInfo info = stop_server();
  EXPECT_EQ(info.stat("dropped_not_representable"), 1u);
}

// The 4-byte length alone decides: the body is never sent, yet the ERROR
// and the close come.
TEST_P(V2Test, TooLargeIsDecidedFromTheHeader) {
  start_server({"--max-frame", "1K"});
  V2Client a = connect_v2();
  // At the limit: 1,024 bytes of payload, L = 1,029.
  a.send(a.id(), std::string(1024, 'x'));
  EXPECT_TRUE(is_deliver(a.next(after(kIoTimeout)), a.id(), std::string(1024, 'x')));
  for (const std::uint32_t length : {1024u + 6u, 0xFFFFFFFFu}) {
    V2Client c = connect_v2();
    c.raw().send_raw(be32(length) + "\x01", after(kIoTimeout));
    auto [frames, how] = c.until_close();
    ASSERT_EQ(frames.size(), 1u) << "L = " << length;
    EXPECT_TRUE(is_error(frames[0], too_large, c.id()));
    EXPECT_EQ(how, Client::End::eof);
  }
  const ExitInfo info = stop_server();
  EXPECT_EQ(info.stat("closed_oversized"), 2u);
}

TEST_P(V2Test, BadFramesAreAnsweredThenClosed) {
  start_server();
  struct Case {
    const char* what;
    std::string bytes;
  };
  const std::vector<Case> cases = {
      {"L = 0", be32(0)},
      {"unknown type 0x07", v2_frame(0x07, "")},
      {"a server-to-client type (DELIVER) from a client", v2_frame(kDeliver, be32(1) + "x")},
      {"SEND with no body", v2_frame(kSend, "")},
      {"SEND body of 3 bytes", v2_frame(kSend, "abc")},
      {"PING body of 65 bytes (header only)", be32(66) + "\x02"},
  };
  for (const Case& k : cases) {
    V2Client c = connect_v2();
    c.raw().send_raw(k.bytes, after(kIoTimeout));
    auto [frames, how] = c.until_close();
    ASSERT_EQ(frames.size(), 1u) << k.what;
    EXPECT_TRUE(is_error(frames[0], bad_frame, 0)) << k.what;
    EXPECT_EQ(how, Client::End::eof) << k.what;
  }
  const ExitInfo info = stop_server();
  EXPECT_EQ(info.stat("closed_protocol_error"), cases.size());
  EXPECT_EQ(info.stat("errors_sent"), cases.size());
}

// ---------------------------------------------------------------------------
// Mixed versions

TEST_P(V2Test, MixedVersionsKeepOrderBothWays) {
  start_server();
  Client v1 = connect();
  V2Client v2 = connect_v2();
  constexpr int kEach = 500;
  for (int i = 0; i < kEach; ++i) {
    v1.queue_frame(v2.id(), "v1 says " + std::to_string(i));
    v2.queue_send(v1.id(), "v2 says " + std::to_string(i));
  }
  std::vector<std::string> at_v1;
  ASSERT_TRUE(pump({&v1, &v2.raw()}, after(kIoTimeout), [&] {
    while (auto f = v1.take_frame()) at_v1.push_back(*f);
    return at_v1.size() == kEach && v2.poll() == kEach;
  })) << at_v1.size() << " at the v1 client, " << v2.frames().size() << " at the v2 client";
  for (int i = 0; i < kEach; ++i) {
    EXPECT_EQ(at_v1[static_cast<std::size_t>(i)], "v2 says " + std::to_string(i));
    EXPECT_TRUE(is_deliver(v2.frames()[static_cast<std::size_t>(i)], v1.id(), "v1 says " + std::to_string(i)));
  }
  stop_server();
}

// Frames routed to a client before it upgrades arrive as v1 deliveries
// before the welcome, one of them a forged welcome with another nonce.
TEST_P(V2Test, DeliveriesBeforeTheUpgradeComeFirstAsV1) {
  start_server();
  Client sender = connect();
  Client witness = connect();
  Client late = connect();
  const std::string forged = "switchboard/2 ok nonce=" + random_nonce() + " id=1 max_frame=1";
  sender.queue_frame(late.id(), "early 1");
  sender.queue_frame(late.id(), forged);
  sender.queue_frame(late.id(), "early 2");
  sender.queue_frame(witness.id(), "routed");
  sender.flush(after(kIoTimeout));
  ASSERT_EQ(witness.read_frame(after(kIoTimeout)), "routed");
  // Sharded: late may live on another shard than witness, and frames to
  // different destinations are not ordered across shards. Wait (without
  // reading) until late's three deliveries are in its socket.
  const std::size_t early_bytes = 8 + forged.size() + 1 + 8;
  for (int i = 0; i < 500; ++i) {
    char peek[512];
    const ssize_t n = ::recv(late.fd(), peek, sizeof peek, MSG_PEEK | MSG_DONTWAIT);
    if (n >= static_cast<ssize_t>(early_bytes)) break;
    std::this_thread::sleep_for(2ms);
  }

  V2Client v2(std::move(late));
  v2.upgrade();
  EXPECT_EQ(v2.before_welcome(), (std::vector<std::string>{"early 1", forged, "early 2"}));
  sender.send_frame(v2.id(), "after", after(kIoTimeout));
  EXPECT_TRUE(is_deliver(v2.next(after(kIoTimeout)), sender.id(), "after"));
  stop_server();
}

// ---------------------------------------------------------------------------
// The hello

TEST_P(V2Test, BadHellosGetAReasonAndAClose) {
  start_server();
  const std::string n = random_nonce();
  struct Case {
    std::string hello;
    std::string reply;
  };
  const std::vector<Case> cases = {
      {"switchboard/2 nonce=abc", "switchboard/2 error bad_nonce"},
      {"switchboard/2 nonce=" + std::string(16, 'A'), "switchboard/2 error bad_nonce"},
      {"switchboard/2 nonce=" + std::string(65, 'a'), "switchboard/2 error bad_nonce"},
      {"switchboard/2", "switchboard/2 error missing_nonce"},
      {"switchboard/2 nonce=" + n + " nonce=" + n, "switchboard/2 error nonce=" + n + " repeated_field"},
      {"switchboard/2 nonce=" + n + " x=1 x=2", "switchboard/2 error nonce=" + n + " repeated_field"},
      {"switchboard/3 nonce=" + n, "switchboard/2 error nonce=" + n + " unsupported_version"},
      {"switchboard/ nonce=" + n, "switchboard/2 error nonce=" + n + " unsupported_version"},
      {"switchboard/2 nonce=" + n + " oops", "switchboard/2 error nonce=" + n + " malformed"},
      {"switchboard/2  nonce=" + n, "switchboard/2 error nonce=" + n + " malformed"},
      {"switchboard/2 nonce=" + n + " ", "switchboard/2 error nonce=" + n + " malformed"},
      {"switchboard/2 nonce=" + n + " token=", "switchboard/2 error nonce=" + n + " bad_token"},
      {"switchboard/2 nonce=" + n + " token=" + std::string(257, 't'),
       "switchboard/2 error nonce=" + n + " bad_token"},
      {"switchboard/1 token=", "switchboard/1 error bad_token"},
      {"switchboard/1 what", "switchboard/1 error malformed"},
  };
  for (const Case& k : cases) {
    Client c = connect();
    c.send_frame(kServerId, k.hello, after(kIoTimeout));
    const auto closing = c.read_until_close(after(kIoTimeout));
    EXPECT_TRUE(same_bytes(k.reply + '\0', closing.data)) << "hello \"" << k.hello << "\"";
    EXPECT_EQ(closing.how, Client::End::eof) << "hello \"" << k.hello << "\"";
  }
  const ExitInfo info = stop_server();
  EXPECT_EQ(info.stat("hellos_rejected"), cases.size());
  EXPECT_EQ(info.stat("closed_protocol_error"), cases.size());
  EXPECT_EQ(info.stat("upgrades"), 0u);
}

// Well-formed fields the server does not know are ignored; without
// --auth-token-file a token is ignored too; switchboard/1 is answered.
TEST_P(V2Test, AcceptedHellos) {
  start_server();
  V2Client future = connect_v2(" x-future=1 compress=zstd");
  V2Client tokened = connect_v2(" token=anything-at-all");
  future.send(tokened.id(), "hi");
  EXPECT_TRUE(is_deliver(tokened.next(after(kIoTimeout)), future.id(), "hi"));

  Client v1 = connect();
  v1.send_frame(kServerId, "switchboard/1", after(kIoTimeout));
  EXPECT_EQ(v1.read_frame(after(kIoTimeout)), "switchboard/1 ok id=" + std::to_string(v1.id()));
  // It keeps v1 framing, and may upgrade once later.
  v1.send_frame(v1.id(), "still v1", after(kIoTimeout));
  EXPECT_EQ(v1.read_frame(after(kIoTimeout)), "still v1");
  V2Client upgraded(std::move(v1));
  upgraded.upgrade();
  upgraded.ping("v2 now");
  EXPECT_EQ(upgraded.next(after(kIoTimeout)).type, kPong);
  const ExitInfo info = stop_server();
  EXPECT_EQ(info.stat("upgrades"), 3u);
  EXPECT_EQ(info.stat("hellos_v1"), 1u);
}

// A frame to the server that is not a hello is an ordinary no_route: dropped
// without a word for a v1 client, which stays connected.
TEST_P(V2Test, NotAHelloToTheServerIsDroppedSilently) {
  start_server();
  Client c = connect();
  Client peer = connect();
  c.queue_frame(kServerId, "hello");
  c.queue_frame(kServerId, "Switchboard/2 nonce=" + random_nonce());
  c.queue_frame(kServerId, "");
  c.queue_frame(kFirstReserved, "switchboard/2 nonce=" + random_nonce());
  round_trip(c, peer, "after the non-hellos", after(kIoTimeout));
  EXPECT_EQ(c.available(), 0u);
  const ExitInfo info = stop_server();
  EXPECT_EQ(info.stat("dropped_no_route"), 4u);
  EXPECT_EQ(info.stat("hellos_rejected"), 0u);
}

TEST_P(V2Test, SecondHelloAfterTheUpgradeIsNoRoute) {
  start_server();
  V2Client c = connect_v2();
  c.send(kServerId, "switchboard/2 nonce=" + random_nonce());
  EXPECT_TRUE(is_error(c.next(after(kIoTimeout)), no_route, kServerId));
  c.ping("still open");
  EXPECT_EQ(c.next(after(kIoTimeout)).type, kPong);
  const ExitInfo info = stop_server();
  EXPECT_EQ(info.stat("upgrades"), 1u);
}

TEST_P(V2Test, ReservedIdsAreNoRoute) {
  start_server();
  V2Client c = connect_v2();
  for (const std::uint32_t id : {kFirstReserved, 0xFFFFFF7Fu, 0xFFFFFFFEu, kServerId}) {
    c.send(id, "to a reserved ID");
    EXPECT_TRUE(is_error(c.next(after(kIoTimeout)), no_route, id));
  }
  EXPECT_EQ(stop_server().stat("dropped_no_route"), 4u);
}

// One of each outcome, then the SIGUSR1 stats line and the exit line.
TEST_P(V2Test, CountersAtSigusr1) {
  start_server();
  V2Client a = connect_v2();
  a.send(0x00777777, "x");                     // no_route
  a.ping("p");                                 // pong
  Client v1 = connect();
  a.send(v1.id(), std::string("\0", 1));       // not_representable
  auto answers = a.barrier("done");
  // Sharded: ERRORs decided on another shard may follow the PONG.
  while ((engine() == "sharded" || clustered()) && answers.size() < 3u) answers.push_back(a.next(after(kIoTimeout)));
  Client bad = connect();
  bad.send_frame(kServerId, "switchboard/9", after(kIoTimeout));  // rejected hello
  bad.read_until_close(after(kIoTimeout));

  // On a cluster, summed over the nodes (none of these is a peak).
  Stats s;
  for (ServerProcess* node : servers()) {
    for (const auto& [name, value] : stats_now(*node)) s[name] += value;
  }
  EXPECT_EQ(stat(s, "upgrades"), 1u);
  EXPECT_EQ(stat(s, "pongs"), 2u);
  EXPECT_EQ(stat(s, "dropped_no_route"), 1u);
  EXPECT_EQ(stat(s, "dropped_not_representable"), 1u);
  EXPECT_EQ(stat(s, "errors_sent"), 2u);
  EXPECT_EQ(stat(s, "errors_dropped"), 0u);
  EXPECT_EQ(stat(s, "hellos_rejected"), 1u);
  EXPECT_EQ(stat(s, "closed_protocol_error"), 1u);
  EXPECT_EQ(stat(s, "live"), 2u);
  for (const auto name : kStatNames) EXPECT_TRUE(s.contains(name)) << name;
  EXPECT_TRUE(server().running());
  a.ping("after SIGUSR1");
  EXPECT_EQ(a.next(after(kIoTimeout)).type, kPong);
  stop_server();
}

// ---------------------------------------------------------------------------
// Authentication

constexpr std::string_view kTokenA = "tok-alpha-9f8e7d6c5b4a";
constexpr std::string_view kTokenB = "tok-bravo-0a1b2c3d4e5f";
constexpr std::string_view kWrongToken = "tok-wrong-deadbeefcafe";

class AuthTest : public V2Test {
 protected:
  void SetUp() override {
    path_ = (std::filesystem::temp_directory_path() /
             ("switchboard-itest-tokens-" + std::to_string(::getpid()) + "-" + random_nonce()))
                .string();
    write_tokens("# the test's tokens\n\n  " + std::string(kTokenA) + "  \n" + std::string(kTokenB) + "\n");
  }
  void TearDown() override {
    V2Test::TearDown();
    if (!path_.empty()) std::filesystem::remove(path_);
  }
  void write_tokens(const std::string& text) {
    // Written aside and renamed, so a reload never sees half a file.
    const std::string tmp = path_ + ".new";
    std::ofstream(tmp, std::ios::binary | std::ios::trunc) << text;
    std::filesystem::rename(tmp, path_);
  }
  ServerProcess& start_auth(std::vector<std::string> extra = {}) {
    extra.insert(extra.begin(), {"--auth-token-file", path_});
    return start_server(extra);
  }
  V2Client connect_token(std::string_view token) { return connect_v2(" token=" + std::string(token)); }
  Client connect_v1_token(std::string_view token) {
    Client c = connect();
    c.send_frame(kServerId, "switchboard/1 token=" + std::string(token), after(kIoTimeout));
    const std::string reply = c.read_frame(after(kIoTimeout));
    if (reply != "switchboard/1 ok id=" + std::to_string(c.id())) throw HarnessError("v1 auth reply: " + reply);
    return c;
  }
  // No token text may appear in anything the server wrote.
  void expect_no_token_in(const std::string& text) {
    for (std::string_view t : {kTokenA, kTokenB, kWrongToken}) {
      EXPECT_EQ(text.find(t), std::string::npos) << "the server's output shows a token";
    }
  }

  std::string path_;
};
INSTANTIATE_TEST_SUITE_P(Engines, AuthTest,
                         ::testing::Values(std::string_view("reactor"), std::string_view("sharded"), kSharded4,
                                           std::string_view("race")),
                         engine_test_name);

TEST_P(AuthTest, UnauthenticatedFramesAreDroppedAndItIsNoRoute) {
  start_auth();
  V2Client a = connect_token(kTokenA);
  Client u = connect();
  // Before its hello: its frames go nowhere; frames to it are no_route.
  u.send_frame(a.id(), "before auth", after(kIoTimeout));
  a.send(u.id(), "to the unauthenticated");
  EXPECT_TRUE(is_error(a.next(after(kIoTimeout)), no_route, u.id()));
  u.send_frame(kServerId, "switchboard/1 token=" + std::string(kTokenB), after(kIoTimeout));
  EXPECT_EQ(u.read_frame(after(kIoTimeout)), "switchboard/1 ok id=" + std::to_string(u.id()));
  u.send_frame(a.id(), "after auth", after(kIoTimeout));
  // "before auth" would have come first: frames from one sender keep order.
  EXPECT_TRUE(is_deliver(a.next(after(kIoTimeout)), u.id(), "after auth"));
  a.send(u.id(), "now routed");
  EXPECT_EQ(u.read_frame(after(kIoTimeout)), "now routed");
  // A v1-authenticated client may still upgrade once.
  V2Client u2(std::move(u));
  u2.upgrade();
  EXPECT_TRUE(u2.before_welcome().empty());
  const ExitInfo info = stop_server();
  EXPECT_EQ(info.stat("dropped_unauthenticated"), 1u);
  EXPECT_EQ(info.stat("hellos_v1"), 1u);
  EXPECT_EQ(info.stat("upgrades"), 2u);
  expect_no_token_in(info.stderr_text + info.stdout_text);
}

TEST_P(AuthTest, WrongOrMissingTokenIsUnauthorized) {
  start_auth();
  const std::string n = random_nonce();
  struct Case {
    std::string hello;
    std::string reply;
  };
  const std::vector<Case> cases = {
      {"switchboard/2 nonce=" + n + " token=" + std::string(kWrongToken),
       "switchboard/2 error nonce=" + n + " unauthorized"},
      {"switchboard/2 nonce=" + n, "switchboard/2 error nonce=" + n + " unauthorized"},
      // A prefix of a listed token is not that token.
      {"switchboard/2 nonce=" + n + " token=" + std::string(kTokenA.substr(0, 8)),
       "switchboard/2 error nonce=" + n + " unauthorized"},
      {"switchboard/1 token=" + std::string(kWrongToken), "switchboard/1 error unauthorized"},
      {"switchboard/1", "switchboard/1 error unauthorized"},
  };
  for (const Case& k : cases) {
    Client c = connect();
    c.send_frame(kServerId, k.hello, after(kIoTimeout));
    const auto closing = c.read_until_close(after(kIoTimeout));
    EXPECT_TRUE(same_bytes(k.reply + '\0', closing.data)) << k.reply;
    EXPECT_EQ(closing.how, Client::End::eof);
  }
  const ExitInfo info = stop_server();
  EXPECT_EQ(info.stat("auth_failures"), cases.size());
  EXPECT_EQ(info.stat("upgrades"), 0u);
  expect_no_token_in(info.stderr_text + info.stdout_text);
}

// Closed without a word once --auth-timeout passes; an authenticated client
// connected at the same moment stays.
TEST_P(AuthTest, AuthTimeoutClosesSilently) {
  start_auth({"--auth-timeout", "300ms"});
  const auto t0 = Clock::now();
  Client idle = connect();
  V2Client ok = connect_token(kTokenA);
  const auto closing = idle.read_until_close(after(kIoTimeout));
  EXPECT_GE(Clock::now() - t0, 300ms) << "closed before the timeout";
  EXPECT_TRUE(same_bytes("", closing.data));
  EXPECT_EQ(closing.how, Client::End::eof);
  std::this_thread::sleep_for(300ms);
  ok.ping("alive");
  EXPECT_EQ(ok.next(after(kIoTimeout)).type, kPong);
  const ExitInfo info = stop_server();
  EXPECT_EQ(info.stat("closed_unauthenticated"), 1u);
}

// SIGHUP re-reads the file: a removed token admits no new hello, the session
// it opened stays; a new token is admitted.
TEST_P(AuthTest, SighupReloadsTheTokenFile) {
  start_auth();
  V2Client old_a = connect_token(kTokenA);
  V2Client b = connect_token(kTokenB);
  write_tokens(std::string(kTokenB) + "\n" + "tok-charlie-112233\n");
  server().send_signal(SIGHUP);
  ASSERT_TRUE(wait_for_log(server(), "SIGHUP: reloaded")) << "no reload line in the log";

  Client again = connect();
  const std::string n = random_nonce();
  again.send_frame(kServerId, "switchboard/2 nonce=" + n + " token=" + std::string(kTokenA), after(kIoTimeout));
  EXPECT_EQ(again.read_until_close(after(kIoTimeout)).data, "switchboard/2 error nonce=" + n + " unauthorized" + '\0');
  V2Client c = connect_token("tok-charlie-112233");

  old_a.send(b.id(), "old session");
  EXPECT_TRUE(is_deliver(b.next(after(kIoTimeout)), old_a.id(), "old session"));
  c.send(old_a.id(), "new token");
  EXPECT_TRUE(is_deliver(old_a.next(after(kIoTimeout)), c.id(), "new token"));

  // A file with no valid token refuses every new hello (and says so);
  // sessions already open stay.
  write_tokens("# nothing\n");
  server().send_signal(SIGHUP);
  ASSERT_TRUE(wait_for_log(server(), "every new hello will be refused"));
  Client late = connect();
  const std::string n2 = random_nonce();
  late.send_frame(kServerId, "switchboard/2 nonce=" + n2 + " token=" + std::string(kTokenB), after(kIoTimeout));
  EXPECT_EQ(late.read_until_close(after(kIoTimeout)).data, "switchboard/2 error nonce=" + n2 + " unauthorized" + '\0');
  c.send(b.id(), "still here");
  EXPECT_TRUE(is_deliver(b.next(after(kIoTimeout)), c.id(), "still here"));
  // A file that cannot be read keeps the list in force.
  std::filesystem::remove(path_);
  server().send_signal(SIGHUP);
  ASSERT_TRUE(wait_for_log(server(), "keeping the tokens loaded before"));
  ASSERT_TRUE(server().running());
  const ExitInfo info = stop_server();
  EXPECT_EQ(info.stat("auth_failures"), 2u);
  expect_no_token_in(info.stderr_text + info.stdout_text);
}

TEST_P(AuthTest, CountersAndNoTokenInTheLog) {
  std::vector<std::string> extra = {"--log-level", "debug"};
  extra.insert(extra.end(), {"--auth-timeout", "300ms"});
  start_auth(extra);
  V2Client a = connect_token(kTokenA);
  Client v1 = connect_v1_token(kTokenB);
  Client u = connect();
  u.send_frame(a.id(), "dropped", after(kIoTimeout));
  u.send_frame(v1.id(), "dropped too", after(kIoTimeout));
  Client wrong = connect();
  wrong.send_frame(kServerId, "switchboard/1 token=" + std::string(kWrongToken), after(kIoTimeout));
  wrong.read_until_close(after(kIoTimeout));
  a.send(u.id(), "to the unauthenticated");
  a.barrier("done");
  u.read_until_close(after(kIoTimeout));

  // On a cluster, summed over the nodes (none of these is a peak).
  Stats s;
  for (ServerProcess* node : servers()) {
    for (const auto& [name, value] : stats_now(*node)) s[name] += value;
  }
  EXPECT_EQ(stat(s, "upgrades"), 1u);
  EXPECT_EQ(stat(s, "hellos_v1"), 1u);
  EXPECT_EQ(stat(s, "auth_failures"), 1u);
  EXPECT_EQ(stat(s, "errors_sent"), 1u);
  EXPECT_EQ(stat(s, "dropped_no_route"), 1u);
  EXPECT_GE(stat(s, "dropped_unauthenticated"), 1u);
  EXPECT_EQ(stat(s, "dropped_unauthenticated"), 2u);
  EXPECT_EQ(stat(s, "closed_unauthenticated"), 1u);
  const ExitInfo info = stop_server();
  expect_no_token_in(info.stderr_text + info.stdout_text);
}

}  // namespace
}  // namespace sb::itest
