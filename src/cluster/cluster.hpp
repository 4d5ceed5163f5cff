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

// IDs are [node: 8 bits][counter: 24 bits] in a cluster: 256 nodes, and an
// ID recurs on a node only after 16 million later connections there.
inline constexpr unsigned kNodeBits = 8;
inline constexpr unsigned kCounterBits = 32 - kNodeBits;
inline constexpr std::uint32_t kMaxNodes = std::uint32_t{1} << kNodeBits;

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

// The keys and channels of cluster `name`.
std::string lease_key(std::string_view name, std::uint32_t node);
std::string node_channel(std::string_view name, std::uint32_t node);
// Where nodes say they joined or left (the body is "join N" or "leave N";
// receivers only take it as a cue to read the leases).
std::string members_channel(std::string_view name);

// This node's lease: its number, and the random value that proves the key
// is ours (a node that lost its lease never deletes another's).
struct Lease {
  ClusterOptions options;
  std::uint32_t node = 0;
  std::string value;
  std::vector<std::string> members;  // every node's lease value when it was taken ("" : none)
};

// Connects (blocking, a few seconds at most), takes the lowest free node
// number, reads who else is there and tells them (a message on
// NAME:members, so that they route to this node at once). Throws net::StartupError with a one-line reason: Redis cannot be
// reached, answers with an error, or all 256 numbers are taken.
Lease acquire_lease(const ClusterOptions& options);
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
