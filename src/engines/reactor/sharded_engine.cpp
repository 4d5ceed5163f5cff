#include "engines/reactor/sharded_engine.hpp"

#include <signal.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <ctime>
#include <exception>
#include <latch>
#include <mutex>
#include <thread>

#include "engines/common/router_upkeep.hpp"
#include "engines/common/token_file.hpp"
#include "net/log.hpp"
#include "net/socket.hpp"

namespace sb::engines::reactor {

namespace {

constexpr unsigned kMaxShards = 4096;  // 12 ID bits: every shard keeps a 20-bit counter
constexpr auto kSignalWait = std::chrono::milliseconds{250};
constexpr auto kStatsWait = std::chrono::seconds{1};

}  // namespace

unsigned ShardedEngine::shard_count(unsigned threads) noexcept {
  unsigned n = threads != 0 ? threads : std::thread::hardware_concurrency();
  return std::clamp(n, 1U, kMaxShards);
}

ShardedEngine::ShardedEngine(ServerOptions options)
    : options_{std::move(options)}, count_{shard_count(options_.threads)} {}

ShardedEngine::~ShardedEngine() = default;

std::vector<std::string> ShardedEngine::read_tokens(bool at_start) {
  auto tokens = read_token_file(options_.auth_token_file, at_start);
  return tokens ? std::move(*tokens) : std::vector<std::string>{};
}

// SIGUSR1: each shard adds its counters on its own thread (the router is
// not shared), the sum is logged. A shard that does not answer within a
// second (a very long turn) is left out, and the line says so.
core::Stats ShardedEngine::collect_stats(bool log_each) const {
  struct Collector {
    std::mutex mu;
    std::condition_variable cv;
    core::Stats sum;
    unsigned answered = 0;
  };
  auto collector = std::make_shared<Collector>();
  for (unsigned i = 0; i < count_; ++i) {
    shards_[i]->post([collector, shard = shards_[i].get(), i, log_each] {
      const core::Stats s = shard->stats();
      if (log_each) spdlog::debug("shard {} counters: {}", i, s.summary());  // not "stats: ", the summed line's marker
      std::lock_guard lock{collector->mu};
      collector->sum += s;
      ++collector->answered;
      collector->cv.notify_one();
    });
  }
  std::unique_lock lock{collector->mu};
  collector->cv.wait_for(lock, kStatsWait, [&] { return collector->answered == count_; });
  if (collector->answered != count_) {
    spdlog::warn("sharded: {} of {} shards answered for the stats line", collector->answered, count_);
  }
  return collector->sum;
}

core::Stats ShardedEngine::stats() const {
  return running_.load() ? collect_stats(false) : stats_;
}

int ShardedEngine::run() {
  net::ignore_sigpipe();
  // Blocked here, before any shard thread exists: every thread inherits the
  // mask, and this thread takes the signals with sigtimedwait.
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGUSR1);
  sigaddset(&mask, SIGHUP);
  ::pthread_sigmask(SIG_BLOCK, &mask, nullptr);

  std::vector<std::string> tokens;
  if (options_.router.auth_required) tokens = read_tokens(true);

  set_ = std::make_unique<ShardSet>(count_);
  set_->max_conns = effective_max_conns(options_);
  set_->ring_bytes = options_.ring_bytes;
  // The first listener resolves port 0; the others bind the port it got.
  net::Endpoint bound = options_.listen;
  for (unsigned i = 0; i < count_; ++i) {
    auto link = std::make_unique<ShardLink>();
    link->index = i;
    link->set = set_.get();
    link->listener = net::listen_tcp(bound, 4096, /*reuse_port=*/true);
    if (i == 0) bound.port = net::local_port(link->listener.get());
    links_.push_back(std::move(link));
  }
  // --max-pending-total is the whole server's: each shard's router holds
  // its share of it.
  ServerOptions shard_options = options_;
  shard_options.router.max_pending_total = options_.router.max_pending_total / count_;
  for (unsigned i = 0; i < count_; ++i) {
    shards_.push_back(std::make_unique<ReactorEngine>(shard_options, links_[i].get()));
    if (options_.router.auth_required) shards_.back()->set_tokens(tokens);
  }

