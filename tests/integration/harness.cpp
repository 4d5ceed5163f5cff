#include "harness.hpp"

#include "protocol/client_id.hpp"
#include "redis_server.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <filesystem>
#include <iostream>
#include <regex>
#include <sstream>
#include <system_error>

extern char** environ;

#if !defined(SWITCHBOARD_BIN) || !defined(SWITCHBOARD_MEASURED_BIN)
#error "SWITCHBOARD_BIN and SWITCHBOARD_MEASURED_BIN must name switchboard executables (tests/integration/CMakeLists.txt sets them)"
#endif

namespace sb::itest {
namespace {

std::string error_text(int err) {
  return std::error_code(err, std::generic_category()).message();
}

[[noreturn]] void throw_errno(const std::string& what) {
  throw HarnessError(what + ": " + error_text(errno));
}

// poll()'s timeout for `deadline`, rounded up so a wait never ends early.
int poll_timeout(Deadline deadline) {
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return static_cast<int>(std::clamp<long long>(left, 0, 60'000));
}

std::string read_whole_file(int fd) {
  std::string out;
  char buf[65536];
  for (off_t offset = 0;;) {
    const ssize_t n = ::pread(fd, buf, sizeof buf, offset);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, static_cast<std::size_t>(n));
    offset += n;
  }
  return out;
}

std::string_view end_name(Client::End e) {
  switch (e) {
    case Client::End::open:
      return "open";
    case Client::End::eof:
      return "EOF";
    case Client::End::reset:
      return "connection reset";
  }
  return "?";
}

}  // namespace

void UniqueFd::reset(int fd) noexcept {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

// ---------------------------------------------------------------------------
// Stats and exit status

std::optional<Stats> parse_stats(std::string_view log) {
  static constexpr std::string_view kMarker = "stats: ";
  const auto at = log.rfind(kMarker);
  if (at == std::string_view::npos) return std::nullopt;
  std::string_view line = log.substr(at + kMarker.size());
  line = line.substr(0, line.find('\n'));
  Stats stats;
  while (!line.empty()) {
    const auto space = line.find(' ');
    const std::string_view token = line.substr(0, space);
    line = space == std::string_view::npos ? std::string_view{} : line.substr(space + 1);
    const auto eq = token.find('=');
    if (eq == std::string_view::npos) continue;
    std::uint64_t value = 0;
    const auto value_text = token.substr(eq + 1);
    const auto [end, ec] = std::from_chars(value_text.data(), value_text.data() + value_text.size(), value);
    if (ec != std::errc{} || end != value_text.data() + value_text.size()) continue;
    stats.emplace(std::string(token.substr(0, eq)), value);
  }
  return stats;
}

std::string tail(std::string_view text, std::size_t n) {
  if (text.size() <= n) return std::string(text);
  return "[... " + std::to_string(text.size() - n) + " bytes ...]\n" +
         std::string(text.substr(text.size() - n));
}

std::string ExitInfo::describe() const {
  return exited ? "exit code " + std::to_string(code) : "killed by signal " + std::to_string(signal);
}

std::uint64_t ExitInfo::stat(std::string_view name) const {
  if (!stats) throw HarnessError("the server logged no \"stats: \" line; stderr:\n" + tail(stderr_text));
  const auto it = stats->find(name);
  if (it == stats->end()) {
    throw HarnessError("the stats line has no counter \"" + std::string(name) + "\"; stderr:\n" +
                       tail(stderr_text));
  }
  return it->second;
}

// ---------------------------------------------------------------------------
// ServerProcess

ServerProcess::ServerProcess(ServerProcess&& other) noexcept
    : pid_(std::exchange(other.pid_, -1)),
      pidfd_(std::move(other.pidfd_)),
      stdout_(std::move(other.stdout_)),
      stdout_eof_(other.stdout_eof_),
      stderr_(std::move(other.stderr_)),
      stdout_buf_(std::move(other.stdout_buf_)),
      line_(std::move(other.line_)),
      engine_(std::move(other.engine_)),
      port_(other.port_),
      exit_(std::move(other.exit_)) {}

ServerProcess::~ServerProcess() {
  if (pid_ > 0 && !exit_) kill_and_reap();
}

ServerProcess ServerProcess::spawn(const std::vector<std::string>& args, const std::string& program) {
  ServerProcess p;

  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) throw_errno("pipe2");
  p.stdout_.reset(pipe_fds[0]);
  UniqueFd stdout_w(pipe_fds[1]);
  // Only our end is non-blocking: the server's stdout stays an ordinary pipe.
  if (::fcntl(p.stdout_.get(), F_SETFL, O_NONBLOCK) != 0) throw_errno("fcntl(O_NONBLOCK)");

  std::string path = (std::filesystem::temp_directory_path() / "switchboard-itest-stderr-XXXXXX").string();
  const int err_fd = ::mkostemp(path.data(), O_CLOEXEC);
  if (err_fd < 0) throw_errno("mkostemp " + path);
  p.stderr_.reset(err_fd);
  ::unlink(path.c_str());

  // Every descriptor the test process holds is close-on-exec (sockets,
  // pipes, files above), so the server inherits only these three.
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, stdout_w.get(), STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, err_fd, STDERR_FILENO);

