// The article's `it_works` test (seed/reactor-pattern-article.md), translated
// byte for byte, on its fixed address 127.0.0.1:8080. It is the only test
// that does not use port 0; CMake gives it the ctest RESOURCE_LOCK port8080
// so parallel runs (and the instances for other engines) take turns.
#include <string_view>

#include "harness.hpp"

namespace sb::itest {
namespace {

using namespace std::string_view_literals;

class ArticleTest : public EngineTest {};
SB_INSTANTIATE_FOR_EVERY_ENGINE(ArticleTest);

TEST_P(ArticleTest, ItWorks) {
  // Rust's `const MSG1: &str = "hello, number 2\0";`: 16 bytes, NUL included.
  constexpr auto kMsg1 = "hello, number 2\0"sv;
  constexpr auto kMsg2 = "hello back, number 1\0"sv;
  static_assert(kMsg1.size() == 16 && kMsg2.size() == 21);

  ServerProcess& srv = start_server({}, "127.0.0.1:8080");
  ASSERT_EQ(srv.port(), 8080);

  // TcpStream::connect, then read_u32 on each socket.
  Client sock1 = Client::connect(8080, after(kIoTimeout));
  Client sock2 = Client::connect(8080, after(kIoTimeout));
  const std::uint32_t id1 = sock1.id();
  const std::uint32_t id2 = sock2.id();

  // write_u32(id2), write_all(MSG1), flush: two writes, as in the article.
  sock1.send_raw(be32(id2), after(kIoTimeout));
  sock1.send_raw(kMsg1, after(kIoTimeout));
  EXPECT_EQ(sock2.read_exact(kMsg1.size(), after(kIoTimeout)), kMsg1);

  sock2.send_raw(be32(id1), after(kIoTimeout));
  sock2.send_raw(kMsg2, after(kIoTimeout));
  EXPECT_EQ(sock1.read_exact(kMsg2.size(), after(kIoTimeout)), kMsg2);

  const ExitInfo info = stop_server();
  EXPECT_EQ(info.stat("routed"), 2u);
  expect_only_eof(sock1);
  expect_only_eof(sock2);
}

}  // namespace
}  // namespace sb::itest
