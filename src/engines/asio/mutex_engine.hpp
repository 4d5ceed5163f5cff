// `mutex`: the article's "Mutex" design (its "more correct" version), on
// Boost.Asio C++20 coroutines and a multi-threaded io_context.
//
// A coroutine per connection reads and decodes. The table of write halves is
// shared by all of them behind an async mutex, and a reader holds that lock
// for the whole write of a frame to its destination, so frames are written
// one at a time, server-wide. Under the default backpressure policy a
// destination that does not read stalls every sender (head-of-line
// blocking) until the write completes or stall_timeout closes it; that
// weakness is what this engine exists to show. (disconnect and drop do not
// wait: see FrameWriter in common.hpp.)
//
// Thread: run() is called once; it runs the io_context on
// ServerOptions::threads threads and returns when the server has stopped.
// stats() may be called from any thread.
#pragma once

#include "engines/asio/asio_engine.hpp"

namespace sb::engines::asio_engines {

class MutexEngine final : public AsioEngine {
 public:
  using AsioEngine::AsioEngine;
  int run() override;
};

}  // namespace sb::engines::asio_engines
