#include "bench/targets.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "engines/engine_names.hpp"

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

}  // namespace

PeerProtocol TargetSpec::protocol() const noexcept {
  switch (kind) {
    case TargetKind::nats:
      return PeerProtocol::nats;
    case TargetKind::redis:
      return PeerProtocol::redis;
    case TargetKind::engine:
    case TargetKind::address:
      break;
  }
  return version == 2 ? PeerProtocol::switchboard_v2 : PeerProtocol::switchboard;
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
      // ones by itself), and every engine plus the two reference servers.
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
        }
        continue;
      }
      TargetSpec t;
      t.label = name;
      if (name == "nats") {
        t.kind = TargetKind::nats;
      } else if (name == "redis") {
        t.kind = TargetKind::redis;
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
          throw std::invalid_argument(fmt::format(
              "--target: unknown target '{}' (engines: {}; also nats, redis, addr:HOST:PORT, engines, all)",
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

RunningTarget RunningTarget::start(const TargetSpec& spec, const ServerFlags& flags,
                                   const std::string& log_path) {
  RunningTarget r;
  r.log_path_ = log_path;
  if (spec.kind == TargetKind::address) {
    if (!answers(spec.address))
      throw std::runtime_error(fmt::format("nothing answers at {}", spec.address.to_string()));
    r.endpoint_ = spec.address;
    r.log_path_.clear();
    return r;
  }

  std::vector<std::string> argv;
  net::Endpoint endpoint{"127.0.0.1", 0};
  if (spec.kind == TargetKind::engine) {
    argv = {self_executable(), "serve",     "--listen",    "127.0.0.1:0",
            "--engine",        spec.engine, "--log-level", "warn"};
    if (!flags.max_pending.empty()) argv.insert(argv.end(), {"--max-pending", flags.max_pending});
    if (!flags.slow_consumer.empty()) argv.insert(argv.end(), {"--slow-consumer", flags.slow_consumer});
  } else {
    const bool nats = spec.kind == TargetKind::nats;
    const char* program = nats ? kNatsServer : kRedisServer;
    if (::access(program, X_OK) != 0) throw TargetUnavailable(fmt::format("{} is not installed", program));
    endpoint.port = find_free_port();
    const std::string port = std::to_string(endpoint.port);
    if (nats) {
      argv = {program, "-a", "127.0.0.1", "-p", port};
    } else {
      argv = {program, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"};
      if (flags.redis_maxclients != 0)
        argv.insert(argv.end(), {"--maxclients", std::to_string(flags.redis_maxclients)});
    }
  }
  r.command_ = argv;
  r.child_ = ChildProcess::spawn(argv, log_path, false);  // throws std::runtime_error

  const auto deadline = std::chrono::steady_clock::now() + kStartTimeout;
  while (true) {
    if (!r.child_->running()) {
      throw std::runtime_error(fmt::format("{} ended ({}) before it listened: {}", argv[0],
                                           r.child_->exit_description(), log_tail(log_path)));
    }
    if (spec.kind == TargetKind::engine) {
      if (auto e = listening_line(read_text_file(log_path))) {
        r.endpoint_ = *e;
        return r;
      }
    } else if (answers(endpoint)) {
      r.endpoint_ = endpoint;
      return r;
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      r.stop();
      throw std::runtime_error(fmt::format(
          "{} did not listen within {} s: {}", argv[0],
          std::chrono::duration_cast<std::chrono::seconds>(kStartTimeout).count(), log_tail(log_path)));
    }
    std::this_thread::sleep_for(10ms);
  }
}

std::optional<pid_t> RunningTarget::pid() const noexcept {
  if (child_ && child_->pid() > 0) return child_->pid();
  return std::nullopt;
}

bool RunningTarget::alive() {
  if (!child_) return true;  // an address target: the run itself notices if it went away
  return child_->running();
}

std::string RunningTarget::stop() {
  if (!child_) return "";
  return child_->stop();
}

}  // namespace sb::bench
