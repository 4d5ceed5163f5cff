// Starting and stopping: graceful shutdown drains queued output within
// --drain-timeout; start-up failures exit non-zero with a message.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <algorithm>
#include <cctype>
#include <functional>
#include <string>

#include "harness.hpp"

namespace sb::itest {
namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

class LifecycleTest : public EngineTest {
 protected:
  // Queues `frames` frames of 64 KiB for a receiver that has not read yet,
  // and returns what the receiver should get. A barrier message to
  // `witness`, sent after them, proves the server has read them all.
  //
  // On loopback the kernel takes up to ~4 MiB of it (the server's send
  // buffer grows with the 64 KiB MSS, whatever the receiver's window), so
  // tests send more than that to leave megabytes in the server's own queue,
  // and stay below the default --max-pending (8M) so nothing is paused.
  std::string queue_for_sleeper(Client& sender, Client& sleeper, Client& witness, std::size_t frames) {
    std::string expected;
    for (std::size_t i = 0; i < frames; ++i) {
      const std::string payload = pattern((std::size_t{64} << 10) - 1, i);
      sender.queue_frame(sleeper.id(), payload);
      expected += payload + '\0';
    }
    sender.queue_frame(witness.id(), "all sent");
    const bool ok = pump({&sender, &witness}, after(20s), [&] { return witness.has_frame(); });
    if (!ok)
      throw HarnessError("the barrier frame did not arrive; " + std::to_string(sender.outbox_size()) +
                         " bytes unsent");
    if (witness.take_frame() != "all sent") throw HarnessError("unexpected barrier frame");
    return expected;
  }
};
SB_INSTANTIATE_FOR_EVERY_ENGINE(LifecycleTest);

// SIGTERM while output waits for a receiver that has not read: the server
// stops reading but writes it out, then closes everyone and exits 0. For the
// engines that isolate slow consumers, 6 MiB, megabytes of it in the
// server's own queue; for the blocking ones 1.5 MiB, which the kernel's
// buffers can take without their writer getting stuck in front of the
// witness.
TEST_P(LifecycleTest, SigtermDrainsQueuedOutput) {
  const bool isolating = isolates_slow_consumers(engine());
  const std::size_t frames = isolating ? 96 : 24;
  start_server({"--drain-timeout", "10s"});
  Client sleeper = connect({.rcvbuf = 16 << 10});
  sleeper.set_reading(false);
  Client sender = connect();
  Client witness = connect();
  const std::string expected = queue_for_sleeper(sender, sleeper, witness, frames);

  server().send_signal(SIGTERM);
  const auto closing = sleeper.read_until_close(after(20s));
  EXPECT_TRUE(same_bytes(expected, closing.data)) << "queued output lost at shutdown";
  EXPECT_EQ(closing.how, Client::End::eof);

  const ExitInfo info = wait_server_exit(after(kStopTimeout));
  EXPECT_EQ(info.stat("routed"), frames + 1);
  EXPECT_EQ(info.stat("closed_shutdown"), 3u);
  EXPECT_EQ(info.stat("pending_bytes"), 0u);
  // The server, not the kernel, held most of it when the signal came.
  if (isolating) {
    EXPECT_GE(info.stat("peak_pending_bytes"), 1u << 20);
  }
  expect_only_eof(sender);
  expect_only_eof(witness);
}

// The sharded engine, 2 and 4 shards: a sleeping receiver on every shard,
// each fed from the next shard (so all of it crossed a ring), SIGTERM: every
// shard drains its queues before the process exits.
class ShardedLifecycleTest : public LifecycleTest {};
INSTANTIATE_TEST_SUITE_P(Engines, ShardedLifecycleTest, ::testing::Values(std::string_view("sharded"), kSharded4),
                         engine_test_name);

TEST_P(ShardedLifecycleTest, SigtermDrainsQueuedOutputOnEveryShard) {
  constexpr std::size_t kFrames = 48;  // 3 MiB a receiver
  start_server({"--drain-timeout", "20s"});
  std::vector<Client> sleepers, senders;
  for (unsigned s = 0; s < shards(); ++s) {
    sleepers.push_back(connect_on_shard(s, {.rcvbuf = 16 << 10}));
    sleepers.back().set_reading(false);
    senders.push_back(connect_on_shard(s + 1));
  }
  Client witness = connect_on_shard(0);
  std::vector<std::string> expected;
  for (unsigned s = 0; s < shards(); ++s) expected.push_back(queue_for_sleeper(senders[s], sleepers[s], witness, kFrames));

  server().send_signal(SIGTERM);
  for (unsigned s = 0; s < shards(); ++s) {
    const auto closing = sleepers[s].read_until_close(after(30s));
    EXPECT_TRUE(same_bytes(expected[s], closing.data)) << "queued output of shard " << s << " lost at shutdown";
    EXPECT_EQ(closing.how, Client::End::eof);
  }
  const ExitInfo info = wait_server_exit(after(kStopTimeout));
  EXPECT_EQ(info.stat("routed"), shards() * (kFrames + 1));
  EXPECT_EQ(info.stat("forwarded"), shards() * (kFrames + 1) - 1) << "every frame but one barrier crossed shards";
  EXPECT_EQ(info.stat("pending_bytes"), 0u);
  EXPECT_EQ(info.stat("closed_shutdown"), 2 * shards() + 1);
}

// A receiver that never reads cannot hold the shutdown beyond --drain-timeout.
TEST_P(LifecycleTest, DrainTimeoutBoundsShutdown) {
  const bool isolating = isolates_slow_consumers(engine());
  start_server({"--drain-timeout", "500ms"});
  Client sleeper = connect({.rcvbuf = 16 << 10});
  sleeper.set_reading(false);
  Client sender = connect();
  Client witness = connect();
  std::string expected;
  if (isolating) {
    expected = queue_for_sleeper(sender, sleeper, witness, 96);
  } else {
    // In the blocking engines no witness frame can pass the writer stuck on
    // the sleeper: send what the buffers take within a second, which leaves
    // that writer stuck when the signal comes.
    for (std::size_t i = 0; i < 96; ++i) {
      const std::string payload = pattern((std::size_t{64} << 10) - 1, i);
      sender.queue_frame(sleeper.id(), payload);
      expected += payload + '\0';
    }
    pump({&sender}, after(1s), [&] { return sender.outbox_size() == 0; });
  }

  const auto signalled = Clock::now();
  server().send_signal(SIGTERM);
  const ExitInfo info = wait_server_exit(after(kStopTimeout));
  const auto took = Clock::now() - signalled;
  if (isolating) {
    EXPECT_GE(took, 400ms) << "the server gave up draining before --drain-timeout";
  }
  EXPECT_LT(took, 4s) << "--drain-timeout 500ms was not applied";
  EXPECT_EQ(info.stat("closed_shutdown"), 3u);

  // What the sleeper finds is the start of its stream, never more.
  const auto closing = sleeper.read_until_close(after(kIoTimeout));
  EXPECT_LT(closing.data.size(), expected.size());
  EXPECT_TRUE(same_bytes(expected.substr(0, closing.data.size()), closing.data));
}

TEST_P(LifecycleTest, AddressInUseExitsNonZero) {
  // Hold a listening socket on an ephemeral port, then ask for that port.
  UniqueFd holder(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_TRUE(holder);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(holder.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(holder.get(), 16), 0);
  socklen_t len = sizeof addr;
  ASSERT_EQ(::getsockname(holder.get(), reinterpret_cast<sockaddr*>(&addr), &len), 0);
  const std::string port = std::to_string(ntohs(addr.sin_port));

  const ExitInfo info = ServerProcess::run_to_exit(serve_args({}, "127.0.0.1:" + port), kStartTimeout);
  EXPECT_TRUE(info.exited) << info.describe();
  EXPECT_NE(info.code, 0) << "stderr: " << info.stderr_text;
  EXPECT_EQ(info.stdout_text.find("listening"), std::string::npos) << "stdout: " << info.stdout_text;
  const std::string err = lower(info.stderr_text);
  EXPECT_TRUE(err.find("in use") != std::string::npos || err.find(port) != std::string::npos)
      << "the message should say the address is in use; stderr: " << info.stderr_text;
}

// Connects `n` clients without waiting for IDs, then waits until each has
// either its ID or been closed by the server; returns how many got an ID.
std::size_t connect_and_sort(EngineTest& t, std::vector<Client>& out, std::size_t n,
                             const std::function<Client()>& make) {
  for (std::size_t i = 0; i < n; ++i) out.push_back(make());
  std::vector<Client*> all;
  for (Client& c : out) all.push_back(&c);
  const bool settled = pump(all, after(kIoTimeout), [&] {
    return std::all_of(out.begin(), out.end(),
                       [](Client& c) { return c.available() >= 4 || c.end() != Client::End::open; });
  });
  if (!settled) throw HarnessError("some connections neither got an ID nor were closed");
  (void)t;
  return static_cast<std::size_t>(
      std::count_if(out.begin(), out.end(), [](Client& c) { return c.available() >= 4; }));
}

// --max-conns: connections over the limit are accepted and closed at once,
// counted as rejected; the clients already connected are unaffected, and a
// freed place can be taken again.
TEST_P(LifecycleTest, ConnectionsOverTheLimitAreRefused) {
  start_server({"--max-conns", "10"});
  Client a = connect();
  Client b = connect();
  std::vector<Client> extra;
  const std::size_t admitted =
      connect_and_sort(*this, extra, 12, [&] { return connect({.read_id = false}); });
  EXPECT_EQ(admitted, 8u);
  round_trip(a, b, "still here", after(kIoTimeout));
  // Once the server has closed its side of a's connection, a's place is free.
  a.shutdown_write();
  EXPECT_EQ(a.read_until_close(after(kIoTimeout)).how, Client::End::eof);
  std::vector<Client> late;
  const bool got_in = connect_and_sort(*this, late, 1, [&] { return connect({.read_id = false}); }) == 1;
  EXPECT_TRUE(got_in) << "a place freed by a client that left should be usable again";
  const ExitInfo info = stop_server();
  EXPECT_GE(info.stat("rejected"), 4u);
}

// Out of file descriptors (EMFILE): with its open-files limit lowered to 64
// and an explicit --max-conns far above it, the server accepts and closes
// what it has no descriptor for, keeps serving the clients it has, and
// counts the refusals.
TEST_P(LifecycleTest, SurvivesRunningOutOfFileDescriptors) {
  rlimit saved{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &saved), 0);
  rlimit low = saved;
  low.rlim_cur = 64;
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &low), 0);  // the server inherits it
  try {
    start_server({"--max-conns", "1000"});
  } catch (...) {
    ::setrlimit(RLIMIT_NOFILE, &saved);
    throw;
  }
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &saved), 0);

  Client a = connect();
  Client b = connect();
  std::vector<Client> extra;
  const std::size_t admitted =
      connect_and_sort(*this, extra, 100, [&] { return connect({.read_id = false}); });
  EXPECT_LT(admitted, 100u) << "a 64-descriptor server cannot hold 102 connections";
  round_trip(a, b, "after EMFILE", after(kIoTimeout));
  const ExitInfo info = stop_server();
  EXPECT_EQ(info.stat("rejected"), 100u - admitted);
  EXPECT_EQ(info.stat("accepted"), admitted + 2);
}

TEST(CommandLineTest, UnknownEngineExitsNonZeroNamingIt) {
  const ExitInfo info = ServerProcess::run_to_exit(
      {"serve", "--listen", "127.0.0.1:0", "--engine", "no-such-engine"}, kStartTimeout);
  EXPECT_TRUE(info.exited) << info.describe();
  EXPECT_NE(info.code, 0);
  EXPECT_NE(info.stderr_text.find("no-such-engine"), std::string::npos)
      << "stderr should name the unknown engine: " << info.stderr_text;
  EXPECT_EQ(info.stdout_text.find("listening"), std::string::npos) << "stdout: " << info.stdout_text;
}

}  // namespace
}  // namespace sb::itest
