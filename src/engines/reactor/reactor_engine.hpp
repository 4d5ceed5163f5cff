// The default engine: the article's hand-rolled reactor, built for speed.
//
// A net::Loop (one epoll set, a handler per fd, an end-of-turn hook) and a
// shell around it that owns the process side: the listener, the signals,
// the spare descriptor, the drain and memory trimming. Each loop turn
// accepts (the listener and the signalfd are `first` handlers), then reads
// (level-triggered, so every socket gets its turn; at most 64 KiB per
// socket, less when many are ready, so that a turn stays short however many
// clients flood it), decodes every complete frame and hands it to the
// router, which copies it into the destination's queue and marks the
// destination dirty. At the end of the turn the loop writes every dirty
// client with one writev and arms EPOLLOUT only for those it could not
// finish. Connections that must close are marked and destroyed at the end
// of the turn, never in the middle of it.
//
// Thread: run() is called once, from one thread, and all state belongs to it.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cluster/transport.hpp"
#include "core/router.hpp"
#include "engines/engine.hpp"
#include "engines/reactor/shard_set.hpp"
#include "net/fd.hpp"
#include "net/http_responder.hpp"
#include "net/log.hpp"
#include "net/loop.hpp"
#include "protocol/block_pool.hpp"
#include "protocol/frame_decoder.hpp"

namespace sb::engines::reactor {

class ReactorEngine final : public Engine, private cluster::TransportEvents {
 public:
  // With `shard`, one shard of the sharded engine (sharded_engine.hpp):
  // its IDs carry the shard's index, it exchanges batches with the other
  // shards through the set's rings, and the engine around it owns the
  // signals, the listening line and the process.
  explicit ReactorEngine(ServerOptions options, ShardLink* shard = nullptr);
  ~ReactorEngine() override;

  int run() override;
  core::Stats stats() const override { return totals(); }

  // ---- Shard mode, for the sharded engine ----
  // On the shard's thread: builds its loop, calls `started` once it accepts
  // and its loop is published in the set, then serves until stopped.
  void run_shard(const std::function<void()>& started);
  // Any thread, once `started` ran: runs `fn` on the shard's thread.
  void post(std::function<void()> fn);
  // On the shard's thread (post them): stop accepting and reading and stop
  // once the queues are written or the drain timeout passes; stop at once;
  // take a new token list.
  void begin_drain();
  void stop_now();
  void set_tokens(std::vector<std::string> tokens);

 private:
  struct Connection;

  // --cluster (docs/CLUSTER.md): the transport to the other nodes.
  void start_cluster();
  void leave_cluster();
  void on_batch(std::span<const char> batch) override;
  void on_node(std::uint32_t node, bool up, std::uint32_t shards) override;
  std::uint32_t shard_place(unsigned i) const noexcept;
  void on_blocked(bool blocked) override;
  core::Stats totals() const;

  void setup_shard();
  void exchange_with_peers();
  bool receive_from_peers();
  bool shards_drained();
  void publish_to_peers();

  void setup();
  void serve();
  void on_turn_start();
  void on_end_of_turn();
  void on_connection_event(Connection& c, std::uint32_t events);
  std::size_t read_share() const noexcept;
  void on_accept();
  void reject(net::Fd fd, const char* why);
  void on_signal();
  void load_tokens(bool at_start);
  void on_readable(Connection& c, std::size_t budget);
  void decode(Connection& c);
  void flush(Connection& c);
  void finish_turn();
  void carry_out_actions();
  void mark_closing(Connection& c, core::CloseReason reason);
  void destroy(Connection& c);
  void update_interest(Connection& c);
  void start_metrics();
  std::string clients_json() const;
  std::string metrics_text() const;
  Connection* by_id(ClientId id) noexcept;
  core::Time now() const noexcept;
  // Frames routed here or handed to another place, since start.
  std::uint64_t frames_handled() const noexcept {
    return router_.stats().frames_routed + router_.stats().frames_forwarded;
  }

  ServerOptions options_;
  ShardLink* shard_ = nullptr;  // null: the reactor alone
  std::string name_;            // "reactor" or "shard N", in log lines
  std::size_t max_conns_;
  protocol::BlockPool read_pool_;
  core::Router router_;
  std::unique_ptr<net::Loop> loop_;  // created by run(), on the thread that owns it
  net::Fd listener_;
  net::Fd signals_;
  net::FunctionHandler listener_handler_;
  net::FunctionHandler signal_handler_;
  net::Token listener_token_ = net::Token::none;
  std::unique_ptr<net::HttpResponder> metrics_;     // --metrics; its handlers live on loop_
  net::Fd spare_;                                   // kept open so an EMFILE accept can be taken and closed
  std::vector<std::unique_ptr<Connection>> conns_;  // indexed by fd
  std::vector<int> closing_;                        // fds to destroy after the batch
  std::vector<core::Action> actions_;               // scratch for carry_out_actions()
  std::vector<std::deque<std::vector<char>>> pending_;  // shard mode: batches waiting for room in a ring
  std::unique_ptr<cluster::Transport> cluster_;  // --cluster; on loop_
  core::Stats cluster_stats_;                     // its counters, once it is gone
  bool draining_ = false;
  core::Time turn_start_{};
  std::uint64_t turn_frames_ = 0;  // frames_handled() as the turn started
  core::Time drain_deadline_{};
  core::Time next_trim_{};

  net::RateLimit reject_log_;
  net::RateLimit policy_log_;
  net::RateLimit counts_log_{1};  // one line a second at most
  core::Stats logged_;            // the counters as of the last such line
};

}  // namespace sb::engines::reactor
