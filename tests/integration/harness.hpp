// The integration suite's harness: runs the `switchboard` executable as a
// child process and talks to it over loopback with small clients whose every
// wait has a deadline.
//
// One thread drives everything. A test puts all the clients it is waiting on
// into one poll() loop (pump), so a writer blocked by TCP flow control never
// waits on a reader that the same thread would only run afterwards, and no
// test needs threads or sleeps. When a wait ends badly (deadline passed,
// unexpected EOF, bytes that break the contract) the harness throws
// HarnessError; GoogleTest reports its message and fails the test, and the
// fixture prints the server's stderr.
#pragma once

#include <gtest/gtest.h>
#include <sys/types.h>

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/stats.hpp"
#include "engines/engine_names.hpp"

namespace sb::itest {

using namespace std::chrono_literals;

using Clock = std::chrono::steady_clock;
using Deadline = Clock::time_point;

inline Deadline after(Clock::duration d) {
  return Clock::now() + d;
}

// Generous bounds for single steps: they only matter when something is
// broken, and sanitizer builds on a busy 2-core machine are slow.
inline constexpr auto kIoTimeout = 10s;
inline constexpr auto kStartTimeout = 15s;
inline constexpr auto kStopTimeout = 20s;

class HarnessError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Owns one file descriptor.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) noexcept : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) reset(std::exchange(other.fd_, -1));
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }

  int get() const noexcept { return fd_; }
  explicit operator bool() const noexcept { return fd_ >= 0; }
  void reset(int fd = -1) noexcept;

 private:
  int fd_ = -1;
};

// ---------------------------------------------------------------------------
// The server process

// The last `n` bytes of a log, marked as cut if it was longer.
std::string tail(std::string_view text, std::size_t n = 6000);

// Every counter of the "stats: " line the server logs when it stops: the
// line names of core/stats.hpp's one list (header only; nothing is linked).
inline constexpr auto kStatNames = [] {
  std::array<std::string_view, core::kStatCount> names{};
  for (std::size_t i = 0; i < core::kStatCount; ++i) names[i] = core::kStatInfo[i].line_name;
  return names;
}();

using Stats = std::map<std::string, std::uint64_t, std::less<>>;

// The name=value pairs after the last "stats: " in `log`; nullopt if the log
// has no such line.
std::optional<Stats> parse_stats(std::string_view log);

struct ExitInfo {
  bool exited = false;  // true: exited with `code`; false: killed by `signal`
  int code = -1;
  int signal = 0;
  std::string stdout_text;  // what followed the listening line (all of stdout if it never listened)
  std::string stderr_text;
  std::optional<Stats> stats;

  bool clean() const { return exited && code == 0; }
  std::string describe() const;  // "exit code 0", "killed by signal 9"
  // One counter; throws HarnessError if the stats line or the name is missing.
  std::uint64_t stat(std::string_view name) const;
};

// The `switchboard` that tests measuring the server's memory run
// (SWITCHBOARD_MEASURED_BIN): this tree's own, or in a sanitized tree the
// release tree's. Throws HarnessError, saying how to build it, if it is
// missing.
std::string measured_server_binary();

// A running `switchboard` (SWITCHBOARD_BIN). Its stdout is a pipe (for the
// listening line), its stderr an unlinked temporary file (a pipe could fill
// up and block a chatty server while the test is busy elsewhere).
// Destroying a ServerProcess that still runs kills it with SIGKILL, by PID.
class ServerProcess {
 public:
  // Spawns the server with `args` and waits for its listening line,
  // "switchboard listening on 127.0.0.1:PORT (engine NAME)". Throws
  // HarnessError, with the server's stderr, if it exits first, prints
  // something else, or says nothing before the timeout.
  // `program`: another switchboard, such as measured_server_binary().
  static ServerProcess start(const std::vector<std::string>& args, Clock::duration timeout = kStartTimeout,
                             const std::string& program = SWITCHBOARD_BIN);
  // Spawns the server with `args` and waits for it to exit on its own (bad
  // flags, address in use). Throws HarnessError if it is still running at
  // the timeout (after killing it).
  static ExitInfo run_to_exit(const std::vector<std::string>& args, Clock::duration timeout);
  // Spawns another program (a peer the test needs, such as redis-server)
  // with the same care and returns at once; port() and engine() stay empty.
  static ServerProcess launch(const std::string& program, const std::vector<std::string>& args);

