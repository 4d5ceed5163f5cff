// Child processes the bench starts (servers under test) and what it reads
// about them from /proc. The bench only ever signals a PID it spawned itself
// and has not yet reaped.
//
// Main thread only.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace sb::bench {

class ChildProcess {
 public:
  ChildProcess() = default;
  ChildProcess(ChildProcess&& o) noexcept;
  ChildProcess& operator=(ChildProcess&& o) noexcept;
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  // Stops the child if it still runs (SIGTERM, then SIGKILL) and reaps it.
  ~ChildProcess();

  // Starts argv[0] (a path) with stdout and stderr redirected to `log_path`
  // (or stderr inherited when `inherit_stderr`). The child gets SIGTERM if
  // the bench dies (PR_SET_PDEATHSIG), so no server outlives a crashed run.
  // Throws std::runtime_error if the program cannot be started.
  static ChildProcess spawn(const std::vector<std::string>& argv, const std::string& log_path,
                            bool inherit_stderr);

  pid_t pid() const noexcept { return pid_; }
  bool running();  // false once it has exited (and then it is reaped)
  // How it ended, once reaped: "exit 0", "signal 9", ...
  const std::string& exit_description() const noexcept { return exit_; }
  bool exited_cleanly() const noexcept { return exit_ == "exit 0"; }

  // SIGTERM, wait up to `grace`, then SIGKILL; always reaps. Returns the
  // exit description.
  std::string stop(std::chrono::milliseconds grace = std::chrono::seconds{10});

 private:
  void record_status(int status);
  pid_t pid_ = -1;
  std::string exit_;
};

struct MemorySample {
  std::uint64_t rss_kib = 0;  // VmRSS
  std::uint64_t hwm_kib = 0;  // VmHWM: peak resident set since start
};

// From /proc/PID/status; nullopt if the process is gone or the fields are absent.
std::optional<MemorySample> read_memory(pid_t pid);

// CPU time (user + system) a process has used, from /proc/PID/stat; nullopt
// if it is gone.
std::optional<double> process_cpu_seconds(pid_t pid);
// CPU time of this process, all threads (getrusage).
double self_cpu_seconds();

// A port on 127.0.0.1 that was free a moment ago (bound to port 0, then
// released). Another process could take it before the server binds it; the
// server then fails to start, which the caller reports.
std::uint16_t find_free_port();

// First line of `program --version` (or what `args` give), or "" if it fails.
std::string program_version(const std::string& program, const std::string& args = "--version");

// strerror, but safe to call from any thread (strerror_r).
std::string errno_text(int err);

// Whole file, or "" if unreadable.
std::string read_text_file(const std::string& path);

// The path of the running executable (readlink /proc/self/exe).
std::string self_executable();

// This process's command line as given (/proc/self/cmdline).
std::vector<std::string> self_command_line();

}  // namespace sb::bench
