// switchboard-fuzz-client: hostile TCP clients against a running server,
// while a few verified pairs check that honest traffic is untouched.
//
// K fuzzing connections come and go for --duration, each doing one random
// bad thing: random bytes, v1 frames to random IDs, oversized v1 frames, bad
// hellos, an upgrade followed by random and malformed v2 frames (huge L,
// L = 0, unknown types), half frames, resets mid-write (SO_LINGER 0),
// connections that never read. Meanwhile verified pairs (v1-v1, v2-v2,
// v1-v2) exchange numbered messages; every one must arrive, whole and in
// order. Exit status: 0 if the server stayed up and no verified message was
// lost or damaged, 1 otherwise, 2 on bad usage.
//
//   switchboard-fuzz-client --spawn PATH/switchboard [--duration 8] [-- serve flags...]
//   switchboard-fuzz-client --server 127.0.0.1:PORT [--pid PID] [--duration 60]
//
// One thread and one poll() loop; every wait has a deadline. Written with
// plain sockets rather than the integration harness so that it runs alone
// (scripts/soak.sh) and links nothing of the server.
#include <CLI/CLI.hpp>
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

extern char** environ;

namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr std::uint32_t kServerId = 0xFFFFFFFFu;

std::string be32(std::uint32_t v) {
  return {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8), static_cast<char>(v)};
}
std::uint32_t load_be32(const char* p) {
  const auto* u = reinterpret_cast<const unsigned char*>(p);
  return (std::uint32_t{u[0]} << 24) | (std::uint32_t{u[1]} << 16) | (std::uint32_t{u[2]} << 8) | u[3];
}
std::string v2_frame(std::uint8_t type, std::string_view body) {
  return be32(static_cast<std::uint32_t>(1 + body.size())) + static_cast<char>(type) + std::string(body);
}

// ---------------------------------------------------------------------------
// A non-blocking loopback connection with an inbox and an outbox.

struct Conn {
  int fd = -1;
  bool connecting = true;
  bool reading = true;
  bool dead = false;  // EOF, reset or error seen
  std::string in;
  std::string out;
  std::size_t out_head = 0;

  Conn() = default;
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;
  ~Conn() { close_fd(false); }

  bool open(std::uint16_t port, int rcvbuf = 0) {
    fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return false;
    if (rcvbuf > 0) ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
      connecting = false;
    } else if (errno != EINPROGRESS) {
      close_fd(false);
      return false;
    }
    return true;
  }
  void close_fd(bool reset) {
    if (fd < 0) return;
    if (reset) {
      const linger l{1, 0};
      ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    }
    ::close(fd);
    fd = -1;
  }
  std::size_t pending() const { return out.size() - out_head; }
  void queue(std::string_view b) {
    if (out_head == out.size()) {
      out.clear();
      out_head = 0;
    }
    out.append(b);
  }
  short events() const {
    if (fd < 0 || dead) return 0;
    if (connecting) return POLLOUT;
    short e = reading ? POLLIN : 0;
    if (pending() > 0) e |= POLLOUT;
    return e;
  }
  void ready(short revents) {
    if (connecting) {
      int err = 0;
      socklen_t len = sizeof err;
      ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
      if (err != 0) dead = true;
      connecting = false;
      return;
    }
    if ((revents & (POLLIN | POLLHUP | POLLERR)) != 0 && reading) {
      char buf[65536];
      for (int i = 0; i < 8; ++i) {
        const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n > 0) {
          in.append(buf, static_cast<std::size_t>(n));
          if (static_cast<std::size_t>(n) < sizeof buf) break;
        } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
          break;
        } else {
          dead = true;
          return;
        }
      }
    }
    if ((revents & (POLLOUT | POLLERR | POLLHUP)) != 0 && pending() > 0) {
      const ssize_t n = ::send(fd, out.data() + out_head, pending(), MSG_NOSIGNAL);
      if (n > 0) {
        out_head += static_cast<std::size_t>(n);
      } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
        dead = true;
      }
    }
  }
};