  // Whatever the test process does with signals, the server starts with
  // none blocked and SIGTERM, SIGINT and SIGPIPE at their defaults.
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, defaults;
  sigemptyset(&none);
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGTERM);
  sigaddset(&defaults, SIGINT);
  sigaddset(&defaults, SIGPIPE);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

  std::vector<std::string> argv_text;
  argv_text.emplace_back(program);
  argv_text.insert(argv_text.end(), args.begin(), args.end());
  std::vector<char*> argv;
  argv.reserve(argv_text.size() + 1);
  for (auto& a : argv_text) argv.push_back(a.data());
  argv.push_back(nullptr);

  pid_t pid = -1;
  const int rc = ::posix_spawn(&pid, program.c_str(), &actions, &attr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) throw HarnessError("posix_spawn " + program + ": " + error_text(rc));
  p.pid_ = pid;

  const long pidfd = ::syscall(SYS_pidfd_open, pid, 0);
  if (pidfd < 0) {
    const int saved = errno;
    p.kill_and_reap();
    errno = saved;
    throw_errno("pidfd_open");
  }
  p.pidfd_.reset(static_cast<int>(pidfd));
  return p;
}

void ServerProcess::drain_stdout() {
  char buf[4096];
  while (!stdout_eof_) {
    const ssize_t n = ::read(stdout_.get(), buf, sizeof buf);
    if (n > 0) {
      stdout_buf_.append(buf, static_cast<std::size_t>(n));
    } else if (n == 0) {
      stdout_eof_ = true;
    } else if (errno == EINTR) {
      continue;
    } else if (errno == EAGAIN) {
      return;
    } else {
      throw_errno("read server stdout");
    }
  }
}

void ServerProcess::reap() {
  int status = 0;
  while (::waitpid(pid_, &status, 0) < 0) {
    if (errno != EINTR) throw_errno("waitpid");
  }
  ExitInfo info;
  info.exited = WIFEXITED(status);
  info.code = info.exited ? WEXITSTATUS(status) : -1;
  info.signal = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
  drain_stdout();
  info.stdout_text = stdout_buf_;
  info.stderr_text = read_whole_file(stderr_.get());
  info.stats = parse_stats(info.stderr_text);
  exit_ = std::move(info);
}

void ServerProcess::kill_and_reap() noexcept {
  ::kill(pid_, SIGKILL);
  int status = 0;
  while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  ExitInfo info;
  info.signal = SIGKILL;
  exit_ = std::move(info);
}

ServerProcess ServerProcess::launch(const std::string& program, const std::vector<std::string>& args) {
  return spawn(args, program);
}

std::string measured_server_binary() {
  const std::string path = SWITCHBOARD_MEASURED_BIN;
  if (::access(path.c_str(), X_OK) != 0)
    throw HarnessError("the server for memory measurements, " + path +
                       ", is missing: build it with `scripts/build.sh release switchboard` (scripts/test.sh does)");
  return path;
}

