// The article's `it_works` test (seed/reactor-pattern-article.md), translated
// byte for byte, on its fixed address 127.0.0.1:8080. It is the only test
// that does not use port 0; CMake gives it the ctest RESOURCE_LOCK port8080
// so parallel runs (and the instances for other engines) take turns. When
// 8080 is taken (scripts/run.sh serving there, say) it is skipped, and the
// same bytes are checked on a free port by ArticleAnyPortTest, so the
// coverage stays.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <string_view>
#include <utility>

#include "harness.hpp"

namespace sb::itest {
namespace {

using namespace std::string_view_literals;

// The article's exchange with `srv`; returns the two clients, for the checks
// after the server stops.
std::pair<Client, Client> it_works(ServerProcess& srv) {
  // Rust's `const MSG1: &str = "hello, number 2\0";`: 16 bytes, NUL included.
  constexpr auto kMsg1 = "hello, number 2\0"sv;
  constexpr auto kMsg2 = "hello back, number 1\0"sv;
  static_assert(kMsg1.size() == 16 && kMsg2.size() == 21);

  // TcpStream::connect, then read_u32 on each socket.
  Client sock1 = Client::connect(srv.port(), after(kIoTimeout));
  Client sock2 = Client::connect(srv.port(), after(kIoTimeout));
  const std::uint32_t id1 = sock1.id();
  const std::uint32_t id2 = sock2.id();

  // write_u32(id2), write_all(MSG1), flush: two writes, as in the article.
  sock1.send_raw(be32(id2), after(kIoTimeout));
  sock1.send_raw(kMsg1, after(kIoTimeout));
  EXPECT_EQ(sock2.read_exact(kMsg1.size(), after(kIoTimeout)), kMsg1);

  sock2.send_raw(be32(id1), after(kIoTimeout));
  sock2.send_raw(kMsg2, after(kIoTimeout));
  EXPECT_EQ(sock1.read_exact(kMsg2.size(), after(kIoTimeout)), kMsg2);
  return {std::move(sock1), std::move(sock2)};
}

// Whether 127.0.0.1:8080 can be listened on right now, tried as the server
// does it (SO_REUSEADDR, so a port in TIME_WAIT counts as free; listen()
// too, since some network stacks, gVisor's, let a second bind through and
// refuse only the listen).
bool port_8080_free() {
  UniqueFd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  const int one = 1;
  ::setsockopt(s.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(8080);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return s && ::bind(s.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0 &&
         ::listen(s.get(), 1) == 0;
}

class ArticleTest : public EngineTest {};
SB_INSTANTIATE_FOR_EVERY_ENGINE(ArticleTest);

TEST_P(ArticleTest, ItWorks) {
  if (!port_8080_free()) {
    GTEST_SKIP() << "127.0.0.1:8080 is in use (another server, such as scripts/run.sh, listens there); "
                    "ArticleAnyPortTest checks the same bytes on a free port";
  }
  ServerProcess& srv = start_server({}, "127.0.0.1:8080");
  ASSERT_EQ(srv.port(), 8080);
  auto [sock1, sock2] = it_works(srv);
  const ExitInfo info = stop_server();
  EXPECT_EQ(info.stat("routed"), 2u);
  expect_only_eof(sock1);
  expect_only_eof(sock2);
}

class ArticleAnyPortTest : public EngineTest {};
SB_INSTANTIATE_FOR_EVERY_ENGINE(ArticleAnyPortTest);

TEST_P(ArticleAnyPortTest, ItWorks) {
  ServerProcess& srv = start_server();
  auto [sock1, sock2] = it_works(srv);
  const ExitInfo info = stop_server();
  EXPECT_EQ(info.stat("routed"), 2u);
  expect_only_eof(sock1);
  expect_only_eof(sock2);
}

}  // namespace
}  // namespace sb::itest
