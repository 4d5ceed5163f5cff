#include "bench/scenarios.hpp"

#include <fmt/format.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <memory>
#include <random>
#include <stdexcept>
#include <thread>

#include "bench/process.hpp"
#include "bench/worker.hpp"

namespace sb::bench {

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr auto kSampleEvery = 50ms;
constexpr auto kProgressEvery = 250ms;
constexpr auto kSettle = 300ms;  // conns: let the server finish its accept/ID work before reading RSS

std::int64_t to_ns(std::chrono::milliseconds d) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
}

}  // namespace

std::vector<WorkerPlan> make_plans(Scenario scenario, const BenchOptions& o, PeerProtocol protocol,
                                   const Endpoints& endpoints, std::uint32_t shards, Placement placement) {
  std::vector<WorkerPlan> plans;
  auto base = [&] {
    WorkerPlan p;
    p.protocol = protocol;
    p.endpoint = endpoints.senders;
    p.receiver_endpoint = endpoints.receivers;
    p.payload_size = o.size;
    p.window = o.window;
    return p;
  };

  if (scenario == Scenario::conns) {
    // One worker holds every idle client: the probe pairs are random among
    // all of them, and a stream's two ends must share a thread.
    WorkerPlan p = base();
    p.clients = o.conns;
    p.window = 1;
    p.setup_timeout = 120s;
    std::mt19937_64 rng(o.seed);
    std::uniform_int_distribution<std::uint32_t> pick(0, o.conns - 1);
    // Split endpoints: senders among the even clients, receivers among the
    // odd ones, so that no client has to be on both nodes.
    std::uniform_int_distribution<std::uint32_t> pick_even(0, (o.conns + 1) / 2 - 1);
    std::uniform_int_distribution<std::uint32_t> pick_odd(0, o.conns / 2 - 1);
    for (std::uint32_t i = 0; i < o.probe_pairs; ++i) {
      StreamPlan s;
      if (endpoints.receivers) {
        s.from = 2 * pick_even(rng);
        s.to = 2 * pick_odd(rng) + 1;
      } else {
        s.from = pick(rng);
        do {
          s.to = pick(rng);
        } while (s.to == s.from);
      }
      s.budget = 1;
      p.streams.push_back(s);
    }
    plans.push_back(std::move(p));
    return plans;
  }

  if (scenario == Scenario::fanin) {
    // Every sender to one receiver (local client 0). One worker: it holds
    // both ends of every stream, and they all share the receiver.
    WorkerPlan p = base();
    p.clients = o.senders + 1;
    for (std::uint32_t i = 0; i < o.senders; ++i) {
      StreamPlan s;
      s.from = i + 1;
      s.to = 0;
      p.streams.push_back(s);
    }
    plans.push_back(std::move(p));
    return plans;
  }

  const std::uint32_t threads = std::max<std::uint32_t>(1, std::min(o.threads, o.pairs));
  plans.resize(threads, base());
  const bool place = shards > 1;
  for (WorkerPlan& p : plans) p.shards = shards;
  auto place_pair = [&](WorkerPlan& p, std::uint32_t from_shard, std::uint32_t to_shard) {
    if (!place) return;
    p.client_shard.resize(p.clients);
    p.client_shard[p.clients - 2] = from_shard;
    p.client_shard[p.clients - 1] = to_shard;
  };
  const double rate_per_stream = o.rate / o.pairs;
  const auto interval = static_cast<std::int64_t>(1e9 / rate_per_stream);
  for (std::uint32_t pair = 0; pair < o.pairs; ++pair) {
    WorkerPlan& p = plans[pair % threads];
    StreamPlan s;
    s.from = p.clients;
    s.to = p.clients + 1;
    p.clients += 2;
    // By the pair's place on its thread, so that every load thread too
    // sends to and receives from each shard alike.
    const std::uint32_t j = pair / threads;
    const std::uint32_t shift = placement == Placement::crossing ? 1 : placement == Placement::local ? 0 : j / shards;
    place_pair(p, j % shards, (j + shift) % shards);
    if (scenario == Scenario::latency) {
      s.interval_ns = interval;
      s.offset_ns = interval * pair / o.pairs;  // spread the sends evenly over each interval
    }
    p.streams.push_back(s);
  }
  if (scenario == Scenario::stall) {
    // One more pair on the first thread: a sender that floods a receiver
    // that never reads.
    WorkerPlan& p = plans[0];
    StreamPlan s;
    s.from = p.clients;
    s.to = p.clients + 1;
    s.flood = true;
    p.deaf.push_back(s.to);
    p.clients += 2;
    place_pair(p, 0, 1);
    p.streams.push_back(s);
  }
  std::uint32_t first_client = 0;
  std::uint32_t first_stream = 0;
  for (WorkerPlan& p : plans) {
    p.first_client = first_client;
    p.first_stream = first_stream;
    first_client += p.clients;
    first_stream += static_cast<std::uint32_t>(p.streams.size());
  }
  return plans;
}

