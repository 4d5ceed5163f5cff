// Parsing of the sizes and durations that flags take, and the bounds that
// keep every value a flag accepts representable wherever it is used.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace sb::cli {

// "1048576", "64K", "8M", "1G", "1T" (powers of 1024). nullopt if malformed
// or above 2^64-1.
std::optional<std::uint64_t> parse_size(std::string_view text) noexcept;

// "10s", "500ms", "1.5s", "2m", "1h"; a bare number is seconds. nullopt if
// malformed, negative or above 10^9 of its unit.
std::optional<std::chrono::milliseconds> parse_duration(std::string_view text) noexcept;

// "" if `text` is a size in [min, max], else why not, in one line naming
// the bounds ("must be at most 1G"). For CLI11 validators.
std::string check_size(std::string_view text, std::uint64_t min, std::uint64_t max);
// The same for durations.
std::string check_duration(std::string_view text, std::chrono::milliseconds min,
                           std::chrono::milliseconds max);

// 1048576 -> "1M", 1536 -> "1536", 6442450944 -> "6G"; exact, the largest
// unit that divides the value.
std::string format_size(std::uint64_t bytes);
// 5000ms -> "5s", 1500ms -> "1500ms", 120000ms -> "2m".
std::string format_duration(std::chrono::milliseconds d);

}  // namespace sb::cli
