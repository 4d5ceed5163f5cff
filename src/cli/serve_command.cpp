#include "cli/serve_command.hpp"

#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdio>
#include <istream>
#include <memory>
#include <vector>

#include "cli/memory.hpp"
#include "cli/service.hpp"
#include "cli/units.hpp"
#include "cluster/cluster.hpp"
#include "core/config.hpp"
#include "engines/engine.hpp"
#include "engines/engine_names.hpp"
#include "engines/reactor/sharded_engine.hpp"
#include "net/log.hpp"
#include "net/socket.hpp"

namespace sb::cli {

namespace {

using std::chrono::milliseconds;

constexpr milliseconds kMaxDuration = std::chrono::hours{24};

// The engines that implement protocol v2's authentication.
bool supports_auth(std::string_view engine) {
  return engine == "reactor" || engine == "race" || engine == "sharded";
}

CLI::Validator size_validator(std::uint64_t min, std::uint64_t max) {
  return CLI::Validator([min, max](std::string& text) { return check_size(text, min, max); }, "SIZE");
}

CLI::Validator duration_validator(milliseconds min, milliseconds max) {
  return CLI::Validator([min, max](std::string& text) { return check_duration(text, min, max); }, "DURATION");
}

std::vector<std::string> engine_names() {
  return {engines::kEngineNames.begin(), engines::kEngineNames.end()};
}

// Validated already: these cannot fail.
std::uint64_t size_of(const std::string& text) {
  return parse_size(text).value_or(0);
}
milliseconds duration_of(const std::string& text) {
  return parse_duration(text).value_or(milliseconds{0});
}

std::string human_size(std::uint64_t bytes) {
  char buf[32];
  (void)std::snprintf(buf, sizeof buf, "%.1fG",
                      static_cast<double>(bytes) / static_cast<double>(std::uint64_t{1} << 30));
  return buf;
}

// --max-pending-total's default: a quarter of what this process may use,
// rounded down to a MiB; 0 (no cap) if the memory cannot be read.
std::pair<std::uint64_t, std::string> default_pending_total() {
  const auto limit = memory_limit();
  if (!limit) return {0, "no cap: the memory size could not be read"};
  const std::uint64_t quarter = (limit->bytes / 4) & ~((std::uint64_t{1} << 20) - 1);
  return {quarter, "1/4 of the " + limit->source + " of " + human_size(limit->bytes)};
}

// CLI11 reads a config file only for the top-level app (2.1), so --config
// belongs to it and `serve` lets it through (fallthrough). This formatter
// gives the file's top-level keys to `serve`, so the file is just
// `listen = "127.0.0.1:9000"`; a [serve] table works too.
class ServeConfig final : public CLI::ConfigTOML {
 public:
  std::vector<CLI::ConfigItem> from_config(std::istream& input) const override {
    std::vector<CLI::ConfigItem> parsed = CLI::ConfigTOML::from_config(input);
    for (CLI::ConfigItem& item : parsed) {
      if (item.parents.empty() && item.name != "++" && item.name != "--") item.parents.emplace_back("serve");
    }
    return parsed;
  }
};

}  // namespace

CLI::Validator address_validator() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        try {
          net::parse_endpoint(text);
          return {};
        } catch (const net::StartupError& e) {
          return e.what();
        }
      },
      "HOST:PORT");
}

