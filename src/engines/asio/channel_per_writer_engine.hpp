// `channel-per-writer`: the article's "channel per writer" design (its first
// variant), on Boost.Asio C++20 coroutines and a multi-threaded io_context.
//
// Readers are those of `channels` (channel_router.hpp). The dispatcher owns
// the client table and one bounded channel per client, each drained by that
// client's writer coroutine, the only one that writes to its socket. Handing
// a frame over completes at once unless the destination's channel is full;
// then the dispatcher waits for room (the article's `send(items).await`),
// and with it every sender, until stall_timeout closes the destination.
//
// Memory: a writer's channel holds max_pending / (max_frame + 1) frames (at
// least one), so a full one never holds more than max_pending bytes.
//
// Thread: run() is called once; it runs the io_context on
// ServerOptions::threads threads and returns when the server has stopped.
// stats() may be called from any thread.
#pragma once

#include "engines/asio/asio_engine.hpp"

namespace sb::engines::asio_engines {

class ChannelPerWriterEngine final : public AsioEngine {
 public:
  using AsioEngine::AsioEngine;
  int run() override;
};

}  // namespace sb::engines::asio_engines
