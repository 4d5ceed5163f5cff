// The bench's scenarios, what each run produced, and the runner that starts
// a fresh server per run, drives the workers and samples the server's
// memory. Main thread only (the workers run on threads it owns).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "bench/fairness.hpp"
#include "bench/histogram.hpp"
#include "bench/targets.hpp"
#include "bench/verifier.hpp"
#include "bench/worker.hpp"

namespace sb::bench {

enum class Scenario { throughput, latency, stall, conns, fanin };

// Every scenario, in the order `--scenario all` runs them: stall right after
// throughput, so that the throughput run is also the stall run's baseline.
inline constexpr Scenario kAllScenarios[] = {Scenario::throughput, Scenario::stall, Scenario::latency,
                                             Scenario::conns, Scenario::fanin};

std::string_view to_string(Scenario s) noexcept;
// Words from --scenario, each possibly comma-separated; "all" is every
// scenario. Throws std::invalid_argument.
std::vector<Scenario> parse_scenarios(const std::vector<std::string>& words);

// Where the sharded engine's clients go (make_plans): planned, the kernel's
// choice, every pair across shards, or every pair on one shard.
enum class Placement { planned, random, crossing, local };

std::string_view to_string(Placement p) noexcept;

struct BenchOptions {
  std::vector<TargetSpec> targets;
  std::vector<Scenario> scenarios;
  std::uint32_t pairs = 16;
  std::size_t size = 64;
  std::uint32_t window = 256;
  double rate = 10000;  // latency: messages per second, all pairs together
  std::uint32_t conns = 5000;
  std::uint32_t probe_pairs = 100;  // conns: random pairs that exchange one message
  std::uint32_t senders = 16;       // fanin: senders to the one receiver
  std::uint32_t threads = 1;
  // The sharded engine: its shards (passed as `serve --threads`), and
  // whether the pairs' clients are placed on planned shards (so that
  // (N-1)/N of the pairs cross, every run alike) or left where SO_REUSEPORT
  // puts them.
  std::uint32_t shards = 1;
  Placement placement = Placement::planned;
  std::chrono::milliseconds duration{5000};
  std::chrono::milliseconds warmup{1000};
  std::chrono::milliseconds drain{3000};  // after sending stops, longest wait for messages in flight
  std::uint64_t seed = 1;
  ServerFlags server;
  std::string json_path;
  std::string log_dir;  // server logs go here
};

struct RunResult {
  std::string target;
  Scenario scenario = Scenario::throughput;
  std::string role;    // "" or "stall baseline"
  std::string status;  // "ok", "skipped", "failed"
  std::string reason;  // why skipped or failed

  double seconds = 0;  // length of the measurement window
  std::uint64_t sent = 0;
  std::uint64_t delivered_in_window = 0;
  double msgs_per_s = 0;
  double mb_per_s = 0;  // payload bytes delivered, 10^6 bytes per second
  IntegrityCounts integrity;
  bool drained = false;

  LatencyHistogram latency;
  LatencyHistogram send_lag;  // latency: how late each message was written against the planned rate

  std::uint64_t connections = 0;  // TCP connections the bench opened
  double setup_seconds = 0;
  std::optional<std::uint64_t> rss_start_kib;  // server, before the bench connected
  std::optional<std::uint64_t> rss_idle_kib;   // conns: all connected, idle
  std::optional<std::uint64_t> rss_peak_kib;   // highest VmRSS sampled while running
  std::optional<std::uint64_t> hwm_kib;        // VmHWM at the end
  std::optional<double> rss_per_conn_bytes;    // conns: per TCP connection
  std::optional<double> rss_per_client_bytes;  // conns: per client (Redis clients have two connections)
  std::uint32_t clients = 0;                   // conns: --conns
  // CPU used over the measurement window, in cores (1.0: one core busy the
  // whole time): tells whether the server or the load generator was the limit.
  std::optional<double> server_cpu;
  std::optional<double> bench_cpu;
  // A target of several processes (cluster: node A, node B, redis-server):
  // the server figures above are their sums (RSS: the highest sum of one
  // round of samples; VmHWM: the sum of each one's peak, an upper bound of
  // the sums' peak), and these are each one's part. Empty for one server.
  struct ServerProcess {
    std::string role;
    std::vector<std::string> command;
    std::optional<std::uint64_t> rss_peak_kib;
    std::optional<std::uint64_t> hwm_kib;
    std::optional<double> cpu;  // cores over the measurement window
  };
  std::vector<ServerProcess> server_processes;

