#include "cli/units.hpp"

#include <fmt/format.h>

#include <array>
#include <charconv>
#include <cmath>
#include <utility>

namespace sb::cli {

namespace {

constexpr std::array<std::pair<std::string_view, unsigned>, 10> kSizeSuffixes = {{
    {"B", 0},
    {"K", 10},
    {"k", 10},
    {"KiB", 10},
    {"M", 20},
    {"MiB", 20},
    {"G", 30},
    {"GiB", 30},
    {"T", 40},
    {"TiB", 40},
}};

}  // namespace

std::optional<std::uint64_t> parse_size(std::string_view text) noexcept {
  std::uint64_t value = 0;
  const char* first = text.data();
  const char* last = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(first, last, value);  // rejects a sign, and out_of_range past 2^64-1
  if (ec != std::errc{} || ptr == first) return std::nullopt;
  std::string_view suffix(ptr, static_cast<std::size_t>(last - ptr));
  unsigned shift = 0;
  if (!suffix.empty()) {
    bool known = false;
    for (const auto& [name, s] : kSizeSuffixes) {
      if (suffix == name) {
        shift = s;
        known = true;
      }
    }
    if (!known) return std::nullopt;
  }
  if (value > (~std::uint64_t{0} >> shift)) return std::nullopt;
  return value << shift;
}

std::optional<std::chrono::milliseconds> parse_duration(std::string_view text) noexcept {
  double scale = 1000.0;  // to milliseconds
  if (text.ends_with("ms")) {
    scale = 1.0;
    text.remove_suffix(2);
  } else if (text.ends_with("s")) {
    text.remove_suffix(1);
  } else if (text.ends_with("m")) {
    scale = 60'000.0;
    text.remove_suffix(1);
  } else if (text.ends_with("h")) {
    scale = 3'600'000.0;
    text.remove_suffix(1);
  }
  if (text.empty()) return std::nullopt;
  // std::from_chars for double is in libstdc++ 11+.
  double value = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  // value <= 1e9 units keeps the product (at most 3.6e15 ms) exact in an
  // int64; the callers' own bounds are far lower.
  if (ec != std::errc{} || ptr != text.data() + text.size() || !(value >= 0) || value > 1e9)
    return std::nullopt;
  return std::chrono::milliseconds{static_cast<std::int64_t>(std::llround(value * scale))};
}

std::string check_size(std::string_view text, std::uint64_t min, std::uint64_t max) {
  const auto v = parse_size(text);
  if (!v) return fmt::format("'{}' is not a size such as 65536, 64K, 8M or 1G", text);
  if (*v < min) return fmt::format("'{}' is below the minimum of {}", text, format_size(min));
  if (*v > max) return fmt::format("'{}' is above the maximum of {}", text, format_size(max));
  return {};
}

std::string check_duration(std::string_view text, std::chrono::milliseconds min,
                           std::chrono::milliseconds max) {
  const auto v = parse_duration(text);
  if (!v) return fmt::format("'{}' is not a duration such as 500ms, 10s, 2m or 1h", text);
  if (*v < min) {
    return min.count() == 1 ? fmt::format("'{}' must be at least 1ms (0 has no meaning here)", text)
                            : fmt::format("'{}' is below the minimum of {}", text, format_duration(min));
  }
  if (*v > max) return fmt::format("'{}' is above the maximum of {}", text, format_duration(max));
  return {};
}

std::string format_size(std::uint64_t bytes) {
  static constexpr std::array<std::pair<unsigned, char>, 4> kUnits = {
      {{40, 'T'}, {30, 'G'}, {20, 'M'}, {10, 'K'}}};
  for (const auto& [shift, unit] : kUnits) {
    const std::uint64_t one = std::uint64_t{1} << shift;
    if (bytes >= one && bytes % one == 0) return std::to_string(bytes >> shift) + unit;
  }
  return std::to_string(bytes);
}

std::string format_duration(std::chrono::milliseconds d) {
  const auto ms = d.count();
  if (ms != 0 && ms % 3'600'000 == 0) return std::to_string(ms / 3'600'000) + "h";
  if (ms != 0 && ms % 60'000 == 0) return std::to_string(ms / 60'000) + "m";
  if (ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
  return std::to_string(ms) + "ms";
}

}  // namespace sb::cli
