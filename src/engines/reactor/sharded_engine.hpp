// The `sharded` engine: one reactor per core (DESIGN.md section 4, as
// Seastar's shard-per-core).
//
// N shards, one thread each, each a ReactorEngine in shard mode with its own
// SO_REUSEPORT listener on the same address, its own loop, router, pools and
// clients: the kernel spreads new connections over the listeners, and a
// client lives on the shard that accepted it. An ID names its shard (its top
// bits), so routing needs no table shared between threads. A frame for a
// client of another shard goes into that shard's batch in the router, and
// once per loop turn every batch is handed to the destination shard over a
// bounded single-producer/single-consumer ring (one per ordered pair of
// shards), with an eventfd wake-up only when that shard's loop sleeps. The
// destination's shard applies the slow-consumer policy; under backpressure
// it pauses just the one sender on its shard, with a message back through
// the rings. A full ring pauses the senders that feed it; nothing blocks a
// thread, spins or drops.
//
// The engine's own thread owns the process: it binds the listeners, blocks
// the signals before any shard starts (so every thread inherits the mask),
// and waits for them with sigtimedwait: SIGINT/SIGTERM drain every shard (a
// second one stops them at once), SIGUSR1 logs the counters summed over the
// shards (each shard's at debug), SIGHUP re-reads the token file.
#pragma once

#include <atomic>
#include <memory>
#include <vector>

#include "engines/engine.hpp"
#include "engines/reactor/reactor_engine.hpp"
#include "engines/reactor/shard_set.hpp"

namespace sb::engines::reactor {

class ShardedEngine final : public Engine {
 public:
  explicit ShardedEngine(ServerOptions options);
  ~ShardedEngine() override;

  int run() override;
  // The counters of every shard summed. While run() runs, any thread
  // (--metrics): each shard adds its own on its thread; afterwards, the
  // final ones.
  core::Stats stats() const override;

  // How many shards `threads` asks for (0: one per core), within 1..4096.
  static unsigned shard_count(unsigned threads) noexcept;

 private:
  core::Stats collect_stats(bool log_each) const;
  std::vector<std::string> read_tokens(bool at_start);

  ServerOptions options_;
  unsigned count_;
  std::unique_ptr<ShardSet> set_;
  std::vector<std::unique_ptr<ShardLink>> links_;
  std::vector<std::unique_ptr<ReactorEngine>> shards_;
  core::Stats stats_;
  std::atomic<bool> running_{false};
};

}  // namespace sb::engines::reactor
