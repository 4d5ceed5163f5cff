// What the shards of the `sharded` engine share: one bounded ring per
// ordered pair of shards, each shard's loop (to wake it), the connection
// count of the whole server. Everything else (router, clients, pools) each
// shard owns alone.
//
// A ring carries batches: the messages one shard's router built for another
// in one loop turn (core::Router::flush_peers), moved as one heap block.
// Boost.Lockfree's spsc_queue is the ring (one producer thread, one consumer
// thread, wait-free); it bounds the number of batches in flight, and
// `bytes` bounds their size, so a shard that does not keep up costs its
// peers at most ring_bytes (--ring-bytes) each before their senders to it
// pause.
#pragma once

#include <atomic>
#include <boost/lockfree/spsc_queue.hpp>
#include <cstddef>
#include <memory>
#include <mutex>
#include <vector>

#include "net/loop.hpp"

namespace sb::engines::reactor {

inline constexpr std::size_t kRingBatches = 1024;

struct ShardRing {
  using Batch = std::vector<char>;
  boost::lockfree::spsc_queue<Batch*, boost::lockfree::capacity<kRingBatches>> queue;
  std::atomic<std::size_t> bytes{0};          // in the queue now
  std::atomic<bool> producer_waiting{false};  // the producer found it full: wake it when there is room

  ShardRing() = default;
  ShardRing(const ShardRing&) = delete;
  ShardRing& operator=(const ShardRing&) = delete;
  ~ShardRing() {
    Batch* b = nullptr;
    while (queue.pop(b)) delete b;
  }
};

struct ShardSet {
  explicit ShardSet(unsigned n) : count{n}, rings(std::size_t{n} * n), loops(n), drained_out(n) {
    for (auto& r : rings) r = std::make_unique<ShardRing>();
    for (auto& l : loops) l.store(nullptr);
  }
  ShardRing& ring(unsigned from, unsigned to) { return *rings[std::size_t{from} * count + to]; }

  const unsigned count;
  std::vector<std::unique_ptr<ShardRing>> rings;  // [from * count + to]; the diagonal is unused
  // Each shard's loop, published by the shard's thread once it exists and
  // before any connection is accepted (the engine waits for all of them).
  std::vector<std::atomic<net::Loop*>> loops;
  // Shutdown: shard i drains and has nothing left for the others (no batch
  // in its router or waiting for room in a ring). A draining shard reads no
  // client, so it makes no new frame; a shard stops only once every shard
  // says so and its own incoming rings are empty, so that no frame still on
  // its way to it is lost (set after the last push, read before the rings).
  std::vector<std::atomic<bool>> drained_out;
  std::atomic<std::size_t> live{0};  // connections of the whole server (--max-conns)
  std::mutex accept_mutex;           // accept and the EMFILE spare, one shard at a time
  std::size_t max_conns = 0;
  std::size_t ring_bytes = std::size_t{4} << 20;  // --ring-bytes
};

// One shard's view: which it is, the set, and its listener (bound by the
// engine with SO_REUSEPORT before the shards start).
struct ShardLink {
  unsigned index = 0;
  ShardSet* set = nullptr;
  net::Fd listener;
};

}  // namespace sb::engines::reactor