namespace {

// Raises the soft open-files limit to the hard one; the bench needs one fd
// per connection plus a few. Returns the limit in force.
std::uint64_t raise_fd_limit() {
  rlimit lim{};
  if (::getrlimit(RLIMIT_NOFILE, &lim) != 0) return 1024;
  if (lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &lim);
    ::getrlimit(RLIMIT_NOFILE, &lim);
  }
  return lim.rlim_cur;
}

std::string human_rate(double v) {
  if (v >= 1e6) return fmt::format("{:.2f}M", v / 1e6);
  if (v >= 1e3) return fmt::format("{:.1f}k", v / 1e3);
  return fmt::format("{:.0f}", v);
}

class Run {
 public:
  Run(const BenchOptions& o, const TargetSpec& target, Scenario scenario, std::string role,
      Progress& progress)
      : o_{o}, target_{target}, scenario_{scenario}, progress_{progress} {
    r_.target = target.label;
    r_.scenario = scenario;
    r_.role = std::move(role);
  }

  // The last "stats:" line of a server log: routed=N ... forwarded=M.
  void read_cross_shard_counts(const std::string& log_path) {
    const std::string log = read_text_file(log_path);
    const auto line_at = log.rfind("stats: ");
    if (line_at == std::string::npos) return;
    const std::string_view line = std::string_view(log).substr(line_at, log.find('\n', line_at) - line_at);
    auto count = [&](std::string_view key) -> std::optional<std::uint64_t> {
      const auto at = line.find(key);
      if (at == std::string_view::npos) return std::nullopt;
      std::uint64_t v = 0;
      const char* first = line.data() + at + key.size();
      const auto [end, ec] = std::from_chars(first, line.data() + line.size(), v);
      if (ec != std::errc{} || end == first) return std::nullopt;
      return v;
    };
    r_.frames_routed = count(" routed=");
    r_.frames_forwarded = count(" forwarded=");
  }

