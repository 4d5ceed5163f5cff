#include <algorithm>

#include "engines/asio/asio_engines.hpp"
#include "engines/engine.hpp"
#include "engines/engine_names.hpp"
#include "engines/reactor/reactor_engine.hpp"

namespace sb::engines {

std::unique_ptr<Engine> make_engine(std::string_view name, const ServerOptions& options) {
  if (name == "reactor") return std::make_unique<reactor::ReactorEngine>(options);
  if (options.metrics && std::find(kEngineNames.begin(), kEngineNames.end(), name) != kEngineNames.end()) {
    throw net::StartupError("--metrics: metrics are served by the reactor engine only for now (--engine reactor)");
  }
  if (auto engine = asio_engines::make(name, options)) return engine;
  return nullptr;
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