void pump(std::vector<Conn*>& conns, int timeout_ms) {
  std::vector<pollfd> fds;
  std::vector<Conn*> owners;
  for (Conn* c : conns) {
    if (const short e = c->events(); e != 0) {
      fds.push_back({c->fd, e, 0});
      owners.push_back(c);
    }
  }
  if (fds.empty()) {
    ::usleep(static_cast<useconds_t>(timeout_ms) * 1000);
    return;
  }
  if (::poll(fds.data(), fds.size(), timeout_ms) <= 0) return;
  for (std::size_t i = 0; i < fds.size(); ++i) {
    if (fds[i].revents != 0) owners[i]->ready(fds[i].revents);
  }
}

// ---------------------------------------------------------------------------
// Verified pairs

std::string honest(int pair, int dir, std::uint64_t seq) {
  // ASCII and no NUL, so that v1 can carry it; the tail is derived from the
  // sequence number, so damage anywhere shows.
  std::string s = "VP" + std::to_string(pair) + "." + std::to_string(dir) + " " + std::to_string(seq) + " ";
  std::uint64_t x = seq * 0x9E3779B97F4A7C15ull + static_cast<std::uint64_t>(pair * 7 + dir);
  const std::size_t n = 16 + seq % 200;
  for (std::size_t i = 0; i < n; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    s.push_back(static_cast<char>('a' + x % 26));
  }
  return s;
}

struct Endpoint {
  Conn c;
  int version = 1;
  std::uint32_t id = 0;
  bool have_id = false;
  bool upgraded = false;
  std::string nonce;
  std::uint64_t sent = 0;      // to the partner
  std::uint64_t received = 0;  // from the partner, verified
  std::uint64_t foreign = 0;   // from fuzzers, ignored
};

struct Pair {
  int index = 0;
  Endpoint e[2];
  std::string failure;
};

// Reads what arrived at endpoint `me` of pair `p`; verifies the partner's
// messages.
void consume(Pair& p, int me) {
  Endpoint& ep = p.e[me];
  Endpoint& other = p.e[1 - me];
  const int dir = 1 - me;  // the partner's direction
  const auto check = [&](std::string_view payload) {
    const std::string prefix = "VP" + std::to_string(p.index) + "." + std::to_string(dir) + " ";
    if (!payload.starts_with(prefix)) {
      ++ep.foreign;
      return;
    }
    const std::string want = honest(p.index, dir, ep.received);
    if (payload != want && p.failure.empty()) {
      p.failure = "pair " + std::to_string(p.index) + " endpoint " + std::to_string(me) + ": expected message " +
                  std::to_string(ep.received) + ", got \"" + std::string(payload.substr(0, 60)) + "\"";
    }
    ++ep.received;
  };
  if (!ep.have_id) {
    if (ep.c.in.size() < 4) return;
    ep.id = load_be32(ep.c.in.data());
    ep.c.in.erase(0, 4);
    ep.have_id = true;
    if (ep.version == 2) ep.c.queue(be32(kServerId) + "switchboard/2 nonce=" + ep.nonce + '\0');
  }
  std::size_t at = 0;
  while (ep.version == 1 || !ep.upgraded) {
    const auto nul = ep.c.in.find('\0', at);
    if (nul == std::string::npos) break;
    const std::string_view payload(ep.c.in.data() + at, nul - at);
    at = nul + 1;
    if (ep.version == 2 && payload.starts_with("switchboard/2 ok nonce=" + ep.nonce + " ")) {
      ep.upgraded = true;
      break;
    }
    if (ep.version == 2 && payload.starts_with("switchboard/2 error")) {
      p.failure = "pair " + std::to_string(p.index) + ": upgrade refused: " + std::string(payload);
    }
    if (other.have_id) check(payload);  // before the welcome: v1 deliveries
  }
  if (ep.version == 2 && ep.upgraded) {
    while (ep.c.in.size() - at >= 5) {
      const std::uint32_t length = load_be32(ep.c.in.data() + at);
      if (ep.c.in.size() - at - 4 < length) break;
      const auto type = static_cast<std::uint8_t>(ep.c.in[at + 4]);
      const std::string_view body(ep.c.in.data() + at + 5, length - 1);
      at += 4 + length;
      if (type == 0x81 && body.size() >= 4) {
        if (load_be32(body.data()) == other.id) {
          check(body.substr(4));
        } else {
          ++ep.foreign;
        }
      } else if (type == 0x83 && p.failure.empty()) {
        p.failure = "pair " + std::to_string(p.index) + " endpoint " + std::to_string(me) + ": ERROR code " +
                    std::to_string(body.empty() ? 0 : static_cast<int>(static_cast<unsigned char>(body[0]))) +
                    " for an honest frame";
      }
    }
  }
  ep.c.in.erase(0, at);
}

