#include "net/log.hpp"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <ctime>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "net/socket.hpp"

namespace sb::net {

namespace {

// "2024-05-01T12:00:00.123+02:00": local time with its offset (RFC 3339).
std::string rfc3339(spdlog::log_clock::time_point when) {
  const auto since_epoch = when.time_since_epoch();
  const auto secs = std::chrono::duration_cast<std::chrono::seconds>(since_epoch);
  const auto millis = std::chrono::duration_cast<std::chrono::milliseconds>(since_epoch - secs).count();
  const std::time_t t = static_cast<std::time_t>(secs.count());
  std::tm tm{};
  ::localtime_r(&t, &tm);
  const long offset_min = tm.tm_gmtoff / 60;
  const long abs_min = offset_min < 0 ? -offset_min : offset_min;
  char buf[64];
  (void)std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03d%c%02ld:%02ld", tm.tm_year + 1900, tm.tm_mon + 1,
                tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(millis), offset_min < 0 ? '-' : '+',
                abs_min / 60, abs_min % 60);
  return buf;
}

// The message's "name=value" words; a value that is a whole number becomes a
// JSON number. Names are [a-z0-9_-]+, which is how every line the server
// writes names its fields ("stats: accepted=3 routed=2 ...").
nlohmann::ordered_json message_fields(std::string_view msg) {
  nlohmann::ordered_json fields = nlohmann::ordered_json::object();
  std::size_t pos = 0;
  while (pos < msg.size()) {
    const std::size_t end = std::min(msg.find(' ', pos), msg.size());
    const std::string_view word = msg.substr(pos, end - pos);
    pos = end + 1;
    const std::size_t eq = word.find('=');
    if (eq == 0 || eq == std::string_view::npos || eq + 1 == word.size()) continue;
    const std::string_view name = word.substr(0, eq);
    bool plain = true;
    for (const char c : name) {
      plain = plain && ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-');
    }
    if (!plain) continue;
    std::string_view value = word.substr(eq + 1);
    if (value.back() == ',' || value.back() == ';') value.remove_suffix(1);
    std::uint64_t number = 0;
    auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), number);
    if (ec == std::errc{} && ptr == value.data() + value.size()) {
      fields[std::string(name)] = number;
    } else {
      fields[std::string(name)] = std::string(value);
    }
  }
  return fields;
}

// One JSON object per line. nlohmann::ordered_json does the escaping (control
// characters, quotes, and bytes that are not UTF-8, which it replaces).
class JsonFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    const std::string_view text(msg.payload.data(), msg.payload.size());
    nlohmann::ordered_json line = nlohmann::ordered_json::object();
    line["time"] = rfc3339(msg.time);
    const auto level = spdlog::level::to_string_view(msg.level);
    line["level"] = std::string(level.data(), level.size());
    line["message"] = std::string(text);
    nlohmann::ordered_json fields = message_fields(text);
    if (!fields.empty()) line["fields"] = std::move(fields);
    const std::string out = line.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n";
    dest.append(out.data(), out.data() + out.size());
  }
  std::unique_ptr<spdlog::formatter> clone() const override { return std::make_unique<JsonFormatter>(); }
};

}  // namespace

std::optional<LogFormat> parse_log_format(std::string_view name) noexcept {
  if (name == "text") return LogFormat::text;
  if (name == "json") return LogFormat::json;
  return std::nullopt;
}

void setup_logging(std::string_view level) { setup_logging(level, LogFormat::text); }

void setup_logging(std::string_view level, LogFormat format) {
  const auto lvl = spdlog::level::from_str(std::string(level));
  if (lvl == spdlog::level::off && level != "off") {
    throw StartupError("unknown log level '" + std::string(level) +
                       "' (use trace, debug, info, warn, error or off)");
  }
  auto logger = spdlog::stderr_logger_mt("switchboard");
  if (format == LogFormat::json) {
    logger->set_formatter(std::make_unique<JsonFormatter>());
  } else {
    // %z: the UTC offset, "+02:00", so lines from machines in different
    // zones (or a zone change) can be ordered.
    logger->set_pattern("[%Y-%m-%d %H:%M:%S.%e %z] [%l] %v");
  }
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
