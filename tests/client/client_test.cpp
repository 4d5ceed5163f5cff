// The C++ client library (src/client) against a real server and against fake
// servers that speak v1 only. Every wait has a deadline: a broken client
// fails a test, it never hangs it.
#include "client/client.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <functional>
#include <string>
#include <thread>

#include "harness.hpp"

namespace sb::client {
namespace {

using namespace std::chrono_literals;
using itest::ServerProcess;

constexpr Timeout kWait{10000};  // generous: it only matters when something is broken

// A real `switchboard serve` on a free port, stopped at the end of the test.
class ClientTest : public ::testing::Test {
 protected:
  void start(const std::vector<std::string>& extra = {}) {
    std::vector<std::string> args = {"serve", "--listen", "127.0.0.1:0"};
    args.insert(args.end(), extra.begin(), extra.end());
    server_.emplace(ServerProcess::start(args));
  }
  std::uint16_t port() const { return server_->port(); }
  Client connect(const std::optional<std::string>& token = std::nullopt) {
    return Client::connect("127.0.0.1", port(), token, kWait);
  }
  // Stops the server and checks it stopped cleanly.
  itest::ExitInfo stop() {
    auto info = server_->stop();
    EXPECT_TRUE(info.clean()) << info.describe() << "\n" << info.stderr_text;
    return info;
  }
  void TearDown() override {
    if (server_ && server_->running()) stop();
  }
  std::optional<ServerProcess> server_;
};

Message expect_message(Client& c) {
  auto ev = c.receive(kWait);
  if (!ev) throw std::runtime_error("no event within the wait");
  if (auto* e = std::get_if<ErrorFrame>(&*ev)) throw std::runtime_error("an ERROR instead: " + describe(*e));
  return std::get<Message>(std::move(*ev));
}

ErrorFrame expect_error(Client& c, Timeout t = kWait) {
  auto ev = c.receive(t);
  if (!ev) throw std::runtime_error("no event within the wait");
  if (auto* m = std::get_if<Message>(&*ev)) throw std::runtime_error("a message instead: " + m->payload);
  return std::get<ErrorFrame>(std::move(*ev));
}

TEST_F(ClientTest, ConnectGivesDistinctIdsAndTheServersMaxFrame) {
  start({"--max-frame", "64K"});
  Client a = connect();
  Client b = connect();
  EXPECT_NE(a.id(), b.id());
  EXPECT_EQ(a.max_frame(), 64u * 1024);
  EXPECT_FALSE(a.receive(0ms).has_value());
}

TEST_F(ClientTest, HostNameResolves) {
  start();
  Client a = Client::connect("localhost", port(), std::nullopt, kWait);
  Client b = connect();
  a.send(b.id(), "by name");
  EXPECT_EQ(expect_message(b).payload, "by name");
}

TEST_F(ClientTest, MessagesCarryTheirSource) {
  start();
  Client a = connect();
  Client b = connect();
  a.send(b.id(), "hello b");
  Message m = expect_message(b);
  EXPECT_EQ(m.source, std::optional<std::uint32_t>(a.id()));
  EXPECT_EQ(m.payload, "hello b");
  b.send(*m.source, "hello a");  // the point of v2: the receiver can answer
  Message back = expect_message(a);
  EXPECT_EQ(back.source, std::optional<std::uint32_t>(b.id()));
  EXPECT_EQ(back.payload, "hello a");
}

TEST_F(ClientTest, BinaryPayloadsWithNulArriveWhole) {
  start();
  Client a = connect();
  Client b = connect();
  std::string every_byte;
  for (int i = 0; i < 256; ++i) every_byte.push_back(static_cast<char>(i));
  const std::string nul_only(3, '\0');
  a.send(b.id(), every_byte);
  a.send(b.id(), nul_only);
  a.send(b.id(), "");
  EXPECT_TRUE(itest::same_bytes(every_byte, expect_message(b).payload));
  EXPECT_EQ(expect_message(b).payload, nul_only);
  EXPECT_EQ(expect_message(b).payload, "");
}

TEST_F(ClientTest, LargestFrameArrivesAndALargerOneIsRefusedBeforeSending) {
  start({"--max-frame", "64K"});
  Client a = connect();
  Client b = connect();
  const std::string big = itest::pattern(a.max_frame(), 7);
  a.send(b.id(), big);
  EXPECT_TRUE(itest::same_bytes(big, expect_message(b).payload));
  try {
    a.send(b.id(), big + "x");
    FAIL() << "send over max_frame did not throw";
  } catch (const ClientError& e) {
    EXPECT_NE(std::string(e.what()).find("max_frame"), std::string::npos) << e.what();
  }
  a.send(b.id(), "still connected");  // nothing went out: the server had no reason to close
  EXPECT_EQ(expect_message(b).payload, "still connected");
}

TEST_F(ClientTest, UnknownDestinationIsAnErrorWithItsSubject) {
  start();
  Client a = connect();
  a.send(4000000, "nobody");
  ErrorFrame e = expect_error(a);
  EXPECT_EQ(e.code, ErrorCode::no_route);
  EXPECT_EQ(e.subject, 4000000u);
  EXPECT_EQ(describe(e), "no client 4000000 (no_route)");
}

TEST_F(ClientTest, PingIsABarrierForErrors) {
  start();
  Client a = connect();
  Client b = connect();
  a.send(b.id(), "first");
  // Enough frames that, without the barrier, their ERRORs could not all be
  // back yet (bounded: 2000 small frames).
  constexpr std::uint32_t kNobody = 3000000, kCount = 2000;
  const std::string filler(200, 'x');
  for (std::uint32_t i = 0; i < kCount; ++i) a.send(kNobody + i, filler);
  a.ping(kWait);
  // After the PONG, every ERROR is already here, in order: no waiting.
  for (std::uint32_t i = 0; i < kCount; ++i) {
    ErrorFrame e = expect_error(a, 0ms);
    ASSERT_EQ(e.subject, kNobody + i);
  }
  EXPECT_FALSE(a.receive(0ms).has_value());
  // And a ping that only crosses other events keeps them for receive().
  b.send(a.id(), "meanwhile");
  b.ping(kWait);
  a.ping(kWait);
  EXPECT_EQ(expect_message(a).payload, "meanwhile");
  EXPECT_EQ(expect_message(b).payload, "first");
}

TEST_F(ClientTest, ServerStoppingEndsReceiveWithConnectionClosed) {
  start();
  Client a = connect();
  stop();
  EXPECT_THROW(
      {
        for (int i = 0; i < 100; ++i) a.receive(kWait);  // bounded: the first call already throws
      },
      ConnectionClosed);
}

TEST(ClientConnect, RefusedPortIsAClearError) {
  // A port that was free a moment ago: bind, note it, close.
  int s = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  socklen_t len = sizeof a;
  ::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(s);
  try {
    Client::connect("127.0.0.1", ntohs(a.sin_port), std::nullopt, kWait);
    FAIL() << "connected to a closed port";
  } catch (const ClientError& e) {
    EXPECT_NE(std::string(e.what()).find("cannot connect"), std::string::npos) << e.what();
  }
  EXPECT_THROW(Client::connect("no-such-host.invalid", 1, std::nullopt, kWait), ClientError);
}

TEST(ClientConnect, BadTokenIsRefusedBeforeConnecting) {
  EXPECT_THROW(Client::connect("127.0.0.1", 1, std::string("has space"), kWait), ClientError);
  EXPECT_THROW(Client::connect("127.0.0.1", 1, std::string(), kWait), ClientError);
}

// ---- authentication

class AuthTest : public ClientTest {
 protected:
  void SetUp() override {
    path_ = ::testing::TempDir() + "client_test_tokens_" + std::to_string(::getpid());
    std::ofstream(path_) << "# tokens\nsecret-1\n";
    start({"--auth-token-file", path_});
  }
  void TearDown() override {
    ClientTest::TearDown();
    std::remove(path_.c_str());
  }
  std::string path_;
};

TEST_F(AuthTest, ListedTokenIsAccepted) {
  Client a = connect("secret-1");
  Client b = connect("secret-1");
  a.send(b.id(), "authenticated");
  EXPECT_EQ(expect_message(b).payload, "authenticated");
}

TEST_F(AuthTest, WrongOrMissingTokenIsAnAuthError) {
  try {
    connect("secret-2");
    FAIL() << "a wrong token was accepted";
  } catch (const AuthError& e) {
    EXPECT_NE(std::string(e.what()).find("unauthorized"), std::string::npos) << e.what();
  }
  EXPECT_THROW(connect(), AuthError);
}

// ---- fake servers: what the client makes of a v1-only server

// One connection on a loopback port, handled by `script` on a thread. The
// script's waits are bounded, so join() always returns.
class FakeServer {
 public:
  using Script = std::function<void(int fd)>;
  FakeServer(int family, Script script) {
    listener_ = ::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_storage ss{};
    socklen_t len;
    if (family == AF_INET6) {
      auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
      a->sin6_family = AF_INET6;
      a->sin6_addr = in6addr_loopback;
      len = sizeof *a;
    } else {
      auto* a = reinterpret_cast<sockaddr_in*>(&ss);
      a->sin_family = AF_INET;
      a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      len = sizeof *a;
    }
    if (::bind(listener_, reinterpret_cast<sockaddr*>(&ss), len) != 0 || ::listen(listener_, 4) != 0) {
      throw std::runtime_error("fake server: cannot listen");
    }
    ::getsockname(listener_, reinterpret_cast<sockaddr*>(&ss), &len);
    port_ = ntohs(family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port
                                     : reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
    thread_ = std::thread([this, script = std::move(script)] {
      pollfd p{listener_, POLLIN, 0};
      if (::poll(&p, 1, 10000) != 1) return;
      const int fd = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) return;
      script(fd);
      ::close(fd);
    });
  }
  ~FakeServer() {
    thread_.join();
    ::close(listener_);
  }
  std::uint16_t port() const { return port_; }

