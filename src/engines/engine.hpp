// What every engine is given and must do. `switchboard serve` builds the
// options from its flags, picks an engine by name and calls run().
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "cluster/cluster.hpp"
#include "core/config.hpp"
#include "core/stats.hpp"
#include "net/socket.hpp"
#include "protocol/wire.hpp"

namespace sb::engines {

struct ServerOptions {
  net::Endpoint listen;
  core::RouterConfig router;
  std::size_t max_frame = protocol::kDefaultMaxFrame;
  std::size_t max_conns = 0;  // 0: derived from the open-files limit
  std::chrono::milliseconds drain_timeout{5000};
  unsigned threads = 0;  // multi-threaded engines: 0 means one per core
  // The sharded engine: bytes in flight in one ring (from one shard to
  // another) before the senders that feed it pause.
  std::size_t ring_bytes = std::size_t{4} << 20;
  // Protocol v2 authentication: a file of tokens, one per line (blanks
  // stripped, empty lines and lines starting with '#' ignored), re-read on
  // SIGHUP. Empty: no authentication. router.auth_required follows it.
  std::string auth_token_file;
  // --metrics HOST:PORT: serve /metrics and /healthz over HTTP, and on the
  // reactor /clients too (docs/OPERATIONS.md). The reactor serves them from
  // its loop; make_engine gives the others a thread of their own for them.
  std::optional<net::Endpoint> metrics;
  // --cluster: this node's lease, taken by `serve` before the engine starts
  // and given back once it has stopped (its number goes into every ID). The
  // reactor and each shard of the sharded engine join the cluster with it;
  // the other engines refuse it.
  std::optional<cluster::Lease> cluster;
  // Called once, from run(), when the listener is bound (port 0 resolved)
  // and before any connection is accepted. Signals are already handled by
  // then, and every thread the engine needs already runs.
  std::function<void(const net::Endpoint&)> on_listening;
  // Called once, from run()'s thread, when SIGINT or SIGTERM starts the
  // drain (systemd's STOPPING=1).
  std::function<void()> on_draining;
};

class Engine {
 public:
  virtual ~Engine() = default;
  // Serves until SIGINT or SIGTERM, then drains queued output for up to
  // drain_timeout and returns the process exit code (0 after a clean stop).
  // Throws net::StartupError when it cannot start (address in use, ...).
  virtual int run() = 0;
  // The counters, complete once run() has returned; the CLI logs them as
  // "stats: name=value ..." (core::Stats::summary) when the server stops.
  virtual core::Stats stats() const = 0;
};

// nullptr for an unknown name (see engine_names.hpp for the known ones).
std::unique_ptr<Engine> make_engine(std::string_view name, const ServerOptions& options);

// The connection limit to use: the configured one, or (when 0) what the
// open-files limit leaves after a margin for the listener, spare fd, epoll
// and logs.
std::size_t effective_max_conns(const ServerOptions& options) noexcept;

}  // namespace sb::engines
