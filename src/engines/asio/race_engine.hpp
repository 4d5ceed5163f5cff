// `race`: the article's "Race (select)" design, on Boost.Asio and one
// coroutine on one thread.
//
// One task owns all state: the listener, every client's socket and decoder,
// and the core::Router (IDs, queues, slow-consumer policies, v2, auth). It
// races accept, every client's read, every pending write, the signals and a
// tick, handles whatever completed with exclusive access to that state, and
// loops. Exclusive access is the reactor's condition, so the task drives the
// same core::Router and protocol::FrameDecoder as the `reactor` engine, with
// the same handling of every route result, decode error, half-close and
// action: the designs differ only in how they wait.
//
// How it waits: every raced operation stays outstanding from one turn to
// the next (one readiness wait per client that is being read, one per
// client with unwritten output, one on the listener, one on the signals),
// and a completion pushes its tag into a ready queue that the task consumes
// (what tokio's FuturesUnordered does for select_all). A turn costs what
// completed, not an operation per client as the article's select_all,
// rebuilt every loop, does.
//
// Thread: run() is called once and runs everything on the calling thread.
// stats() is for after run() has returned.
#pragma once

#include <atomic>
#include <mutex>

#include "core/router.hpp"
#include "engines/engine.hpp"

namespace sb::engines::asio_engines {

class RaceEngine final : public Engine {
 public:
  explicit RaceEngine(ServerOptions options);
  ~RaceEngine() override;
  RaceEngine(const RaceEngine&) = delete;
  RaceEngine& operator=(const RaceEngine&) = delete;
  RaceEngine(RaceEngine&&) = delete;
  RaceEngine& operator=(RaceEngine&&) = delete;

  int run() override;
  // While run() runs, any thread (--metrics): the counters as of the task's
  // last turn (published only with --metrics); afterwards, the final ones.
  core::Stats stats() const override;

 private:
  class Loop;  // the task and everything it owns besides the router (race_engine.cpp)

  ServerOptions options_;
  core::Router router_;
  mutable std::mutex published_mu_;
  core::Stats published_;
  std::atomic<bool> running_{false};
};

}  // namespace sb::engines::asio_engines