ServerProcess ServerProcess::start(const std::vector<std::string>& args, Clock::duration timeout,
                                   const std::string& program) {
  ServerProcess p = spawn(args, program);
  const Deadline deadline = after(timeout);
  for (;;) {
    const auto newline = p.stdout_buf_.find('\n');
    if (newline != std::string::npos) {
      p.line_ = p.stdout_buf_.substr(0, newline);
      p.stdout_buf_.erase(0, newline + 1);
      break;
    }
    pollfd fds[2] = {{p.pidfd_.get(), POLLIN, 0}, {p.stdout_.get(), POLLIN, 0}};
    const nfds_t nfds = p.stdout_eof_ ? 1 : 2;
    const int n = ::poll(fds, nfds, poll_timeout(deadline));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw_errno("poll");
    if (nfds == 2 && fds[1].revents != 0) p.drain_stdout();
    if (p.stdout_buf_.find('\n') != std::string::npos) continue;
    if (fds[0].revents != 0) {
      p.reap();
      throw HarnessError("the server exited before listening (" + p.exit_->describe() + "); stdout: \"" +
                         p.exit_->stdout_text + "\"; stderr:\n" + tail(p.exit_->stderr_text));
    }
    if (n == 0 && Clock::now() >= deadline) {
      const std::string err = p.stderr_text();
      p.kill_and_reap();
      throw HarnessError("the server printed no listening line in time; stdout so far: \"" + p.stdout_buf_ +
                         "\"; stderr:\n" + tail(err));
    }
  }

  static const std::regex listening_line(
      R"(^switchboard listening on 127\.0\.0\.1:([0-9]{1,5}) \(engine ([^()\s]+)\)$)");
  std::smatch m;
  if (!std::regex_match(p.line_, m, listening_line)) {
    throw HarnessError("unexpected first stdout line \"" + p.line_ +
                       "\"; want \"switchboard listening on 127.0.0.1:PORT (engine NAME)\"");
  }
  const unsigned long port = std::stoul(m[1].str());
  if (port == 0 || port > 65535) throw HarnessError("bad port in \"" + p.line_ + "\"");
  p.port_ = static_cast<std::uint16_t>(port);
  p.engine_ = m[2].str();
  return p;
}

ExitInfo ServerProcess::run_to_exit(const std::vector<std::string>& args, Clock::duration timeout) {
  ServerProcess p = spawn(args);
  if (auto info = p.wait_exit(after(timeout))) return *info;
  const std::string out = p.stdout_buf_;
  const std::string err = p.stderr_text();
  p.kill_and_reap();
  throw HarnessError("the server was expected to exit but still ran after the timeout; stdout: \"" + out +
                     "\"; stderr:\n" + tail(err));
}

void ServerProcess::send_signal(int sig) const {
  if (exit_) throw HarnessError("signal " + std::to_string(sig) + " to a server that has already exited");
  if (::kill(pid_, sig) != 0) throw_errno("kill(" + std::to_string(pid_) + ")");
}

std::optional<ExitInfo> ServerProcess::wait_exit(Deadline deadline) {
  while (!exit_) {
    // Keep reading stdout meanwhile: a full pipe would block the server.
    pollfd fds[2] = {{pidfd_.get(), POLLIN, 0}, {stdout_.get(), POLLIN, 0}};
    const nfds_t nfds = stdout_eof_ ? 1 : 2;
    const int n = ::poll(fds, nfds, poll_timeout(deadline));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw_errno("poll");
    if (nfds == 2 && fds[1].revents != 0) drain_stdout();
    if (fds[0].revents != 0) {
      reap();
      break;
    }
    if (n == 0 && Clock::now() >= deadline) return std::nullopt;
  }
  return exit_;
}

ExitInfo ServerProcess::stop(Clock::duration timeout) {
  if (exit_) return *exit_;
  send_signal(SIGTERM);
  if (auto info = wait_exit(after(timeout))) return *info;
  const std::string err = stderr_text();
  kill_and_reap();
  throw HarnessError("the server did not exit within " +
                     std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(timeout).count()) +
                     " ms of SIGTERM (killed it); stderr:\n" + tail(err));
}

std::string ServerProcess::stderr_text() const {
  if (exit_ && !exit_->stderr_text.empty()) return exit_->stderr_text;
  return stderr_ ? read_whole_file(stderr_.get()) : std::string{};
}

// ---------------------------------------------------------------------------
// Bytes

std::string be32(std::uint32_t v) {
  return {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8),
          static_cast<char>(v)};
}

