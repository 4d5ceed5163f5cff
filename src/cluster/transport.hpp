// How a node exchanges the router's peer batches with the other nodes.
//
// The router knows nothing of Redis: it builds a batch per place and takes
// batches in (core::Router, "Places"). A Transport carries them between
// nodes and tells the node which nodes are alive and whether it can take
// more. It lives on the node's loop (every call on the loop's thread) and
// makes no thread of its own. RedisTransport (redis_transport.hpp) is the
// one there is; Redis Cluster's sharded pub/sub or NATS would be others,
// with no change to the router (docs/CLUSTER.md).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "core/config.hpp"
#include "core/stats.hpp"

namespace sb::cluster {

// What a transport tells its node, on the loop's thread.
class TransportEvents {
 public:
  // A batch another node's router built for this one (Router::on_peer_batch).
  virtual void on_batch(std::span<const char> batch) = 0;
  // Node `node`, with `shards` shards, holds a lease (up) or no longer does
  // (down: its IDs are no_route).
  virtual void on_node(std::uint32_t node, bool up, std::uint32_t shards) = 0;
  // Too much is waiting to be published (true), or that is over (false):
  // senders to other nodes pause meanwhile (Router::set_peer_blocked).
  virtual void on_blocked(bool blocked) = 0;

 protected:
  ~TransportEvents() = default;
};

class Transport {
 public:
  virtual ~Transport() = default;
  // Hands over the batch of `frames` frames built for place `to` (a shard
  // of another node) this turn. It goes out at most once; what cannot go
  // is counted by reason.
  virtual void send(std::uint32_t to, std::span<const char> batch, std::size_t frames) = 0;
  // Writes what send() queued this turn, as far as the socket takes it
  // (the rest when it is writable): once per turn, after the sends.
  virtual void flush() = 0;
  // Called every loop turn: leases, membership, reconnects.
  virtual void on_tick(core::Time now) = 0;
  // Joined: publishing, and subscribed to this node's channel.
  virtual bool ready() const noexcept = 0;
  // The node is stopping and its clients' queues are written: stop
  // listening for frames, so that everything still sent to this shard is
  // either received first (and routed: the drain goes on) or counted by
  // its sender as sent to nobody.
  virtual void stop_listening() = 0;
  // Nothing handed over is still waiting to be written or answered, and,
  // once stop_listening() was called, no frame can still arrive (the drain
  // waits for both).
  virtual bool idle() const noexcept = 0;
  // Stops publishing and listening (the lease is given back by whoever
  // took it, once every shard has left).
  virtual void leave() = 0;
  // Its counters (the cluster_* entries of core/stats.hpp).
  virtual const core::Stats& stats() const noexcept = 0;
};

}  // namespace sb::cluster
