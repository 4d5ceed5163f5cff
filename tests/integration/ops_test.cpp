// Operations: --version, the config file, IPv6 and host-name addresses,
// flag validation with its exit codes, and JSON log lines. Runs the real
// `switchboard` as a child process, like the rest of the suite.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "harness.hpp"

extern char** environ;

namespace sb::itest {
namespace {

namespace fs = std::filesystem;

std::size_t count_lines(const std::string& text) {
  std::size_t n = 0;
  for (const char c : text) n += c == '\n';
  if (!text.empty() && text.back() != '\n') ++n;
  return n;
}

// A temporary file holding `content`, removed with the object.
class TempFile {
 public:
  explicit TempFile(const std::string& content, const std::string& suffix = ".toml") {
    path_ = (fs::temp_directory_path() /
             ("switchboard-ops-" + std::to_string(::getpid()) + "-" + std::to_string(counter_++) + suffix))
                .string();
    std::ofstream(path_) << content;
  }
  ~TempFile() { std::remove(path_.c_str()); }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  const std::string& path() const { return path_; }

 private:
  static inline int counter_ = 0;
  std::string path_;
};

// A server whose listening line may name any address (the harness's
// ServerProcess expects 127.0.0.1): spawned with posix_spawn, its stdout a
// pipe, stderr discarded; SIGKILLed by PID if the test ends early.
class AnyAddressServer {
 public:
  explicit AnyAddressServer(const std::vector<std::string>& args) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) throw HarnessError("pipe2 failed");
    out_.reset(fds[0]);
    UniqueFd write_end(fds[1]);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&actions, write_end.get(), STDOUT_FILENO);
    posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
    std::vector<std::string> text{SWITCHBOARD_BIN};
    text.insert(text.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& s : text) argv.push_back(s.data());
    argv.push_back(nullptr);
    const int rc = ::posix_spawn(&pid_, SWITCHBOARD_BIN, &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) throw HarnessError("posix_spawn failed");
  }
  ~AnyAddressServer() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  AnyAddressServer(const AnyAddressServer&) = delete;
  AnyAddressServer& operator=(const AnyAddressServer&) = delete;

  // The first line of stdout, or throws at the deadline.
  std::string listening_line(Deadline deadline) {
    std::string buf;
    while (buf.find('\n') == std::string::npos) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      if (left <= 0) throw HarnessError("no listening line before the deadline; got \"" + buf + "\"");
      pollfd p{out_.get(), POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left)) <= 0) continue;
      char chunk[256];
      const ssize_t n = ::read(out_.get(), chunk, sizeof chunk);
      if (n <= 0) throw HarnessError("the server exited before listening; stdout \"" + buf + "\"");
      buf.append(chunk, static_cast<std::size_t>(n));
    }
    return buf.substr(0, buf.find('\n'));
  }

  // SIGTERM and the exit code (or -1 if it did not exit normally).
  int stop() {
    ::kill(pid_, SIGTERM);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

 private:
  pid_t pid_ = -1;
  UniqueFd out_;
};

std::uint16_t port_of(const std::string& line) {
  static const std::regex re(R"(^switchboard listening on .*:([0-9]{1,5}) \(engine [^()\s]+\)$)");
  std::smatch m;
  if (!std::regex_match(line, m, re)) throw HarnessError("not a listening line: \"" + line + "\"");
  return static_cast<std::uint16_t>(std::stoi(m[1].str()));
}

// A blocking client connected to `host` (resolved by getaddrinfo), with a
// receive timeout so a broken server fails the test instead of hanging it.
UniqueFd connect_to(const std::string& host, std::uint16_t port, int family = AF_UNSPEC) {
  addrinfo hints{};
  hints.ai_family = family;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* list = nullptr;
  if (::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &list) != 0) {
    throw HarnessError("cannot resolve " + host);
  }
  UniqueFd fd;
  for (addrinfo* ai = list; ai != nullptr && !fd; ai = ai->ai_next) {
    UniqueFd s(::socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (s && ::connect(s.get(), ai->ai_addr, ai->ai_addrlen) == 0) fd = std::move(s);
  }
  ::freeaddrinfo(list);
  if (!fd) throw HarnessError("cannot connect to " + host + ":" + std::to_string(port));
  timeval tv{10, 0};
  ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return fd;
}

