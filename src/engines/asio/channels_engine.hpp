// `channels`: the article's "Channels" design, on Boost.Asio C++20 coroutines
// and a multi-threaded io_context.
//
// One dispatcher coroutine owns every write half and the client table. Reader
// coroutines (one per connection) send it their write half, every frame they
// decode and their departure, over one bounded channel (channel_router.hpp),
// and it writes each frame to its destination itself, waiting until the
// destination's socket has taken it. No lock anywhere, but still head-of-line blocking: under the default
// backpressure policy, while the dispatcher waits on one slow destination
// the channel fills and every reader waits too, until the write completes
// or stall_timeout closes the destination. (disconnect and drop do not
// wait: see FrameWriter in common.hpp.)
//
// Thread: run() is called once; it runs the io_context on
// ServerOptions::threads threads and returns when the server has stopped.
// stats() may be called from any thread.
#pragma once

#include "engines/asio/asio_engine.hpp"

namespace sb::engines::asio_engines {

class ChannelsEngine final : public AsioEngine {
 public:
  using AsioEngine::AsioEngine;
  int run() override;
};

}  // namespace sb::engines::asio_engines
