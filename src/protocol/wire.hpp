// Wire format v1 (article-compatible). All integers are big-endian.
//
//   server -> client, once, on connect:   [u32 id]
//   client -> server, any number:         [u32 destination][payload][0x00]
//   server -> destination:                [payload][0x00]
//
// Pure functions: no sockets, no clocks.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

#include "protocol/client_id.hpp"

namespace sb::protocol {

inline constexpr std::size_t kIdSize = 4;
inline constexpr std::size_t kDefaultMaxFrame = std::size_t{1} << 20;  // payload bytes, as NATS' max_payload

inline std::uint32_t load_be32(const char* p) noexcept {
  const auto* u = reinterpret_cast<const unsigned char*>(p);
  return (std::uint32_t{u[0]} << 24) | (std::uint32_t{u[1]} << 16) | (std::uint32_t{u[2]} << 8) |
         std::uint32_t{u[3]};
}

inline std::array<char, kIdSize> encode_be32(std::uint32_t v) noexcept {
  return {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8),
          static_cast<char>(v)};
}

// The 4-byte greeting that tells a new client its ID.
inline std::array<char, kIdSize> encode_greeting(ClientId id) noexcept { return encode_be32(to_u32(id)); }

}  // namespace sb::protocol