  RunResult go() {
    const PeerProtocol protocol = target_.protocol();
    auto plans_probe = make_plans(scenario_, o_, protocol, {});
    std::uint64_t connections = 0;
    for (const auto& p : plans_probe)
      connections += std::uint64_t{p.clients} * (protocol == PeerProtocol::redis ? 2 : 1);
    const std::uint64_t limit = raise_fd_limit();
    if (connections + 64 > limit) {
      return fail("failed", fmt::format("{} connections need more than the open-files limit of {} allows",
                                        connections, limit));
    }
    ServerFlags flags = o_.server;
    // The deaf receiver's small buffers (kDeafReceiverConnect) make the
    // kernel's part of the stall small; this makes the server's own part
    // small too: a bounded queue (the reactor's --max-pending, a writer's
    // channel in channel-per-writer) fills within a second on any machine,
    // not after 8 MiB of a flood that gets a seventeenth of the engine.
    if (scenario_ == Scenario::stall && flags.max_pending.empty()) flags.max_pending = kStallMaxPending;
    if (target_.kind == TargetKind::redis && connections + 32 > 10000) {
      flags.redis_maxclients = static_cast<std::uint32_t>(connections + 32);
    }

    const std::string log_path = fmt::format("{}/{}-{}{}.log", o_.log_dir, sanitize(target_.label),
                                             to_string(scenario_), r_.role.empty() ? "" : "-baseline");
    std::optional<RunningTarget> server;
    try {
      server = RunningTarget::start(target_, flags, log_path);
    } catch (const TargetUnavailable& e) {
      return fail("skipped", e.what());
    } catch (const std::exception& e) {
      return fail("failed", e.what());
    }
    r_.server_command = server->command();
    r_.server_log = server->logs();
    // Every process the bench started for the target: its RSS and CPU
    // figures are their sums, and each one's part is kept when there are
    // several (a cluster's nodes and its Redis).
    const std::vector<ServerProcessInfo> procs = server->processes();
    const bool measured = !procs.empty();
    if (procs.size() > 1) {
      for (const auto& p : procs) r_.server_processes.push_back({p.role, p.command, {}, {}, {}});
    }
    auto sample = [&]() -> std::optional<MemorySample> {
      if (!measured) return std::nullopt;
      MemorySample sum;
      for (std::size_t i = 0; i < procs.size(); ++i) {
        const auto m = read_memory(procs[i].pid);
        if (!m) return std::nullopt;  // one has gone: a sum without it would be no figure at all
        sum.rss_kib += m->rss_kib;
        sum.hwm_kib += m->hwm_kib;
        if (!r_.server_processes.empty()) {
          auto& peak = r_.server_processes[i].rss_peak_kib;
          peak = std::max(peak.value_or(0), m->rss_kib);
          r_.server_processes[i].hwm_kib = m->hwm_kib;
        }
      }
      r_.rss_peak_kib = std::max(r_.rss_peak_kib.value_or(0), sum.rss_kib);
      return sum;
    };
    if (measured) {
      std::this_thread::sleep_for(100ms);
      if (auto m = sample()) r_.rss_start_kib = m->rss_kib;
    }

    const bool sharded = target_.kind == TargetKind::engine && target_.engine == "sharded";
    const std::uint32_t shards = sharded && o_.placement != Placement::random ? o_.shards : 1;
    auto plans = make_plans(scenario_, o_, protocol, Endpoints{server->endpoint(), server->receiver_endpoint()},
                            shards, o_.placement);
    for (const WorkerPlan& p : plans) {
      if (p.client_shard.empty()) continue;
      for (const StreamPlan& s : p.streams) {
        ++r_.pairs_placed;
        if (p.client_shard[s.from] != p.client_shard[s.to]) ++r_.pairs_crossing;
      }
    }
    Coordinator coordinator(plans.size());
    std::vector<std::unique_ptr<Worker>> workers;
    workers.reserve(plans.size());
    for (auto& p : plans) workers.push_back(std::make_unique<Worker>(std::move(p)));
    std::vector<std::thread> threads;
    threads.reserve(workers.size());
    const auto setup_start = Clock::now();
    for (auto& w : workers) threads.emplace_back([&coordinator, wp = w.get()] { wp->run(coordinator); });

    // Every worker is connected and subscribed before the clock starts.
    progress_.show(
        fmt::format("{} {}: connecting {} clients...", target_.label, to_string(scenario_), connections));
    bool ready = false;
    const auto ready_deadline = Clock::now() + (scenario_ == Scenario::conns ? 130s : 40s);
    while (!ready && Clock::now() < ready_deadline) {
      ready = coordinator.wait_ready(std::min(ready_deadline, Clock::now() + 200ms));
      if (!server->alive()) break;
      sample();
      if (std::any_of(workers.begin(), workers.end(), [](auto& w) { return w->finished(); })) break;
    }
    r_.setup_seconds = std::chrono::duration<double>(Clock::now() - setup_start).count();
    if (!ready) {
      coordinator.abort();
      for (auto& t : threads) t.join();
      std::string why = "setup did not complete";
      for (auto& w : workers) {
        if (!w->result().error.empty()) {
          why = w->result().error;
          break;
        }
      }
      if (!server->alive()) why += fmt::format(" (server ended: {})", server->stop());
      collect(workers);
      r_.server_exit = server->stop();
      progress_.clear();
      return fail("failed", why);
    }
    if (scenario_ == Scenario::conns && measured) {
      std::this_thread::sleep_for(kSettle);
      if (auto m = sample()) r_.rss_idle_kib = m->rss_kib;
    }

    const std::chrono::milliseconds warmup = scenario_ == Scenario::conns ? 0ms : o_.warmup;
    Timeline t;
    t.start = now_ns() + 20'000'000;
    t.measure_from = t.start + to_ns(warmup);
    t.send_until = t.measure_from + to_ns(o_.duration);
    t.drain_until = t.send_until + to_ns(o_.drain);
    coordinator.release(t);

    // CPU over the measurement window, read by this thread as it passes
    // the window's edges (to within its 10 ms ticks).
    struct CpuMark {
      std::int64_t at = 0;
      std::vector<std::optional<double>> server;  // per process
      double bench = 0;
    };
    std::optional<CpuMark> cpu_from;
    std::optional<CpuMark> cpu_to;
    auto mark = [&] {
      CpuMark m;
      m.at = now_ns();
      for (const auto& p : procs) m.server.push_back(process_cpu_seconds(p.pid));
      m.bench = self_cpu_seconds();
      return m;
    };
    auto next_sample = Clock::now();
    auto next_progress = Clock::now() + kProgressEvery;
    std::uint64_t last_delivered = 0;
    auto last_at = Clock::now();
    std::string died;
    while (!std::all_of(workers.begin(), workers.end(), [](auto& w) { return w->finished(); })) {
      std::this_thread::sleep_for(10ms);
      const auto now = Clock::now();
      if (!cpu_from && now_ns() >= t.measure_from) cpu_from = mark();
      if (cpu_from && !cpu_to && now_ns() >= t.send_until) cpu_to = mark();
      if (now >= next_sample) {
        sample();
        next_sample = now + kSampleEvery;
        if (died.empty() && !server->alive()) {
          died = fmt::format("the server ended during the run ({})", server->stop());
          coordinator.abort();
        }
      }
      if (progress_.enabled() && now >= next_progress) {
        std::uint64_t delivered = 0;
        for (auto& w : workers) delivered += w->live_delivered();
        const double dt = std::chrono::duration<double>(now - last_at).count();
        const double rate = dt > 0 ? static_cast<double>(delivered - last_delivered) / dt : 0;
        const double elapsed = static_cast<double>(now_ns() - t.start) / 1e9;
        const double total = static_cast<double>(t.send_until - t.start) / 1e9;
        std::string rss = r_.rss_peak_kib ? fmt::format("  server peak RSS {:.1f} MiB",
                                                        static_cast<double>(*r_.rss_peak_kib) / 1024.0)
                                          : "";
        progress_.show(fmt::format("{} {}{}: {:.1f}/{:.1f} s  {} msg/s  delivered {}{}", target_.label,
                                   to_string(scenario_), r_.role.empty() ? "" : " (baseline)",
                                   std::max(0.0, elapsed), total, human_rate(rate), delivered, rss));
        last_delivered = delivered;
        last_at = now;
        next_progress = now + kProgressEvery;
      }
    }
    for (auto& t2 : threads) t2.join();
    progress_.clear();
    if (measured && server->alive()) {
      if (auto m = sample()) r_.hwm_kib = m->hwm_kib;
    }
    r_.server_exit = server->stop();
    if (sharded) {
      r_.shards = o_.shards;
      r_.placement = o_.placement;
      read_cross_shard_counts(log_path);
    }

    collect(workers);
    if (cpu_from && cpu_to && cpu_to->at > cpu_from->at) {
      const double wall = static_cast<double>(cpu_to->at - cpu_from->at) / 1e9;
      r_.bench_cpu = (cpu_to->bench - cpu_from->bench) / wall;
      // The sum only if every process could be read at both edges.
      std::optional<double> sum = measured ? std::optional<double>(0.0) : std::nullopt;
      for (std::size_t i = 0; i < procs.size(); ++i) {
        const auto& from = cpu_from->server[i];
        const auto& to = cpu_to->server[i];
        if (!from || !to) {
          sum.reset();
          continue;
        }
        const double cores = (*to - *from) / wall;
        if (sum) *sum += cores;
        if (!r_.server_processes.empty()) r_.server_processes[i].cpu = cores;
      }
      r_.server_cpu = sum;
    }
    r_.seconds = static_cast<double>(t.send_until - t.measure_from) / 1e9;
    r_.msgs_per_s = static_cast<double>(r_.delivered_in_window) / r_.seconds;
    r_.mb_per_s = r_.msgs_per_s * static_cast<double>(o_.size) / 1e6;
    if (scenario_ == Scenario::conns) {
      r_.probe_pairs = o_.probe_pairs;
      r_.probe_delivered = r_.integrity.delivered;
      r_.clients = o_.conns;
      if (r_.rss_start_kib && r_.rss_idle_kib && r_.connections > 0) {
        const double grew =
            (static_cast<double>(*r_.rss_idle_kib) - static_cast<double>(*r_.rss_start_kib)) * 1024.0;
        r_.rss_per_conn_bytes = grew / static_cast<double>(r_.connections);
        r_.rss_per_client_bytes = grew / static_cast<double>(o_.conns);
      }
    }
    if (scenario_ == Scenario::fanin) r_.fairness = fairness_of(r_.per_sender_delivered);
    if (!died.empty()) return fail("failed", died);
    for (auto& w : workers) {
      if (!w->result().error.empty()) return fail("failed", w->result().error);
    }
    r_.status = "ok";
    return std::move(r_);
  }

