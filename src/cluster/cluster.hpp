// serve --cluster: several nodes sharing one ID space through Redis
// (docs/CLUSTER.md).
//
// A node takes a number from Redis with a lease (a key that expires unless
// refreshed), and its clients' IDs carry that number in their top bits, so
// any node can tell from an ID which node holds the client. Frames for a
// client of another node travel in the router's peer batches, published on
// that node's channel. This file holds what `serve` needs before the engine
// starts: the URL, the ID layout, and taking and giving back the lease with
// a blocking connection (at start-up and at exit only).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace sb::cluster {

// IDs are [node: 8 bits][shard: 4 bits][counter: 20 bits] in a cluster,
// whatever the engine (the reactor is shard 0), so that every node reads
// every ID alike: 256 nodes of up to 16 shards, and an ID recurs on a shard
// only after 1,048,576 later connections there. A place (the router's word)
// is [node][shard]: the top 12 bits.
inline constexpr unsigned kNodeBits = 8;
inline constexpr unsigned kShardBits = 4;
inline constexpr unsigned kCounterBits = 32 - kNodeBits - kShardBits;
inline constexpr std::uint32_t kMaxNodes = std::uint32_t{1} << kNodeBits;
inline constexpr std::uint32_t kMaxShards = std::uint32_t{1} << kShardBits;
inline constexpr std::uint32_t kMaxPlaces = kMaxNodes * kMaxShards;

constexpr std::uint32_t place_of(std::uint32_t node, std::uint32_t shard) noexcept {
  return (node << kShardBits) | shard;
}
constexpr std::uint32_t node_of(std::uint32_t place) noexcept {
  return place >> kShardBits;
}
constexpr std::uint32_t shard_of(std::uint32_t place) noexcept {
  return place & (kMaxShards - 1);
}

struct ClusterOptions {
  std::string host;
  std::uint16_t port = 6379;
  std::string name = "switchboard";  // key and channel prefix: several clusters can share one Redis
  std::chrono::milliseconds lease{5000};
  std::string url;  // as given, for log lines
};

// "redis://HOST:PORT[/NAME]" (HOST may be [IPv6]; NAME is 1..64 of
// [A-Za-z0-9_.-]). Throws std::invalid_argument with a reason for a person.
ClusterOptions parse_cluster_url(std::string_view url);

// The keys and channels of cluster `name`. A node's channel is
// NAME:node:<n>, which its shard 0 (the reactor) listens on; shard s > 0 of
// a sharded node listens on NAME:node:<n>.<s>.
std::string lease_key(std::string_view name, std::uint32_t node);
std::string place_channel(std::string_view name, std::uint32_t place);
// Where nodes say they joined or left: "join N VALUE" or "leave N VALUE",
// VALUE being the lease's. Receivers take it at once (so that a new node's
// clients are routable as soon as it listens), then read the leases.
std::string members_channel(std::string_view name);

// This node's lease: its number, and the random value that proves the key
// is ours (a node that lost its lease never deletes another's).
// The value is "<16 hex digits>/<shards>": random, and how many shards the
// node has, so that the others know which places it serves.
struct Lease {
  ClusterOptions options;
  std::uint32_t node = 0;
  std::uint32_t shards = 1;
  std::string value;
  std::vector<std::string> members;  // every node's lease value when it was taken ("" : none)
};
// The shard count a lease value names; 0 if it names none (not a lease).
std::uint32_t shards_in(std::string_view value) noexcept;

// Connects (blocking, a few seconds at most), takes the lowest free node
// number, reads who else is there and tells them (a message on
// NAME:members, so that they route to this node at once). Throws net::StartupError with a one-line reason:
// Redis cannot be reached, answers with an error, or all 256 numbers are taken.
Lease acquire_lease(const ClusterOptions& options, std::uint32_t shards);
// Deletes the lease key if it is still ours and tells the others (blocking,
// about a second at most). False if Redis could not be reached: the lease then lapses.
bool release_lease(const Lease& lease);

// Lua run by Redis: refresh our lease, or take it again if it lapsed (Redis
// restarted without persistence, or this node was too slow to refresh).
// Returns 1 (refreshed), 2 (taken again) or 0 (another node holds it).
inline constexpr std::string_view kRefreshScript =
    "if redis.call('get', KEYS[1]) == ARGV[1] then redis.call('pexpire', KEYS[1], ARGV[2]) return 1 "
    "elseif redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 2 else return 0 end";

}  // namespace sb::cluster