std::string read_n(int fd, std::size_t n) {
  std::string out;
  while (out.size() < n) {
    char buf[256];
    const ssize_t got = ::recv(fd, buf, std::min(sizeof buf, n - out.size()), 0);
    if (got <= 0)
      throw HarnessError("read ended after " + std::to_string(out.size()) + " of " + std::to_string(n));
    out.append(buf, static_cast<std::size_t>(got));
  }
  return out;
}

void write_all(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n <= 0) throw HarnessError("send failed");
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
}

// Two clients of `host:port`; the first sends the second a frame, which
// must arrive whole.
void exchange_one_frame(const std::string& host, std::uint16_t port, int family) {
  UniqueFd a = connect_to(host, port, family);
  UniqueFd b = connect_to(host, port, family);
  read_n(a.get(), 4);
  const std::uint32_t id_b = from_be32(read_n(b.get(), 4));
  write_all(a.get(), frame(id_b, "over " + host));
  EXPECT_EQ(read_n(b.get(), 5 + host.size() + 1), "over " + host + std::string(1, '\0'));
}

bool has_ipv6_loopback() {
  UniqueFd s(::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!s) return false;
  sockaddr_in6 addr{};
  addr.sin6_family = AF_INET6;
  addr.sin6_addr = in6addr_loopback;
  return ::bind(s.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0;
}

// ---- --version and exit codes

TEST(OpsTest, VersionPrintsProjectVersionAndRevision) {
  const ExitInfo info = ServerProcess::run_to_exit({"--version"}, kStartTimeout);
  ASSERT_TRUE(info.clean()) << info.describe() << " stderr: " << info.stderr_text;
  EXPECT_TRUE(std::regex_match(
      info.stdout_text,
      std::regex(R"(switchboard [0-9]+\.[0-9]+\.[0-9]+ \(git ([0-9a-f]{7,40}(-dirty)?|unknown)\)\n)")))
      << "stdout: " << info.stdout_text;
}

TEST(OpsTest, HelpExitsZero) {
  const ExitInfo info = ServerProcess::run_to_exit({"serve", "--help"}, kStartTimeout);
  EXPECT_TRUE(info.clean()) << info.describe();
  EXPECT_NE(info.stdout_text.find("--max-pending-total"), std::string::npos);
}

TEST(OpsTest, AddressInUseIsARuntimeFailureExitOne) {
  UniqueFd holder(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(holder.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(holder.get(), 4), 0);
  socklen_t len = sizeof addr;
  ::getsockname(holder.get(), reinterpret_cast<sockaddr*>(&addr), &len);
  const ExitInfo info = ServerProcess::run_to_exit(
      {"serve", "--listen", "127.0.0.1:" + std::to_string(ntohs(addr.sin_port))}, kStartTimeout);
  EXPECT_TRUE(info.exited && info.code == 1) << info.describe() << " stderr: " << info.stderr_text;
  EXPECT_NE(info.stderr_text.find("switchboard: cannot listen"), std::string::npos) << info.stderr_text;
}

TEST(OpsTest, UnreachableServerIsExitOne) {
  // Port 1 on loopback: nothing listens there in a test environment.
  const ExitInfo info =
      ServerProcess::run_to_exit({"send", "--server", "127.0.0.1:1", "--to", "0", "x"}, kStartTimeout);
  EXPECT_TRUE(info.exited && info.code == 1) << info.describe();
  EXPECT_EQ(count_lines(info.stderr_text), 1u) << info.stderr_text;
}

// ---- every class of bad value: exit 2, one line on stderr naming the flag

struct BadFlag {
  std::vector<std::string> args;
  std::string must_mention;
};

TEST(OpsTest, BadValuesAreOneLineUsageErrors) {
  const std::vector<BadFlag> cases = {
      {{"--max-frame", "18446744073709551615"}, "--max-frame"},     // fits u64, far above the bound
      {{"--max-frame", "99999999999999999999999"}, "--max-frame"},  // overflows u64
      {{"--max-frame", "0"}, "--max-frame"},
      {{"--max-frame", "-1"}, "--max-frame"},
      {{"--max-pending", "17179869184G"}, "--max-pending"},  // overflows when scaled
      {{"--max-pending", "8Q"}, "--max-pending"},
      {{"--max-pending-total", "0"}, "--max-pending-total"},
      {{"--stall-timeout", "200000000m"}, "--stall-timeout"},  // would overflow nanoseconds
      {{"--stall-timeout", "0"}, "--stall-timeout"},
      {{"--drain-timeout", "-1s"}, "--drain-timeout"},
      {{"--auth-timeout", "25h"}, "--auth-timeout"},
      {{"--threads", "1025"}, "--threads"},
      {{"--threads", "-1"}, "--threads"},
      {{"--max-conns", "18446744073709551616"}, "--max-conns"},
      {{"--max-conns", "-5"}, "--max-conns"},
      {{"--listen", "[::1]:65536"}, "--listen"},
      {{"--listen", "::1:80"}, "--listen"},
      {{"--listen", "bad host:80"}, "--listen"},
      {{"--engine", "no-such-engine"}, "no-such-engine"},
      {{"--log-format", "xml"}, "--log-format"},
      {{"--no-such-flag"}, "--no-such-flag"},
      {{"--auth-token-file", "/no/such/file"}, "--auth-token-file"},
  };
  for (const BadFlag& c : cases) {
    std::vector<std::string> args{"serve", "--listen", "127.0.0.1:0"};
    args.insert(args.end(), c.args.begin(), c.args.end());
    const ExitInfo info = ServerProcess::run_to_exit(args, kStartTimeout);
    const std::string what = c.args[0] + (c.args.size() > 1 ? " " + c.args[1] : "");
    EXPECT_TRUE(info.exited && info.code == 2)
        << what << ": " << info.describe() << "; stderr: " << info.stderr_text;
    EXPECT_EQ(count_lines(info.stderr_text), 1u) << what << ": stderr: " << info.stderr_text;
    EXPECT_EQ(info.stderr_text.rfind("switchboard: ", 0), 0u) << what << ": stderr: " << info.stderr_text;
    EXPECT_NE(info.stderr_text.find(c.must_mention), std::string::npos)
        << what << ": stderr: " << info.stderr_text;
    EXPECT_EQ(info.stdout_text, "") << what;
  }
}

TEST(OpsTest, EnginesWithoutAuthRefuseTheTokenFile) {
  TempFile tokens("secret-token\n", ".tokens");
  for (const std::string engine : {"mutex", "channels", "channel-per-writer"}) {
    const ExitInfo info = ServerProcess::run_to_exit(
        {"serve", "--listen", "127.0.0.1:0", "--engine", engine, "--auth-token-file", tokens.path()},
        kStartTimeout);
    EXPECT_TRUE(info.exited && info.code == 2) << engine << ": " << info.describe();
    EXPECT_EQ(count_lines(info.stderr_text), 1u) << engine << ": " << info.stderr_text;
    EXPECT_NE(info.stderr_text.find("--auth-token-file"), std::string::npos) << info.stderr_text;
  }
}

// ---- config file

TEST(OpsTest, ConfigFileSetsFlagsAndTheCommandLineWins) {
  TempFile config("listen = \"127.0.0.1:0\"\nengine = \"race\"\nmax-pending-total = \"3M\"\n");
  {
    ServerProcess srv = ServerProcess::start({"serve", "--config", config.path()});
    EXPECT_EQ(srv.engine(), "race");
    const ExitInfo info = srv.stop();
    EXPECT_TRUE(info.clean()) << info.describe();
    EXPECT_NE(info.stderr_text.find("max-pending-total=3145728"), std::string::npos) << info.stderr_text;
  }
  {
    // The file's listen address (a privileged port) and engine lose.
    TempFile other("listen = \"127.0.0.1:1\"\nengine = \"race\"\n");
    ServerProcess srv = ServerProcess::start(
        {"serve", "--config", other.path(), "--listen", "127.0.0.1:0", "--engine", "reactor"});
    EXPECT_EQ(srv.engine(), "reactor");
    EXPECT_NE(srv.port(), 1);
    EXPECT_TRUE(srv.stop().clean());
  }
}

TEST(OpsTest, BadConfigFilesAreUsageErrors) {
  TempFile unknown_key("listen = \"127.0.0.1:0\"\nno-such-flag = 3\n");
  TempFile bad_value("listen = \"127.0.0.1:0\"\nthreads = 5000\n");
  for (const auto& [args, mention] : std::vector<std::pair<std::vector<std::string>, std::string>>{
           {{"serve", "--config", unknown_key.path()}, "no-such-flag"},
           {{"serve", "--config", bad_value.path()}, "--threads"},
           {{"serve", "--config", "/no/such/config.toml"}, "/no/such/config.toml"},
       }) {
    const ExitInfo info = ServerProcess::run_to_exit(args, kStartTimeout);
    EXPECT_TRUE(info.exited && info.code == 2) << args[2] << ": " << info.describe();
    EXPECT_EQ(count_lines(info.stderr_text), 1u) << info.stderr_text;
    EXPECT_NE(info.stderr_text.find(mention), std::string::npos) << info.stderr_text;
  }
}

TEST(OpsTest, DefaultPendingTotalIsPrintedAtStart) {
  ServerProcess srv = ServerProcess::start({"serve", "--listen", "127.0.0.1:0"});
  const ExitInfo info = srv.stop();
  static const std::regex re(R"(config: .*max-pending-total=([0-9]+) \(1/4 of the)");
  std::smatch m;
  ASSERT_TRUE(std::regex_search(info.stderr_text, m, re)) << info.stderr_text;
  EXPECT_GT(std::stoull(m[1].str()), 0u);
}

// ---- addresses

TEST(OpsTest, ListensOnIpv6Loopback) {
  if (!has_ipv6_loopback())
    GTEST_SKIP() << "this machine has no ::1 (IPv6 loopback), so there is nothing to test";
  for (const std::string engine : {"reactor", "mutex"}) {  // the reactor's socket and an Asio acceptor
    AnyAddressServer srv({"serve", "--listen", "[::1]:0", "--engine", engine});
    const std::string line = srv.listening_line(after(kStartTimeout));
    EXPECT_EQ(line.find("switchboard listening on [::1]:"), 0u) << line;
    exchange_one_frame("::1", port_of(line), AF_INET6);
    EXPECT_EQ(srv.stop(), 0) << engine;
  }
}

TEST(OpsTest, ListensOnAHostName) {
  AnyAddressServer srv({"serve", "--listen", "localhost:0"});
  const std::string line = srv.listening_line(after(kStartTimeout));
  EXPECT_EQ(line.find("switchboard listening on localhost:"), 0u) << line;
  exchange_one_frame("localhost", port_of(line), AF_UNSPEC);
  EXPECT_EQ(srv.stop(), 0);
}

TEST(OpsTest, ClientCommandsTakeHostNames) {
  ServerProcess srv = ServerProcess::start({"serve", "--listen", "127.0.0.1:0"});
  Client listener = Client::connect(srv.port(), after(kIoTimeout));
  const ExitInfo sent =
      ServerProcess::run_to_exit({"send", "--server", "localhost:" + std::to_string(srv.port()), "--to",
                                  std::to_string(listener.id()), "hi", "there"},
                                 kStartTimeout);
  EXPECT_TRUE(sent.clean()) << sent.describe() << " " << sent.stderr_text;
  EXPECT_EQ(listener.read_frame(after(kIoTimeout)), "hi there");
  EXPECT_TRUE(srv.stop().clean());
}

// ---- systemd

TEST(OpsTest, NotifiesSystemdWhenListening) {
  // Stands in for systemd: the datagram socket NOTIFY_SOCKET names.
  UniqueFd sock(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  ASSERT_TRUE(sock);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const std::string path =
      (fs::temp_directory_path() / ("switchboard-notify-" + std::to_string(::getpid()))).string();
  ASSERT_LT(path.size(), sizeof addr.sun_path);
  std::remove(path.c_str());
  std::copy(path.begin(), path.end(), addr.sun_path);
  ASSERT_EQ(::bind(sock.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr), 0);
  timeval tv{10, 0};
  ::setsockopt(sock.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);

  ::setenv("NOTIFY_SOCKET", path.c_str(), 1);
  ServerProcess srv = ServerProcess::start({"serve", "--listen", "127.0.0.1:0"});
  ::unsetenv("NOTIFY_SOCKET");
  char buf[512] = {};
  const ssize_t n = ::recv(sock.get(), buf, sizeof buf - 1, 0);
  std::remove(path.c_str());
  EXPECT_TRUE(srv.stop().clean());
  ASSERT_GT(n, 0) << "no notification within 10 s (built without libsystemd?)";
  const std::string message(buf, static_cast<std::size_t>(n));
  EXPECT_NE(message.find("READY=1"), std::string::npos) << message;
  EXPECT_NE(message.find("STATUS=listening on 127.0.0.1:" + std::to_string(srv.port())), std::string::npos)
      << message;
}

// ---- logs

TEST(OpsTest, JsonLogLinesParse) {
  if (std::system("python3 -c 'import json' >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "python3 is not installed";
  ServerProcess srv = ServerProcess::start({"serve", "--listen", "127.0.0.1:0", "--log-format", "json"});
  Client a = Client::connect(srv.port(), after(kIoTimeout));
  Client b = Client::connect(srv.port(), after(kIoTimeout));
  round_trip(a, b, "json", after(kIoTimeout));
  const ExitInfo info = srv.stop();
  ASSERT_TRUE(info.clean());
  EXPECT_EQ(info.stat("routed"), 2u);  // the text inside "message" still reads as before
  TempFile log(info.stderr_text, ".log");
  // Every line an object with an RFC 3339 time (offset included), a level and
  // a message; the stats line's counters as numbers in "fields".
  const std::string check = R"(python3 -c '
import json, re, sys
lines = open(sys.argv[1]).read().splitlines()
assert len(lines) >= 3, lines
stats = None
for line in lines:
    o = json.loads(line)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d", o["time"]), o
    assert o["level"] in ("trace", "debug", "info", "warning", "error", "critical"), o
    assert isinstance(o["message"], str), o
    if o["message"].startswith("stats: "):
        stats = o
assert stats is not None and stats["fields"]["routed"] == 2, stats
' )" + log.path();
  EXPECT_EQ(std::system(check.c_str()), 0) << info.stderr_text;
}

TEST(OpsTest, TextLogTimesShowTheirZone) {
  ServerProcess srv = ServerProcess::start({"serve", "--listen", "127.0.0.1:0"});
  const ExitInfo info = srv.stop();
  EXPECT_TRUE(std::regex_search(
      info.stderr_text, std::regex(R"(^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} [+-]\d\d:\d\d\] \[info\] )")))
      << info.stderr_text;
}

}  // namespace
}  // namespace sb::itest
