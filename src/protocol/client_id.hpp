// The name of a client on the wire and in every table: a strong 32-bit ID.
#pragma once

#include <cstdint>

namespace sb {

// Clients are named by ID, never by pointer or fd across loop turns: a lookup
// of an ID whose client has left is an ordinary, handled case.
enum class ClientId : std::uint32_t {};

constexpr std::uint32_t to_u32(ClientId id) noexcept { return static_cast<std::uint32_t>(id); }

// The sharded engine's ID layout (docs/ARCHITECTURE.md, IDs and places):
// with `count` shards the top shard_bits(count) bits (at least 1) name the
// shard, so that the counter keeps 32 - bits (at least 20 up to 4096
// shards: a million IDs per shard before one recurs). Clients that place
// themselves (the bench, the tests) read their shard with shard_of.
constexpr unsigned shard_bits(unsigned count) noexcept {
  unsigned bits = 1;
  while ((1U << bits) < count) ++bits;
  return bits;
}
constexpr std::uint32_t shard_of(std::uint32_t id, unsigned count) noexcept {
  return id >> (32 - shard_bits(count));
}

}  // namespace sb