std::uint32_t from_be32(std::string_view b) {
  if (b.size() != 4) throw HarnessError("from_be32 needs 4 bytes");
  const auto byte = [&](std::size_t i) { return std::uint32_t{static_cast<unsigned char>(b[i])}; };
  return (byte(0) << 24) | (byte(1) << 16) | (byte(2) << 8) | byte(3);
}

std::string frame(std::uint32_t dest, std::string_view payload) {
  std::string out = be32(dest);
  out.reserve(4 + payload.size() + 1);
  out.append(payload);
  out.push_back('\0');
  return out;
}

std::string pattern(std::size_t n, std::uint64_t seed) {
  std::string out(n, '\0');
  std::uint64_t x = seed * 0x9E3779B97F4A7C15ull + 0x2545F4914F6CDD1Dull;
  for (auto& c : out) {
    // xorshift64: cheap, deterministic, and every byte value but 0 shows up.
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    c = static_cast<char>(1 + x % 255);
  }
  return out;
}

::testing::AssertionResult same_bytes(std::string_view expected, std::string_view actual) {
  if (expected == actual) return ::testing::AssertionSuccess();
  const auto [e, a] = std::mismatch(expected.begin(), expected.end(), actual.begin(), actual.end());
  const auto at = static_cast<std::size_t>(e - expected.begin());
  const auto show = [](std::string_view s, std::size_t from) {
    std::ostringstream out;
    const auto to = std::min(s.size(), from + 16);
    for (auto i = from; i < to; ++i) out << ' ' << static_cast<int>(static_cast<unsigned char>(s[i]));
    return out.str();
  };
  return ::testing::AssertionFailure()
         << "expected " << expected.size() << " bytes, got " << actual.size()
         << "; first difference at offset " << at << " (expected:" << show(expected, at)
         << " ...; got:" << show(actual, at) << " ...)";
}

// ---------------------------------------------------------------------------
// Client

