// The load generator end to end over real loopback sockets, against a tiny
// fake switchboard that can lose, duplicate, reorder or corrupt one frame:
// the worker must count exactly that fault, and nothing for a clean relay.
#include "bench/worker.hpp"

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "net/socket.hpp"
#include "protocol/wire.hpp"

namespace sb::bench {
namespace {

enum class Fault { none, lose, duplicate, reorder, corrupt };

// Accepts two clients (IDs 1 and 2), then relays each frame to its
// destination, applying `fault` to the frame with index `at`. One thread,
// blocking calls bounded by poll timeouts; stops when told or when both
// clients are gone. Split: like two nodes, one client on each of two
// listeners (ID 1 on the first, 2 on the second), and it counts the
// frames the second one's client sends.
class FakeRouter {
 public:
  FakeRouter(Fault fault, std::size_t at, bool split = false) : fault_{fault}, at_{at} {
    listeners_.push_back(net::listen_tcp({"127.0.0.1", 0}));
    if (split) listeners_.push_back(net::listen_tcp({"127.0.0.1", 0}));
    thread_ = std::thread([this] { run(); });
  }
  ~FakeRouter() {
    stop_ = true;
    thread_.join();
  }
  std::uint16_t port(std::size_t listener = 0) const {
    return net::local_port(listeners_.at(listener).get());
  }
  std::uint64_t frames_from_second() const { return frames_from_second_.load(); }

 private:
  void run() {
    // Client i came from listener i when split; from the one listener otherwise.
    std::vector<net::Fd> clients(2);
    std::size_t accepted = 0;
    while (accepted < 2 && !stop_) {
      std::vector<pollfd> fds;
      for (auto& l : listeners_) fds.push_back({l.get(), POLLIN, 0});
      if (::poll(fds.data(), fds.size(), 50) <= 0) continue;
      for (std::size_t l = 0; l < fds.size() && accepted < 2; ++l) {
        if (!(fds[l].revents & POLLIN)) continue;
        const std::size_t slot = listeners_.size() == 1 ? accepted : l;
        if (clients[slot]) continue;  // split: this listener's one client is there already
        net::Fd c{::accept4(listeners_[l].get(), nullptr, nullptr, SOCK_CLOEXEC)};
        if (!c) continue;
        const auto id = protocol::encode_be32(static_cast<std::uint32_t>(slot + 1));
        ASSERT_EQ(::send(c.get(), id.data(), id.size(), MSG_NOSIGNAL), 4);
        clients[slot] = std::move(c);
        ++accepted;
      }
    }
    if (accepted < 2) return;
    std::vector<std::string> inbox(clients.size());
    std::size_t index = 0;
    std::string held;  // reorder: the frame waiting to go after its successor
    while (!stop_) {
      std::vector<pollfd> fds;
      for (auto& c : clients) fds.push_back({c.get(), POLLIN, 0});
      if (::poll(fds.data(), fds.size(), 50) <= 0) continue;
      for (std::size_t i = 0; i < clients.size(); ++i) {
        if (!(fds[i].revents & (POLLIN | POLLHUP))) continue;
        char buf[65536];
        const ssize_t n = ::recv(clients[i].get(), buf, sizeof buf, 0);
        if (n <= 0) return;
        inbox[i].append(buf, static_cast<std::size_t>(n));
        std::size_t nul;
        while (inbox[i].size() > 4 && (nul = inbox[i].find('\0', 4)) != std::string::npos) {
          const std::uint32_t dest = protocol::load_be32(inbox[i].data());
          std::string frame = inbox[i].substr(4, nul - 4 + 1);  // payload + NUL
          inbox[i].erase(0, nul + 1);
          if (i == 1) ++frames_from_second_;
          ASSERT_TRUE(dest >= 1 && dest <= clients.size());
          const int to = clients[dest - 1].get();
          auto deliver = [&](const std::string& f) {
            ASSERT_EQ(::send(to, f.data(), f.size(), MSG_NOSIGNAL), static_cast<ssize_t>(f.size()));
          };
          const bool hit = index++ == at_;
          if (hit && fault_ == Fault::lose) continue;
          if (hit && fault_ == Fault::corrupt) frame[frame.size() / 2] ^= 0x01;
          if (hit && fault_ == Fault::reorder) {
            held = frame;
            continue;
          }
          deliver(frame);
          if (hit && fault_ == Fault::duplicate) deliver(frame);
          if (!held.empty()) {
            deliver(held);
            held.clear();
          }
        }
      }
    }
  }

