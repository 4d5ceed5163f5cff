#include "net/log.hpp"

#include <spdlog/sinks/stdout_sinks.h>

#include "net/socket.hpp"

namespace sb::net {

void setup_logging(std::string_view level) {
  const auto lvl = spdlog::level::from_str(std::string(level));
  if (lvl == spdlog::level::off && level != "off") {
    throw StartupError("unknown log level '" + std::string(level) +
                       "' (use trace, debug, info, warn, error or off)");
  }
  auto logger = spdlog::stderr_logger_mt("switchboard");
  logger->set_pattern("[%Y-%m-%d %H:%M:%S.%e] [%l] %v");
  logger->set_level(lvl);
  logger->flush_on(spdlog::level::trace);
  spdlog::set_default_logger(logger);
}

void log_always(std::string_view line) {
  const auto logger = spdlog::default_logger();
  // Straight to the sinks: the logger's own level would filter an info line.
  const spdlog::details::log_msg msg{logger->name(), spdlog::level::info, spdlog::string_view_t{line.data(), line.size()}};
  for (const auto& sink : logger->sinks()) {
    if (sink->should_log(msg.level)) sink->log(msg);
  }
  logger->flush();
}

}  // namespace sb::net
