#include "cluster/redis_transport.hpp"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>

#include <algorithm>
#include <charconv>
#include <cstring>

#include "protocol/wire.hpp"

namespace sb::cluster {

namespace {

using namespace std::chrono_literals;

constexpr std::uint8_t kStreamVersion = 1;
constexpr std::size_t kStreamHeader = 1 + 4 + 8 + 8 + 4;
// Bytes published and not yet answered before senders to other nodes pause
// (and half of it before they resume): what Redis and the connection hold
// for this node at most, so that a slow Redis costs bounded memory here.
constexpr std::size_t kPublishWindow = std::size_t{8} << 20;
constexpr core::Time kFirstBackoff = 100ms;
constexpr core::Time kMaxBackoff = 2s;
// hiredis reads 16 KiB per call; a readable event reads at most this many
// times as much before the loop goes on to other sockets.
constexpr int kReadsPerEvent = 16;

void put_u64(char* at, std::uint64_t v) {
  for (int i = 7; i >= 0; --i) {
    at[i] = static_cast<char>(v & 0xFF);
    v >>= 8;
  }
}

std::uint64_t get_u64(const char* at) {
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<unsigned char>(at[i]);
  return v;
}

void put_u32(char* at, std::uint32_t v) {
  const auto b = protocol::encode_be32(v);
  std::memcpy(at, b.data(), b.size());
}

// RESP bulk string header: "$<n>\r\n".
void append_bulk_header(std::string& out, std::size_t n) {
  out += '$';
  out += std::to_string(n);
  out += "\r\n";
}

}  // namespace

// One hiredis async connection, watched by the node's loop: hiredis' event
// hooks (addRead, delWrite, ...) become epoll interest on the loop, and the
// loop's events call hiredis' read and write handlers. hiredis frees its
// context itself when the connection fails or closes; `cleanup` tells us,
// and the Connection object stays for the next attempt.
class RedisTransport::Connection final : public net::Handler {
 public:
  using Callback = void (*)(const redisAsyncContext*, int);

  Connection(net::Loop& loop, RedisTransport& owner) : loop_{loop}, owner_{owner} {}
  ~Connection() { close(); }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Starts connecting; false if hiredis could not even start (`why`).
  bool open(const ClusterOptions& o, Callback on_connect, Callback on_disconnect, std::string& why) {
    redisAsyncContext* ac = redisAsyncConnect(o.host.c_str(), o.port);
    if (ac == nullptr) {
      why = "out of memory";
      return false;
    }
    if (ac->err != 0) {
      why = ac->errstr;
      redisAsyncFree(ac);
      return false;
    }
    ctx_ = ac;
    ac->data = &owner_;
    ac->ev.data = this;
    ac->ev.addRead = [](void* p) { static_cast<Connection*>(p)->want(EPOLLIN, true); };
    ac->ev.delRead = [](void* p) { static_cast<Connection*>(p)->want(EPOLLIN, false); };
    ac->ev.addWrite = [](void* p) { static_cast<Connection*>(p)->want(EPOLLOUT, true); };
    ac->ev.delWrite = [](void* p) { static_cast<Connection*>(p)->want(EPOLLOUT, false); };
    ac->ev.cleanup = [](void* p) { static_cast<Connection*>(p)->forget(); };
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    return true;
  }

  // Frees the context: replies still awaited are called with nullptr.
  void close() {
    if (ctx_ != nullptr) redisAsyncFree(ctx_);
  }

  redisAsyncContext* context() const noexcept { return ctx_; }
  bool open() const noexcept { return ctx_ != nullptr; }

  void on_event(std::uint32_t events) override {
    if ((events & (EPOLLIN | EPOLLERR | EPOLLHUP)) != 0) {
      for (int i = 0; i < kReadsPerEvent && ctx_ != nullptr; ++i) {
        redisAsyncHandleRead(ctx_);
        int waiting = 0;
        if (ctx_ == nullptr || ::ioctl(ctx_->c.fd, FIONREAD, &waiting) != 0 || waiting <= 0) break;
      }
    }
    if ((events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) != 0 && ctx_ != nullptr) redisAsyncHandleWrite(ctx_);
  }

 private:
  void want(std::uint32_t bit, bool on) {
    const std::uint32_t next = on ? (interest_ | bit) : (interest_ & ~bit);
    if (next == interest_ && token_ != net::Token::none) return;
    interest_ = next;
    if (token_ == net::Token::none) {
      token_ = loop_.add(ctx_->c.fd, interest_, this);
      if (token_ == net::Token::none)
        spdlog::error("cluster: cannot watch the Redis connection: {}", std::strerror(errno));
    } else {
      (void)loop_.modify(token_, interest_);
    }
  }
  void forget() {
    if (token_ != net::Token::none) loop_.remove(token_);
    token_ = net::Token::none;
    interest_ = 0;
    ctx_ = nullptr;
  }

