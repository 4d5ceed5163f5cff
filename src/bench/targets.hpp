// What the bench measures: a switchboard engine it starts itself, a
// switchboard server already running at an address, a cluster of two
// switchboard nodes and the Redis that joins them, or a NATS or Redis
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

// cluster: two `serve --engine reactor --cluster` nodes and the
// redis-server they share; senders connect to one node, receivers to the
// other, so that every message crosses from node to node through Redis.
enum class TargetKind { engine, address, nats, redis, cluster };

struct TargetSpec {
  std::string label;  // as the table shows it: "reactor", "addr:127.0.0.1:8080", "cluster", "nats", "redis"
  TargetKind kind = TargetKind::engine;
  std::string engine;     // kind == engine
  net::Endpoint address;  // kind == address
  int version = 1;        // switchboard targets: the protocol the bench's clients speak (--protocol)
  PeerProtocol protocol() const noexcept;
  // Its clients speak switchboard's protocol (v1 or v2): engines, addresses, the cluster.
  bool switchboard() const noexcept;
};

inline constexpr const char* kNatsServer = "/usr/sbin/nats-server";
inline constexpr const char* kRedisServer = "/usr/bin/redis-server";

// Words from --target, each possibly comma-separated. "engines" (or
// "all-engines") stands for every name in engines::kEngineNames, "all" for
// those plus nats, redis and cluster (not an engine: it is not in
// "engines"). Throws std::invalid_argument naming the word and the
// accepted forms.
std::vector<TargetSpec> parse_targets(const std::vector<std::string>& words);

// Flags passed on to a switchboard engine the bench starts.
struct ServerFlags {
  std::string max_pending;             // empty: the server's default
  std::string slow_consumer;           // empty: the server's default
  std::uint32_t redis_maxclients = 0;  // 0: Redis' default (10000)
  std::uint32_t shards = 1;            // the sharded engine's --threads
};

// The peer's program is not installed: the run is reported as skipped,
// never faked. A target that is there but does not start or answer is a
// failed run (std::runtime_error).
struct TargetUnavailable : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// One process the bench started for a target, as the figures name it.
struct ServerProcessInfo {
  std::string role;  // "server"; cluster: "node A", "node B", "redis-server"
  pid_t pid = -1;
  std::vector<std::string> command;
  std::string log_path;
};

// A target ready to take connections. Owns the processes it started (one
// server; a cluster's redis-server and two nodes): stop() (or the
// destructor) sends SIGTERM to each of those PIDs, nodes before Redis, and
// reaps them.
class RunningTarget {
 public:
  // `log_path` is the server's log; a cluster's processes log to it with
  // "-redis", "-node-a", "-node-b" before its extension.
  static RunningTarget start(const TargetSpec& spec, const ServerFlags& flags, const std::string& log_path);

  RunningTarget() = default;
  RunningTarget(RunningTarget&&) = default;
  RunningTarget& operator=(RunningTarget&&) = default;
  RunningTarget(const RunningTarget&) = delete;
  RunningTarget& operator=(const RunningTarget&) = delete;
  ~RunningTarget() { (void)stop(); }

  // Where the bench's clients connect; with a receiver endpoint, only the
  // senders do.
  const net::Endpoint& endpoint() const noexcept { return endpoint_; }
  // Cluster: node B, where every receiver connects; nullopt for any other
  // target (everything connects to endpoint()).
  const std::optional<net::Endpoint>& receiver_endpoint() const noexcept { return receiver_endpoint_; }
  // Every process the bench started for this target, in start order (none
  // for an address target). Server RSS and CPU are their sums.
  std::vector<ServerProcessInfo> processes() const;
  // False once any of its processes has ended.
  bool alive();
  // Stops what the bench started, last started first, and returns how it
  // ended ("exit 0"; for several processes "node B exit 0, node A exit 0,
  // redis-server exit 0"); "" for an address target.
  std::string stop();
  // The log file, or the cluster's log files comma-separated; "" for an address target.
  std::string logs() const;
  // The server's command line (cluster: node A's; processes() has each).
  std::vector<std::string> command() const;

 private:
  struct Process {
    ServerProcessInfo info;
    ChildProcess child;
  };
  net::Endpoint launch(ServerProcessInfo info, std::optional<net::Endpoint> answers_at);
  net::Endpoint endpoint_;
  std::optional<net::Endpoint> receiver_endpoint_;
  std::vector<Process> processes_;
};

}  // namespace sb::bench