  static void write_bytes(int fd, std::string_view bytes) {
    while (!bytes.empty()) {
      const ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n <= 0) return;
      bytes.remove_prefix(static_cast<std::size_t>(n));
    }
  }
  // Reads up to and without the first NUL (a v1 frame); "" on EOF or after 10 s.
  static std::string read_frame(int fd) {
    std::string got;
    char ch;
    for (;;) {
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 10000) != 1 || ::read(fd, &ch, 1) != 1) return "";
      if (ch == '\0') return got;
      got.push_back(ch);
    }
  }
  // The hello's nonce (after the 4-byte destination of the frame).
  static std::string nonce_of(const std::string& hello_frame) {
    const auto at = hello_frame.find("nonce=");
    if (at == std::string::npos) return "";
    return hello_frame.substr(at + 6, hello_frame.find(' ', at) - at - 6);
  }
  // Waits (bounded) until the client has closed its side.
  static void wait_for_close(int fd) {
    char buf[256];
    for (int i = 0; i < 1000; ++i) {
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 10000) != 1 || ::read(fd, buf, sizeof buf) <= 0) return;
    }
  }

 private:
  int listener_ = -1;
  std::uint16_t port_ = 0;
  std::thread thread_;
};

std::string id_bytes(std::uint32_t id) {
  return itest::be32(id);
}

