// One load-generator thread: its own epoll loop over its own clients'
// non-blocking TCP_NODELAY sockets. A worker holds both ends of each of its
// streams (sender and receiver), so the window (messages in flight) is plain
// thread-local arithmetic, and the receiver checks every message against
// the sender's own count once the run drains.
//
// Life of a worker (Worker::run, on its own thread):
//   1. setup: connect every client, send the protocol's handshake and wait
//      until the server confirms it (switchboard ID, NATS PONG after SUB,
//      Redis subscribe confirmation and PONG), then report ready;
//   2. wait for the coordinator's Timeline (the clock starts for everyone at
//      once, after every subscription exists);
//   3. send until `send_until`, counting deliveries in [measure_from,
//      send_until); then stop sending and keep receiving until every message
//      sent has arrived or `drain_until` passes.
// The loop never blocks except in epoll_pwait2, and every wait is bounded by
// the next deadline, so a run always ends by itself.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "bench/histogram.hpp"
#include "bench/peer_protocols.hpp"
#include "bench/verifier.hpp"
#include "net/socket.hpp"

namespace sb::bench {

std::int64_t now_ns() noexcept;  // steady_clock, nanoseconds since its epoch

// How a deaf receiver connects. The server's write to a receiver that does
// not read blocks once the kernel buffers on both ends are full, and with
// loopback's defaults that takes megabytes: a flood that a blocking engine
// passes at a fraction of its rate (its share among all senders) may not
// fill them within a run on one machine and fill them at once on another,
// so the stall would show or hide by machine speed. So the receiver asks
// for little, before connect, since both go into its SYN:
// - a 4 KiB receive buffer (Linux doubles it): its own share, which an
//   ordinary socket's tcp_rmem default puts at 64 KiB of window and more;
// - an Ethernet-sized MSS (1460): Linux sizes a TCP sender's buffer from
//   its congestion window times the memory of one full-sized segment, from
//   the handshake on, whatever the receiver's window. With loopback's
//   64 KiB MSS that is about 4 MiB (tcp_wmem's maximum) even for a
//   receiver that offers 4 KiB; with 1460, as for a receiver across a
//   network, about 0.1-0.3 MiB.
// Measured on Linux 6.18 with BBR (tests/bench/deaf_receiver_test.cpp): a
// server can write about 0.2 MB to such a receiver before its write
// blocks, against 4.2 MB to an ordinary one. Buffers the server keeps
// itself (a reactor's queue, a writer's channel, up to --max-pending) are
// its policy, and stay.
inline constexpr net::ConnectOptions kDeafReceiverConnect{4096, 1460};
// The --max-pending the stall scenario gives the switchboard servers it
// starts, unless --max-pending says otherwise (see scenarios.cpp).
inline constexpr const char* kStallMaxPending = "256KiB";
// The receive buffer a deaf receiver reads with at the readout, so that
// what the server kept for it comes out well within the readout time.
inline constexpr int kReadoutReceiveBuffer = 1 << 20;

struct StreamPlan {
  std::uint32_t from = 0;        // local client index of the sender
  std::uint32_t to = 0;          // local client index of the receiver
  std::uint64_t budget = 0;      // messages to send in all; 0: until the send phase ends
  std::int64_t interval_ns = 0;  // > 0: paced, one message per interval; 0: as fast as the window allows
  std::int64_t offset_ns = 0;    // paced: first message at start + offset (staggers the streams)
  bool flood = false;            // ignores the window; its receiver is deaf; excluded from integrity counts
};

struct WorkerPlan {
  PeerProtocol protocol = PeerProtocol::switchboard;
  net::Endpoint endpoint;  // where every client connects, but for receivers given a receiver_endpoint
  // A cluster's second node: every client that is the receiver (`to`) of a
  // stream connects here instead, so that each message crosses between
  // nodes. A client may then not also send (setup fails if one does).
  std::optional<net::Endpoint> receiver_endpoint;
  std::uint32_t first_client = 0;  // global index of local client 0: names its NATS subject / Redis channel
  std::uint32_t clients = 0;
  std::uint32_t first_stream = 0;  // global ID of streams[0], carried in every payload
  std::vector<StreamPlan> streams;
  std::vector<std::uint32_t> deaf;  // local clients that stop reading once the run starts
  std::size_t payload_size = 64;
  std::uint32_t window = 256;  // messages in flight per stream
  std::chrono::milliseconds setup_timeout{30000};
  // The sharded engine with `shards` shards: which shard each local client
  // must land on, read from the ID the server gives it (sb::shard_of). A
  // client that lands elsewhere is connected again. Empty: wherever
  // SO_REUSEPORT puts it.
  std::uint32_t shards = 1;
  std::vector<std::uint32_t> client_shard;
};

// Absolute steady-clock nanoseconds, the same for every worker.
struct Timeline {
  std::int64_t start = 0;
  std::int64_t measure_from = 0;
  std::int64_t send_until = 0;
  std::int64_t drain_until = 0;
};

// Hands the Timeline to the workers once all are ready, or aborts them all.
// Thread-safe.
class Coordinator {
 public:
  explicit Coordinator(std::size_t workers) : expected_{workers} {}

