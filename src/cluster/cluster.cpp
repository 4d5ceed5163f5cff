#include "cluster/cluster.hpp"

#include <fmt/format.h>
#include <hiredis/hiredis.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <memory>
#include <random>
#include <stdexcept>

#include "net/socket.hpp"

namespace sb::cluster {

namespace {

constexpr timeval kStartTimeout{3, 0};    // connecting and each command at start-up
constexpr timeval kReleaseTimeout{1, 0};  // at exit: the lease lapses anyway

constexpr std::string_view kReleaseScript =
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";

struct ContextFree {
  void operator()(redisContext* c) const noexcept { redisFree(c); }
};
struct ReplyFree {
  void operator()(redisReply* r) const noexcept { freeReplyObject(r); }
};
using Context = std::unique_ptr<redisContext, ContextFree>;
using Reply = std::unique_ptr<redisReply, ReplyFree>;

std::string where(const ClusterOptions& o) {
  return net::Endpoint{o.host, o.port}.to_string();
}

// A blocking connection, or nullptr with `error` set.
Context connect(const ClusterOptions& o, timeval timeout, std::string& error) {
  Context c{redisConnectWithTimeout(o.host.c_str(), o.port, timeout)};
  if (!c) {
    error = "out of memory";
    return nullptr;
  }
  if (c->err != 0) {
    error = c->errstr;
    return nullptr;
  }
  redisSetTimeout(c.get(), timeout);
  return c;
}

Reply command(redisContext* c, const std::vector<std::string>& args) {
  std::vector<const char*> argv;
  std::vector<std::size_t> lens;
  for (const auto& a : args) {
    argv.push_back(a.data());
    lens.push_back(a.size());
  }
  return Reply{
      static_cast<redisReply*>(redisCommandArgv(c, static_cast<int>(argv.size()), argv.data(), lens.data()))};
}

std::string random_value() {
  std::random_device rd;
  const std::uint64_t v = (std::uint64_t{rd()} << 32) ^ rd() ^ static_cast<std::uint64_t>(::getpid());
  char buf[17];
  (void)std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

bool valid_name(std::string_view name) {
  return !name.empty() && name.size() <= 64 && std::all_of(name.begin(), name.end(), [](char ch) {
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_' ||
           ch == '.' || ch == '-';
  });
}

}  // namespace

ClusterOptions parse_cluster_url(std::string_view url) {
  constexpr std::string_view scheme = "redis://";
  if (!url.starts_with(scheme)) {
    throw std::invalid_argument("'" + std::string(url) + "' is not redis://HOST:PORT[/NAME]");
  }
  std::string_view rest = url.substr(scheme.size());
  ClusterOptions o;
  o.url = std::string(url);
  // The host part ends at the first '/' after it (an IPv6 literal is in
  // brackets and holds no '/').
  const auto slash = rest.find('/');
  if (slash != std::string_view::npos) {
    const std::string_view name = rest.substr(slash + 1);
    if (!valid_name(name)) {
      throw std::invalid_argument("cluster name '" + std::string(name) + "' in '" + std::string(url) +
                                  "' is not 1 to 64 of A-Z a-z 0-9 _ . -");
    }
    o.name = std::string(name);
    rest = rest.substr(0, slash);
  }
  try {
    const net::Endpoint e = net::parse_endpoint(std::string(rest));
    if (e.port == 0) throw std::invalid_argument("the Redis port in '" + std::string(url) + "' is 0");
    o.host = e.host;
    o.port = e.port;
  } catch (const net::StartupError& e) {
    throw std::invalid_argument(e.what());
  }
  return o;
}

// With fmt: GCC 12 warns falsely (-Wrestrict) on these as string sums.
std::string lease_key(std::string_view name, std::uint32_t node) {
  return fmt::format("{}:lease:{}", name, node);
}

std::string place_channel(std::string_view name, std::uint32_t place) {
  if (shard_of(place) == 0) return fmt::format("{}:node:{}", name, node_of(place));
  return fmt::format("{}:node:{}.{}", name, node_of(place), shard_of(place));
}

std::uint32_t shards_in(std::string_view value) noexcept {
  const auto slash = value.rfind('/');
  if (slash == std::string_view::npos) return 0;
  std::uint32_t n = 0;
  const auto [end, ec] = std::from_chars(value.data() + slash + 1, value.data() + value.size(), n);
  if (ec != std::errc{} || end != value.data() + value.size() || n == 0 || n > kMaxShards) return 0;
  return n;
}

std::string members_channel(std::string_view name) {
  return fmt::format("{}:members", name);
}

Lease acquire_lease(const ClusterOptions& options, std::uint32_t shards) {
  std::string error;
  Context c = connect(options, kStartTimeout, error);
  if (!c) throw net::StartupError("--cluster: cannot reach Redis at " + where(options) + ": " + error);
  Lease lease{options, 0, shards, random_value() + "/" + std::to_string(shards), {}};
  const std::string px = std::to_string(options.lease.count());
  for (std::uint32_t node = 0; node < kMaxNodes; ++node) {
    Reply r = command(c.get(), {"SET", lease_key(options.name, node), lease.value, "NX", "PX", px});
    if (!r) {
      throw net::StartupError("--cluster: Redis at " + where(options) +
                              " did not answer: " + (c->err != 0 ? c->errstr : "no reply"));
    }
    if (r->type == REDIS_REPLY_ERROR) {
      throw net::StartupError("--cluster: Redis at " + where(options) +
                              " refused a lease: " + std::string(r->str, r->len));
    }
    if (r->type == REDIS_REPLY_STATUS) {
      lease.node = node;
      std::vector<std::string> mget{"MGET"};
      for (std::uint32_t n = 0; n < kMaxNodes; ++n) mget.push_back(lease_key(options.name, n));
      Reply m = command(c.get(), mget);
      if (!m || m->type != REDIS_REPLY_ARRAY || m->elements != kMaxNodes) {
        throw net::StartupError("--cluster: Redis at " + where(options) + " did not list the nodes");
      }
      for (std::size_t i = 0; i < m->elements; ++i) {
        const redisReply* e = m->element[i];
        lease.members.emplace_back(e->type == REDIS_REPLY_STRING ? std::string(e->str, e->len)
                                                                 : std::string());
      }
      (void)command(c.get(), {"PUBLISH", members_channel(options.name),
                              "join " + std::to_string(node) + " " + lease.value});
      return lease;
    }
    // nil: that number is taken; try the next.
  }
  throw net::StartupError("--cluster: all " + std::to_string(kMaxNodes) + " node numbers of cluster '" +
                          options.name + "' are taken");
}

bool release_lease(const Lease& lease) {
  std::string error;
  Context c = connect(lease.options, kReleaseTimeout, error);
  if (!c) return false;
  Reply r = command(c.get(), {"EVAL", std::string(kReleaseScript), "1",
                              lease_key(lease.options.name, lease.node), lease.value});
  if (!r || r->type != REDIS_REPLY_INTEGER) return false;
  (void)command(c.get(), {"PUBLISH", members_channel(lease.options.name),
                          "leave " + std::to_string(lease.node) + " " + lease.value});
  return true;
}

}  // namespace sb::cluster