  ServerProcess(ServerProcess&& other) noexcept;
  ServerProcess& operator=(ServerProcess&&) = delete;
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;
  ~ServerProcess();

  pid_t pid() const { return pid_; }
  std::uint16_t port() const { return port_; }
  const std::string& engine() const { return engine_; }  // as the listening line names it
  const std::string& listening_line() const { return line_; }
  bool running() const { return !exit_.has_value(); }

  void send_signal(int sig) const;
  // Waits for the process to exit; nullopt if it still runs at `deadline`.
  // Once it has exited, returns the same ExitInfo every time.
  std::optional<ExitInfo> wait_exit(Deadline deadline);
  // SIGTERM, then wait_exit. If it does not exit in time: SIGKILL, throw.
  ExitInfo stop(Clock::duration timeout = kStopTimeout);
  // What the server has written to stderr so far.
  std::string stderr_text() const;

 private:
  ServerProcess() = default;
  static ServerProcess spawn(const std::vector<std::string>& args, const std::string& program = SWITCHBOARD_BIN);
  void drain_stdout();
  void reap();
  void kill_and_reap() noexcept;

  pid_t pid_ = -1;
  UniqueFd pidfd_;   // readable once the process has exited: lets poll() wait for it
  UniqueFd stdout_;  // read end of the stdout pipe, non-blocking
  bool stdout_eof_ = false;
  UniqueFd stderr_;  // the unlinked temporary file
  std::string stdout_buf_;
  std::string line_;
  std::string engine_;
  std::uint16_t port_ = 0;
  std::optional<ExitInfo> exit_;
};

// ---------------------------------------------------------------------------
// Clients

// The 4 big-endian bytes of `v`, and back.
std::string be32(std::uint32_t v);
std::uint32_t from_be32(std::string_view four_bytes);
// One wire frame: [u32 dest][payload][0x00]. `payload` must hold no NUL.
std::string frame(std::uint32_t dest, std::string_view payload);
// `n` deterministic pseudo-random bytes in 1..255 (binary, but never NUL).
std::string pattern(std::size_t n, std::uint64_t seed);

// Compares byte strings too long to print: says where they first differ.
::testing::AssertionResult same_bytes(std::string_view expected, std::string_view actual);

struct ConnectOptions {
  bool read_id = true;   // wait for the 4-byte ID the server sends first
  int rcvbuf = 0;        // SO_RCVBUF set before connect (0: kernel default)
  bool nodelay = false;  // TCP_NODELAY: every send() its own segment
};

// A non-blocking loopback client. Bytes to send are queued in an outbox and
// written whenever pump() finds the socket writable; bytes received are
// appended to an inbox whenever the client is reading (the default) and the
// socket is readable. The blocking-looking calls (read_exact, flush, ...)
// pump just this client until they are satisfied or their deadline passes.
class Client {
 public:
  enum class End { open, eof, reset };  // the inbound side's state

  // Connects to 127.0.0.1:port and, by default, reads the client's ID.
  static Client connect(std::uint16_t port, Deadline deadline, const ConnectOptions& options = {});
  // Connects `n` clients, `batch` handshakes at a time (so the accept queue
  // never overflows into SYN retries), each with its ID read.
  static std::vector<Client> connect_many(std::uint16_t port, std::size_t n, Deadline deadline,
                                          std::size_t batch = 250);

  Client(Client&&) noexcept = default;
  Client& operator=(Client&&) noexcept = default;
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;
  ~Client() = default;

  std::uint32_t id() const;  // throws if the ID was not read
  bool has_id() const { return id_.has_value(); }
  int fd() const { return fd_.get(); }
  const std::string& label() const { return label_; }
  void set_label(std::string label) { label_ = std::move(label); }

  // --- outbound
  void queue(std::string_view bytes);
  void queue_frame(std::uint32_t dest, std::string_view payload) { queue(frame(dest, payload)); }
  std::size_t outbox_size() const { return out_.size() - out_head_; }
  std::uint64_t bytes_sent() const { return bytes_sent_; }
  // When send() last accepted bytes (or the client was created).
  Clock::time_point last_send_progress() const { return last_send_; }
  // errno of a failed send (EPIPE, ECONNRESET), 0 if none.
  int write_error() const { return write_error_; }
  // Writes the whole outbox; throws if it cannot by `deadline`.
  void flush(Deadline deadline);
  void send_raw(std::string_view bytes, Deadline deadline) {
    queue(bytes);
    flush(deadline);
  }
  void send_frame(std::uint32_t dest, std::string_view payload, Deadline deadline) {
    queue_frame(dest, payload);
    flush(deadline);
  }

