// Starting and stopping: graceful shutdown drains queued output within
// --drain-timeout; start-up failures exit non-zero with a message.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>

#include <algorithm>
#include <cctype>
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

// SIGTERM while 6 MiB wait for a receiver that has not read (megabytes of
// it in the server's queue): the server stops reading but writes them out,
// then closes everyone and exits 0.
TEST_P(LifecycleTest, SigtermDrainsQueuedOutput) {
  start_server({"--drain-timeout", "10s"});
  Client sleeper = connect({.rcvbuf = 16 << 10});
  sleeper.set_reading(false);
  Client sender = connect();
  Client witness = connect();
  const std::string expected = queue_for_sleeper(sender, sleeper, witness, 96);

  server().send_signal(SIGTERM);
  const auto closing = sleeper.read_until_close(after(20s));
  EXPECT_TRUE(same_bytes(expected, closing.data)) << "queued output lost at shutdown";
  EXPECT_EQ(closing.how, Client::End::eof);

  const ExitInfo info = wait_server_exit(after(kStopTimeout));
  EXPECT_EQ(info.stat("routed"), 97u);
  EXPECT_EQ(info.stat("closed_shutdown"), 3u);
  EXPECT_EQ(info.stat("pending_bytes"), 0u);
  // The server, not the kernel, held most of it when the signal came.
  EXPECT_GE(info.stat("peak_pending_bytes"), 1u << 20);
  expect_only_eof(sender);
  expect_only_eof(witness);
}

// A receiver that never reads cannot hold the shutdown beyond --drain-timeout.
TEST_P(LifecycleTest, DrainTimeoutBoundsShutdown) {
  start_server({"--drain-timeout", "500ms"});
  Client sleeper = connect({.rcvbuf = 16 << 10});
  sleeper.set_reading(false);
  Client sender = connect();
  Client witness = connect();
  const std::string expected = queue_for_sleeper(sender, sleeper, witness, 96);

  const auto signalled = Clock::now();
  server().send_signal(SIGTERM);
  const ExitInfo info = wait_server_exit(after(kStopTimeout));
  const auto took = Clock::now() - signalled;
  EXPECT_GE(took, 400ms) << "the server gave up draining before --drain-timeout";
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
