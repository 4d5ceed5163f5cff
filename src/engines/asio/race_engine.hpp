// `race`: the article's "Race (select)" design, on Boost.Asio C++20
// coroutines and one thread.
//
// One coroutine owns all state: the listener, and every client's socket,
// decoder and output buffer. Each turn it races accept, every client's read
// and every pending write (experimental::make_parallel_group over the whole
// set, wait_for_one), then handles whatever completed with exclusive access
// to that state, and loops. The raced operations hold no reference to the
// state: a read reads into a buffer of its own, a write writes the client's
// output buffer, moved into it and handed back with its result.
//
// Slow consumers: a client's output buffer is bounded by max_pending, with
// the policies of DESIGN.md section 3 (backpressure stops racing the reads of
// the senders that wait on a full destination until it drains below half,
// and closes it after stall_timeout without progress). The cost of the
// design: every turn starts and cancels an operation per client, as the
// article's select_all rebuilt each time does.
//
// Thread: run() is called once and runs everything on the calling thread.
// stats() may be called from any thread.
#pragma once

#include "engines/asio/asio_engine.hpp"

namespace sb::engines::asio_engines {

class RaceEngine final : public AsioEngine {
 public:
  using AsioEngine::AsioEngine;
  int run() override;
};

}  // namespace sb::engines::asio_engines