bool ready_to_send(const Endpoint& ep) {
  return ep.have_id && (ep.version == 1 || ep.upgraded);
}

void send_honest(Pair& p, int me, std::uint64_t limit) {
  Endpoint& ep = p.e[me];
  Endpoint& other = p.e[1 - me];
  if (!ready_to_send(ep) || !ready_to_send(other)) return;
  // A window of 64 messages in flight per direction.
  while (ep.sent < limit && ep.sent < other.received + 64 && ep.c.pending() < (64u << 10)) {
    const std::string payload = honest(p.index, me, ep.sent++);
    if (ep.version == 1) {
      ep.c.queue(be32(other.id) + payload + '\0');
    } else {
      ep.c.queue(v2_frame(0x01, be32(other.id) + payload));
    }
  }
}

// ---------------------------------------------------------------------------
// Fuzzers

enum class Act { random_bytes, v1_frames, v1_oversized, bad_hello, v2_junk, half_frame, instant_reset, never_reads };
constexpr int kActs = 8;

struct Fuzzer {
  std::unique_ptr<Conn> c;
  Act act{};
  Clock::time_point end_at{};
  bool started = false;
};

class Fuzz {
 public:
  Fuzz(std::uint64_t seed, std::uint16_t port, std::size_t max_frame, std::vector<std::uint32_t>* targets)
      : rng_(seed), port_(port), max_frame_(max_frame), targets_(targets), binary_(kBlock, '\0'), text_(kBlock, 'x') {
    for (auto& ch : binary_) ch = static_cast<char>(r(256));
    for (auto& ch : text_) ch = static_cast<char>(1 + r(255));
  }

  std::uint64_t connections = 0;
  std::uint64_t junk_bytes = 0;
  std::uint64_t connect_failures = 0;

  std::uint64_t r(std::uint64_t n) { return n == 0 ? 0 : rng_() % n; }
  bool coin(int percent) { return r(100) < static_cast<std::uint64_t>(percent); }

