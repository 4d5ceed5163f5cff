// What the bench measures: a switchboard engine it starts itself, a
// switchboard server already running at an address, or a NATS or Redis
// server it starts as a reference point. Main thread only.
#pragma once

#include <sys/types.h>

#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench/peer_protocols.hpp"
#include "bench/process.hpp"
#include "net/socket.hpp"

namespace sb::bench {

enum class TargetKind { engine, address, nats, redis };

struct TargetSpec {
  std::string label;  // as the table shows it: "reactor", "addr:127.0.0.1:8080", "nats", "redis"
  TargetKind kind = TargetKind::engine;
  std::string engine;     // kind == engine
  net::Endpoint address;  // kind == address
  int version = 1;        // switchboard targets: the protocol the bench's clients speak (--protocol)
  PeerProtocol protocol() const noexcept;
};

inline constexpr const char* kNatsServer = "/usr/sbin/nats-server";
inline constexpr const char* kRedisServer = "/usr/bin/redis-server";

// Words from --target, each possibly comma-separated. "engines" (or
// "all-engines") stands for every name in engines::kEngineNames, "all" for
// those plus nats and redis. Throws
// std::invalid_argument naming the word and the accepted forms.
std::vector<TargetSpec> parse_targets(const std::vector<std::string>& words);

// Flags passed on to a switchboard engine the bench starts.
struct ServerFlags {
  std::string max_pending;             // empty: the server's default
  std::string slow_consumer;           // empty: the server's default
  std::uint32_t redis_maxclients = 0;  // 0: Redis' default (10000)
};

// The peer's program is not installed: the run is reported as skipped,
// never faked. A target that is there but does not start or answer is a
// failed run (std::runtime_error).
struct TargetUnavailable : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// A target ready to take connections. For a spawned server, owns the
// process: stop() (or the destructor) sends SIGTERM to that PID and reaps it.
class RunningTarget {
 public:
  static RunningTarget start(const TargetSpec& spec, const ServerFlags& flags, const std::string& log_path);

  const net::Endpoint& endpoint() const noexcept { return endpoint_; }
  // The server's PID when the bench started it (RSS figures need it).
  std::optional<pid_t> pid() const noexcept;
  bool alive();
  // Stops a spawned server and returns how it ended ("exit 0", ...); "" for
  // an address target.
  std::string stop();
  const std::string& log_path() const noexcept { return log_path_; }
  const std::vector<std::string>& command() const noexcept { return command_; }

 private:
  net::Endpoint endpoint_;
  std::optional<ChildProcess> child_;
  std::string log_path_;
  std::vector<std::string> command_;
};

}  // namespace sb::bench
