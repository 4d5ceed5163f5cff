// Many connections at once: 5,000 clients, each routed one message.
#include <sys/resource.h>

#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include "harness.hpp"

namespace sb::itest {
namespace {

class ScaleTest : public EngineTest {};
SB_INSTANTIATE_FOR_EVERY_ENGINE(ScaleTest);

TEST_P(ScaleTest, FiveThousandConcurrentConnections) {
  constexpr std::size_t kClients = 5000;
  // This process holds the 5,000 client sockets and the server (which
  // inherits the limit) its own 5,000: raise the soft limit if it is low.
  rlimit limit{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &limit), 0);
  if (limit.rlim_cur < kClients + 200) {
    limit.rlim_cur = std::min<rlim_t>(limit.rlim_max, kClients + 200);
    ::setrlimit(RLIMIT_NOFILE, &limit);
  }
  ASSERT_GE(limit.rlim_cur, kClients + 200) << "the open-files limit is too low for this test";

  start_server();
  std::vector<Client> clients = connect_many(kClients);
  std::set<std::uint32_t> ids;
  for (const auto& c : clients) ids.insert(c.id());
  ASSERT_EQ(ids.size(), kClients) << "every client must get a unique ID";

  // Client i writes to client i + 2,501 (mod 5,000): far away in accept order.
  const auto target = [&](std::size_t i) { return (i + kClients / 2 + 1) % kClients; };
  const auto message = [](std::size_t from, std::size_t to) {
    return "message from " + std::to_string(from) + " to " + std::to_string(to);
  };
  for (std::size_t i = 0; i < kClients; ++i)
    clients[i].queue_frame(clients[target(i)].id(), message(i, target(i)));

  std::vector<Client*> all;
  all.reserve(clients.size());
  for (auto& c : clients) all.push_back(&c);
  std::size_t arrived = 0;
  const bool ok = pump(all, after(30s), [&] {
    arrived = 0;
    for (auto& c : clients) arrived += c.has_frame() ? 1 : 0;
    return arrived == kClients;
  });
  ASSERT_TRUE(ok) << "only " << arrived << " of " << kClients << " messages arrived";
  for (std::size_t i = 0; i < kClients; ++i) {
    const std::size_t from = (i + kClients - kClients / 2 - 1) % kClients;
    ASSERT_EQ(clients[i].take_frame(), message(from, i)) << "client " << i;
  }

  const ExitInfo info = stop_server();
  EXPECT_EQ(info.stat("accepted"), kClients);
  EXPECT_EQ(info.stat("rejected"), 0u);
  EXPECT_EQ(info.stat("routed"), kClients);
  EXPECT_EQ(info.stat("closed_shutdown"), kClients);
}

}  // namespace
}  // namespace sb::itest