Client Client::start_connect(std::uint16_t port, const ConnectOptions& options) {
  Client c;
  c.fd_.reset(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!c.fd_) throw_errno("socket");
  if (options.rcvbuf > 0 &&
      ::setsockopt(c.fd_.get(), SOL_SOCKET, SO_RCVBUF, &options.rcvbuf, sizeof options.rcvbuf) != 0) {
    throw_errno("setsockopt(SO_RCVBUF)");
  }
  const int one = 1;
  if (options.nodelay && ::setsockopt(c.fd_.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0) {
    throw_errno("setsockopt(TCP_NODELAY)");
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(c.fd_.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0) {
    c.connecting_ = false;
  } else if (errno == EINPROGRESS) {
    c.connecting_ = true;
  } else {
    throw_errno("connect to 127.0.0.1:" + std::to_string(port));
  }
  c.label_ = "client(fd " + std::to_string(c.fd_.get()) + ")";
  return c;
}

bool Client::try_take_id() {
  if (id_) return true;
  if (connecting_) return false;
  if (available() >= 4) {
    id_ = from_be32(take(4));
    label_ = "client " + std::to_string(*id_);
    return true;
  }
  if (end_ != End::open) {
    throw HarnessError(where() + ": the server ended the connection before sending an ID (" +
                       std::string(end_name(end_)) + " after " + std::to_string(available()) + " bytes)");
  }
  return false;
}

Client Client::connect(std::uint16_t port, Deadline deadline, const ConnectOptions& options) {
  Client c = start_connect(port, options);
  const bool ok = pump({&c}, deadline, [&] { return options.read_id ? c.try_take_id() : !c.connecting_; });
  if (!ok) {
    throw HarnessError(c.where() + (c.connecting_ ? ": connect did not complete" : ": no ID") +
                       " before the deadline");
  }
  return c;
}

std::vector<Client> Client::connect_many(std::uint16_t port, std::size_t n, Deadline deadline,
                                         std::size_t batch) {
  std::vector<Client> clients;
  clients.reserve(n);
  std::vector<Client*> in_flight;
  while (clients.size() < n) {
    in_flight.clear();
    const auto first = clients.size();
    for (auto i = first; i < std::min(n, first + batch); ++i) clients.push_back(start_connect(port, {}));
    for (auto i = first; i < clients.size(); ++i) in_flight.push_back(&clients[i]);
    std::size_t with_id = 0;
    const bool ok = pump(in_flight, deadline, [&] {
      with_id = 0;
      for (Client* c : in_flight) with_id += c->try_take_id() ? 1 : 0;
      return with_id == in_flight.size();
    });
    if (!ok) {
      throw HarnessError("connect_many: only " + std::to_string(first + with_id) + " of " +
                         std::to_string(n) + " clients were connected and had their ID before the deadline");
    }
  }
  return clients;
}

std::uint32_t Client::id() const {
  if (!id_) throw HarnessError(where() + ": no ID read yet");
  return *id_;
}

std::string Client::where() const {
  std::string s = label_;
  s += " [inbox " + std::to_string(available()) + " bytes, inbound " + std::string(end_name(end_));
  if (outbox_size() > 0) s += ", outbox " + std::to_string(outbox_size()) + " bytes";
  if (write_error_ != 0) s += ", send failed: " + error_text(write_error_);
  return s + "]";
}

void Client::queue(std::string_view bytes) {
  if (!fd_) throw HarnessError(where() + ": queue on a closed client");
  if (out_head_ == out_.size()) {
    out_.clear();
    out_head_ = 0;
  }
  out_.append(bytes);
}

void Client::flush(Deadline deadline) {
  const bool ok = pump({this}, deadline, [&] { return outbox_size() == 0 || write_error_ != 0; });
  if (write_error_ != 0) throw HarnessError(where() + ": could not send its outbox");
  if (!ok) throw HarnessError(where() + ": could not send its outbox before the deadline");
}

std::string Client::take(std::size_t n) {
  n = std::min(n, available());
  std::string out = in_.substr(in_head_, n);
  in_head_ += n;
  // Compact only when the consumed part dominates: amortised O(1) per byte.
  if (in_head_ == in_.size()) {
    in_.clear();
    in_head_ = in_scan_ = 0;
  } else if (in_head_ > (std::size_t{1} << 20) && in_head_ > in_.size() / 2) {
    in_.erase(0, in_head_);
    in_scan_ = in_scan_ > in_head_ ? in_scan_ - in_head_ : 0;
    in_head_ = 0;
  }
  return out;
}

bool Client::has_frame() {
  const auto from = std::max(in_scan_, in_head_);
  const auto nul = in_.find('\0', from);
  if (nul == std::string::npos) {
    in_scan_ = in_.size();
    return false;
  }
  in_scan_ = nul;
  return true;
}

std::optional<std::string> Client::take_frame() {
  if (!has_frame()) return std::nullopt;
  std::string payload = take(in_scan_ - in_head_);
  take(1);  // the NUL
  return payload;
}

std::string Client::read_exact(std::size_t n, Deadline deadline) {
  pump({this}, deadline, [&] { return available() >= n || end_ != End::open; });
  if (available() < n) {
    throw HarnessError(where() + ": wanted " + std::to_string(n) + " bytes, got " +
                       std::to_string(available()) +
                       (end_ == End::open ? " before the deadline" : " then " + std::string(end_name(end_))));
  }
  return take(n);
}

std::string Client::read_frame(Deadline deadline) {
  pump({this}, deadline, [&] { return has_frame() || end_ != End::open; });
  if (auto f = take_frame()) return *std::move(f);
  throw HarnessError(where() + ": wanted a frame, got " + std::to_string(available()) +
                     " bytes without a NUL" +
                     (end_ == End::open ? " before the deadline" : " then " + std::string(end_name(end_))));
}

Client::Closing Client::read_until_close(Deadline deadline) {
  reading_ = true;
  pump({this}, deadline, [&] { return end_ != End::open; });
  return {take_all(), end_};
}

void Client::shutdown_write() {
  if (::shutdown(fd_.get(), SHUT_WR) != 0) throw_errno(where() + ": shutdown");
}

void Client::close() {
  fd_.reset();
}

void Client::abort() {
  const linger reset_on_close{1, 0};
  if (::setsockopt(fd_.get(), SOL_SOCKET, SO_LINGER, &reset_on_close, sizeof reset_on_close) != 0) {
    throw_errno(where() + ": setsockopt(SO_LINGER)");
  }
  fd_.reset();
}

short Client::wanted_events() const {
  if (!fd_) return 0;
  if (connecting_) return POLLOUT;
  short events = 0;
  if (reading_ && end_ == End::open) events |= POLLIN;
  if (outbox_size() > 0 && write_error_ == 0) events |= POLLOUT;
  return events;
}

void Client::on_ready(short revents) {
  if (connecting_) {
    int err = 0;
    socklen_t len = sizeof err;
    if (::getsockopt(fd_.get(), SOL_SOCKET, SO_ERROR, &err, &len) != 0) throw_errno(where() + ": getsockopt");
    if (err != 0) {
      errno = err;
      throw_errno(where() + ": connect");
    }
    connecting_ = false;
    last_send_ = Clock::now();
    return;
  }
  if ((revents & (POLLIN | POLLHUP | POLLERR)) != 0 && reading_ && end_ == End::open) read_some();
  if ((revents & (POLLOUT | POLLHUP | POLLERR)) != 0 && outbox_size() > 0 && write_error_ == 0) write_some();
}

void Client::read_some() {
  static thread_local char buf[65536];
  // A bounded number of reads per turn, so one busy client cannot starve
  // the others pumped with it.
  for (int i = 0; i < 16; ++i) {
    const ssize_t n = ::recv(fd_.get(), buf, sizeof buf, 0);
    if (n > 0) {
      in_.append(buf, static_cast<std::size_t>(n));
      if (static_cast<std::size_t>(n) < sizeof buf) return;
    } else if (n == 0) {
      end_ = End::eof;
      return;
    } else if (errno == EINTR) {
      continue;
    } else if (errno == EAGAIN) {
      return;
    } else if (errno == ECONNRESET) {
      end_ = End::reset;
      return;
    } else {
      throw_errno(where() + ": recv");
    }
  }
}

void Client::write_some() {
  while (outbox_size() > 0) {
    const ssize_t n = ::send(fd_.get(), out_.data() + out_head_, outbox_size(), MSG_NOSIGNAL);
    if (n > 0) {
      out_head_ += static_cast<std::size_t>(n);
      bytes_sent_ += static_cast<std::uint64_t>(n);
      last_send_ = Clock::now();
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && errno == EAGAIN) {
      break;
    } else if (n < 0 && (errno == EPIPE || errno == ECONNRESET)) {
      write_error_ = errno;
      break;
    } else {
      throw_errno(where() + ": send");
    }
  }
  if (out_head_ == out_.size()) {
    out_.clear();
    out_head_ = 0;
  } else if (out_head_ > (std::size_t{1} << 20) && out_head_ > out_.size() / 2) {
    out_.erase(0, out_head_);
    out_head_ = 0;
  }
}

bool pump(std::span<Client* const> clients, Deadline deadline, const std::function<bool()>& done) {
  std::vector<pollfd> fds;
  std::vector<Client*> owners;
  for (;;) {
    if (done()) return true;
    fds.clear();
    owners.clear();
    for (Client* c : clients) {
      if (const short events = c->wanted_events(); events != 0) {
        fds.push_back({c->fd(), events, 0});
        owners.push_back(c);
      }
    }
    if (fds.empty()) return false;  // nothing can change any more
    const int n = ::poll(fds.data(), fds.size(), poll_timeout(deadline));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw_errno("poll");
    for (std::size_t i = 0; i < fds.size(); ++i) {
      if (fds[i].revents != 0) owners[i]->on_ready(fds[i].revents);
    }
    if (n == 0 && Clock::now() >= deadline) return done();
  }
}

void round_trip(Client& a, Client& b, std::string_view tag, Deadline deadline,
                std::span<Client* const> background) {
  std::vector<Client*> all{&a, &b};
  all.insert(all.end(), background.begin(), background.end());
  const auto one_way = [&](Client& from, Client& to, const std::string& payload) {
    from.queue_frame(to.id(), payload);
    pump(all, deadline, [&] { return to.has_frame() || to.end() != Client::End::open; });
    const auto got = to.take_frame();
    if (!got) throw HarnessError(to.where() + ": did not receive \"" + payload + "\" from " + from.label());
    if (*got != payload) {
      throw HarnessError(to.where() + ": expected \"" + payload + "\" from " + from.label() + ", got \"" +
                         got->substr(0, 200) + "\" (" + std::to_string(got->size()) + " bytes)");
    }
  };
  one_way(a, b, std::string(tag) + ": " + a.label() + " to " + b.label());
  one_way(b, a, std::string(tag) + ": " + b.label() + " answers " + a.label());
}

// ---------------------------------------------------------------------------
// Fixture

std::string engine_test_name(const ::testing::TestParamInfo<std::string_view>& info) {
  std::string name(info.param);
  for (auto& c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  }
  return name;
}

namespace {
template <std::size_t N>
std::vector<std::string_view> with_sharded4(const std::array<std::string_view, N>& names) {
  std::vector<std::string_view> params;
  for (std::string_view e : names) {
    params.push_back(e);
    if (e == "sharded") params.push_back(kSharded4);
  }
  return params;
}
}  // namespace

std::vector<std::string_view> every_engine_param() {
  return with_sharded4(engines::kEngineNames);
}

std::vector<std::string_view> isolating_engine_params() {
  return with_sharded4(engines::kIsolatingEngines);
}

bool isolates_slow_consumers(std::string_view engine) {
  return std::find(engines::kIsolatingEngines.begin(), engines::kIsolatingEngines.end(), engine) !=
         engines::kIsolatingEngines.end();
}

std::vector<std::string_view> blocking_engines() {
  std::vector<std::string_view> names;
  for (std::string_view e : engines::kEngineNames) {
    if (!isolates_slow_consumers(e)) names.push_back(e);
  }
  return names;
}

std::vector<std::string> EngineTest::serve_args(const std::vector<std::string>& extra,
                                                const std::string& listen) const {
  std::vector<std::string> args = {"serve", "--listen", listen, "--engine", engine()};
  args.insert(args.end(), extra.begin(), extra.end());
  // The sharded engine's shard count is the parameter's, not the machine's
  // (unless the test chose one).
  if (engine() == "sharded" && std::find(extra.begin(), extra.end(), "--threads") == extra.end()) {
    args.insert(args.end(), {"--threads", GetParam() == kSharded4 ? "4" : "2"});
  }
  return args;
}

EngineTest::EngineTest() = default;
EngineTest::~EngineTest() = default;

ServerProcess& EngineTest::start_server(const std::vector<std::string>& extra, const std::string& listen) {
  if (server_) throw HarnessError("one server per test");
  if (!clustered()) return start_one(serve_args(extra, listen), SWITCHBOARD_BIN);
  if (listen != "127.0.0.1:0") throw HarnessError("a cluster's nodes listen on free ports");
  redis_ = std::make_unique<RedisServer>(RedisServer::start());
  std::vector<std::string> node_extra = extra;
  node_extra.insert(node_extra.end(), {"--cluster", redis_->url("itest"), "--cluster-lease", "2s"});
  if (engine() == "sharded") node_extra.insert(node_extra.end(), {"--threads", "2"});
  server_.emplace(ServerProcess::start(serve_args(node_extra, listen)));
  for (std::size_t i = 1; i < kClusterNodes; ++i) nodes_.push_back(ServerProcess::start(serve_args(node_extra, listen)));
  std::vector<ServerProcess*> all{&*server_};
  for (ServerProcess& n : nodes_) all.push_back(&n);
  wait_for_joins(all);
  return *server_;
}

ServerProcess& EngineTest::start_measured_server(const std::vector<std::string>& extra) {
  if (server_) throw HarnessError("one server per test");
  if (clustered()) throw HarnessError("memory is measured on one server, not a cluster");
  return start_one(serve_args(extra), measured_server_binary());
}

ServerProcess& EngineTest::start_one(const std::vector<std::string>& args, const std::string& program) {
  server_.emplace(ServerProcess::start(args, kStartTimeout, program));
  EXPECT_EQ(server_->engine(), engine()) << "listening line: " << server_->listening_line();
  return *server_;
}

ServerProcess& EngineTest::server() {
  if (!server_) throw HarnessError("no server started");
  return *server_;
}

std::vector<ServerProcess*> EngineTest::servers() {
  std::vector<ServerProcess*> all{&server()};
  for (ServerProcess& node : nodes_) all.push_back(&node);
  return all;
}

Client EngineTest::connect(const ConnectOptions& options) {
  if (!clustered()) return Client::connect(server().port(), after(kIoTimeout), options);
  const std::size_t i = next_node_++ % kClusterNodes;
  return Client::connect(i == 0 ? server().port() : nodes_.at(i - 1).port(), after(kIoTimeout), options);
}

Client EngineTest::connect_on_shard(unsigned shard, const ConnectOptions& options) {
  if (!sharded()) return connect(options);
  for (int attempt = 0; attempt < 64; ++attempt) {
    Client c = connect(options);
    if (shard_of(c.id(), shards()) == shard % shards()) return c;
  }
  throw HarnessError("no connection in 64 landed on shard " + std::to_string(shard % shards()));
}

std::vector<Client> EngineTest::connect_many(std::size_t n) {
  const Deadline deadline = after(kIoTimeout + std::chrono::milliseconds(n * 4));
  if (!clustered()) return Client::connect_many(server().port(), n, deadline);
  // n / 3 on each node, handed out in turn: client i is on node i % 3.
  std::vector<std::vector<Client>> per_node;
  for (std::size_t i = 0; i < kClusterNodes; ++i) {
    const std::uint16_t port = i == 0 ? server().port() : nodes_.at(i - 1).port();
    per_node.push_back(Client::connect_many(port, (n + kClusterNodes - 1 - i) / kClusterNodes, deadline));
  }
  std::vector<Client> all;
  all.reserve(n);
  for (std::size_t k = 0; all.size() < n; ++k) all.push_back(std::move(per_node[k % kClusterNodes][k / kClusterNodes]));
  return all;
}

void EngineTest::check_clean_exit(const ExitInfo& info) {
  EXPECT_TRUE(info.clean()) << "the server should exit with code 0 after SIGTERM; it ended with "
                            << info.describe() << "; stderr:\n"
                            << tail(info.stderr_text);
  EXPECT_EQ(info.stdout_text, "") << "the server's only stdout output should be its listening line";
  ASSERT_TRUE(info.stats.has_value()) << "no \"stats: \" line in the server's stderr:\n"
                                      << tail(info.stderr_text);
  for (const auto name : kStatNames) {
    EXPECT_TRUE(info.stats->contains(name)) << "the stats line lacks \"" << name << "\"";
  }
  if (info.stats->contains("live")) {
    EXPECT_EQ(info.stat("live"), 0u) << "clients still live after the stop";
  }
}

ExitInfo EngineTest::stop_server() {
  ExitInfo info = server().stop();
  check_clean_exit(info);
  for (ServerProcess& node : nodes_) {
    const ExitInfo other = node.stop();
    check_clean_exit(other);
    if (!info.stats || !other.stats) continue;
    for (const auto& [name, value] : *other.stats) {
      auto& sum = (*info.stats)[name];
      sum = name.starts_with("peak_") ? std::max(sum, value) : sum + value;
    }
  }
  return info;
}

ExitInfo EngineTest::wait_server_exit(Deadline deadline) {
  if (clustered()) throw HarnessError("wait_server_exit: not for a cluster (signal every node)");
  auto info = server().wait_exit(deadline);
  if (!info) throw HarnessError("the server did not exit in time; stderr:\n" + tail(server().stderr_text()));
  check_clean_exit(*info);
  return *info;
}

void EngineTest::expect_only_eof(Client& c) {
  const auto closing = c.read_until_close(after(kIoTimeout));
  EXPECT_TRUE(same_bytes("", closing.data)) << c.label() << " received bytes it was never sent";
  EXPECT_EQ(closing.how, Client::End::eof) << c.label() << ": " << end_name(closing.how);
}

void EngineTest::TearDown() {
  if (!server_) return;
  if (HasFailure()) {
    std::cerr << "---- switchboard stderr (" << server_->listening_line() << ") ----\n"
              << tail(server_->stderr_text()) << "---- end of switchboard stderr ----\n";
    for (const ServerProcess& node : nodes_) {
      std::cerr << "---- switchboard stderr (" << node.listening_line() << ") ----\n"
                << tail(node.stderr_text()) << "---- end of switchboard stderr ----\n";
    }
  }
  server_.reset();  // kills it if the test did not stop it
  nodes_.clear();
  redis_.reset();
}

}  // namespace sb::itest
