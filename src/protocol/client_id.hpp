// The name of a client on the wire and in every table: a strong 32-bit ID.
#pragma once

#include <cstdint>

namespace sb {

// Clients are named by ID, never by pointer or fd across loop turns: a lookup
// of an ID whose client has left is an ordinary, handled case.
enum class ClientId : std::uint32_t {};

constexpr std::uint32_t to_u32(ClientId id) noexcept { return static_cast<std::uint32_t>(id); }

}  // namespace sb