  Fault fault_;
  std::size_t at_;
  std::vector<net::Fd> listeners_;
  std::atomic<bool> stop_{false};
  std::atomic<std::uint64_t> frames_from_second_{0};
  std::thread thread_;
};

constexpr std::uint64_t kMessages = 50;

WorkerResult run_one_pair(std::uint16_t port, std::optional<std::uint16_t> receiver_port = std::nullopt) {
  WorkerPlan plan;
  plan.protocol = PeerProtocol::switchboard;
  plan.endpoint = {"127.0.0.1", port};
  if (receiver_port) plan.receiver_endpoint = net::Endpoint{"127.0.0.1", *receiver_port};
  plan.clients = 2;
  plan.streams.push_back(StreamPlan{0, 1, kMessages, 0, 0, false});
  plan.window = 4;
  plan.payload_size = 64;
  plan.setup_timeout = std::chrono::seconds{5};
  Worker worker(plan);
  Coordinator coordinator(1);
  std::thread t([&] { worker.run(coordinator); });
  EXPECT_TRUE(coordinator.wait_ready(std::chrono::steady_clock::now() + std::chrono::seconds{5}));
  Timeline tl;
  tl.start = now_ns();
  tl.measure_from = tl.start;
  tl.send_until = tl.start + 2'000'000'000;
  tl.drain_until = tl.send_until + 300'000'000;
  coordinator.release(tl);
  t.join();
  return std::move(worker.result());
}

TEST(WorkerOverLoopback, CleanRelayCountsEveryMessageOnce) {
  FakeRouter router(Fault::none, 0);
  const WorkerResult r = run_one_pair(router.port());
  EXPECT_EQ(r.error, "");
  EXPECT_EQ(r.sent, kMessages);
  EXPECT_EQ(r.integrity.delivered, kMessages);
  EXPECT_TRUE(r.integrity.clean());
  EXPECT_TRUE(r.drained);
  EXPECT_EQ(r.latency.count(), kMessages);
}

TEST(WorkerOverLoopback, CountsALostMessage) {
  FakeRouter router(Fault::lose, 10);
  const WorkerResult r = run_one_pair(router.port());
  EXPECT_EQ(r.integrity.lost, 1u);
  EXPECT_EQ(r.integrity.delivered, kMessages - 1);
  EXPECT_EQ(r.integrity.duplicated + r.integrity.corrupt + r.integrity.reordered, 0u);
  EXPECT_FALSE(r.drained);
}

TEST(WorkerOverLoopback, CountsADuplicatedMessage) {
  FakeRouter router(Fault::duplicate, 10);
  const WorkerResult r = run_one_pair(router.port());
  EXPECT_EQ(r.integrity.duplicated, 1u);
  EXPECT_EQ(r.integrity.lost + r.integrity.corrupt + r.integrity.reordered, 0u);
}

TEST(WorkerOverLoopback, CountsAReorderedMessage) {
  FakeRouter router(Fault::reorder, 10);
  const WorkerResult r = run_one_pair(router.port());
  EXPECT_EQ(r.integrity.reordered, 1u);
  EXPECT_EQ(r.integrity.lost + r.integrity.corrupt + r.integrity.duplicated, 0u);
}

TEST(WorkerOverLoopback, CountsACorruptedMessage) {
  FakeRouter router(Fault::corrupt, 10);
  const WorkerResult r = run_one_pair(router.port());
  EXPECT_EQ(r.integrity.corrupt, 1u);
  EXPECT_EQ(r.integrity.lost, 1u);  // the corrupt copy does not count as delivered
  EXPECT_EQ(r.integrity.duplicated + r.integrity.reordered, 0u);
}

// A cluster's split: the sender connects to the first endpoint and the
// receiver to the second. Were both on the first, the fake would never
// accept a client on its second listener and the setup would time out.
TEST(WorkerOverLoopback, ReceiversConnectToTheReceiverEndpoint) {
  FakeRouter router(Fault::none, 0, true);
  const WorkerResult r = run_one_pair(router.port(0), router.port(1));
  EXPECT_EQ(r.error, "");
  EXPECT_EQ(r.connections, 2u);
  EXPECT_EQ(r.integrity.delivered, kMessages);
  EXPECT_TRUE(r.integrity.clean());
  EXPECT_EQ(router.frames_from_second(), 0u);  // the receiver on the second endpoint only receives
}

TEST(WorkerSetup, AClientThatSendsAndReceivesCannotBeSplit) {
  WorkerPlan plan;
  plan.endpoint = {"127.0.0.1", 1};  // never connected to: the plan is refused first
  plan.receiver_endpoint = net::Endpoint{"127.0.0.1", 2};
  plan.clients = 2;
  plan.streams = {StreamPlan{0, 1, 1, 0, 0, false}, StreamPlan{1, 0, 1, 0, 0, false}};
  Worker worker(plan);
  Coordinator coordinator(1);
  worker.run(coordinator);
  EXPECT_NE(worker.result().error.find("both sends and receives"), std::string::npos)
      << worker.result().error;
  EXPECT_EQ(worker.result().connections, 0u);
}

}  // namespace
}  // namespace sb::bench
