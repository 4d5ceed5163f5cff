// Logging setup and a rate limiter for lines a misbehaving peer could
// otherwise make the server write without bound.
#pragma once

#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string_view>

namespace sb::net {

// Sets the default logger (stderr, "[time] [level] msg"); throws
// StartupError for an unknown level name.
void setup_logging(std::string_view level);

// Writes `line` at info level whatever --log-level says: the counters on
// SIGUSR1 and at stop are asked for explicitly, so they are always shown.
void log_always(std::string_view line);

// How log lines are written on stderr.
//   text: [2024-05-01 12:00:00.123 +02:00] [info] message
//   json: one object per line, {"time":"2024-05-01T12:00:00.123+02:00",
//         "level":"info","message":"...","fields":{...}}; "fields" holds the
//         message's name=value words (numbers as numbers), so a stats line
//         can be read without parsing its text, and is absent when there are
//         none. Times are local, with their UTC offset (RFC 3339).
enum class LogFormat { text, json };
std::optional<LogFormat> parse_log_format(std::string_view name) noexcept;
// setup_logging with a format (the one-argument form is text).
void setup_logging(std::string_view level, LogFormat format);

// At most `per_second` lines in each one-second window; the lines it held
// back are reported with the next one it lets through. One loop thread.
class RateLimit {
 public:
  explicit RateLimit(std::uint32_t per_second = 10) noexcept : per_second_{per_second} {}

  // True if a line may be written now; `suppressed` is how many were held
  // back since the last line that was let through.
  bool allow(std::uint64_t& suppressed) noexcept {
    const auto now = std::chrono::steady_clock::now();
    if (now - window_start_ >= std::chrono::seconds{1}) {
      window_start_ = now;
      in_window_ = 0;
    }
    if (in_window_ >= per_second_) {
      ++held_back_;
      return false;
    }
    ++in_window_;
    suppressed = held_back_;
    held_back_ = 0;
    return true;
  }

 private:
  std::uint32_t per_second_;
  std::uint32_t in_window_ = 0;
  std::uint64_t held_back_ = 0;
  std::chrono::steady_clock::time_point window_start_{};
};

}  // namespace sb::net