  // Junk is cut from two fixed random blocks at random offsets: drawing
  // every byte from the generator made a 10 MB flood cost this process
  // long enough that its verified clients stopped reading for seconds.
  std::string random_bytes(std::size_t n) { return cut(binary_, n); }
  std::string text(std::size_t n) { return cut(text_, n); }  // no NUL
  std::uint32_t dest(std::uint32_t self) {
    switch (r(6)) {
      case 0: return self;
      case 1: return kServerId;
      case 2: return 0xFFFFFF00u + static_cast<std::uint32_t>(r(255));
      case 3:
        if (!targets_->empty()) return (*targets_)[r(targets_->size())];
        [[fallthrough]];
      case 4: return self + static_cast<std::uint32_t>(r(8));
      default: return static_cast<std::uint32_t>(rng_());
    }
  }
  std::string nonce() {
    static constexpr char kHex[] = "0123456789abcdef";
    std::string n(16 + r(49), '0');
    for (auto& ch : n) ch = kHex[r(16)];
    return n;
  }
  std::string bad_hello() {
    std::string h = coin(50) ? "switchboard/2" : "switchboard/" + std::to_string(r(4));
    const int fields = static_cast<int>(r(5));
    for (int i = 0; i < fields; ++i) {
      switch (r(7)) {
        case 0: h += " nonce=" + nonce(); break;
        case 1: h += " nonce=" + text(r(80)); break;
        case 2: h += " token=" + text(r(300)); break;
        case 3: h += " " + text(r(20)); break;
        case 4: h += "  "; break;
        case 5: h += " x" + std::to_string(r(3)) + "=" + std::to_string(r(9)); break;
        default: h += " =" + std::to_string(r(9)); break;
      }
    }
    for (auto& ch : h) {
      if (ch == '\0') ch = 'z';  // the hello is one v1 frame
    }
    return be32(kServerId) + h + '\0';
  }
  std::string v2_junk(std::uint32_t self) {
    switch (r(9)) {
      case 0: return v2_frame(0x01, be32(dest(self)) + random_bytes(r(2048)));
      case 1: return v2_frame(0x02, random_bytes(r(65)));
      case 2: return be32(0);                                                     // L = 0
      case 3: return v2_frame(static_cast<std::uint8_t>(3 + r(250)), random_bytes(r(32)));  // unknown type
      case 4: return be32(static_cast<std::uint32_t>(max_frame_ + 6 + r(1u << 30))) + "\x01";  // too large
      case 5: return v2_frame(0x01, random_bytes(r(4)));                          // SEND body < 4
      case 6: return be32(66 + static_cast<std::uint32_t>(r(1000))) + "\x02";    // PING > 64
      case 7: return v2_frame(0x01, be32(dest(self)) + random_bytes(r(64))).substr(0, 1 + r(8));  // half
      default: return random_bytes(1 + r(64));
    }
  }

  void start(Fuzzer& f) {
    f.c = std::make_unique<Conn>();
    f.act = static_cast<Act>(r(kActs));
    // Some of those that never read outlive a short --stall-timeout.
    const auto life = std::chrono::milliseconds(f.act == Act::never_reads ? 200 + r(5000) : 5 + r(400));
    f.end_at = Clock::now() + life;
    f.started = false;
    if (!f.c->open(port_, f.act == Act::never_reads ? 4096 : 0)) {
      ++connect_failures;
      f.c.reset();
      return;
    }
    ++connections;
    if (f.act == Act::never_reads) f.c->reading = false;
  }

  // Called each turn: once connected (and, for most, once the ID is in),
  // queue this connection's bad behaviour.
  void step(Fuzzer& f) {
    Conn& c = *f.c;
    if (c.connecting) return;
    if (f.act == Act::instant_reset) {
      f.end_at = Clock::now();
      return;
    }
    std::uint32_t self = 0;
    if (c.in.size() >= 4) self = load_be32(c.in.data());
    if (!f.started) {
      f.started = true;
      std::string b;
      switch (f.act) {
        case Act::random_bytes: b = random_bytes(1 + r(8192)); break;
        case Act::v1_frames:
          for (int i = static_cast<int>(r(50)); i >= 0; --i) b += be32(dest(self)) + text(r(1024)) + '\0';
          break;
        case Act::v1_oversized: b = be32(dest(self)) + text(max_frame_ + 1 + r(4096)); break;
        case Act::bad_hello: b = bad_hello(); break;
        case Act::v2_junk:
          b = be32(kServerId) + "switchboard/2 nonce=" + nonce() + '\0';
          for (int i = static_cast<int>(r(6)); i >= 0; --i) b += v2_junk(self);
          break;
        case Act::half_frame:
          b = (coin(50) ? be32(dest(self)) + text(r(200)) : v2_frame(0x01, be32(dest(self)) + text(r(200))));
          b.resize(r(b.size()));
          f.end_at = Clock::now() + std::chrono::milliseconds(r(50));
          break;
        case Act::never_reads:
          // About 10 MB, mostly to itself: more than the kernel's buffers
          // and a 1M --max-pending take, so it ends up paused on its own
          // queue, a stalled slow consumer.
          for (int i = 0; i < 4096; ++i) b += be32(coin(80) ? self : dest(self)) + text(1000 + r(3000)) + '\0';
          break;
        case Act::instant_reset: break;
      }
      junk_bytes += b.size();
      c.queue(b);
    }
    if (f.act != Act::never_reads) c.in.clear();  // what the server says to a fuzzer is not checked
  }

