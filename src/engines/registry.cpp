#include "engines/asio/asio_engines.hpp"
#include "engines/engine.hpp"
#include "engines/metrics_thread.hpp"
#include "engines/reactor/reactor_engine.hpp"
#include "engines/reactor/sharded_engine.hpp"

namespace sb::engines {

namespace {

// An engine whose stats() any thread may call, with /metrics and /healthz
// served beside it by a MetricsThread while it runs.
class WithMetricsThread final : public Engine {
 public:
  WithMetricsThread(std::unique_ptr<Engine> inner, net::Endpoint where)
      : inner_{std::move(inner)}, where_{std::move(where)} {}
  int run() override {
    const MetricsThread metrics(where_, [this] { return inner_->stats(); });
    return inner_->run();
  }
  core::Stats stats() const override { return inner_->stats(); }

 private:
  std::unique_ptr<Engine> inner_;
  net::Endpoint where_;
};

}  // namespace

std::unique_ptr<Engine> make_engine(std::string_view name, const ServerOptions& options) {
  if (name == "reactor") return std::make_unique<reactor::ReactorEngine>(options);
  std::unique_ptr<Engine> engine;
  if (name == "sharded") {
    engine = std::make_unique<reactor::ShardedEngine>(options);
  } else {
    engine = asio_engines::make(name, options);
  }
  // These engines' stats() may be called from any thread while they run:
  // the Asio engines' counters are atomics (asio_engine.hpp), race publishes
  // a copy each turn, sharded asks each shard on its own thread.
  if (engine && options.metrics)
    return std::make_unique<WithMetricsThread>(std::move(engine), *options.metrics);
  return engine;
}

std::size_t effective_max_conns(const ServerOptions& options) noexcept {
  constexpr std::uint64_t kReservedFds = 64;
  const std::uint64_t limit = net::open_files_limit();
  const std::uint64_t by_fds = limit > kReservedFds ? limit - kReservedFds : 1;
  // An explicit limit is honoured even above what the descriptors allow: the
  // engines survive EMFILE by accepting and closing (see DESIGN.md section 1).
  return options.max_conns == 0 ? static_cast<std::size_t>(by_fds) : options.max_conns;
}

}  // namespace sb::engines