 private:
  static std::string sanitize(std::string s) {
    for (char& c : s) {
      if (c == ':' || c == '/') c = '_';
    }
    return s;
  }

  RunResult fail(std::string status, std::string reason) {
    r_.status = std::move(status);
    r_.reason = std::move(reason);
    return std::move(r_);
  }

  void collect(std::vector<std::unique_ptr<Worker>>& workers) {
    for (auto& w : workers) {
      const WorkerResult& x = w->result();
      r_.sent += x.sent;
      if (scenario_ == Scenario::fanin) {
        r_.per_sender_delivered.insert(r_.per_sender_delivered.end(), x.stream_delivered_in_window.begin(),
                                       x.stream_delivered_in_window.end());
      }
      r_.delivered_in_window += x.delivered_in_window;
      r_.integrity += x.integrity;
      r_.latency.merge(x.latency);
      r_.send_lag.merge(x.send_lag);
      r_.connections += x.connections;
      r_.flood_sent += x.flood_sent;
      r_.flood_sent_in_window += x.flood_sent_in_window;
      if (x.deaf_closed > 0 && r_.deaf_closed == 0)
        r_.first_deaf_close_s = static_cast<double>(x.first_deaf_close_ns) / 1e9;
      r_.deaf_closed += x.deaf_closed;
      r_.flood_closed += x.flood_closed;
      r_.flood_delivered += x.flood_delivered;
      r_.flood_lost += x.flood_lost;
      r_.flood_duplicated += x.flood_duplicated;
      r_.flood_reordered += x.flood_reordered;
      r_.unexpected_closes += x.unexpected_closes;
      r_.publish_unrouted += x.publish_unrouted;
      r_.server_errors += x.server_errors;
      r_.protocol_errors += x.protocol_errors;
      for (const auto& e : x.error_samples) {
        if (r_.error_samples.size() < 5) r_.error_samples.push_back(e);
      }
    }
    r_.drained = std::all_of(workers.begin(), workers.end(), [](auto& w) { return w->result().drained; });
    r_.flood_settled =
        std::all_of(workers.begin(), workers.end(), [](auto& w) { return w->result().flood_settled; });
  }