  void finish(Fuzzer& f) {
    // Half of them reset (often mid-write), half close with a FIN.
    f.c->close_fd(coin(50) || f.act == Act::half_frame || f.act == Act::instant_reset);
    f.c.reset();
  }

 private:
  static constexpr std::size_t kBlock = 1 << 16;
  std::string cut(const std::string& block, std::size_t n) {
    std::string s;
    s.reserve(n);
    while (s.size() < n) {
      const std::size_t from = r(kBlock);
      s.append(block, from, std::min(n - s.size(), kBlock - from));
    }
    return s;
  }

  std::mt19937_64 rng_;
  std::uint16_t port_;
  std::size_t max_frame_;
  std::vector<std::uint32_t>* targets_;
  std::string binary_;
  std::string text_;
};

// ---------------------------------------------------------------------------
// The server, when --spawn starts it

struct Server {
  pid_t pid = -1;
  std::uint16_t port = 0;
  std::string log_path;
};

std::optional<Server> spawn_server(const std::string& bin, const std::vector<std::string>& extra) {
  int out[2];
  if (::pipe2(out, O_CLOEXEC) != 0) return std::nullopt;
  Server s;
  s.log_path = (std::filesystem::temp_directory_path() / "switchboard-fuzz-XXXXXX").string();
  const int log_fd = ::mkostemp(s.log_path.data(), O_CLOEXEC);
  if (log_fd < 0) return std::nullopt;
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, log_fd, STDERR_FILENO);
  std::vector<std::string> args = {bin, "serve", "--listen", "127.0.0.1:0"};
  args.insert(args.end(), extra.begin(), extra.end());
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const int rc = ::posix_spawn(&s.pid, bin.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(out[1]);
  ::close(log_fd);
  if (rc != 0) {
    ::close(out[0]);
    return std::nullopt;
  }
  // The listening line: "switchboard listening on 127.0.0.1:PORT (engine NAME)".
  std::string line;
  const auto deadline = Clock::now() + 15s;
  while (line.find('\n') == std::string::npos && Clock::now() < deadline) {
    pollfd p{out[0], POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    char buf[256];
    const ssize_t n = ::read(out[0], buf, sizeof buf);
    if (n <= 0) break;
    line.append(buf, static_cast<std::size_t>(n));
  }
  ::close(out[0]);  // the server writes nothing more there
  const auto colon = line.find("127.0.0.1:");
  if (colon == std::string::npos) {
    std::cerr << "fuzz: no listening line from the server: \"" << line << "\"\n";
    ::kill(s.pid, SIGKILL);
    ::waitpid(s.pid, nullptr, 0);
    return std::nullopt;
  }
  s.port = static_cast<std::uint16_t>(std::stoul(line.substr(colon + 10)));
  return s;
}

std::string file_tail(const std::string& path, std::size_t n = 4000) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return {};
  std::string s;
  char buf[4096];
  std::size_t k = 0;
  while ((k = std::fread(buf, 1, sizeof buf, f)) > 0) s.append(buf, k);
  std::fclose(f);
  return s.size() > n ? s.substr(s.size() - n) : s;
}

