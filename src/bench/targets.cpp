#include "bench/targets.hpp"

#include <fmt/format.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <thread>

#include "engines/engine_names.hpp"
#include "protocol/wire.hpp"

namespace sb::bench {

namespace {

using namespace std::chrono_literals;
constexpr auto kStartTimeout = 10s;

std::string trim(const std::string& s) {
  const auto first = s.find_first_not_of(" \t");
  if (first == std::string::npos) return "";
  const auto last = s.find_last_not_of(" \t");
  return s.substr(first, last - first + 1);
}

std::string log_tail(const std::string& path) {
  std::string text = read_text_file(path);
  if (text.size() > 600) text = "..." + text.substr(text.size() - 600);
  while (!text.empty() && text.back() == '\n') text.pop_back();
  return text.empty() ? "(no output)" : text;
}

bool answers(const net::Endpoint& where) {
  try {
    net::connect_tcp(where);
    return true;
  } catch (const net::StartupError&) {
    return false;
  }
}

// The endpoint from "switchboard listening on 127.0.0.1:PORT (engine NAME)".
std::optional<net::Endpoint> listening_line(const std::string& log) {
  static constexpr std::string_view kMarker = "switchboard listening on ";
  const auto at = log.find(kMarker);
  if (at == std::string::npos) return std::nullopt;
  const auto start = at + kMarker.size();
  const auto end = log.find_first_of(" \n", start);
  if (end == std::string::npos) return std::nullopt;  // line not complete yet
  try {
    return net::parse_endpoint(log.substr(start, end - start));
  } catch (const net::StartupError&) {
    return std::nullopt;
  }
}

// "DIR/cluster-throughput.log" -> "DIR/cluster-throughput-node-a.log".
std::string log_with_suffix(const std::string& path, std::string_view suffix) {
  const auto slash = path.rfind('/');
  const auto dot = path.rfind('.');
  if (dot == std::string::npos || (slash != std::string::npos && dot < slash))
    return path + std::string(suffix);
  return path.substr(0, dot) + std::string(suffix) + path.substr(dot);
}

// A cluster per run, named so that it could share a Redis with any other.
std::string cluster_name() {
  static unsigned runs = 0;
  return fmt::format("bench-{}-{}", ::getpid(), ++runs);
}

// Reads exactly `n` bytes from a blocking socket, waiting with poll() no
// later than `deadline`; false on timeout, error or close.
bool read_exactly(int fd, char* out, std::size_t n, std::chrono::steady_clock::time_point deadline) {
  std::size_t got = 0;
  while (got < n) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd, POLLIN, 0};
    const int ready = ::poll(&p, 1, static_cast<int>(left.count()));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) return false;
    const ssize_t r = ::recv(fd, out + got, n - got, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    got += static_cast<std::size_t>(r);
  }
  return true;
}

// The cluster's nodes found each other: a v1 message from a client of
// `from` reaches a client of `to`. A node learns of another through Redis
// (its join message, or its next poll of the leases), and until then a
// frame for the other's IDs is no_route and dropped; the listening lines
// alone do not say that has happened. Sends a probe every 50 ms until one
// arrives; throws std::runtime_error at the deadline.
void wait_for_route(const net::Endpoint& from, const net::Endpoint& to,
                    std::chrono::steady_clock::time_point deadline) {
  const net::Fd receiver = net::connect_tcp(to);
  const net::Fd sender = net::connect_tcp(from);
  char id[4];
  char ignored[4];
  if (!read_exactly(receiver.get(), id, sizeof id, deadline) ||
      !read_exactly(sender.get(), ignored, sizeof ignored, deadline)) {
    throw std::runtime_error("a cluster node gave no client ID to the route probe");
  }
  static constexpr std::string_view kProbe{"bench route probe", sizeof "bench route probe"};  // with its NUL
  std::string frame(id, sizeof id);
  frame += kProbe;
  std::string seen;
  while (std::chrono::steady_clock::now() < deadline) {
    if (::send(sender.get(), frame.data(), frame.size(), MSG_NOSIGNAL) !=
        static_cast<ssize_t>(frame.size())) {
      throw std::runtime_error(
          fmt::format("the route probe could not send to {}: {}", from.to_string(), errno_text(errno)));
    }
    pollfd p{receiver.get(), POLLIN, 0};
    if (::poll(&p, 1, 50) > 0) {
      char buf[512];
      const ssize_t n = ::recv(receiver.get(), buf, sizeof buf, 0);
      if (n <= 0)
        throw std::runtime_error(fmt::format("{} closed the route probe's receiver", to.to_string()));
      seen.append(buf, static_cast<std::size_t>(n));
      if (seen.find(kProbe) != std::string::npos) return;
    }
  }
  throw std::runtime_error(fmt::format(
      "a client of node A ({}) could not reach a client of node B ({}) within {} s", from.to_string(),
      to.to_string(), std::chrono::duration_cast<std::chrono::seconds>(kStartTimeout).count()));
}

}  // namespace