  const BenchOptions& o_;
  const TargetSpec& target_;
  Scenario scenario_;
  Progress& progress_;
  RunResult r_;
};

}  // namespace

std::string_view to_string(Placement p) noexcept {
  switch (p) {
    case Placement::planned:
      return "planned";
    case Placement::random:
      return "random";
    case Placement::crossing:
      return "crossing";
    case Placement::local:
      return "local";
  }
  return "?";
}

std::string_view to_string(Scenario s) noexcept {
  switch (s) {
    case Scenario::throughput:
      return "throughput";
    case Scenario::latency:
      return "latency";
    case Scenario::stall:
      return "stall";
    case Scenario::conns:
      return "conns";
    case Scenario::fanin:
      return "fanin";
  }
  return "?";
}

std::vector<Scenario> parse_scenarios(const std::vector<std::string>& words) {
  std::vector<Scenario> out;
  for (const auto& word : words) {
    std::size_t start = 0;
    while (start <= word.size()) {
      auto comma = word.find(',', start);
      if (comma == std::string::npos) comma = word.size();
      const std::string name = word.substr(start, comma - start);
      start = comma + 1;
      if (name.empty()) continue;
      if (name == "all") {
        out.insert(out.end(), std::begin(kAllScenarios), std::end(kAllScenarios));
        continue;
      }
      bool found = false;
      for (Scenario s : kAllScenarios) {
        if (name == to_string(s)) {
          out.push_back(s);
          found = true;
        }
      }
      if (!found) {
        throw std::invalid_argument(fmt::format(
            "--scenario: unknown scenario '{}' (throughput, latency, stall, conns, fanin, all)", name));
      }
    }
  }
  return out;
}

