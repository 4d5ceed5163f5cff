// The cluster's transport over Redis pub/sub (docs/CLUSTER.md).
//
// One per shard (the reactor is shard 0): two connections, both hiredis'
// async API driven by the shard's own loop (an adapter of hiredis' event
// hooks to net::Loop handlers; no thread):
//   - `pub`: PUBLISH of batches, the lease refresh and the membership poll
//     (MGET of every lease key), replies in order;
//   - `sub`: SUBSCRIBE to this shard's channel (place_channel) and to
//     NAME:members.
//
// Every published message is a stream header and one router batch:
//   [u8 1][u32 from place][u64 stream][u64 seq][u32 frames][batch]
// A stream is what this shard publishes to one shard of another node over
// one `pub` connection to one incarnation of that node: a new connection,
// or a change in that node's lease, starts a new stream, numbered afresh, and
// `seq` counts its frames from 0. Redis delivers one connection's messages
// in order, so a receiver that finds `seq` ahead of what it has heard of
// that stream (from 0 for a stream it has not heard yet) knows the
// difference was accepted by Redis and never delivered: its subscriber
// connection was dropped (output buffer limit) or was being made again.
// Loss is counted where it is known, once:
//   - redis_unreachable (sender): no `pub` connection, or it broke before
//     the reply (some of those may have arrived: counted as lost anyway);
//   - subscriber_dropped (receiver): the gaps above;
//   - node_gone (sender): frames Redis had no subscriber for (PUBLISH
//     answered 0) whose node then lost its lease. If the node answers again
//     instead, its receiver counts the gap itself.
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "cluster/cluster.hpp"
#include "cluster/transport.hpp"
#include "net/log.hpp"
#include "net/loop.hpp"

struct redisAsyncContext;
struct redisReply;

namespace sb::cluster {

class RedisTransport final : public Transport {
 public:
  // Starts connecting both connections for shard `shard` of the node whose
  // lease acquire_lease took. `events` must outlive the transport.
  RedisTransport(net::Loop& loop, Lease lease, std::uint32_t shard, TransportEvents& events);
  ~RedisTransport() override;

  void send(std::uint32_t to, std::span<const char> batch, std::size_t frames) override;
  void flush() override;
  void on_tick(core::Time now) override;
  void leave() override;
  bool ready() const noexcept override { return pub_ready_ && subscribed_; }
  void stop_listening() override;
  bool idle() const noexcept override;
  const core::Stats& stats() const noexcept override { return stats_; }

 private:
  class Connection;
  struct Published {  // a PUBLISH awaiting its reply
    std::uint32_t place;
    std::size_t frames;
    std::size_t bytes;
  };
  struct Stream {  // what this node has heard from one other node
    std::uint64_t stream = 0;
    std::uint64_t next = 0;
    bool known = false;
  };

  template <void (RedisTransport::*Up)(), void (RedisTransport::*Down)(bool, const char*)>
  void connect(Connection& c);
  void connect_pub();
  void connect_sub();
  void on_pub_up();
  void on_pub_down(bool error, const char* why);
  void on_sub_up();
  void on_sub_down(bool error, const char* why);
  void poll(core::Time now);
  void on_publish_reply(redisReply* reply);
  void on_refresh_reply(redisReply* reply);
  void on_members_reply(redisReply* reply);
  void on_message(redisReply* reply);
  void on_members_message(std::string_view text);
  void set_member(std::uint32_t node, const std::string& value);
  void new_streams(std::uint32_t node);
  void lose_unreachable(std::size_t frames);
  void update_blocked();

  net::Loop& loop_;
  Lease lease_;
  TransportEvents& events_;
  std::uint32_t place_;            // this shard's
  std::string channel_;            // and its channel
  std::string who_;                // "node N" or "node N shard S", in log lines
  std::vector<std::string> keys_;  // every lease key, for the membership MGET
  std::unique_ptr<Connection> pub_;
  std::unique_ptr<Connection> sub_;
  bool pub_ready_ = false;
  bool subscribed_ = false;     // Redis confirmed the subscription to channel_
  bool unsubscribing_ = false;  // stop_listening() sent UNSUBSCRIBE; subscribed_ falls when Redis confirms
  bool leaving_ = false;
  core::Time now_{};
  core::Time pub_retry_at_{};
  core::Time sub_retry_at_{};
  core::Time pub_backoff_{};
  core::Time sub_backoff_{};
  core::Time next_poll_{};
  bool pub_was_up_ = false, sub_was_up_ = false;
  std::uint64_t next_stream_ = 0;
  // By place: the stream to it, frames published in it, frames Redis had
  // no subscriber for, and what this shard has heard from it.
  std::vector<std::uint64_t> stream_ = std::vector<std::uint64_t>(kMaxPlaces);
  std::vector<std::uint64_t> seq_ = std::vector<std::uint64_t>(kMaxPlaces);
  std::vector<std::uint64_t> unanswered_ = std::vector<std::uint64_t>(kMaxPlaces);
  std::vector<Stream> streams_ = std::vector<Stream>(kMaxPlaces);
  std::array<std::string, kMaxNodes> members_;  // lease values seen (empty: no lease)
  std::deque<Published> published_;             // in the order Redis answers
  std::size_t in_flight_ = 0;                   // their bytes
  bool blocked_ = false;
  std::string message_;  // the RESP command being built
  core::Stats stats_;
  net::RateLimit loss_log_{1};
  net::RateLimit link_log_{1};
};

}  // namespace sb::cluster