PeerProtocol TargetSpec::protocol() const noexcept {
  switch (kind) {
    case TargetKind::nats:
      return PeerProtocol::nats;
    case TargetKind::redis:
      return PeerProtocol::redis;
    case TargetKind::engine:
    case TargetKind::address:
    case TargetKind::cluster:
      break;
  }
  return version == 2 ? PeerProtocol::switchboard_v2 : PeerProtocol::switchboard;
}

bool TargetSpec::switchboard() const noexcept {
  return kind == TargetKind::engine || kind == TargetKind::address || kind == TargetKind::cluster;
}

std::vector<TargetSpec> parse_targets(const std::vector<std::string>& words) {
  std::vector<TargetSpec> out;
  for (const auto& word : words) {
    std::size_t start = 0;
    while (start <= word.size()) {
      auto comma = word.find(',', start);
      if (comma == std::string::npos) comma = word.size();
      const std::string name = trim(word.substr(start, comma - start));
      start = comma + 1;
      if (name.empty()) continue;
      // Keywords: every engine this build has (so a matrix picks up new
      // ones by itself), and every engine plus the two reference servers
      // and the cluster.
      if (name == "engines" || name == "all-engines" || name == "all") {
        for (auto e : engines::kEngineNames) {
          TargetSpec t;
          t.label = std::string(e);
          t.kind = TargetKind::engine;
          t.engine = std::string(e);
          out.push_back(std::move(t));
        }
        if (name == "all") {
          out.push_back(TargetSpec{"nats", TargetKind::nats, "", {}});
          out.push_back(TargetSpec{"redis", TargetKind::redis, "", {}});
          out.push_back(TargetSpec{"cluster", TargetKind::cluster, "", {}});
        }
        continue;
      }
      TargetSpec t;
      t.label = name;
      if (name == "nats") {
        t.kind = TargetKind::nats;
      } else if (name == "redis") {
        t.kind = TargetKind::redis;
      } else if (name == "cluster") {
        t.kind = TargetKind::cluster;
      } else if (name.starts_with("addr:")) {
        t.kind = TargetKind::address;
        try {
          t.address = net::parse_endpoint(name.substr(5));
        } catch (const net::StartupError& e) {
          throw std::invalid_argument(fmt::format("--target {}: {}", name, e.what()));
        }
      } else {
        bool known = false;
        std::string names;
        for (auto e : engines::kEngineNames) {
          known = known || e == name;
          names += fmt::format("{}{}", names.empty() ? "" : ", ", e);
        }
        if (!known) {
          throw std::invalid_argument(
              fmt::format("--target: unknown target '{}' (engines: {}; also nats, redis, cluster, "
                          "addr:HOST:PORT, engines, all)",
                          name, names));
        }
        t.kind = TargetKind::engine;
        t.engine = name;
      }
      out.push_back(std::move(t));
    }
  }
  return out;
}

// Starts one process of a target and waits until it listens: a
// switchboard prints its listening line (which gives the port it bound);
// NATS and Redis answer on the port they were given. Throws
// std::runtime_error; what was started is stopped by the caller's
// RunningTarget.
net::Endpoint RunningTarget::launch(ServerProcessInfo info, std::optional<net::Endpoint> answers_at) {
  const std::string what =
      info.role == "server" ? info.command.front() : fmt::format("{} ({})", info.role, info.command.front());
  const std::string log_path = info.log_path;
  Process& p = processes_.emplace_back(Process{std::move(info), {}});
  p.child = ChildProcess::spawn(p.info.command, log_path, false);  // throws std::runtime_error
  p.info.pid = p.child.pid();

  const auto deadline = std::chrono::steady_clock::now() + kStartTimeout;
  while (true) {
    if (!p.child.running()) {
      throw std::runtime_error(fmt::format("{} ended ({}) before it listened: {}", what,
                                           p.child.exit_description(), log_tail(log_path)));
    }
    if (!answers_at) {
      if (auto e = listening_line(read_text_file(log_path))) return *e;
    } else if (answers(*answers_at)) {
      return *answers_at;
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      throw std::runtime_error(fmt::format(
          "{} did not listen within {} s: {}", what,
          std::chrono::duration_cast<std::chrono::seconds>(kStartTimeout).count(), log_tail(log_path)));
    }
    std::this_thread::sleep_for(10ms);
  }
}