TEST(ClientAgainstV1Server, UnsupportedAnswerIsNotV2Error) {
  std::string hello;
  FakeServer fake(AF_INET, [&](int fd) {
    FakeServer::write_bytes(fd, id_bytes(5));
    hello = FakeServer::read_frame(fd);
    FakeServer::write_bytes(fd, "switchboard/2 error nonce=" + FakeServer::nonce_of(hello) + " unsupported" +
                                    std::string(1, '\0'));
  });
  try {
    Client::connect("127.0.0.1", fake.port(), std::nullopt, kWait);
    FAIL() << "connected to a v1-only server";
  } catch (const NotV2Error& e) {
    EXPECT_NE(std::string(e.what()).find("server does not speak protocol v2"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("unsupported"), std::string::npos) << e.what();
  }
  // The hello was a v1 frame to the server's ID with a 16..64 hex nonce.
  ASSERT_GE(hello.size(), 4u);
  EXPECT_EQ(itest::from_be32(hello.substr(0, 4)), 0xFFFFFFFFu);
  const std::string nonce = FakeServer::nonce_of(hello);
  EXPECT_GE(nonce.size(), 16u);
  EXPECT_LE(nonce.size(), 64u);
  EXPECT_EQ(nonce.find_first_not_of("0123456789abcdef"), std::string::npos) << nonce;
}

TEST(ClientAgainstV1Server, SilenceIsNotV2ErrorAtTheTimeout) {
  FakeServer fake(AF_INET, [](int fd) {
    FakeServer::write_bytes(fd, id_bytes(5));
    FakeServer::read_frame(fd);
    FakeServer::wait_for_close(fd);  // a v1 server drops the hello: no answer ever
  });
  const auto start = std::chrono::steady_clock::now();
  try {
    Client::connect("127.0.0.1", fake.port(), std::nullopt, 300ms);
    FAIL() << "connected to a silent server";
  } catch (const NotV2Error& e) {
    EXPECT_NE(std::string(e.what()).find("no welcome within 300 ms"), std::string::npos) << e.what();
  }
  // Not a speed check: proof that it gave up instead of hanging.
  EXPECT_LT(std::chrono::steady_clock::now() - start, 9s);
}

TEST(ClientAgainstV1Server, CloseAfterHelloIsNotV2Error) {
  FakeServer fake(AF_INET, [](int fd) {
    FakeServer::write_bytes(fd, id_bytes(5));
    FakeServer::read_frame(fd);
  });
  EXPECT_THROW(Client::connect("127.0.0.1", fake.port(), std::nullopt, kWait), NotV2Error);
}

TEST(ClientAgainstV1Server, NoIdAtAllIsAClearError) {
  FakeServer fake(AF_INET, [](int fd) { FakeServer::wait_for_close(fd); });
  try {
    Client::connect("127.0.0.1", fake.port(), std::nullopt, 300ms);
    FAIL() << "connected to a server that sent nothing";
  } catch (const ClientError& e) {
    EXPECT_NE(std::string(e.what()).find("sent no ID"), std::string::npos) << e.what();
  }
}

// Before the welcome, v1 deliveries are messages of unknown source, a
// "welcome" with someone else's nonce included; after it, v2 frames.
TEST(ClientNonceRule, PreUpgradeDeliveriesHaveNoSourceAndOnlyOurNonceUpgrades) {
  for (int family : {AF_INET, AF_INET6}) {
    FakeServer fake(family, [](int fd) {
      const std::string nul(1, '\0');
      FakeServer::write_bytes(fd, id_bytes(5) + "early" + nul + std::string("bin") + '\x01' + nul);
      const std::string nonce = FakeServer::nonce_of(FakeServer::read_frame(fd));
      FakeServer::write_bytes(
          fd, "switchboard/2 ok nonce=00000000000000000000000000000000 id=9 max_frame=10" + nul);
      std::string deliver = itest::be32(5 + 3) + '\x81' + itest::be32(42) + std::string("a\0b", 3);
      FakeServer::write_bytes(fd, "switchboard/2 ok nonce=" + nonce + " id=7 max_frame=4096" + nul + deliver);
      FakeServer::wait_for_close(fd);
    });
    Client c = Client::connect(family == AF_INET6 ? "::1" : "127.0.0.1", fake.port(), std::nullopt, kWait);
    EXPECT_EQ(c.id(), 7u);
    EXPECT_EQ(c.max_frame(), 4096u);
    Message m1 = expect_message(c);
    EXPECT_EQ(m1.source, std::nullopt);
    EXPECT_EQ(m1.payload, "early");
    EXPECT_EQ(expect_message(c).payload, "bin\x01");
    Message spoof = expect_message(c);
    EXPECT_EQ(spoof.source, std::nullopt);
    EXPECT_EQ(spoof.payload.rfind("switchboard/2 ok nonce=0000", 0), 0u) << spoof.payload;
    Message v2 = expect_message(c);
    EXPECT_EQ(v2.source, std::optional<std::uint32_t>(42));
    EXPECT_EQ(v2.payload, std::string("a\0b", 3));
  }
}

TEST(ClientSend, ServerThatStopsReadingIsATimeoutAndClosesACutFrame) {
  std::atomic<bool> done{false};
  FakeServer fake(AF_INET, [&done](int fd) {
    const std::string nul(1, '\0');
    FakeServer::write_bytes(fd, id_bytes(5));
    const std::string nonce = FakeServer::nonce_of(FakeServer::read_frame(fd));
    FakeServer::write_bytes(fd, "switchboard/2 ok nonce=" + nonce + " id=5 max_frame=67108864" + nul);
    // Reads nothing more until the test is done (its FIN would wait behind
    // the unread bytes). Bounded: 10 s.
    for (int i = 0; i < 1000 && !done; ++i) ::usleep(10000);
  });
  Client c = Client::connect("127.0.0.1", fake.port(), std::nullopt, kWait);
  const std::string big(64u << 20, 'x');  // more than both kernels' buffers hold
  try {
    c.send(1, big, 300ms);
    FAIL() << "a send to a server that does not read returned";
  } catch (const TimeoutError& e) {
    EXPECT_NE(std::string(e.what()).find("the connection is closed"), std::string::npos) << e.what();
  }
  EXPECT_THROW(c.send(1, "after"), ClientError);
  done = true;
}

TEST(ClientNonceRule, EachConnectionHasItsOwnNonce) {
  std::string n1, n2;
  {
    FakeServer fake(AF_INET, [&](int fd) {
      FakeServer::write_bytes(fd, id_bytes(1));
      n1 = FakeServer::nonce_of(FakeServer::read_frame(fd));
    });
    EXPECT_THROW(Client::connect("127.0.0.1", fake.port(), std::nullopt, kWait), NotV2Error);
  }
  {
    FakeServer fake(AF_INET, [&](int fd) {
      FakeServer::write_bytes(fd, id_bytes(1));
      n2 = FakeServer::nonce_of(FakeServer::read_frame(fd));
    });
    EXPECT_THROW(Client::connect("127.0.0.1", fake.port(), std::nullopt, kWait), NotV2Error);
  }
  EXPECT_FALSE(n1.empty());
  EXPECT_NE(n1, n2);
}

// ---- the `send` command's report of an ERROR

TEST_F(ClientTest, SendCommandReportsNoRouteAndExitsNonZero) {
  start();
  const std::string where = "127.0.0.1:" + std::to_string(port());
  auto bad = ServerProcess::run_to_exit({"send", "--server", where, "3000000", "hello"}, 20s);
  EXPECT_TRUE(bad.exited);
  EXPECT_EQ(bad.code, 1);
  EXPECT_NE(bad.stderr_text.find("no client 3000000 (no_route)"), std::string::npos) << bad.stderr_text;

  Client b = connect();
  auto good =
      ServerProcess::run_to_exit({"send", "--server", where, "--to", std::to_string(b.id()), "hi", "b"}, 20s);
  EXPECT_TRUE(good.clean()) << good.describe() << good.stderr_text;
  EXPECT_EQ(expect_message(b).payload, "hi b");
}

}  // namespace
}  // namespace sb::client
