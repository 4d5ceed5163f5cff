// Parsing of the sizes and durations that flags take.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string_view>

namespace sb::cli {

// "1048576", "64K", "8M", "1G" (powers of 1024). nullopt if malformed.
std::optional<std::uint64_t> parse_size(std::string_view text) noexcept;

// "10s", "500ms", "1.5s", "2m"; a bare number is seconds. nullopt if malformed.
std::optional<std::chrono::milliseconds> parse_duration(std::string_view text) noexcept;

}  // namespace sb::cli