bool RunResult::integrity_ok() const noexcept {
  if (status != "ok") return true;  // reported separately
  return integrity.clean() && unexpected_closes == 0 && protocol_errors == 0 &&
         (scenario != Scenario::conns || probe_delivered == probe_pairs);
}

Progress::Progress() : enabled_{::isatty(STDERR_FILENO) == 1} {}

void Progress::show(const std::string& line) {
  if (!enabled_) return;
  fmt::print(stderr, "\r\033[K{}", line);
  (void)std::fflush(stderr);
  shown_ = true;
}

void Progress::clear() {
  if (!enabled_ || !shown_) return;
  fmt::print(stderr, "\r\033[K");
  (void)std::fflush(stderr);
  shown_ = false;
}

std::vector<RunResult> run_all(const BenchOptions& options, Progress& progress) {
  std::vector<RunResult> results;
  for (const TargetSpec& target : options.targets) {
    for (Scenario scenario : options.scenarios) {
      if (scenario == Scenario::stall) {
        // The reference: a plain throughput run with the same pairs, just
        // before, against a fresh server of the same target.
        std::optional<double> baseline;
        if (!results.empty()) {
          const RunResult& prev = results.back();
          if (prev.target == target.label && prev.scenario == Scenario::throughput && prev.status == "ok") {
            baseline = prev.msgs_per_s;
          }
        }
        if (!baseline) {
          results.push_back(Run(options, target, Scenario::throughput, "stall baseline", progress).go());
          if (results.back().status == "ok") baseline = results.back().msgs_per_s;
        }
        RunResult r = Run(options, target, Scenario::stall, "", progress).go();
        if (baseline) {
          r.baseline_msgs_per_s = *baseline;
          if (*baseline > 0) r.healthy_fraction = r.msgs_per_s / *baseline;
        }
        results.push_back(std::move(r));
      } else {
        results.push_back(Run(options, target, scenario, "", progress).go());
      }
    }
  }
  return results;
}

}  // namespace sb::bench
