#include "cli/units.hpp"

#include <charconv>
#include <cmath>
#include <string>

namespace sb::cli {

std::optional<std::uint64_t> parse_size(std::string_view text) noexcept {
  std::uint64_t value = 0;
  const char* first = text.data();
  const char* last = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(first, last, value);
  if (ec != std::errc{} || ptr == first) return std::nullopt;
  std::string_view suffix(ptr, static_cast<std::size_t>(last - ptr));
  unsigned shift = 0;
  if (suffix.empty() || suffix == "B") shift = 0;
  else if (suffix == "K" || suffix == "KiB" || suffix == "k") shift = 10;
  else if (suffix == "M" || suffix == "MiB") shift = 20;
  else if (suffix == "G" || suffix == "GiB") shift = 30;
  else return std::nullopt;
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
  }
  if (text.empty()) return std::nullopt;
  // std::from_chars for double is in libstdc++ 11+.
  double value = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{} || ptr != text.data() + text.size() || !(value >= 0) || value > 1e9) return std::nullopt;
  return std::chrono::milliseconds{static_cast<std::int64_t>(std::llround(value * scale))};
}

}  // namespace sb::cli