CLI::App* add_serve_command(CLI::App& app, ServeFlags& f) {
  if (f.engine.empty()) f.engine = std::string(engines::kEngineNames[0]);
  auto* cmd = app.add_subcommand("serve", "Run the router");
  // TOML with one key per flag, e.g. listen = "127.0.0.1:9000"; flags given
  // on the command line win over the file.
  app.config_formatter(std::make_shared<ServeConfig>());
  app.set_config("--config", "",
                 "serve: read flags from this TOML file (flag = value; command-line flags win)");
  app.allow_config_extras(CLI::config_extras_mode::error);  // a misspelt key is a usage error
  cmd->fallthrough();                                       // `serve --config FILE`
  cmd->add_option("--listen", f.listen,
                  "Address to listen on: HOST:PORT, [IPv6]:PORT or NAME:PORT (port 0: any free port)")
      ->check(address_validator())
      ->capture_default_str();
  cmd->add_option("--engine", f.engine, "Engine")
      ->check(CLI::IsMember(engine_names()))
      ->capture_default_str();
  cmd->add_option(
         "--max-frame", f.max_frame,
         "Largest payload a client may send (bytes, K, M, G; 1..1G); a longer frame closes its sender")
      ->check(size_validator(1, kMaxFrameLimit))
      ->capture_default_str();
  cmd->add_option("--max-pending", f.max_pending,
                  "Outbound bytes queued per destination before the slow-consumer policy acts (1..1T)")
      ->check(size_validator(1, kMaxPendingLimit))
      ->capture_default_str();
  cmd->add_option(
         "--max-pending-total", f.max_pending_total,
         "Outbound bytes queued for all clients together (1..1T; default: 1/4 of the memory or cgroup limit)")
      ->check(size_validator(1, kMaxPendingLimit));
  cmd->add_option("--slow-consumer", f.slow_consumer, "backpressure (pause its senders), disconnect, or drop")
      ->check(CLI::IsMember({"backpressure", "disconnect", "drop"}))
      ->capture_default_str();
  cmd->add_option("--stall-timeout", f.stall_timeout,
                  "backpressure: close a destination that makes no write progress for this long while "
                  "senders wait (1ms..24h)")
      ->check(duration_validator(milliseconds{1}, kMaxDuration))
      ->capture_default_str();
  cmd->add_option("--max-conns", f.max_conns, "Connection limit (0: what the open-files limit allows)")
      ->check(CLI::Range(std::int64_t{0}, kMaxConnsLimit))
      ->capture_default_str();
  cmd->add_option("--drain-timeout", f.drain_timeout,
                  "On SIGINT/SIGTERM, how long to keep writing queued output (0..24h)")
      ->check(duration_validator(milliseconds{0}, kMaxDuration))
      ->capture_default_str();
  cmd->add_option("--ring-bytes", f.ring_bytes,
                  "sharded: bytes in flight from one shard to another before the senders that feed them pause "
                  "(4K..1G)")
      ->check(size_validator(std::uint64_t{4} << 10, std::uint64_t{1} << 30))
      ->capture_default_str();
  cmd->add_option("--threads", f.threads,
                  "Threads for multi-threaded engines (0: one per core; at most 1024)")
      ->check(CLI::Range(std::int64_t{0}, kMaxThreads))
      ->capture_default_str();
  cmd->add_option("--auth-token-file", f.auth_token_file,
                  "Require protocol v2 authentication with the tokens in this file, one per line (reactor, "
                  "sharded and race engines)")
      ->check(CLI::ExistingFile);
  cmd->add_option("--auth-timeout", f.auth_timeout,
                  "With --auth-token-file: close a client not authenticated after this long (1ms..24h)")
      ->check(duration_validator(milliseconds{1}, kMaxDuration))
      ->capture_default_str();
  cmd->add_option("--log-level", f.log_level, "trace, debug, info, warn, error or off")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}))
      ->capture_default_str();
  cmd->add_option("--metrics", f.metrics,
                  "Serve /metrics (Prometheus), /healthz and (reactor) /clients over HTTP on HOST:PORT")
      ->check(address_validator());
  cmd->add_option("--cluster", f.cluster,
                  "Join the cluster of nodes sharing IDs through Redis at redis://HOST:PORT[/NAME] "
                  "(reactor and sharded engines; docs/CLUSTER.md)")
      ->check(CLI::Validator(
          [](std::string& text) -> std::string {
            try {
              (void)cluster::parse_cluster_url(text);
              return {};
            } catch (const std::invalid_argument& e) {
              return e.what();
            }
          },
          "URL"));
  cmd->add_option("--cluster-lease", f.cluster_lease,
                  "How long a node's number outlives its last refresh: a node killed without a word is "
                  "no_route after about this long")
      ->check(duration_validator(milliseconds{500}, milliseconds{60'000}))
      ->capture_default_str();
  cmd->add_option("--log-format", f.log_format, "text, or json (one object per line)")
      ->check(CLI::IsMember({"text", "json"}))
      ->capture_default_str();
  return cmd;
}

std::string check_serve_flags(const ServeFlags& f) {
  if (!f.cluster.empty() && f.engine != "reactor" && f.engine != "sharded") {
    return "--cluster: the " + f.engine + " engine cannot join a cluster (use --engine reactor or sharded)";
  }
  if (!f.cluster.empty() && f.engine == "sharded" && f.threads > cluster::kMaxShards) {
    return "--cluster: a node has at most " + std::to_string(cluster::kMaxShards) + " shards (--threads)";
  }
  if (!f.auth_token_file.empty() && !supports_auth(f.engine)) {
    return "--auth-token-file: the " + f.engine +
           " engine does not implement authentication (use --engine reactor, sharded or race)";
  }
  return {};
}

int serve(const ServeFlags& f) {
  net::setup_logging(f.log_level, net::parse_log_format(f.log_format).value_or(net::LogFormat::text));
  engines::ServerOptions options;
  options.listen = net::parse_endpoint(f.listen);
  if (!f.metrics.empty()) options.metrics = net::parse_endpoint(f.metrics);
  options.max_frame = size_of(f.max_frame);
  options.router.max_frame = options.max_frame;
  options.router.max_pending = size_of(f.max_pending);
  std::string total_note = "given";
  if (f.max_pending_total.empty()) {
    auto [total, note] = default_pending_total();
    options.router.max_pending_total = total;
    total_note = note;
  } else {
    options.router.max_pending_total = size_of(f.max_pending_total);
  }
  options.router.policy =
      core::parse_policy(f.slow_consumer).value_or(core::SlowConsumerPolicy::backpressure);
  options.router.stall_timeout = duration_of(f.stall_timeout);
  options.drain_timeout = duration_of(f.drain_timeout);
  options.auth_token_file = f.auth_token_file;
  options.router.auth_required = !f.auth_token_file.empty();
  options.router.auth_timeout = duration_of(f.auth_timeout);
  options.max_conns = static_cast<std::size_t>(f.max_conns);
  options.threads = static_cast<unsigned>(f.threads);
  options.ring_bytes = size_of(f.ring_bytes);

  const std::string engine_name = f.engine;
  options.on_listening = [engine_name](const net::Endpoint& bound) {
    (void)std::printf("switchboard listening on %s (engine %s)\n", bound.to_string().c_str(),
                      engine_name.c_str());
    (void)std::fflush(stdout);
    notify_ready("listening on " + bound.to_string());
  };
  options.on_draining = [] { notify_stopping(); };

  // The values in force, in one line (name=value, so --log-format json
  // gives them as fields).
  spdlog::info(
      "config: engine={} listen={} max-frame={} max-pending={} max-pending-total={} ({}) slow-consumer={} "
      "stall-timeout={} drain-timeout={} max-conns={} threads={} ring-bytes={} auth={}{} cluster={}",
      f.engine, options.listen.to_string(), options.max_frame, options.router.max_pending,
      options.router.max_pending_total, total_note, f.slow_consumer, f.stall_timeout, f.drain_timeout,
      f.max_conns == 0 ? std::string("auto") : std::to_string(f.max_conns),
      f.threads == 0 ? std::string("auto") : std::to_string(f.threads), options.ring_bytes,
      f.auth_token_file.empty() ? "off" : "on",
      f.auth_token_file.empty() ? std::string() : " auth-timeout=" + f.auth_timeout,
      f.cluster.empty() ? std::string("off") : f.cluster + " cluster-lease=" + f.cluster_lease);

  if (!f.cluster.empty()) {
    cluster::ClusterOptions cluster = cluster::parse_cluster_url(f.cluster);  // validated already
    cluster.lease = duration_of(f.cluster_lease);
    std::uint32_t shards = 1;
    if (f.engine == "sharded") {
      // The lease names the node's shard count, so the engine must run that many.
      shards = engines::reactor::ShardedEngine::shard_count(options.threads);
      if (shards > cluster::kMaxShards) {
        spdlog::warn("cluster: a node has at most {} shards: {} rather than one per core", cluster::kMaxShards,
                     cluster::kMaxShards);
        shards = cluster::kMaxShards;
      }
      options.threads = shards;
    }
    options.cluster = cluster::acquire_lease(cluster, shards);  // one line and exit 1 if Redis is not there
    spdlog::info("cluster: node {} of '{}' at {}", options.cluster->node, cluster.name, cluster.url);
  }
  // Given back once every shard has left (or if the engine did not start),
  // so that the other nodes treat its IDs as no_route at once.
  auto leave = [&] {
    if (!options.cluster) return;
    if (cluster::release_lease(*options.cluster)) {
      spdlog::info("cluster: node {}: lease given back", options.cluster->node);
    } else {
      spdlog::warn("cluster: node {}: could not give the lease back (Redis unreachable); it lapses in {} ms",
                   options.cluster->node, options.cluster->options.lease.count());
    }
  };

  auto engine = engines::make_engine(f.engine, options);
  if (!engine) throw net::StartupError("unknown engine '" + f.engine + "'");  // IsMember rules this out
  int code = 0;
  try {
    code = engine->run();
  } catch (...) {
    leave();
    throw;
  }
  leave();
  spdlog::info("stats: {}", engine->stats().summary());
  return code;
}

}  // namespace sb::cli