// Whether the process still runs (and, for a child, has not been reaped).
bool alive(pid_t pid, bool child, int* status) {
  if (pid <= 0) return true;
  if (child) return ::waitpid(pid, status, WNOHANG) == 0;
  return ::kill(pid, 0) == 0 || errno == EPERM;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Hostile TCP clients against a switchboard server, with verified pairs that must lose nothing"};
  std::string server_addr;
  std::string spawn_bin;
  std::vector<std::string> serve_flags;
  double duration = 8;
  std::size_t clients = 40;
  std::uint64_t seed = 0;
  pid_t watch_pid = 0;
  std::size_t max_frame = std::size_t{1} << 20;
  app.add_option("--server", server_addr, "A running server, 127.0.0.1:PORT");
  app.add_option("--spawn", spawn_bin, "Start this switchboard executable (serve --listen 127.0.0.1:0) and stop it at the end");
  app.add_option("--pid", watch_pid, "With --server: the server's PID, checked for life");
  app.add_option("--duration", duration, "Seconds of fuzzing")->check(CLI::Range(0.1, 86400.0));
  app.add_option("--clients", clients, "Fuzzing connections at once")->check(CLI::Range(1, 2000));
  app.add_option("--seed", seed, "Random seed (0: from the clock; printed either way)");
  app.add_option("--max-frame", max_frame, "The server's --max-frame, for oversized frames")->check(CLI::Range(1, 1 << 30));
  app.add_option("serve_flags", serve_flags, "With --spawn, after --: more `serve` flags");
  CLI11_PARSE(app, argc, argv);
  if (server_addr.empty() == spawn_bin.empty()) {
    std::cerr << "fuzz: give exactly one of --server and --spawn\n";
    return 2;
  }
  if (seed == 0) seed = static_cast<std::uint64_t>(Clock::now().time_since_epoch().count());
  std::cout << "fuzz: seed " << seed << "\n" << std::flush;
  ::signal(SIGPIPE, SIG_IGN);

  Server server;
  const bool child = !spawn_bin.empty();
  if (child) {
    auto s = spawn_server(spawn_bin, serve_flags);
    if (!s) {
      std::cerr << "fuzz: could not start " << spawn_bin << "\n";
      return 1;
    }
    server = *s;
  } else {
    const auto colon = server_addr.rfind(':');
    if (colon == std::string::npos || server_addr.substr(0, colon) != "127.0.0.1") {
      std::cerr << "fuzz: --server must be 127.0.0.1:PORT\n";
      return 2;
    }
    server.port = static_cast<std::uint16_t>(std::stoul(server_addr.substr(colon + 1)));
    server.pid = watch_pid;
  }

  std::vector<std::string> failures;
  int status = 0;
  bool died = false;

  // Verified pairs: v1-v1, v2-v2, v1-v2.
  std::vector<std::unique_ptr<Pair>> pairs;
  std::mt19937_64 nonce_rng(seed ^ 0x5bd1e995);
  const int versions[3][2] = {{1, 1}, {2, 2}, {1, 2}};
  for (int i = 0; i < 3; ++i) {
    auto p = std::make_unique<Pair>();
    p->index = i;
    for (int j = 0; j < 2; ++j) {
      Endpoint& ep = p->e[j];
      ep.version = versions[i][j];
      char hex[33];
      std::snprintf(hex, sizeof hex, "%016llx%016llx", static_cast<unsigned long long>(nonce_rng()),
                    static_cast<unsigned long long>(nonce_rng()));
      ep.nonce = hex;
      if (!ep.c.open(server.port)) failures.push_back("cannot connect a verified client");
    }
    pairs.push_back(std::move(p));
  }
  std::vector<std::uint32_t> targets;  // the verified clients' IDs: fuzzers aim at them too
  Fuzz fuzz(seed, server.port, max_frame, &targets);
  std::vector<Fuzzer> fuzzers(clients);

  const auto start = Clock::now();
  const auto fuzz_end = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(duration));
  // Per direction: bounds the work whatever the speed (about 100,000 a second fit on loopback).
  const auto kMaxMessages = static_cast<std::uint64_t>(200'000 * std::max(1.0, duration));
  std::vector<Conn*> all;
  auto last_alive_check = start;
  while (failures.empty()) {
    const auto now = Clock::now();
    const bool fuzzing = now < fuzz_end;
    if (now - last_alive_check >= 100ms) {
      last_alive_check = now;
      if (!alive(server.pid, child, &status)) {
        died = true;
        failures.push_back("the server died");
        break;
      }
    }
    all.clear();
    for (auto& p : pairs) {
      for (int j = 0; j < 2; ++j) {
        consume(*p, j);
        if (p->e[j].c.dead) failures.push_back("pair " + std::to_string(p->index) + ": a verified client was disconnected");
      }
      for (int j = 0; j < 2; ++j) send_honest(*p, j, fuzzing ? kMaxMessages : p->e[j].sent);
      if (!p->failure.empty()) failures.push_back(p->failure);
      for (int j = 0; j < 2; ++j) all.push_back(&p->e[j].c);
    }
    if (targets.empty() && std::all_of(pairs.begin(), pairs.end(), [](auto& p) { return p->e[0].have_id && p->e[1].have_id; })) {
      for (auto& p : pairs) targets.insert(targets.end(), {p->e[0].id, p->e[1].id});
    }
    for (auto& f : fuzzers) {
      if (!f.c) {
        if (fuzzing) fuzz.start(f);
        if (!f.c) continue;
      }
      if (f.c->dead || now >= f.end_at || !fuzzing) {
        fuzz.finish(f);
        continue;
      }
      fuzz.step(f);
      all.push_back(f.c.get());
    }
    if (!fuzzing) {
      // Drain: every verified message sent must arrive.
      const bool complete = std::all_of(pairs.begin(), pairs.end(), [](auto& p) {
        return p->e[0].received == p->e[1].sent && p->e[1].received == p->e[0].sent;
      });
      if (complete) break;
      if (now >= fuzz_end + 15s) {
        for (auto& p : pairs) {
          failures.push_back("pair " + std::to_string(p->index) + " incomplete: " + std::to_string(p->e[1].received) +
                             "/" + std::to_string(p->e[0].sent) + " and " + std::to_string(p->e[0].received) + "/" +
                             std::to_string(p->e[1].sent));
        }
        break;
      }
    }
    pump(all, 10);
  }

  std::uint64_t verified = 0, foreign = 0;
  for (auto& p : pairs) {
    for (auto& ep : p->e) {
      verified += ep.received;
      foreign += ep.foreign;
    }
  }
  std::cout << "fuzz: " << fuzz.connections << " fuzzing connections (" << fuzz.connect_failures
            << " failed to connect), " << fuzz.junk_bytes << " bytes of junk; " << verified
            << " verified messages delivered in order (" << foreign << " stray frames from fuzzers ignored)\n";

  if (child) {
    if (!died) {
      ::kill(server.pid, SIGTERM);
      const auto deadline = Clock::now() + 20s;
      while (alive(server.pid, true, &status) && Clock::now() < deadline) ::usleep(10000);
      if (Clock::now() >= deadline) {
        ::kill(server.pid, SIGKILL);
        ::waitpid(server.pid, &status, 0);
        failures.push_back("the server did not stop within 20 s of SIGTERM");
      }
    }
    if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
      failures.push_back(WIFSIGNALED(status) ? "the server was killed by signal " + std::to_string(WTERMSIG(status))
                                             : "the server exited with code " + std::to_string(WEXITSTATUS(status)));
    }
  }
  for (const auto& f : failures) std::cerr << "fuzz: FAIL: " << f << "\n";
  if (child) {
    if (!failures.empty()) std::cerr << "---- server log (tail) ----\n" << file_tail(server.log_path) << "\n";
    std::filesystem::remove(server.log_path);
  }
  if (failures.empty()) std::cout << "fuzz: ok\n";
  return failures.empty() ? 0 : 1;
}
