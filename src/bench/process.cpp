#include "bench/process.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <utility>

#include "net/fd.hpp"

namespace sb::bench {

ChildProcess::ChildProcess(ChildProcess&& o) noexcept
    : pid_{std::exchange(o.pid_, -1)}, exit_{std::move(o.exit_)} {}

ChildProcess& ChildProcess::operator=(ChildProcess&& o) noexcept {
  if (this != &o) {
    if (pid_ > 0) stop();
    pid_ = std::exchange(o.pid_, -1);
    exit_ = std::move(o.exit_);
  }
  return *this;
}

ChildProcess::~ChildProcess() {
  if (pid_ > 0) stop();
}

ChildProcess ChildProcess::spawn(const std::vector<std::string>& argv, const std::string& log_path,
                                 bool inherit_stderr) {
  if (argv.empty()) throw std::runtime_error("spawn: empty command");
  // Prepared before fork: the child of a multi-threaded parent may only make
  // async-signal-safe calls.
  std::vector<char*> args;
  args.reserve(argv.size() + 1);
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const int log_fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (log_fd < 0) throw std::runtime_error("cannot create " + log_path + ": " + errno_text(errno));
  // A pipe whose write end closes on exec: if exec fails the child writes
  // errno into it, so the parent can tell "could not start" from "exited".
  int status_pipe[2];
  if (::pipe2(status_pipe, O_CLOEXEC) != 0) {
    ::close(log_fd);
    throw std::runtime_error(std::string("pipe: ") + errno_text(errno));
  }
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) {
    const int err = errno;
    ::close(log_fd);
    ::close(status_pipe[0]);
    ::close(status_pipe[1]);
    throw std::runtime_error(std::string("fork: ") + errno_text(err));
  }
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) ::_exit(127);  // the bench died before prctl took effect
    ::dup2(log_fd, STDOUT_FILENO);
    if (!inherit_stderr) ::dup2(log_fd, STDERR_FILENO);
    (void)::signal(SIGPIPE, SIG_DFL);  // undo the bench's SIG_IGN for the server
    ::execv(args[0], args.data());
    const int err = errno;
    [[maybe_unused]] auto n = ::write(status_pipe[1], &err, sizeof err);
    ::_exit(127);
  }
  ::close(log_fd);
  ::close(status_pipe[1]);
  int err = 0;
  ssize_t n = 0;
  do {
    n = ::read(status_pipe[0], &err, sizeof err);
  } while (n < 0 && errno == EINTR);
  ::close(status_pipe[0]);
  ChildProcess child;
  child.pid_ = pid;
  if (n == static_cast<ssize_t>(sizeof err)) {
    int status = 0;
    ::waitpid(pid, &status, 0);
    child.pid_ = -1;
    throw std::runtime_error("cannot run " + argv[0] + ": " + errno_text(err));
  }
  return child;
}

void ChildProcess::record_status(int status) {
  if (WIFEXITED(status)) {
    exit_ = "exit " + std::to_string(WEXITSTATUS(status));
  } else if (WIFSIGNALED(status)) {
    exit_ = "signal " + std::to_string(WTERMSIG(status));
  } else {
    exit_ = "status " + std::to_string(status);
  }
  pid_ = -1;
}

bool ChildProcess::running() {
  if (pid_ <= 0) return false;
  int status = 0;
  const pid_t r = ::waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    record_status(status);
    return false;
  }
  return true;
}

std::string ChildProcess::stop(std::chrono::milliseconds grace) {
  if (!running()) return exit_;
  ::kill(pid_, SIGTERM);
  const auto deadline = std::chrono::steady_clock::now() + grace;
  while (std::chrono::steady_clock::now() < deadline) {
    if (!running()) return exit_;
    std::this_thread::sleep_for(std::chrono::milliseconds{10});
  }
  ::kill(pid_, SIGKILL);
  int status = 0;
  ::waitpid(pid_, &status, 0);
  record_status(status);
  exit_ += " (killed after " + std::to_string(grace.count()) + " ms: SIGTERM did not stop it)";
  return exit_;
}

std::optional<MemorySample> read_memory(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  if (!in) return std::nullopt;
  MemorySample s;
  bool rss = false;
  bool hwm = false;
  std::string line;
  while (std::getline(in, line)) {
    std::uint64_t kib = 0;
    if (std::sscanf(line.c_str(), "VmRSS: %lu kB", &kib) == 1) {
      s.rss_kib = kib;
      rss = true;
    } else if (std::sscanf(line.c_str(), "VmHWM: %lu kB", &kib) == 1) {
      s.hwm_kib = kib;
      hwm = true;
    }
  }
  if (!rss || !hwm) return std::nullopt;  // a zombie has no Vm* lines
  return s;
}

std::optional<double> process_cpu_seconds(pid_t pid) {
  const std::string stat = read_text_file("/proc/" + std::to_string(pid) + "/stat");
  // The command name (field 2) may hold spaces and parentheses: fields are
  // counted from the last ')'. utime and stime are fields 14 and 15.
  const auto close = stat.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::istringstream in(stat.substr(close + 1));
  std::string field;
  unsigned long long utime = 0;
  unsigned long long stime = 0;
  for (int i = 3; i <= 15 && in >> field; ++i) {
    if (i == 14) utime = std::stoull(field);
    if (i == 15) stime = std::stoull(field);
  }
  if (!in) return std::nullopt;
  return static_cast<double>(utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

double self_cpu_seconds() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  auto secs = [](const timeval& tv) {
    return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) / 1e6;
  };
  return secs(u.ru_utime) + secs(u.ru_stime);
}

std::uint16_t find_free_port() {
  net::Fd fd{::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)};
  if (!fd) throw std::runtime_error(std::string("socket: ") + errno_text(errno));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    throw std::runtime_error(std::string("bind 127.0.0.1:0: ") + errno_text(errno));
  }
  socklen_t len = sizeof addr;
  ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&addr), &len);
  return ntohs(addr.sin_port);
}

std::string program_version(const std::string& program, const std::string& args) {
  if (::access(program.c_str(), X_OK) != 0) return "";
  const std::string cmd = program + " " + args + " 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) return "";
  char buf[256] = {};
  std::string line;
  if (std::fgets(buf, sizeof buf, p) != nullptr) line = buf;
  ::pclose(p);
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
  return line;
}

std::string errno_text(int err) {
  char buf[256];
  return ::strerror_r(err, buf, sizeof buf);  // the GNU variant: returns the text
}

std::string read_text_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) return "";
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string self_executable() {
  char buf[4096];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) throw std::runtime_error("readlink /proc/self/exe failed");
  return std::string(buf, static_cast<std::size_t>(n));
}

std::vector<std::string> self_command_line() {
  const std::string raw = read_text_file("/proc/self/cmdline");
  std::vector<std::string> args;
  std::size_t start = 0;
  while (start < raw.size()) {
    std::size_t end = raw.find('\0', start);
    if (end == std::string::npos) end = raw.size();
    args.push_back(raw.substr(start, end - start));
    start = end + 1;
  }
  return args;
}

}  // namespace sb::bench