  // Start every shard; none is announced until all accept. A thread that
  // cannot be created, or a shard that fails to start, stops the rest and
  // is a start-up error.
  prepare_memory_upkeep();
  std::latch started{static_cast<std::ptrdiff_t>(count_)};
  std::atomic<unsigned> finished{0};
  std::mutex failure_mu;
  std::string failure;
  std::vector<std::thread> threads;
  auto fail = [&](std::string why) {
    std::lock_guard lock{failure_mu};
    if (failure.empty()) failure = std::move(why);
  };
  for (unsigned i = 0; i < count_; ++i) {
    try {
      threads.emplace_back([&, i] {
        bool counted = false;
        try {
          shards_[i]->run_shard([&] {
            counted = true;
            started.count_down();
          });
        } catch (const std::exception& e) {
          fail("shard " + std::to_string(i) + ": " + e.what());
        }
        if (!counted) started.count_down();
        finished.fetch_add(1);
      });
    } catch (const std::system_error& e) {
      fail("cannot start " + std::to_string(count_) + " shard threads (" + std::to_string(i) +
           " running): " + e.what());
      for (unsigned rest = i; rest < count_; ++rest) started.count_down();
      break;
    }
  }
  started.wait();
  auto stop_all = [&] {
    for (unsigned i = 0; i < count_; ++i) {
      if (set_->loops[i].load() != nullptr) shards_[i]->post([s = shards_[i].get()] { s->stop_now(); });
    }
  };
  auto join_all = [&] {
    for (auto& t : threads) t.join();
    for (const auto& s : shards_) stats_ += s->stats();
  };
  {
    std::lock_guard lock{failure_mu};
    if (!failure.empty()) {
      stop_all();
      join_all();
      throw net::StartupError(failure);
    }
  }

  spdlog::info(
      "sharded: listening on {} ({} shards, max {} connections, policy {}, max-pending {} bytes, "
      "max-pending-total {} bytes, {} per shard{})",
      bound.to_string(), count_, set_->max_conns, core::to_string(options_.router.policy),
      options_.router.max_pending, options_.router.max_pending_total, shard_options.router.max_pending_total,
      options_.router.auth_required ? ", tokens required" : "");
  running_.store(true);
  if (options_.on_listening) options_.on_listening(bound);

  bool draining = false;
  bool stopping = false;
  const timespec wait{0, std::chrono::duration_cast<std::chrono::nanoseconds>(kSignalWait).count()};
  while (finished.load() < count_) {
    {
      // A shard that failed while serving (epoll gone, an exception) takes
      // the others down with it: a server missing a shard loses its clients.
      std::lock_guard lock{failure_mu};
      if (!failure.empty() && !stopping) {
        stopping = true;
        spdlog::error("sharded: {}; stopping every shard", failure);
        stop_all();
      }
    }
    siginfo_t info{};
    const int sig = ::sigtimedwait(&mask, &info, &wait);
    if (sig < 0) continue;  // EAGAIN (timeout) or EINTR: look at the shards again
    if (sig == SIGUSR1) {
      net::log_always("stats: " + collect_stats(spdlog::should_log(spdlog::level::debug)).summary());
      continue;
    }
    if (sig == SIGHUP) {
      if (!options_.router.auth_required) {
        spdlog::info("SIGHUP: nothing to reload (no --auth-token-file)");
        continue;
      }
      if (auto fresh = read_token_file(options_.auth_token_file, false)) {
        for (auto& s : shards_) s->post([s = s.get(), t = *fresh] { s->set_tokens(t); });
      }
      continue;
    }
    if (draining) {
      spdlog::warn("sharded: second signal: stopping without waiting for the drain");
      stop_all();
      continue;
    }
    spdlog::info("sharded: signal {}: no longer accepting or reading; draining queued output for up to {} ms",
                 sig, options_.drain_timeout.count());
    draining = true;
    if (options_.on_draining) options_.on_draining();
    for (auto& s : shards_) s->post([s = s.get()] { s->begin_drain(); });
  }
  running_.store(false);
  join_all();
  std::lock_guard lock{failure_mu};
  return failure.empty() ? 0 : 1;
}

}  // namespace sb::engines::reactor
