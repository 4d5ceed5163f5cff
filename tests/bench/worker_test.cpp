// The load generator end to end over real loopback sockets, against a tiny
// fake switchboard that can lose, duplicate, reorder or corrupt one frame:
// the worker must count exactly that fault, and nothing for a clean relay.
#include "bench/worker.hpp"

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
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
// clients are gone.
class FakeRouter {
 public:
  FakeRouter(Fault fault, std::size_t at) : fault_{fault}, at_{at} {
    listener_ = net::listen_tcp({"127.0.0.1", 0});
    port_ = net::local_port(listener_.get());
    thread_ = std::thread([this] { run(); });
  }
  ~FakeRouter() {
    stop_ = true;
    thread_.join();
  }
  std::uint16_t port() const { return port_; }

 private:
  void run() {
    std::vector<net::Fd> clients;
    while (clients.size() < 2 && !stop_) {
      pollfd p{listener_.get(), POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      net::Fd c{::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC)};
      if (!c) continue;
      const auto id = protocol::encode_be32(static_cast<std::uint32_t>(clients.size() + 1));
      ASSERT_EQ(::send(c.get(), id.data(), id.size(), MSG_NOSIGNAL), 4);
      clients.push_back(std::move(c));
    }
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
  net::Fd listener_;
  std::uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

constexpr std::uint64_t kMessages = 50;

WorkerResult run_one_pair(std::uint16_t port) {
  WorkerPlan plan;
  plan.protocol = PeerProtocol::switchboard;
  plan.endpoint = {"127.0.0.1", port};
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

}  // namespace
}  // namespace sb::bench
