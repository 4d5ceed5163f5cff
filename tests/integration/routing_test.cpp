// Routing on the happy path: pipelining, fragmentation, many clients, the
// largest frame the default limit allows.
#include <charconv>
#include <map>
#include <string>
#include <vector>

#include "harness.hpp"

namespace sb::itest {
namespace {

class RoutingTest : public EngineTest {};
SB_INSTANTIATE_FOR_EVERY_ENGINE(RoutingTest);
SB_INSTANTIATE_FOR_CLUSTERS(RoutingTest);

// 1,000 frames in one buffer, written with one send() (the kernel takes the
// whole ~70 KiB at once on a fresh socket), to three destinations including
// the sender itself: each destination gets its frames whole and in order.
TEST_P(RoutingTest, ThousandPipelinedFramesArriveInOrder) {
  start_server();
  Client sender = connect();
  Client r1 = connect();
  Client r2 = connect();
  Client* dests[] = {&r1, &r2, &sender};

  std::string wire;
  std::map<Client*, std::string> expected;
  for (int i = 0; i < 1000; ++i) {
    Client* dest = dests[i % 3];
    const std::string payload =
        "pipelined " + std::to_string(i) + " " + pattern(static_cast<std::size_t>(i % 131), i);
    wire += frame(dest->id(), payload);
    expected[dest] += payload + '\0';
  }
  sender.send_raw(wire, after(kIoTimeout));

  ASSERT_TRUE(pump({&sender, &r1, &r2}, after(kIoTimeout),
                   [&] {
                     return r1.available() >= expected[&r1].size() &&
                            r2.available() >= expected[&r2].size() &&
                            sender.available() >= expected[&sender].size();
                   }))
      << "r1 got " << r1.available() << "/" << expected[&r1].size() << ", r2 " << r2.available() << "/"
      << expected[&r2].size() << ", sender (to itself) " << sender.available() << "/"
      << expected[&sender].size();
  for (Client* c : dests) EXPECT_TRUE(same_bytes(expected[c], c->take_all())) << c->label();

  const ExitInfo info = stop_server();
  EXPECT_EQ(info.stat("routed"), 1000u);
  EXPECT_EQ(info.stat("dropped_no_route"), 0u);
  for (Client* c : dests) expect_only_eof(*c);
}

// A frame written one byte per send(), header and NUL included, then a
// whole frame: the server must reassemble across reads and be back at a
// frame boundary afterwards.
TEST_P(RoutingTest, FrameSentOneBytePerWrite) {
  start_server();
  Client sender = connect({.nodelay = true});
  Client receiver = connect();
  Client prober = connect();

  const std::string payload = "dribbled one byte at a time " + pattern(40, 7);
  const std::string wire = frame(receiver.id(), payload);
  for (std::size_t i = 0; i < wire.size(); ++i) {
    sender.send_raw(wire.substr(i, 1), after(kIoTimeout));
    // A barrier instead of a sleep: the prober's message to itself comes
    // back only once the server has gone through a read cycle that started
    // after this byte arrived, so (for a single event loop at least) each
    // byte is read by its own read() rather than coalesced with the next.
    const std::string probe = "barrier " + std::to_string(i);
    prober.send_frame(prober.id(), probe, after(kIoTimeout));
    ASSERT_EQ(prober.read_frame(after(kIoTimeout)), probe);
  }
  EXPECT_TRUE(same_bytes(payload + '\0', receiver.read_exact(payload.size() + 1, after(kIoTimeout))));

  sender.send_frame(receiver.id(), "the next frame, whole", after(kIoTimeout));
  EXPECT_EQ(receiver.read_frame(after(kIoTimeout)), "the next frame, whole");

  const ExitInfo info = stop_server();
  EXPECT_EQ(info.stat("routed"), 2u + wire.size());
  expect_only_eof(receiver);
}

// 200 clients; each sends 4 rounds of messages to 5 others, all queued at
// once. Every receiver must get exactly the messages meant for it, each
// intact, and those of any one sender in the order sent.
TEST_P(RoutingTest, TwoHundredClientsEachMessageFiveOthers) {
  constexpr std::size_t kClients = 200;
  constexpr std::size_t kOffsets[] = {41, 82, 123, 164, 5};  // distinct, non-zero mod 200
  constexpr std::size_t kRounds = 4;

  start_server();
  std::vector<Client> clients = connect_many(kClients);
  std::map<std::uint32_t, std::size_t> index_of;
  for (std::size_t i = 0; i < kClients; ++i) index_of[clients[i].id()] = i;
  ASSERT_EQ(index_of.size(), kClients) << "IDs must be unique";

  const auto message = [](std::size_t from, std::size_t to, std::size_t round) {
    return "from " + std::to_string(from) + " to " + std::to_string(to) + " #" + std::to_string(round) + " " +
           pattern((from * 7 + to * 3 + round * 11) % 300, from * 1000 + to * 10 + round);
  };
  // expected[receiver][sender]: the payloads, in sending order.
  std::vector<std::map<std::size_t, std::vector<std::string>>> expected(kClients);
  std::vector<std::size_t> expected_bytes(kClients, 0);
  for (std::size_t round = 0; round < kRounds; ++round) {
    for (std::size_t from = 0; from < kClients; ++from) {
      for (const std::size_t offset : kOffsets) {
        const std::size_t to = (from + offset) % kClients;
        const std::string payload = message(from, to, round);
        clients[from].queue_frame(clients[to].id(), payload);
        expected[to][from].push_back(payload);
        expected_bytes[to] += payload.size() + 1;
      }
    }
  }

  std::vector<Client*> all;
  all.reserve(clients.size());
  for (auto& c : clients) all.push_back(&c);
  std::size_t complete = 0;
  const bool ok = pump(all, after(20s), [&] {
    complete = 0;
    for (std::size_t i = 0; i < kClients; ++i)
      complete += clients[i].available() >= expected_bytes[i] ? 1 : 0;
    return complete == kClients;
  });
  ASSERT_TRUE(ok) << "only " << complete << " of " << kClients << " receivers got all their bytes";

  for (std::size_t to = 0; to < kClients; ++to) {
    std::map<std::size_t, std::vector<std::string>> got;
    while (auto payload = clients[to].take_frame()) {
      // "from N ..." names the sender.
      std::size_t from = kClients;
      const char* digits = payload->data() + 5;
      std::from_chars(digits, payload->data() + payload->size(), from);
      got[from].push_back(*std::move(payload));
    }
    EXPECT_EQ(clients[to].available(), 0u) << "receiver " << to << " has a partial frame left";
    EXPECT_TRUE(got == expected[to]) << "receiver " << to << " got the wrong messages or order";
  }

  const ExitInfo info = stop_server();
  EXPECT_EQ(info.stat("accepted"), kClients);
  EXPECT_EQ(info.stat("routed"), kClients * std::size(kOffsets) * kRounds);
  EXPECT_EQ(info.stat("dropped_no_route"), 0u);
}

// Exactly 1 MiB of payload is the largest frame the default --max-frame (1M)
// accepts; it is delivered intact, and routing goes on after it.
TEST_P(RoutingTest, OneMebibytePayloadWithDefaultMaxFrame) {
  start_server();
  Client sender = connect();
  Client receiver = connect();

  const std::string payload = pattern(std::size_t{1} << 20, 42);
  sender.queue_frame(receiver.id(), payload);
  // Pumped together: the 1 MiB does not fit in the socket buffers, so the
  // sender can only finish while the receiver reads.
  ASSERT_TRUE(
      pump({&sender, &receiver}, after(20s),
           [&] { return receiver.available() >= payload.size() + 1 || receiver.end() != Client::End::open; }))
      << "receiver got " << receiver.available() << " of " << payload.size() + 1 << " bytes";
  EXPECT_TRUE(same_bytes(payload + '\0', receiver.take(payload.size() + 1)));

  sender.send_frame(receiver.id(), "after the big one", after(kIoTimeout));
  EXPECT_EQ(receiver.read_frame(after(kIoTimeout)), "after the big one");

  const ExitInfo info = stop_server();
  EXPECT_EQ(info.stat("routed"), 2u);
  EXPECT_EQ(info.stat("routed_bytes"), payload.size() + 1 + sizeof("after the big one"));
  EXPECT_EQ(info.stat("closed_oversized"), 0u);
  expect_only_eof(receiver);
}

}  // namespace
}  // namespace sb::itest
