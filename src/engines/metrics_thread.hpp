// --metrics for the engines whose counters any thread may read (the Asio
// engines): /metrics and /healthz served by a thread of its own, with a
// net::Loop and the same HttpResponder as the reactor's. /clients is the
// reactor's alone for now (these engines keep no per-client counters).
//
// Thread: construct and destroy from the thread that runs the engine; the
// responder and its loop live on the metrics thread, which blocks every
// signal so that the engine's own handling of SIGINT/SIGTERM is unchanged.
#pragma once

#include <functional>
#include <memory>
#include <thread>

#include "core/stats.hpp"
#include "net/loop.hpp"
#include "net/socket.hpp"

namespace sb::engines {

class MetricsThread {
 public:
  // Binds `where` and starts serving; throws net::StartupError if it cannot.
  // `stats` is called on the metrics thread.
  MetricsThread(const net::Endpoint& where, std::function<core::Stats()> stats);
  ~MetricsThread();  // stops the thread and waits for it
  MetricsThread(const MetricsThread&) = delete;
  MetricsThread& operator=(const MetricsThread&) = delete;

 private:
  std::unique_ptr<net::Loop> loop_;  // created and run by the thread, freed after it is joined
  std::thread thread_;
};

}  // namespace sb::engines