  // --- inbound
  // A client that is not reading leaves its bytes in the kernel, so the
  // server sees a consumer that does not keep up.
  void set_reading(bool reading) { reading_ = reading; }
  bool reading() const { return reading_; }
  End end() const { return end_; }
  std::size_t available() const { return in_.size() - in_head_; }
  std::string take(std::size_t n);
  std::string take_all() { return take(available()); }
  bool has_frame();                         // a whole frame (up to a NUL) is in the inbox
  std::optional<std::string> take_frame();  // its payload, without the NUL
  // Exactly `n` bytes; throws on EOF, reset or deadline (saying which).
  std::string read_exact(std::size_t n, Deadline deadline);
  // The next frame's payload; throws on EOF, reset or deadline.
  std::string read_frame(Deadline deadline);
  struct Closing {
    std::string data;  // everything received before the end
    End how;           // End::open: the deadline passed first
  };
  // Reads until the server closes the connection (or `deadline`).
  Closing read_until_close(Deadline deadline);

  // --- ending the connection
  void shutdown_write();  // FIN, keeps reading
  void close();           // FIN
  void abort();           // RST (SO_LINGER 0)

  // Label and state, for error messages.
  std::string where() const;

  // pump()'s side of the client.
  short wanted_events() const;
  void on_ready(short revents);

 private:
  Client() = default;
  static Client start_connect(std::uint16_t port, const ConnectOptions& options);
  bool try_take_id();
  void read_some();
  void write_some();

  UniqueFd fd_;
  std::string label_;
  std::optional<std::uint32_t> id_;
  bool connecting_ = false;
  bool reading_ = true;
  End end_ = End::open;
  std::string in_;
  std::size_t in_head_ = 0;
  std::size_t in_scan_ = 0;  // no NUL in in_[in_head_, in_scan_): never rescanned
  std::string out_;
  std::size_t out_head_ = 0;
  std::uint64_t bytes_sent_ = 0;
  Clock::time_point last_send_ = Clock::now();
  int write_error_ = 0;
};

// Polls `clients` once per turn, reading into inboxes and writing outboxes,
// until done() is true (returns true) or `deadline` passes (returns false).
// Also returns false at once when no client has anything to wait for.
bool pump(std::span<Client* const> clients, Deadline deadline, const std::function<bool()>& done);
inline bool pump(std::initializer_list<Client*> clients, Deadline deadline,
                 const std::function<bool()>& done) {
  return pump(std::span<Client* const>(clients.begin(), clients.size()), deadline, done);
}

// `a` sends `b` a frame, `b` checks it and answers, `a` checks the answer.
// `background` clients are pumped too, so a flood they are sending goes on.
void round_trip(Client& a, Client& b, std::string_view tag, Deadline deadline,
                std::span<Client* const> background = {});

// ---------------------------------------------------------------------------
// The fixture every engine-parameterized test derives from

class RedisServer;

// The parameters that run a suite on a cluster (SB_INSTANTIATE_FOR_CLUSTERS):
// three nodes joined through a redis-server of the test's own, reactor
// nodes or sharded ones (2 shards each), the clients spread over them
// round-robin, so most frames cross nodes (and shards).
inline constexpr std::string_view kCluster3 = "cluster3";
// The engine suites run the sharded engine twice, whatever the machine's
// cores: "sharded" with 2 shards and "sharded4" with 4, so that clients land
// on different shards and frames cross (every_engine_param()).
inline constexpr std::string_view kSharded4 = "sharded4";
inline constexpr std::string_view kCluster3Sharded = "cluster3sharded";
inline constexpr std::size_t kClusterNodes = 3;