  // stall
  std::optional<double> baseline_msgs_per_s;
  std::optional<double> healthy_fraction;
  std::uint64_t flood_sent = 0;
  std::uint64_t flood_sent_in_window = 0;
  std::uint64_t deaf_closed = 0;
  double first_deaf_close_s = 0;
  std::uint64_t flood_closed = 0;
  // The flood stream is read out after the run; of what the flooder sent,
  // each message was either held or lost (flood_held() + flood_lost ==
  // flood_sent):
  // - held: delivered late, at the readout. The deaf receiver reads nothing
  //   during the run, so every flood message it got was kept until then
  //   between the flooder and it: in the server's queue, in the kernel's
  //   socket buffers, or unread in the flooder's own connection once the
  //   server stopped reading it (backpressure, or a blocked engine);
  // - lost: sent and never delivered: dropped by the server's policy, or
  //   thrown away with a connection it closed. If the readout ran out of
  //   time (flood_settled false), also what was still on its way.
  std::uint64_t flood_delivered = 0;  // distinct flood messages read at the readout
  std::uint64_t flood_lost = 0;
  std::uint64_t flood_duplicated = 0;
  std::uint64_t flood_reordered = 0;
  bool flood_settled = false;  // the readout ended with nothing more to come, not by running out of time
  std::uint64_t flood_held() const noexcept { return flood_delivered; }

  // fanin: messages delivered in the window per sender, and how evenly
  std::vector<std::uint64_t> per_sender_delivered;
  std::optional<Fairness> fairness;

  // conns
  std::uint32_t probe_pairs = 0;
  std::uint64_t probe_delivered = 0;

  std::uint64_t unexpected_closes = 0;
  std::uint64_t publish_unrouted = 0;
  std::uint64_t server_errors = 0;
  std::uint64_t protocol_errors = 0;
  std::vector<std::string> error_samples;
  std::string server_exit;
  std::string server_log;
  // The sharded engine: its shards, the pairs placed (none: conns and
  // fanin, or --placement random) and those whose ends are on different
  // shards, and from the stats line it logs as it exits, the frames it
  // routed and those that crossed shards.
  std::uint32_t shards = 0;
  Placement placement = Placement::planned;
  std::uint32_t pairs_crossing = 0;
  std::uint32_t pairs_placed = 0;
  std::optional<std::uint64_t> frames_routed;
  std::optional<std::uint64_t> frames_forwarded;
  std::vector<std::string> server_command;

  // False if a scenario that must lose nothing lost, duplicated, corrupted
  // or reordered anything, or the server closed a healthy client.
  bool integrity_ok() const noexcept;
};

// Shows one live line on stderr while a run goes, only if stderr is a tty.
class Progress {
 public:
  Progress();
  void show(const std::string& line);
  void clear();
  bool enabled() const noexcept { return enabled_; }

 private:
  bool enabled_ = false;
  bool shown_ = false;
};

// Where a run's clients connect: every one to `senders`, or, when
// `receivers` is given (a cluster's second node), each stream's receiver
// there (WorkerPlan::receiver_endpoint).
struct Endpoints {
  net::Endpoint senders;
  std::optional<net::Endpoint> receivers;
};

// The workers' plans for one run: pairs spread round-robin over threads,
// each pair's two clients on the same thread; conns and fanin on one
// worker. With split endpoints no client both sends and receives (conns
// then draws its probe senders from the even clients and its receivers
// from the odd ones).
//
// `shards` above 1: the target is the sharded engine with that many shards,
// and the pairs' clients are placed (WorkerPlan::client_shard): the k-th
// pair of a load thread has its sender on shard k mod N and its receiver on
// shard (k + k/N) mod N. Each shard (and each load thread's share of it)
// has as many senders and receivers as the others; of each N*N pairs of a
// thread, (N-1)/N cross shards, what placement by the kernel's hash gives
// on average (2 shards: half of every 4 pairs). `crossing` puts every
// receiver on the next shard (k + 1 mod N), `local` on its sender's: the
// two ends of what a frame costs. The stall scenario's flood crosses in
// every case (shard 0 to shard 1).
std::vector<WorkerPlan> make_plans(Scenario scenario, const BenchOptions& o, PeerProtocol protocol,
                                   const Endpoints& endpoints, std::uint32_t shards = 1,
                                   Placement placement = Placement::planned);

// Runs every scenario against every target, in the order given; a stall
// run is preceded by a plain throughput run with the same pairs (reused if
// the run just before was one).
std::vector<RunResult> run_all(const BenchOptions& options, Progress& progress);

}  // namespace sb::bench