  net::Loop& loop_;
  RedisTransport& owner_;
  redisAsyncContext* ctx_ = nullptr;
  net::Token token_ = net::Token::none;
  std::uint32_t interest_ = 0;
};

namespace {

RedisTransport& owner_of(const redisAsyncContext* ac) {
  return *static_cast<RedisTransport*>(ac->data);
}

}  // namespace

RedisTransport::RedisTransport(net::Loop& loop, Lease lease, std::uint32_t shard, TransportEvents& events)
    : loop_{loop},
      lease_{std::move(lease)},
      events_{events},
      place_{place_of(lease_.node, shard)},
      channel_{place_channel(lease_.options.name, place_)},
      who_{"node " + std::to_string(lease_.node) +
           (shard == 0 ? std::string() : " shard " + std::to_string(shard))},
      pub_{std::make_unique<Connection>(loop, *this)},
      sub_{std::make_unique<Connection>(loop, *this)} {
  keys_.reserve(kMaxNodes);
  for (std::uint32_t n = 0; n < kMaxNodes; ++n) keys_.push_back(lease_key(lease_.options.name, n));
  // Stream numbers unlike any earlier process' (the lease value is random).
  next_stream_ = (std::hash<std::string>{}(lease_.value) ^ place_) << 16;
  for (std::uint32_t n = 0; n < kMaxNodes; ++n) {
    if (n < lease_.members.size()) set_member(n, lease_.members[n]);
  }
  pub_backoff_ = kFirstBackoff;
  sub_backoff_ = kFirstBackoff;
  connect_pub();
  connect_sub();
}

RedisTransport::~RedisTransport() {
  leaving_ = true;
  pub_.reset();  // replies still awaited are called now, while the rest is intact
  sub_.reset();
}

// ---- Connections ----

// hiredis' callbacks are plain functions with the context only: the
// template arguments say which connection's handlers they call.
template <void (RedisTransport::*Up)(), void (RedisTransport::*Down)(bool, const char*)>
void RedisTransport::connect(Connection& c) {
  std::string why;
  const bool started = c.open(
      lease_.options,
      [](const redisAsyncContext* ac, int status) {
        RedisTransport& t = owner_of(ac);
        if (status == REDIS_OK) {
          (t.*Up)();
        } else {
          (t.*Down)(true, ac->errstr);
        }
      },
      [](const redisAsyncContext* ac, int status) { (owner_of(ac).*Down)(status != REDIS_OK, ac->errstr); },
      why);
  if (!started) (this->*Down)(true, why.c_str());
}

void RedisTransport::connect_pub() {
  connect<&RedisTransport::on_pub_up, &RedisTransport::on_pub_down>(*pub_);
}

void RedisTransport::connect_sub() {
  connect<&RedisTransport::on_sub_up, &RedisTransport::on_sub_down>(*sub_);
}

void RedisTransport::on_pub_up() {
  pub_ready_ = true;
  pub_backoff_ = kFirstBackoff;
  // A new connection: a new stream to every node (what was in flight on
  // the old one was counted as lost when it broke).
  for (std::uint32_t n = 0; n < kMaxNodes; ++n) new_streams(n);
  if (pub_was_up_) {
    ++stats_.cluster_reconnects;
    spdlog::info("cluster: {}: connected to Redis at {} again", who_, lease_.options.url);
  }
  pub_was_up_ = true;
  next_poll_ = core::Time{};  // refresh the lease and read the members now
  poll(now_);
}

void RedisTransport::on_pub_down(bool error, const char* why) {
  pub_ready_ = false;
  if (leaving_) return;
  std::uint64_t suppressed = 0;
  if (error && link_log_.allow(suppressed)) {
    spdlog::warn(
        "cluster: {}: lost Redis at {} ({}); serving local clients, frames for other nodes "
        "are lost until it is back ({} lines suppressed)",
        who_, lease_.options.url, why != nullptr ? why : "closed", suppressed);
  }
  pub_retry_at_ = now_ + pub_backoff_;
  pub_backoff_ = std::min(pub_backoff_ * 2, kMaxBackoff);
}

void RedisTransport::on_sub_up() {
  if (unsubscribing_) return;  // stopping: not listening again
  sub_backoff_ = kFirstBackoff;
  if (sub_was_up_) ++stats_.cluster_reconnects;
  sub_was_up_ = true;
  const std::string members = members_channel(lease_.options.name);
  const char* argv[] = {"SUBSCRIBE", channel_.c_str(), members.c_str()};
  const std::size_t lens[] = {9, channel_.size(), members.size()};
  redisAsyncCommandArgv(
      sub_->context(),
      [](redisAsyncContext* ac, void* reply, void*) {
        owner_of(ac).on_message(static_cast<redisReply*>(reply));
      },
      nullptr, 3, argv, lens);
  // Whoever joined while this node could not hear it: read the members.
  next_poll_ = core::Time{};
}

void RedisTransport::on_sub_down(bool error, const char* why) {
  subscribed_ = false;
  if (leaving_) return;
  std::uint64_t suppressed = 0;
  if (error && link_log_.allow(suppressed)) {
    spdlog::warn("cluster: {}: subscription to {} lost ({}); resubscribing ({} lines suppressed)", who_,
                 channel_, why != nullptr ? why : "closed", suppressed);
  }
  sub_retry_at_ = now_ + sub_backoff_;
  sub_backoff_ = std::min(sub_backoff_ * 2, kMaxBackoff);
}

void RedisTransport::on_tick(core::Time now) {
  now_ = now;
  if (leaving_) return;
  if (!pub_->open() && now >= pub_retry_at_) connect_pub();
  if (!sub_->open() && now >= sub_retry_at_) connect_sub();
  if (pub_ready_ && now >= next_poll_) poll(now);
}

// Refresh the lease and read every node's lease, on `pub` (replies in order
// with the publishes). Every lease / 5: a node killed without a word is
// no_route at most lease + lease / 5 after its last refresh.
void RedisTransport::poll(core::Time now) {
  if (!pub_ready_) return;
  next_poll_ = now + lease_.options.lease / 5;
  const std::string px = std::to_string(lease_.options.lease.count());
  const std::string& key = keys_[lease_.node];
  const char* eval[] = {"EVAL", kRefreshScript.data(), "1", key.c_str(), lease_.value.c_str(), px.c_str()};
  const std::size_t eval_lens[] = {4, kRefreshScript.size(), 1, key.size(), lease_.value.size(), px.size()};
  redisAsyncCommandArgv(
      pub_->context(),
      [](redisAsyncContext* ac, void* reply, void*) {
        owner_of(ac).on_refresh_reply(static_cast<redisReply*>(reply));
      },
      nullptr, 6, eval, eval_lens);
  std::vector<const char*> argv{"MGET"};
  std::vector<std::size_t> lens{4};
  for (const auto& k : keys_) {
    argv.push_back(k.c_str());
    lens.push_back(k.size());
  }
  redisAsyncCommandArgv(
      pub_->context(),
      [](redisAsyncContext* ac, void* reply, void*) {
        owner_of(ac).on_members_reply(static_cast<redisReply*>(reply));
      },
      nullptr, static_cast<int>(argv.size()), argv.data(), lens.data());
}

void RedisTransport::on_refresh_reply(redisReply* reply) {
  if (reply == nullptr || leaving_) return;  // the connection broke: counted and logged there
  std::uint64_t suppressed = 0;
  if (reply->type == REDIS_REPLY_INTEGER && reply->integer == 2) {
    spdlog::warn(
        "cluster: {}: its lease had lapsed (Redis restarted, or this node was too slow); taken again", who_);
  } else if (reply->type != REDIS_REPLY_INTEGER || reply->integer != 1) {
    if (link_log_.allow(suppressed)) {
      spdlog::error(
          "cluster: {}: cannot refresh its lease ({}); another node may be using this number "
          "({} lines suppressed)",
          who_, reply->type == REDIS_REPLY_ERROR ? std::string(reply->str, reply->len) : "held by another",
          suppressed);
    }
  }
}

void RedisTransport::on_members_reply(redisReply* reply) {
  if (reply == nullptr || leaving_ || reply->type != REDIS_REPLY_ARRAY || reply->elements != kMaxNodes)
    return;
  for (std::uint32_t n = 0; n < kMaxNodes; ++n) {
    const redisReply* e = reply->element[n];
    set_member(n, e->type == REDIS_REPLY_STRING ? std::string(e->str, e->len) : std::string());
  }
}

void RedisTransport::new_streams(std::uint32_t node) {
  for (std::uint32_t s = 0; s < kMaxShards; ++s) {
    stream_[place_of(node, s)] = ++next_stream_;
    seq_[place_of(node, s)] = 0;
  }
}

void RedisTransport::set_member(std::uint32_t node, const std::string& value) {
  if (node == lease_.node || members_[node] == value) return;
  new_streams(node);
  const bool log = shard_of(place_) == 0;  // one line per node, not per shard
  if (!members_[node].empty()) {
    // Gone (or another process took its number): its IDs are no_route, and
    // what Redis had no subscriber for is lost for good.
    events_.on_node(node, false, shards_in(members_[node]));
    for (std::uint32_t s = 0; s < kMaxShards; ++s) {
      stats_.cluster_lost_node_gone += std::exchange(unanswered_[place_of(node, s)], 0);
    }
    if (log) spdlog::info("cluster: {}: node {} left", who_, node);
  }
  // A value that names no shard count is not a node's lease: ignored.
  members_[node] = shards_in(value) != 0 ? value : std::string();
  if (!members_[node].empty()) {
    events_.on_node(node, true, shards_in(value));
    if (log) spdlog::info("cluster: {}: node {} joined ({} shards)", who_, node, shards_in(value));
  }
}

// "join N VALUE" or "leave N VALUE" (anything else is ignored).
void RedisTransport::on_members_message(std::string_view text) {
  const auto first = text.find(' ');
  const auto second = first == std::string_view::npos ? first : text.find(' ', first + 1);
  if (second == std::string_view::npos) return;
  const std::string_view what = text.substr(0, first);
  const std::string_view number = text.substr(first + 1, second - first - 1);
  const std::string value(text.substr(second + 1));
  std::uint32_t node = 0;
  const auto [end, ec] = std::from_chars(number.data(), number.data() + number.size(), node);
  if (ec != std::errc{} || end != number.data() + number.size() || node >= kMaxNodes) return;
  if (what == "join") {
    set_member(node, value);
  } else if (what == "leave" && members_[node] == value) {
    set_member(node, std::string());
  }
}

// ---- Publishing ----

void RedisTransport::send(std::uint32_t to, std::span<const char> batch, std::size_t frames) {
  if (to >= kMaxPlaces || node_of(to) == lease_.node) return;
  if (!pub_ready_ || leaving_) {
    lose_unreachable(frames);
    return;
  }
  std::array<char, kStreamHeader> header{};
  header[0] = static_cast<char>(kStreamVersion);
  put_u32(header.data() + 1, place_);
  put_u64(header.data() + 5, stream_[to]);
  put_u64(header.data() + 13, seq_[to]);
  put_u32(header.data() + 21, static_cast<std::uint32_t>(frames));
  seq_[to] += frames;

  // The command is formatted here, header and batch in one bulk string, so
  // the batch is copied once (hiredis then appends it to its output buffer).
  const std::string channel = place_channel(lease_.options.name, to);
  message_.clear();
  message_ += "*3\r\n$7\r\nPUBLISH\r\n";
  append_bulk_header(message_, channel.size());
  message_ += channel;
  message_ += "\r\n";
  append_bulk_header(message_, header.size() + batch.size());
  message_.append(header.data(), header.size());
  message_.append(batch.data(), batch.size());
  message_ += "\r\n";
  const std::size_t bytes = batch.size();
  in_flight_ += bytes;
  published_.push_back(Published{to, frames, bytes});
  const int rc = redisAsyncFormattedCommand(
      pub_->context(),
      [](redisAsyncContext* ac, void* reply, void*) {
        owner_of(ac).on_publish_reply(static_cast<redisReply*>(reply));
      },
      nullptr, message_.data(), message_.size());
  if (rc != REDIS_OK) {
    in_flight_ -= bytes;
    published_.pop_back();
    lose_unreachable(frames);
    return;
  }
  ++stats_.cluster_published;
  update_blocked();
}

void RedisTransport::on_publish_reply(redisReply* reply) {
  if (published_.empty()) return;  // cannot happen: one entry per PUBLISH, answered in order
  const Published p = published_.front();
  published_.pop_front();
  in_flight_ -= p.bytes;
  if (reply == nullptr || reply->type != REDIS_REPLY_INTEGER) {
    lose_unreachable(p.frames);
  } else if (reply->integer == 0 && members_[node_of(p.place)].empty()) {
    stats_.cluster_lost_node_gone += p.frames;  // its lease is gone already
  } else if (reply->integer == 0) {
    // Nobody subscribed: the node is gone, or its subscriber is being made
    // again. Which one, its lease will tell (set_member).
    unanswered_[p.place] += p.frames;
  } else {
    unanswered_[p.place] = 0;  // it hears again: its receiver counts the gap
  }
  update_blocked();
}

void RedisTransport::lose_unreachable(std::size_t frames) {
  stats_.cluster_lost_unreachable += frames;
  std::uint64_t suppressed = 0;
  if (frames > 0 && !leaving_ && loss_log_.allow(suppressed)) {
    spdlog::warn(
        "cluster: {}: {} frames for other nodes lost: Redis at {} is unreachable "
        "({} in all; {} lines suppressed)",
        who_, frames, lease_.options.url, stats_.cluster_lost_unreachable, suppressed);
  }
}

void RedisTransport::update_blocked() {
  if (!blocked_ && in_flight_ > kPublishWindow) {
    blocked_ = true;
    events_.on_blocked(true);
  } else if (blocked_ && in_flight_ <= kPublishWindow / 2) {
    blocked_ = false;
    events_.on_blocked(false);
  }
}

// As a client's output: written in the turn that made it, not a turn later
// when epoll reports the socket writable.
void RedisTransport::flush() {
  if (pub_ready_ && !published_.empty()) redisAsyncHandleWrite(pub_->context());
}

bool RedisTransport::idle() const noexcept {
  return published_.empty() && (!unsubscribing_ || !subscribed_);
}

// UNSUBSCRIBE: Redis confirms after every message it had for this shard,
// and publishers see 0 receivers from then on (their frames count as
// node_gone once the lease is given back).
void RedisTransport::stop_listening() {
  if (unsubscribing_) return;
  unsubscribing_ = true;
  if (!sub_->open() || !subscribed_) return;
  const char* argv[] = {"UNSUBSCRIBE", channel_.c_str()};
  const std::size_t lens[] = {11, channel_.size()};
  redisAsyncCommandArgv(sub_->context(), nullptr, nullptr, 2, argv, lens);
  redisAsyncHandleWrite(sub_->context());
}

// ---- Receiving ----

void RedisTransport::on_message(redisReply* reply) {
  if (reply == nullptr || leaving_ || reply->type != REDIS_REPLY_ARRAY || reply->elements != 3) return;
  const redisReply* kind = reply->element[0];
  const redisReply* channel = reply->element[1];
  const redisReply* body = reply->element[2];
  if (kind->type != REDIS_REPLY_STRING || channel->type != REDIS_REPLY_STRING) return;
  const std::string_view what(kind->str, kind->len);
  const bool ours = std::string_view(channel->str, channel->len) == channel_;
  if (what == "subscribe" && ours) subscribed_ = true;
  if (what == "unsubscribe" && ours) subscribed_ = false;
  if (what != "message" || body->type != REDIS_REPLY_STRING) return;
  if (std::string_view(channel->str, channel->len) != channel_) {
    // The members channel: someone joined or left. Taken at once, so that
    // a new node's clients are routable as soon as it listens; the leases
    // are read too, to catch up on anything else.
    on_members_message(std::string_view(body->str, body->len));
    if (pub_ready_) poll(now_);
    return;
  }
  ++stats_.cluster_received;
  const char* p = body->str;
  const std::size_t n = body->len;
  if (n < kStreamHeader || static_cast<std::uint8_t>(p[0]) != kStreamVersion) {
    ++stats_.peer_errors;
    return;
  }
  const std::uint32_t from = protocol::load_be32(p + 1);
  if (from >= kMaxPlaces || node_of(from) == lease_.node) {
    ++stats_.peer_errors;
    return;
  }
  const std::uint64_t stream = get_u64(p + 5);
  const std::uint64_t seq = get_u64(p + 13);
  const std::uint32_t frames = protocol::load_be32(p + 21);
  Stream& s = streams_[from];
  // Every stream starts at 0: what is missing before the first message
  // heard of a stream is lost as surely as a gap in the middle.
  const std::uint64_t expected = s.known && s.stream == stream ? s.next : 0;
  if (seq > expected) {
    const std::uint64_t lost = seq - expected;
    stats_.cluster_lost_subscriber += lost;
    std::uint64_t suppressed = 0;
    if (loss_log_.allow(suppressed)) {
      spdlog::warn(
          "cluster: {}: {} frames from node {} lost in Redis (this node's subscription was dropped "
          "or being made again) ({} lines suppressed)",
          who_, lost, from, suppressed);
    }
  }
  s = Stream{stream, seq + frames, true};
  events_.on_batch(std::span<const char>(p + kStreamHeader, n - kStreamHeader));
}

// ---- Leaving ----

void RedisTransport::leave() {
  if (leaving_) return;
  leaving_ = true;
  pub_->close();
  sub_->close();
}

}  // namespace sb::cluster