class EngineTest : public ::testing::TestWithParam<std::string_view> {
 protected:
  EngineTest();
  ~EngineTest() override;
  // The engine under test (on a cluster, its nodes' engine: reactor).
  std::string engine() const {
    if (GetParam() == kCluster3Sharded || GetParam() == kSharded4) return "sharded";
    return clustered() ? std::string("reactor") : std::string(GetParam());
  }
  bool clustered() const { return GetParam() == kCluster3 || GetParam() == kCluster3Sharded; }
  // The `serve` arguments for this engine: --listen, --engine, then `extra`.
  std::vector<std::string> serve_args(const std::vector<std::string>& extra = {},
                                      const std::string& listen = "127.0.0.1:0") const;
  // Starts a server for this engine, owned by the fixture (killed at the end
  // of the test if still running), and checks its listening line. On a
  // cluster: Redis and every node, each with `extra`; server() is the first
  // node, connect() goes round the nodes, and stop_server() stops them all
  // and sums their counters (a frame crossing nodes is `forwarded` on the
  // sender's node and `routed` on the destination's).
  ServerProcess& start_server(const std::vector<std::string>& extra = {},
                              const std::string& listen = "127.0.0.1:0");
  // start_server() with measured_server_binary(), for a test that measures
  // the server's memory (not on a cluster).
  ServerProcess& start_measured_server(const std::vector<std::string>& extra = {});
  ServerProcess& server();
  // The server, or every node of a cluster.
  std::vector<ServerProcess*> servers();
  Client connect(const ConnectOptions& options = {});
  std::vector<Client> connect_many(std::size_t n);
  // The sharded engine (not on a cluster): its shards, and a client on shard
  // `shard mod shards()`: connected again until its ID's top bits name that
  // shard (the kernel's SO_REUSEPORT hash chooses; at most 64 tries). On any
  // other engine, connect().
  bool sharded() const { return engine() == "sharded" && !clustered(); }
  unsigned shards() const { return GetParam() == kSharded4 ? 4 : 2; }
  Client connect_on_shard(unsigned shard, const ConnectOptions& options = {});

  // SIGTERM, wait, and check the stop contract: exit code 0, nothing more on
  // stdout, one stats line with every counter, nobody left connected.
  ExitInfo stop_server();
  // The same checks for a server that was already sent its signal.
  ExitInfo wait_server_exit(Deadline deadline);
  // After the server is gone: `c` gets no more bytes, just EOF.
  void expect_only_eof(Client& c);

  void TearDown() override;

 private:
  // One server (not a cluster) from `program`, owned by the fixture.
  ServerProcess& start_one(const std::vector<std::string>& args, const std::string& program);
  void check_clean_exit(const ExitInfo& info);
  std::optional<ServerProcess> server_;
  std::unique_ptr<RedisServer> redis_;  // a cluster's
  std::vector<ServerProcess> nodes_;    // a cluster's other nodes (server_ is the first)
  std::size_t next_node_ = 0;           // connect()'s round-robin
};

// Test-name suffix for an engine: gtest names allow only [A-Za-z0-9_].
std::string engine_test_name(const ::testing::TestParamInfo<std::string_view>& info);

// The parameters of the engine suites: kEngineNames (or kIsolatingEngines)
// with kSharded4 after "sharded".
std::vector<std::string_view> every_engine_param();
std::vector<std::string_view> isolating_engine_params();

// The engines that do not isolate slow consumers: kEngineNames less
// kIsolatingEngines (the article's mutex and channel designs).
std::vector<std::string_view> blocking_engines();
bool isolates_slow_consumers(std::string_view engine);

}  // namespace sb::itest

// Runs every TEST_P of `suite` once per engine in sb::engines::kEngineNames,
// so an engine added there inherits the whole suite unchanged.
#define SB_INSTANTIATE_FOR_EVERY_ENGINE(suite)                                                 \
  INSTANTIATE_TEST_SUITE_P(Engines, suite, ::testing::ValuesIn(::sb::itest::every_engine_param()), \
                           ::sb::itest::engine_test_name)

// The same for the engines that isolate slow consumers (kIsolatingEngines).
#define SB_INSTANTIATE_FOR_ISOLATING_ENGINES(suite)                                                     \
  INSTANTIATE_TEST_SUITE_P(Engines, suite, ::testing::ValuesIn(::sb::itest::isolating_engine_params()), \
                           ::sb::itest::engine_test_name)

// The same for the others (blocking_engines()).
#define SB_INSTANTIATE_FOR_CLUSTERS(suite)                                                                 \
  INSTANTIATE_TEST_SUITE_P(Cluster, suite, ::testing::Values(::sb::itest::kCluster3, ::sb::itest::kCluster3Sharded), \
                           ::sb::itest::engine_test_name)

#define SB_INSTANTIATE_FOR_BLOCKING_ENGINES(suite)                                         \
  INSTANTIATE_TEST_SUITE_P(Engines, suite, ::testing::ValuesIn(::sb::itest::blocking_engines()), \
                           ::sb::itest::engine_test_name)