RunningTarget RunningTarget::start(const TargetSpec& spec, const ServerFlags& flags,
                                   const std::string& log_path) {
  RunningTarget r;
  if (spec.kind == TargetKind::address) {
    if (!answers(spec.address))
      throw std::runtime_error(fmt::format("nothing answers at {}", spec.address.to_string()));
    r.endpoint_ = spec.address;
    return r;
  }

  auto serve = [&](const std::string& engine) {
    // The sharded engine at info: the stats line it logs as it exits says
    // how many frames crossed shards.
    std::vector<std::string> argv = {self_executable(), "serve",   "--listen",
                                     "127.0.0.1:0",     "--engine", engine,
                                     "--log-level",     engine == "sharded" ? "info" : "warn"};
    if (!flags.max_pending.empty()) argv.insert(argv.end(), {"--max-pending", flags.max_pending});
    if (!flags.slow_consumer.empty()) argv.insert(argv.end(), {"--slow-consumer", flags.slow_consumer});
    if (engine == "sharded") argv.insert(argv.end(), {"--threads", std::to_string(flags.shards)});
    return argv;
  };
  auto redis = [&](std::uint16_t port) {
    std::vector<std::string> argv = {kRedisServer, "--port", std::to_string(port), "--bind", "127.0.0.1",
                                     "--save",     "",       "--appendonly",       "no"};
    if (flags.redis_maxclients != 0)
      argv.insert(argv.end(), {"--maxclients", std::to_string(flags.redis_maxclients)});
    return argv;
  };
  auto require = [](const char* program) {
    if (::access(program, X_OK) != 0) throw TargetUnavailable(fmt::format("{} is not installed", program));
  };

  switch (spec.kind) {
    case TargetKind::engine:
      r.endpoint_ = r.launch({"server", -1, serve(spec.engine), log_path}, std::nullopt);
      break;
    case TargetKind::nats: {
      require(kNatsServer);
      const net::Endpoint at{"127.0.0.1", find_free_port()};
      r.endpoint_ = r.launch(
          {"server", -1, {kNatsServer, "-a", "127.0.0.1", "-p", std::to_string(at.port)}, log_path}, at);
      break;
    }
    case TargetKind::redis: {
      require(kRedisServer);
      const net::Endpoint at{"127.0.0.1", find_free_port()};
      r.endpoint_ = r.launch({"server", -1, redis(at.port), log_path}, at);
      break;
    }
    case TargetKind::cluster: {
      // Redis first, then the nodes one after the other: node B joins while
      // node A already listens on the members channel, so A hears of B at
      // once rather than at its next poll of the leases.
      require(kRedisServer);
      const net::Endpoint at{"127.0.0.1", find_free_port()};
      r.launch({"redis-server", -1, redis(at.port), log_with_suffix(log_path, "-redis")}, at);
      const std::string url = fmt::format("redis://{}/{}", at.to_string(), cluster_name());
      auto node = serve("reactor");
      node.insert(node.end(), {"--cluster", url});
      r.endpoint_ = r.launch({"node A", -1, node, log_with_suffix(log_path, "-node-a")}, std::nullopt);
      r.receiver_endpoint_ =
          r.launch({"node B", -1, node, log_with_suffix(log_path, "-node-b")}, std::nullopt);
      wait_for_route(r.endpoint_, *r.receiver_endpoint_, std::chrono::steady_clock::now() + kStartTimeout);
      break;
    }
    case TargetKind::address:
      break;  // above
  }
  return r;
}

std::vector<ServerProcessInfo> RunningTarget::processes() const {
  std::vector<ServerProcessInfo> out;
  out.reserve(processes_.size());
  for (const Process& p : processes_) out.push_back(p.info);
  return out;
}

bool RunningTarget::alive() {
  // An address target: the run itself notices if it went away.
  return std::all_of(processes_.begin(), processes_.end(), [](Process& p) { return p.child.running(); });
}

std::string RunningTarget::stop() {
  if (processes_.size() == 1) return processes_.front().child.stop();
  std::string out;
  // Last started first: the nodes give their leases back while Redis is there.
  for (auto p = processes_.rbegin(); p != processes_.rend(); ++p) {
    out += fmt::format("{}{} {}", out.empty() ? "" : ", ", p->info.role, p->child.stop());
  }
  return out;
}

std::string RunningTarget::logs() const {
  std::string out;
  for (const Process& p : processes_) out += (out.empty() ? "" : ", ") + p.info.log_path;
  return out;
}

std::vector<std::string> RunningTarget::command() const {
  for (const Process& p : processes_) {
    if (p.info.role == "server" || p.info.role == "node A") return p.info.command;
  }
  return {};
}

}  // namespace sb::bench
