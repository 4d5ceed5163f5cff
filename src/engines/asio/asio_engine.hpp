// What the four Asio engines share as objects: their options and the
// counters their coroutines update from any thread. Each engine adds run().
//
// Thread: stats() may be called from any thread. Includes no Boost header.
#pragma once

#include <memory>

#include "core/stats.hpp"
#include "engines/engine.hpp"

namespace sb::engines::asio_engines {

class AtomicStats;

class AsioEngine : public Engine {
 public:
  explicit AsioEngine(ServerOptions options);
  ~AsioEngine() override;
  AsioEngine(const AsioEngine&) = delete;
  AsioEngine& operator=(const AsioEngine&) = delete;
  AsioEngine(AsioEngine&&) = delete;
  AsioEngine& operator=(AsioEngine&&) = delete;

  core::Stats stats() const final;

 protected:
  ServerOptions options_;
  std::unique_ptr<AtomicStats> stats_;
};

}  // namespace sb::engines::asio_engines