  void report_ready(bool ok);  // worker
  // Coordinator: true once every worker reported, false if one failed or
  // the deadline passed.
  bool wait_ready(std::chrono::steady_clock::time_point deadline);
  void release(const Timeline& t);
  void abort();
  // Worker: the timeline, or nullopt if aborted.
  std::optional<Timeline> wait_release();
  bool aborted() const noexcept { return aborted_.load(std::memory_order_relaxed); }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::size_t expected_;
  std::size_t ready_ = 0;
  bool failed_ = false;
  bool released_ = false;
  Timeline timeline_;
  std::atomic<bool> aborted_{false};
};

struct WorkerResult {
  std::string error;       // setup failure or a fatal loop error; empty if none
  std::uint64_t sent = 0;  // healthy streams, whole run
  std::uint64_t delivered_in_window = 0;
  // Per stream of the plan, in its order: delivered in the window (fan-in
  // fairness). Flood streams count 0.
  std::vector<std::uint64_t> stream_delivered_in_window;
  std::uint64_t flood_sent = 0;  // flood streams, whole run
  std::uint64_t flood_sent_in_window = 0;
  IntegrityCounts integrity;  // healthy streams
  LatencyHistogram latency;   // healthy messages sent in [measure_from, send_until)
  bool drained = false;       // every healthy message arrived (or was counted lost) before drain_until
  std::uint64_t unexpected_closes =
      0;                          // connections the server closed, other than deaf receivers and flooders
  std::uint64_t deaf_closed = 0;  // deaf receivers the server closed (seen at once or in the readout)
  std::int64_t first_deaf_close_ns = 0;  // when the bench saw it, relative to start
  std::uint64_t flood_closed = 0;        // flooders the server closed
  // Flood streams, read out after the run: arrived, never arrived, extra
  // copies, out of order; settled: everything sent arrived, or its receiver
  // was closed, or nothing more came for 0.5 s, before the readout time ran out.
  std::uint64_t flood_delivered = 0;
  std::uint64_t flood_lost = 0;
  std::uint64_t flood_duplicated = 0;
  std::uint64_t flood_reordered = 0;
  bool flood_settled = false;
  std::uint64_t publish_unrouted = 0;      // Redis PUBLISH replies of 0: no subscriber got it
  std::uint64_t server_errors = 0;         // NATS/Redis -ERR replies
  std::uint64_t protocol_errors = 0;       // unparsable bytes from the server
  std::vector<std::string> error_samples;  // first few -ERR / protocol error texts
  LatencyHistogram send_lag;               // paced, in the window: how late each was written against its plan
  std::uint64_t connections = 0;           // TCP connections opened
};

class Worker {
 public:
  explicit Worker(WorkerPlan plan);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;
  Worker(Worker&&) = delete;
  Worker& operator=(Worker&&) = delete;

  void run(Coordinator& coordinator);  // the thread body; closes every socket before returning

  // For the progress line, from any thread; updated once per loop turn.
  std::uint64_t live_delivered() const noexcept { return live_delivered_.load(std::memory_order_relaxed); }
  bool finished() const noexcept { return finished_.load(std::memory_order_acquire); }

  // After run() returned.
  WorkerResult& result() noexcept { return result_; }

 private:
  struct Conn;
  struct Client;
  struct Stream;
  struct Sink;

  bool setup();
  // `reuse`: the index of a connection to replace (a client placed on the
  // wrong shard); none: a new one.
  void open_connection(std::uint32_t client, bool publisher, std::optional<std::uint32_t> reuse = std::nullopt);
  void loop(const Timeline& t);
  void readout(const Timeline& t);
  bool poll(std::int64_t timeout_ns);
  void generate(std::int64_t now, const Timeline& t, bool& more);
  void append_message(Conn& c, Stream& s, std::int64_t sent_ns);
  void queue(std::uint32_t conn, std::string_view bytes);
  void flush_dirty();
  void flush(std::uint32_t conn);
  void on_readable(std::uint32_t conn);
  std::size_t parse(std::uint32_t conn, std::string_view bytes, std::int64_t now);
  void close_conn(std::uint32_t conn, bool by_server);
  void reconnect(std::uint32_t conn);
  void set_events(std::uint32_t conn);
  bool all_delivered() const;
  bool budgets_done() const;
  void note_error(std::string text);
  void finish();

  // Sink callbacks.
  void on_greeting(std::uint32_t conn, std::uint32_t id);
  void on_message(std::uint32_t conn, std::string_view payload, std::int64_t now,
                  std::optional<std::uint32_t> source);
  void on_ready(std::uint32_t conn);
  void on_ping(std::uint32_t conn);

  WorkerPlan plan_;
  Coordinator* coordinator_ = nullptr;
  int epoll_fd_ = -1;
  std::vector<Conn> conns_;
  std::vector<Client> clients_;
  std::vector<bool> at_receiver_endpoint_;  // per local client: connects to plan_.receiver_endpoint
  std::vector<Stream> streams_;
  std::vector<std::uint32_t> dirty_;
  std::vector<char> scratch_;
  DeliveryVerifier verifier_;
  std::size_t ready_conns_ = 0;
  std::size_t placement_retries_ = 0;  // connections closed for landing on the wrong shard
  bool running_ = false;        // the timeline has started: deaf clients no longer read
  bool readout_ = false;        // the run is over: deaf clients read what was kept for them
  std::int64_t next_wake_ = 0;  // earliest planned send of a paced stream that is free to send
  std::uint64_t delivered_total_ = 0;
  Timeline timeline_{};
  WorkerResult result_;
  std::atomic<std::uint64_t> live_delivered_{0};
  std::atomic<bool> finished_{false};
};

}  // namespace sb::bench
