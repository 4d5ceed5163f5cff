// A redis-server of the test's own, for the cluster tests: started on a
// free loopback port without persistence, stopped by its PID (the
// ServerProcess it runs as kills it if the test does not).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "harness.hpp"

namespace sb::itest {

inline constexpr const char* kRedisServer = "/usr/bin/redis-server";

class RedisServer {
 public:
  // Starts redis-server on 127.0.0.1:port (0: a free one) with `extra`
  // arguments (e.g. {"--client-output-buffer-limit", "pubsub 64kb 0 0"})
  // and waits until it answers PING. Throws HarnessError.
  static RedisServer start(std::uint16_t port = 0, const std::vector<std::string>& extra = {});

  std::uint16_t port() const { return port_; }
  // redis://127.0.0.1:PORT/NAME, for serve --cluster.
  std::string url(std::string_view name) const;
  bool running() const { return process_ && process_->running(); }
  // SIGKILL, by PID, and reap.
  void kill();
  // Starts it again on the same port, with the same arguments.
  void restart();
  // One command; its reply as text (integers in decimal, arrays joined by
  // newlines, nil as ""). Throws HarnessError if Redis does not answer.
  std::string command(const std::vector<std::string>& args) const;

 private:
  RedisServer() = default;
  void launch();
  std::optional<ServerProcess> process_;
  std::uint16_t port_ = 0;
  std::vector<std::string> extra_;
};

// Cluster nodes learn of each other through Redis, a moment after each
// listens: waits (bounded) until every node in `nodes` has logged that every
// other one joined, so that a test's first frame across nodes is not
// no_route. Throws HarnessError at the deadline.
void wait_for_joins(const std::vector<ServerProcess*>& nodes);

}  // namespace sb::itest
