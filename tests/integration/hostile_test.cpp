// Hostile clients against the reactor (issue 11's hardening): a hundred
// receivers that never read, each flooded by its own sender, under
// --max-pending-total; half-closed clients; flag values that must be
// refused; signals at awkward moments.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <ostream>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "harness.hpp"

namespace sb::itest {
namespace {

constexpr std::uint64_t kMiB = std::uint64_t{1} << 20;

// The server's resident set, from /proc/PID/status (0 if it is gone).
std::uint64_t rss_bytes(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) {
      std::istringstream fields(line.substr(6));
      std::uint64_t kib = 0;
      fields >> kib;
      return kib * 1024;
    }
  }
  return 0;
}

std::size_t count_of(const std::string& text, std::string_view what) {
  std::size_t n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

bool wait_for_log(ServerProcess& server, std::string_view text, std::size_t times = 1,
                  Clock::duration timeout = kIoTimeout) {
  const Deadline deadline = after(timeout);
  while (Clock::now() < deadline) {
    if (count_of(server.stderr_text(), text) >= times) return true;
    std::this_thread::sleep_for(10ms);
  }
  return false;
}

// Numbered, checkable messages between two honest clients.
std::string honest_payload(std::uint64_t seq) {
  return "honest " + std::to_string(seq) + " " + pattern(200 + seq % 300, seq);
}

class HostileTest : public EngineTest {};
INSTANTIATE_TEST_SUITE_P(Engines, HostileTest,
                         ::testing::Values(std::string_view("reactor"), std::string_view("sharded")),
                         engine_test_name);

// ---------------------------------------------------------------------------
// A hundred floods under the global cap

// A positive whole number from the environment, or `fallback`. The suite
// runs the small case (100 attackers, a 64 MiB cap); the full-size run
// (SB_FLOOD_ATTACKERS=200 SB_FLOOD_CAP_MIB=256, docs/OPERATIONS.md) is
// the same code.
std::uint64_t from_env(const char* name, std::uint64_t fallback) {
  const char* text = std::getenv(name);
  if (text == nullptr || *text == '\0') return fallback;
  char* end = nullptr;
  const unsigned long long v = std::strtoull(text, &end, 10);
  return *end == '\0' && v > 0 ? v : fallback;
}

const std::size_t kAttackers = from_env("SB_FLOOD_ATTACKERS", 100);
constexpr std::size_t kFloodFrame = 16 * 1024 - 1;  // + NUL: 16 KiB at the receiver
// Each flooder stops after this much, or once the server stops reading it.
constexpr std::uint64_t kFloodPerSender = 8 * kMiB;
const std::uint64_t kTotalCap = from_env("SB_FLOOD_CAP_MIB", 64) * kMiB;
// Beyond the cap: read buffers of paused senders (one frame each), the
// per-destination frame an empty queue always admits, pools, the heap's
// own slack.
const std::uint64_t kRssSlack = from_env("SB_FLOOD_SLACK_MIB", 96) * kMiB;
constexpr std::uint64_t kHonestMessages = 2000;

TEST_P(HostileTest, HundredFloodsStayUnderTheTotalCap) {
  // The stall timeout is out of reach: the receivers' queues must stay
  // full for the whole test, not be closed as slow after 10 s.
  start_measured_server({"--max-pending-total", std::to_string(kTotalCap / kMiB) + "M", "--stall-timeout", "300s"});
  const pid_t pid = server().pid();
  const std::uint64_t rss_start = rss_bytes(pid);

  Client honest_a = connect();
  Client honest_b = connect();
  std::vector<Client> receivers;
  std::vector<Client> senders;
  for (std::size_t i = 0; i < kAttackers; ++i) {
    receivers.push_back(connect({.rcvbuf = 4096}));
    receivers.back().set_reading(false);
    receivers.back().set_label("receiver " + std::to_string(receivers.back().id()));
    senders.push_back(connect());
    senders.back().set_label("flooder " + std::to_string(senders.back().id()));
  }
  std::vector<Client*> all{&honest_a, &honest_b};
  for (auto& c : receivers) all.push_back(&c);
  for (auto& c : senders) all.push_back(&c);

  const std::string flood_payload = pattern(kFloodFrame, 99);
  std::vector<std::uint64_t> flood_queued(kAttackers, 0);
  // The honest pair: a sends to b, b echoes back; both check every message.
  std::uint64_t a_sent = 0, b_got = 0, a_got = 0;
  std::string failure;
  const auto honest_step = [&] {
    while (a_sent < kHonestMessages && a_sent < b_got + 32)
      honest_a.queue_frame(honest_b.id(), honest_payload(a_sent++));
    while (auto f = honest_b.take_frame()) {
      if (failure.empty() && *f != honest_payload(b_got))
        failure = "b: message " + std::to_string(b_got) + " wrong";
      honest_b.queue_frame(honest_a.id(), *f);
      ++b_got;
    }
    while (auto f = honest_a.take_frame()) {
      if (failure.empty() && *f != honest_payload(a_got))
        failure = "a: echo " + std::to_string(a_got) + " wrong";
      ++a_got;
    }
  };

  std::uint64_t peak_rss = 0;
  bool probed = false;
  const Deadline flood_deadline =
      after(std::chrono::seconds(40 * std::max<std::size_t>(kAttackers, 100) / 100));
  // A flooder is done when it has sent its share, or when the server has
  // not read from it for a while (paused by backpressure).
  const auto flooding_done = [&] {
    for (std::size_t i = 0; i < kAttackers; ++i) {
      const bool sent_all = flood_queued[i] >= kFloodPerSender && senders[i].outbox_size() == 0;
      const bool stuck =
          senders[i].outbox_size() > 0 && Clock::now() - senders[i].last_send_progress() >= 500ms;
      if (!sent_all && !stuck) return false;
    }
    return true;
  };
  for (;;) {
    for (std::size_t i = 0; i < kAttackers; ++i) {
      while (senders[i].outbox_size() < (128u << 10) && flood_queued[i] < kFloodPerSender) {
        senders[i].queue_frame(receivers[i].id(), flood_payload);
        flood_queued[i] += kFloodFrame + 5;
      }
    }
    honest_step();
    pump(all, after(20ms), [] { return false; });
    honest_step();
    peak_rss = std::max(peak_rss, rss_bytes(pid));
    ASSERT_LE(peak_rss, kTotalCap + kRssSlack)
        << "the server's RSS went past --max-pending-total + slack: " << peak_rss / kMiB << " MiB";
    ASSERT_TRUE(failure.empty()) << failure;

    std::uint64_t flooded = 0;
    for (auto q : flood_queued) flooded += q;
    // Midway: a newcomer gets its ID promptly, and a new pair talks.
    if (!probed && flooded >= kAttackers * kFloodPerSender / 3) {
      probed = true;
      const auto t0 = Clock::now();
      Client newcomer = Client::connect(server().port(), after(kIoTimeout));
      const auto took = Clock::now() - t0;
      EXPECT_LT(took, 1s) << "a new client waited "
                          << std::chrono::duration_cast<std::chrono::milliseconds>(took).count()
                          << " ms for its ID during the flood";
      Client other = Client::connect(server().port(), after(kIoTimeout));
      round_trip(newcomer, other, "during the flood", after(kIoTimeout), all);
    }
    if (flooding_done() && a_got == kHonestMessages) break;
    ASSERT_TRUE(Clock::now() < flood_deadline)
        << "the flood did not settle: " << flooded / kMiB << " MiB queued by the flooders; honest a got "
        << a_got << "/" << kHonestMessages;
  }
  EXPECT_EQ(b_got, kHonestMessages);
  EXPECT_EQ(a_got, kHonestMessages) << "the honest pair lost messages";
  EXPECT_TRUE(probed);

  const Stats during = [&] {
    server().send_signal(SIGUSR1);
    EXPECT_TRUE(wait_for_log(server(), "stats: "));
    return parse_stats(server().stderr_text()).value_or(Stats{});
  }();
  EXPECT_GT(during.at("over_total_limit"), 0u) << "the flood never reached --max-pending-total";
  const std::uint64_t pending_bound = kTotalCap + kTotalCap / 8 + kAttackers * (kFloodFrame + 1);
  if (GetParam() == "reactor") {
    EXPECT_LE(during.at("peak_pending_bytes"), pending_bound)
        << "queued bytes went past 9/8 of the cap by more than one frame per destination (docs/PROTOCOL.md)";
  } else {
    // Known gap (docs/PROTOCOL.md): a shard takes frames that arrive from
    // another shard past its share of the cap while its pause travels back,
    // so its queues can pass 9/8 of the cap (86.6 MiB against a 64 MiB cap
    // was seen). The RSS bound above holds it; the figure is shown here.
    std::cerr << "peak queued bytes on one shard: " << during.at("peak_pending_bytes") / kMiB
              << " MiB (the reactor's bound: " << pending_bound / kMiB << " MiB)\n";
  }

  // The attackers leave; memory goes back.
  for (auto& c : senders) c.abort();
  for (auto& c : receivers) c.abort();
  std::uint64_t rss_after = rss_bytes(pid);
  const Deadline settle = after(8s);
  while (rss_after > peak_rss / 4 && Clock::now() < settle) {
    std::this_thread::sleep_for(100ms);
    rss_after = rss_bytes(pid);
  }
  std::cerr << "server RSS: " << rss_start / kMiB << " MiB at start, peak " << peak_rss / kMiB << " MiB, "
            << rss_after / kMiB << " MiB after the attackers left\n";
  EXPECT_GE(peak_rss, rss_start + 32 * kMiB) << "the flood never filled the server's queues";
  EXPECT_LE(rss_after, peak_rss / 4) << "memory did not go back after the attackers left";

  round_trip(honest_a, honest_b, "after the flood", after(kIoTimeout));
  const ExitInfo info = stop_server();
  EXPECT_EQ(info.stat("pending_bytes"), 0u);
}

// ---------------------------------------------------------------------------
// Half-close

// A client sends frames to itself and half-closes at once: it still gets
// every one, then the server closes it.
TEST_P(HostileTest, HalfClosedClientGetsWhatItSentItself) {
  start_server();
  Client c = connect();
  constexpr int kFrames = 1000;
  std::string expected;
  for (int i = 0; i < kFrames; ++i) {
    const std::string payload = "to myself " + std::to_string(i) + " " + pattern(100, i);
    c.queue_frame(c.id(), payload);
    expected += payload + '\0';
  }
  c.set_reading(false);
  c.flush(after(kIoTimeout));
  c.shutdown_write();
  const auto closing = c.read_until_close(after(kIoTimeout));
  EXPECT_TRUE(same_bytes(expected, closing.data));
  EXPECT_EQ(closing.how, Client::End::eof) << "the server should close it once its queue is written";
  const ExitInfo info = stop_server();
  EXPECT_EQ(info.stat("routed"), static_cast<std::uint64_t>(kFrames));
  EXPECT_EQ(info.stat("closed_peer"), 1u);
}

// A receiver flooded while it did not read half-closes, then reads: every
// frame queued for it arrives (megabytes held by the server), then EOF.
TEST_P(HostileTest, FloodedReceiverHalfClosesAndStillGetsEverything) {
  start_server();
  Client receiver = connect({.rcvbuf = 16 << 10});
  receiver.set_reading(false);
  Client sender = connect();
  Client witness = connect();
  constexpr int kFrames = 384;  // 6 MiB: under --max-pending (8M), so nobody is paused
  std::string expected;
  for (int i = 0; i < kFrames; ++i) {
    const std::string payload = pattern(16 * 1024 - 1, i);
    sender.queue_frame(receiver.id(), payload);
    expected += payload + '\0';
  }
  sender.queue_frame(witness.id(), "all routed");
  ASSERT_TRUE(pump({&sender, &witness}, after(20s), [&] { return witness.has_frame(); }));
  ASSERT_EQ(witness.take_frame(), "all routed");
  receiver.shutdown_write();
  const auto closing = receiver.read_until_close(after(20s));
  EXPECT_EQ(closing.data.size(), expected.size());
  EXPECT_TRUE(same_bytes(expected, closing.data));
  EXPECT_EQ(closing.how, Client::End::eof);
  round_trip(sender, witness, "after the half-close", after(kIoTimeout));
  const ExitInfo info = stop_server();
  EXPECT_EQ(info.stat("half_closed"), 1u);
  EXPECT_EQ(info.stat("discarded_bytes"), 0u);
}

// ---------------------------------------------------------------------------
// Flag values that must be refused: a non-zero exit and one line that names
// the flag, never a server that listens with a nonsense limit.

struct BadFlag {
  const char* flag;
  const char* value;
};

void PrintTo(const BadFlag& b, std::ostream* os) {
  *os << b.flag << " " << b.value;
}

class BadFlagTest : public ::testing::TestWithParam<BadFlag> {};

TEST_P(BadFlagTest, IsRefusedWithOneLine) {
  const BadFlag& bad = GetParam();
  std::vector<std::string> args = {"serve", bad.flag, bad.value};
  if (std::string_view(bad.flag) != "--listen") args.insert(args.begin() + 1, {"--listen", "127.0.0.1:0"});
  // A server that accepts the value listens and is killed after this long.
  const ExitInfo info = ServerProcess::run_to_exit(args, 3s);
  EXPECT_TRUE(info.exited) << info.describe();
  EXPECT_NE(info.code, 0) << bad.flag << " " << bad.value << " was accepted";
  std::string out = info.stdout_text + info.stderr_text;
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  EXPECT_EQ(count_of(out, "\n"), 0u) << "more than one line:\n" << out;
  // It says what was wrong: the flag ("--max-frame", or its words "max
  // frame") or the value it refuses.
  std::string words = std::string(bad.flag).substr(2);
  std::replace(words.begin(), words.end(), '-', ' ');
  EXPECT_TRUE(out.find(std::string(bad.flag).substr(2)) != std::string::npos ||
              out.find(words) != std::string::npos || out.find(bad.value) != std::string::npos)
      << "the message names neither the flag nor the value: " << out;
}

const BadFlag kBadFlags[] = {
    {"--max-frame", "0"},
    {"--max-frame", "-1"},
    {"--max-frame", "18446744073709551615"},  // over what v2's u32 length can carry
    {"--max-frame", "99999999999999999999999"},
    {"--max-frame", "1X"},
    {"--max-pending", "0"},
    {"--max-pending", "-8M"},
    {"--max-pending", "18446744073709551615K"},
    {"--max-pending-total", "-1"},
    {"--stall-timeout", "0"},
    {"--stall-timeout", "-1s"},
    {"--stall-timeout", "200000000m"},  // overflows the core's nanoseconds
    {"--stall-timeout", "10 parsecs"},
    {"--drain-timeout", "-5s"},
    {"--drain-timeout", "200000000m"},
    {"--auth-timeout", "0"},
    {"--auth-timeout", "-1s"},
    {"--auth-timeout", "200000000m"},
    {"--max-conns", "-1"},
    {"--max-conns", "18446744073709551616"},
    {"--threads", "-1"},
    {"--listen", "127.0.0.1:65536"},
    {"--listen", "127.0.0.1:-1"},
    {"--listen", "not-an-address"},
    {"--slow-consumer", "sometimes"},
    {"--engine", "no-such-engine"},
    {"--log-level", "loud"},
};
INSTANTIATE_TEST_SUITE_P(Flags, BadFlagTest, ::testing::ValuesIn(kBadFlags),
                         [](const ::testing::TestParamInfo<BadFlag>& p) {
                           std::string name = std::string(p.param.flag).substr(2) + "_" + p.param.value;
                           for (auto& ch : name) {
                             if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           }
                           return name + "_" + std::to_string(p.index);
                         });

// ---------------------------------------------------------------------------
// Signals at awkward moments

// Signals are blocked before the listening line is printed: none sent right
// after it may take its default action (death).
TEST_P(HostileTest, SignalsRightAfterTheListeningLine) {
  start_server();
  server().send_signal(SIGUSR1);
  server().send_signal(SIGHUP);
  server().send_signal(SIGTERM);
  const ExitInfo info = wait_server_exit(after(kStopTimeout));
  EXPECT_GE(count_of(info.stderr_text, "stats: "), 2u) << "SIGUSR1's line and the exit line";
}

TEST_P(HostileTest, SighupAndSigusr1DoNotStopTheServer) {
  start_server();
  Client a = connect();
  Client b = connect();
  // One at a time: signals of one kind sent while one is pending coalesce.
  for (int i = 0; i < 20; ++i) {
    const bool hup = i % 2 == 0;
    server().send_signal(hup ? SIGHUP : SIGUSR1);
    ASSERT_TRUE(
        wait_for_log(server(), hup ? "nothing to reload" : "stats: ", static_cast<std::size_t>(i / 2 + 1)))
        << "signal " << i << " was not answered";
    a.send_frame(b.id(), "between signals " + std::to_string(i), after(kIoTimeout));
  }
  for (int i = 0; i < 20; ++i)
    EXPECT_EQ(b.read_frame(after(kIoTimeout)), "between signals " + std::to_string(i));
  round_trip(a, b, "after the signals", after(kIoTimeout));
  EXPECT_TRUE(server().running());
  stop_server();
}

// SIGUSR1 while a drain waits for a receiver: a stats line, and the drain
// goes on to deliver everything.
TEST_P(HostileTest, Sigusr1DuringTheDrain) {
  start_server({"--drain-timeout", "20s"});
  Client sleeper = connect({.rcvbuf = 16 << 10});
  sleeper.set_reading(false);
  Client sender = connect();
  Client witness = connect();
  std::string expected;
  for (int i = 0; i < 64; ++i) {
    const std::string payload = pattern(64 * 1024 - 1, i);
    sender.queue_frame(sleeper.id(), payload);
    expected += payload + '\0';
  }
  sender.queue_frame(witness.id(), "routed");
  ASSERT_TRUE(pump({&sender, &witness}, after(20s), [&] { return witness.has_frame(); }));

  server().send_signal(SIGTERM);
  ASSERT_TRUE(wait_for_log(server(), "draining"));
  server().send_signal(SIGUSR1);
  ASSERT_TRUE(wait_for_log(server(), "stats: "));
  EXPECT_TRUE(server().running()) << "SIGUSR1 ended the drain";
  const auto closing = sleeper.read_until_close(after(20s));
  EXPECT_TRUE(same_bytes(expected, closing.data));
  const ExitInfo info = wait_server_exit(after(kStopTimeout));
  EXPECT_EQ(count_of(info.stderr_text, "stats: "), 2u);
  EXPECT_EQ(info.stat("discarded_bytes"), 0u);
}

}  // namespace
}  // namespace sb::itest
