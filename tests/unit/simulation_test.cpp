// A seeded simulation of an engine driving the Router: hundreds of clients,
// random fragmentation of every read and write, slow readers, disconnects,
// reconnects and a fake clock, under each slow-consumer policy.
//
// The simulation plays the engine (FrameDecoder per client: peek, on_frame,
// pop only if delivered; stop reading a paused sender; flush dirty clients
// with gather()/on_written(); carry out the actions) and the clients (each
// writes frames whose payload names sender, destination and a per-pair
// sequence number, and parses what it receives). Beside it runs a model of
// what the router must do, so every call is checked against the rules of
// DESIGN.md sections 1 and 3: which counter moves, what gets queued, which
// actions come back. After every step the queue sizes and totals are checked.
//
// With v2_percent set, that share of the clients upgrades at a random moment
// (hello, welcome, then v2 SENDs): the model encodes each delivery for its
// receiver's version (payload + NUL, or DELIVER with the sender's ID), every
// DELIVER's source is checked against the sender its payload names, and a
// v2 sender's dropped frame must add exactly one ERROR with the right code
// and subject to its queue (or count errors_dropped when that queue is over
// its limit).
//
// Seeds are fixed; SWITCHBOARD_SIM_SEED=<n> runs that seed instead. A failure
// names the seed, the policy and the step.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <limits>
#include <memory>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <variant>
#include <vector>

#include "core/config.hpp"
#include "core/router.hpp"
#include "core/stats.hpp"
#include "protocol/block_pool.hpp"
#include "protocol/frame_decoder.hpp"
#include "protocol/v2.hpp"
#include "protocol/wire.hpp"

namespace {

using namespace std::chrono_literals;
using sb::ClientId;
using sb::to_u32;
using sb::core::Action;
using sb::core::CloseReason;
using sb::core::ConstBuffer;
using sb::core::Router;
using sb::core::RouterConfig;
using sb::core::RouteResult;
using sb::core::SlowConsumerPolicy;
using sb::core::Stats;
using sb::core::Time;
using sb::protocol::BlockPool;
using sb::protocol::DecodeStatus;
using sb::protocol::Frame;
using sb::protocol::FrameDecoder;

constexpr std::size_t kMaxPending = 4096;  // small, so that limits are hit often
constexpr std::size_t kMaxPayload = 6000;  // some frames are larger than kMaxPending
constexpr std::size_t kHeader = 32;        // sender, destination, sequence, filler length: 8 hex digits each
constexpr Time kStall = 5s;
constexpr std::size_t kReadSize = 16 * 1024;
constexpr std::size_t kMaxOutgoing = 32 * 1024;  // a client stops writing when this much is unread
constexpr std::uint32_t kUnknownBase = 0x40000000;  // never handed out in these runs

struct SimParams {
  std::uint64_t seed;
  SlowConsumerPolicy policy;
  std::uint32_t first_id = 1;
  int clients = 300;
  int steps = 20000;
  int v2_percent = 0;  // clients that upgrade to v2 at a random moment
};

struct Sent {
  std::uint32_t destination;
  std::string wire;  // payload + NUL; for an oversized frame, only its length matters
  bool oversized;
  bool v2 = false;    // a v2 SEND: [u32 L][0x01][u32 destination][payload]
  bool hello = false; // the v1 hello to 0xFFFFFFFF

  // Bytes on the wire, client to server.
  std::size_t encoded_size() const { return v2 ? 9 + wire.size() - 1 : sb::protocol::kIdSize + wire.size(); }
};

struct SimClient {
  std::uint32_t id = 0;
  bool live = true;
  bool closing = false;     // the router asked to close it; the engine will, in this batch
  bool paused = false;      // engine side: not read until resume_reading
  std::uint32_t paused_on = 0;
  bool doomed = false;      // wrote an oversized frame; will be closed for it
  int slow_steps = 0;       // > 0: reads (almost) nothing for that many more steps
  bool wants_v2 = false;    // will upgrade at a random moment
  bool hello_sent = false;  // client side: everything written after the hello is v2
  int version = 1;          // router side, as the model sees it: 2 once the hello is routed
  std::string nonce;

  // Client -> server.
  std::unique_ptr<FrameDecoder> decoder;
  std::string outgoing;     // written by the client, not yet read by the engine
  std::deque<Sent> sent;    // frames in `outgoing` or in the decoder, oldest first
  std::size_t in_decoder = 0;
  std::unordered_map<std::uint32_t, std::uint32_t> next_seq_to;

  // The router's state for it as a destination, as the model sees it.
  std::string queue;
  Time last_progress{};
  std::vector<std::uint32_t> waiters;  // senders paused on it since it last resumed them
  bool dirty = false;

  // Server -> client.
  std::string rx;
  bool greeted = false;
  bool welcomed = false;    // client side: the welcome arrived; what follows is v2
  std::uint64_t errors_received = 0;
  std::unordered_map<std::uint32_t, std::uint32_t> next_seq_from;
  std::unordered_map<std::uint32_t, std::uint32_t> received_from;
  std::unordered_map<std::uint32_t, std::uint32_t> dropped_from;  // slow-consumer drops, by sender
};

// The router's actions, flattened for comparison with the model's.
struct SimAction {
  enum class Kind { resume_reading, close };
  Kind kind;
  ClientId client;
  CloseReason reason;
};

SimAction flatten(const Action& a) {
  if (const auto* resume = std::get_if<sb::core::ResumeReading>(&a)) {
    return {SimAction::Kind::resume_reading, resume->client, CloseReason::peer_closed};
  }
  const auto& close = std::get<sb::core::Close>(a);
  return {SimAction::Kind::close, close.client, close.reason};
}

std::string hex8(std::uint32_t v) {
  char buf[9];
  std::snprintf(buf, sizeof buf, "%08x", v);
  return std::string(buf, 8);
}

bool parse_hex8(std::string_view s, std::uint32_t& out) {
  out = 0;
  for (char ch : s) {
    std::uint32_t d = 0;
    if (ch >= '0' && ch <= '9') {
      d = static_cast<std::uint32_t>(ch - '0');
    } else if (ch >= 'a' && ch <= 'f') {
      d = static_cast<std::uint32_t>(ch - 'a' + 10);
    } else {
      return false;
    }
    out = out << 4 | d;
  }
  return true;
}

// The filler of the payload with sequence number `seq` is this alphabet
// cycle, starting at letter seq % 26: a cut, shifted or merged frame shows.
const std::string& alphabet_cycle() {
  static const std::string cycle = [] {
    std::string s;
    while (s.size() < kMaxPayload + 26 + 100) s += "abcdefghijklmnopqrstuvwxyz";
    return s;
  }();
  return cycle;
}

std::string_view filler(std::uint32_t seq, std::size_t n) {
  return std::string_view(alphabet_cycle()).substr(seq % 26, n);
}

class Simulation {
 public:
  explicit Simulation(SimParams p)
      : p_{p}, rng_{p.seed}, router_{make_config(p)}, decoder_pool_{kReadSize, 64} {}

  void run() {
    for (int i = 0; i < p_.clients; ++i) {
      connect();
      if (testing::Test::HasFailure()) return;
    }
    refresh_hot();
    for (step_ = 0; step_ < p_.steps; ++step_) {
      SCOPED_TRACE(testing::Message() << "step " << step_);
      one_step();
      if (testing::Test::HasFailure()) return;
    }
    SCOPED_TRACE("final drain");
    drain();
    if (testing::Test::HasFailure()) return;
    final_checks();
  }

  std::string summary() const {
    return router_.stats().summary();
  }
  const Stats& stats() const { return router_.stats(); }

 private:
  static RouterConfig make_config(const SimParams& p) {
    RouterConfig c;
    c.max_pending = kMaxPending;
    c.policy = p.policy;
    c.stall_timeout = kStall;
    c.first_id = p.first_id;
    c.max_frame = kMaxPayload;
    return c;
  }

  std::uint64_t below(std::uint64_t n) { return rng_() % n; }

  SimClient* find(std::uint32_t id) {
    const auto it = clients_.find(id);
    return it == clients_.end() ? nullptr : it->second.get();
  }
  SimClient* find_live(std::uint32_t id) {
    SimClient* c = find(id);
    return c != nullptr && c->live ? c : nullptr;
  }
  SimClient& random_live() { return *live_[below(live_.size())]; }

  // ---- one step of the engine's loop -------------------------------------

  void one_step() {
    if (live_.empty()) connect();
    for (SimClient* c : live_) {
      if (c->slow_steps > 0) --c->slow_steps;
    }
    for (int i = 0; i < 3; ++i) generate(random_live());
    for (int i = 0; i < 6; ++i) {
      SimClient& c = random_live();
      read(c, chunk_size());
      run_tasks();
      if (testing::Test::HasFailure()) return;
    }
    if (below(100) < 3) {
      SimClient& c = random_live();
      c.slow_steps = below(2) == 0 ? static_cast<int>(20 + below(80)) : static_cast<int>(200 + below(600));
    }
    if (below(1000) < 15 && live_.size() > 2) {
      SimClient& c = random_live();
      disconnect(c, below(4) == 0 ? CloseReason::io_error : CloseReason::peer_closed);
      run_tasks();
    }
    if (below(1000) < 15 || live_.size() < static_cast<std::size_t>(p_.clients) * 9 / 10) connect();
    if (below(100) < 10) tick(now_ + 1ms + std::chrono::milliseconds{static_cast<std::int64_t>(below(1500))});
    if (step_ % 1000 == 0) refresh_hot();
    run_tasks();
    if (testing::Test::HasFailure()) return;
    flush(false);
    if (testing::Test::HasFailure()) return;
    check_invariants();
  }

  std::size_t chunk_size() {
    switch (below(10)) {
      case 0: case 1: case 2: case 3: return 1 + below(16);
      case 4: case 5: case 6: case 7: return 1 + below(512);
      case 8: return 1 + below(8192);
      default: return 65536;
    }
  }

  void refresh_hot() {
    hot_.clear();
    for (int i = 0; i < 10; ++i) hot_.push_back(random_live().id);
  }

  std::uint32_t pick_destination(const SimClient& from) {
    const auto r = below(100);
    if (r < 50) return hot_[below(hot_.size())];  // may have left: that is a departed ID
    if (r < 85) return random_live().id;
    if (r < 90) return from.id;
    if (r < 95 && !departed_.empty()) return departed_[below(departed_.size())];
    return kUnknownBase + static_cast<std::uint32_t>(below(1000));
  }

  // The client writes 1-3 frames (into its socket, as far as the engine knows).
  void generate(SimClient& c) {
    if (c.doomed || c.outgoing.size() > kMaxOutgoing) return;
    if (c.wants_v2 && !c.hello_sent && below(10) == 0) {
      const std::string hello = "switchboard/2 nonce=" + c.nonce;
      const auto header = sb::protocol::encode_be32(sb::protocol::kServerId);
      c.outgoing.append(header.data(), header.size());
      c.outgoing.append(hello);
      c.outgoing.push_back('\0');
      c.sent.push_back({sb::protocol::kServerId, hello + '\0', false, false, true});
      c.hello_sent = true;
    }
    const auto count = 1 + below(3);
    for (std::uint64_t k = 0; k < count; ++k) {
      const std::uint32_t to = pick_destination(c);
      const std::uint32_t seq = c.next_seq_to[to]++;
      const auto r = below(1000);
      bool oversized = false;
      std::size_t fill = 0;
      if (r < 850) {
        fill = below(170);
      } else if (r < 950) {
        fill = 170 + below(1800);
      } else if (r < 999) {
        fill = 2000 + below(kMaxPayload - kHeader - 2000 + 1);  // up to exactly kMaxPayload
      } else if (!c.hello_sent) {
        fill = kMaxPayload - kHeader + 1 + below(50);
        oversized = true;
      }
      std::string payload = hex8(c.id) + hex8(to) + hex8(seq) + hex8(static_cast<std::uint32_t>(fill));
      payload.append(filler(seq, fill));
      if (c.hello_sent) {
        const auto length = sb::protocol::encode_be32(static_cast<std::uint32_t>(5 + payload.size()));
        const auto dest = sb::protocol::encode_be32(to);
        c.outgoing.append(length.data(), length.size());
        c.outgoing.push_back('\x01');
        c.outgoing.append(dest.data(), dest.size());
        c.outgoing.append(payload);
      } else {
        const auto header = sb::protocol::encode_be32(to);
        c.outgoing.append(header.data(), header.size());
        c.outgoing.append(payload);
        c.outgoing.push_back('\0');
      }
      payload.push_back('\0');
      c.sent.push_back({to, std::move(payload), oversized, c.hello_sent, false});
      if (oversized) {
        c.doomed = true;
        return;
      }
    }
  }

  // The engine reads up to `n` bytes from the client's socket and routes them.
  void read(SimClient& c, std::size_t n) {
    if (!c.live || c.paused || c.closing) return;
    n = std::min(n, c.outgoing.size());
    if (n == 0) return;
    if (below(2) == 0) {
      const auto space = c.decoder->prepare(kReadSize);
      ASSERT_GE(space.size(), kReadSize);
      n = std::min(n, space.size());
      std::memcpy(space.data(), c.outgoing.data(), n);
      c.decoder->commit(n);
    } else {
      c.decoder->feed(std::span<const char>(c.outgoing.data(), n));
    }
    c.outgoing.erase(0, n);
    c.in_decoder += n;
    ASSERT_EQ(c.decoder->buffered(), c.in_decoder);
    decode(c);
  }

  void decode(SimClient& c) {
    while (c.live && !c.paused) {
      Frame f{};
      const DecodeStatus st = c.decoder->peek(f);
      if (st == DecodeStatus::need_more) {
        if (!c.sent.empty()) {
          const Sent& next = c.sent.front();
          const std::size_t complete = next.oversized ? sb::protocol::kIdSize + kMaxPayload + 1 : next.encoded_size();
          ASSERT_LT(c.in_decoder, complete) << "a complete frame (or an oversized prefix) went unreported";
        }
        c.decoder->release_if_empty();
        if (c.in_decoder == 0) {
          ASSERT_EQ(c.decoder->capacity(), 0U);
        }
        return;
      }
      ASSERT_FALSE(c.sent.empty());
      const Sent& expected = c.sent.front();
      if (st == DecodeStatus::too_large) {
        ASSERT_TRUE(expected.oversized) << "too_large for a frame within the limit";
        ASSERT_GT(c.in_decoder, sb::protocol::kIdSize + kMaxPayload);
        disconnect(c, CloseReason::oversized_frame);
        return;
      }
      ASSERT_FALSE(expected.oversized) << "an oversized frame was delivered";
      ASSERT_EQ(to_u32(f.destination), expected.destination);
      ASSERT_EQ(f.type, expected.v2 ? sb::protocol::FrameType::send : sb::protocol::FrameType::v1);
      ASSERT_TRUE(std::string_view(f.payload.data(), f.payload.size()) ==
                  std::string_view(expected.wire).substr(0, expected.wire.size() - 1));
      if (below(8) == 0) {  // peeking again returns the same frame
        Frame again{};
        ASSERT_EQ(c.decoder->peek(again), DecodeStatus::frame);
        ASSERT_EQ(again.payload.data(), f.payload.data());
        ASSERT_EQ(again.payload.size(), f.payload.size());
      }
      const RouteResult res = expected.hello ? route_hello(c, f) : route(c, f);
      if (res == RouteResult::paused) return;
      if (testing::Test::HasFailure()) return;
      c.decoder->pop();
      if (res == RouteResult::upgraded) c.decoder->upgrade();
      c.in_decoder -= expected.encoded_size();
      c.sent.pop_front();
      ASSERT_EQ(c.decoder->buffered(), c.in_decoder);
      if (res == RouteResult::closing) return;  // the engine reads no further
    }
  }

  // One on_frame call, checked against the rules.
  RouteResult route(SimClient& from, const Frame& f) {
    enum class Expect { no_route, closing_drop, over_limit, queued };
    const std::uint32_t to = to_u32(f.destination);
    SimClient* dest = find_live(to);
    Expect expect = Expect::queued;
    if (dest == nullptr) {
      expect = Expect::no_route;
    } else if (dest->closing) {
      expect = Expect::closing_drop;
    } else if (!dest->queue.empty() && dest->queue.size() + encoded_for(*dest, f.payload.size()) > kMaxPending) {
      expect = Expect::over_limit;
    }
    const std::size_t from_queue_before = from.queue.size();

    const RouteResult res = router_.on_frame(ClientId{from.id}, f);
    const std::vector<SimAction> actions = take_actions();
    std::vector<SimAction> expected_actions;
    RouteResult expected_res = RouteResult::dropped;
    std::optional<sb::protocol::ErrorCode> error;  // told to a v2 sender
    switch (expect) {
      case Expect::no_route:
        ++model_.dropped_no_route;
        error = sb::protocol::ErrorCode::no_route;
        break;
      case Expect::closing_drop:
        ++model_.dropped_slow_consumer;
        ++dest->dropped_from[from.id];
        error = sb::protocol::ErrorCode::slow_consumer;
        break;
      case Expect::over_limit:
        switch (p_.policy) {
          case SlowConsumerPolicy::backpressure:
            expected_res = RouteResult::paused;
            ++model_.sender_pauses;
            from.paused = true;
            from.paused_on = to;
            dest->waiters.push_back(from.id);
            break;
          case SlowConsumerPolicy::disconnect:
            ++model_.dropped_slow_consumer;
            ++dest->dropped_from[from.id];
            error = sb::protocol::ErrorCode::slow_consumer;
            expected_actions.push_back({SimAction::Kind::close, f.destination, CloseReason::slow_consumer});
            // A sender that closed itself by flooding its own queue is not read further.
            if (to == from.id) expected_res = RouteResult::closing;
            break;
          case SlowConsumerPolicy::drop:
            ++model_.dropped_slow_consumer;
            ++dest->dropped_from[from.id];
            error = sb::protocol::ErrorCode::slow_consumer;
            break;
        }
        break;
      case Expect::queued: {
        expected_res = RouteResult::queued;
        ++model_.frames_routed;
        const std::string_view payload(f.payload.data(), f.payload.size());
        std::string bytes;
        if (dest->version == 1) {
          bytes.append(payload);
          bytes.push_back('\0');
        } else {
          // A v2 receiver gets DELIVER with the sender's ID, whatever the sender speaks.
          const auto header = sb::protocol::encode_deliver_header(ClientId{from.id}, payload.size());
          bytes.append(header.data(), header.size());
          bytes.append(payload);
        }
        model_.bytes_routed += bytes.size();
        enqueue(*dest, bytes);
        break;
      }
    }
    EXPECT_EQ(res, expected_res) << "frame " << from.id << " -> " << to << " (" << f.payload.size() << " bytes)";
    expect_actions(actions, expected_actions, "on_frame");  // a close discards the queue: before the counters
    if (error && from.version == 2) expect_error(from, from_queue_before, *error, to);
    check_counters();
    if (testing::Test::HasFailure()) return res;
    EXPECT_EQ(router_.is_paused(ClientId{from.id}), from.paused);
    return res;
  }

  static std::size_t encoded_for(const SimClient& dest, std::size_t payload) {
    return dest.version == 1 ? payload + 1 : sb::protocol::kDeliverHeaderSize + payload;
  }

  // The sender's hello: answered with the welcome (a v1 delivery, whatever
  // its queue holds), and the sender is v2 from now on.
  RouteResult route_hello(SimClient& from, const Frame& f) {
    const RouteResult res = router_.on_frame(ClientId{from.id}, f);
    EXPECT_EQ(res, RouteResult::upgraded) << "hello from " << from.id;
    expect_actions(take_actions(), {}, "hello");
    from.version = 2;
    ++model_.upgrades;
    enqueue(from, welcome(from) + '\0');
    check_counters();
    return res;
  }

  static std::string welcome(const SimClient& c) {
    return "switchboard/2 ok nonce=" + c.nonce + " id=" + std::to_string(c.id) +
           " max_frame=" + std::to_string(kMaxPayload);
  }

  // A v2 sender's dropped frame: an ERROR with this code and subject was
  // appended to its queue, unless that queue was over its limit (then it is
  // dropped and counted). The reason text is the router's to choose.
  void expect_error(SimClient& from, std::size_t queue_before, sb::protocol::ErrorCode code, std::uint32_t subject) {
    if (!from.live || from.closing) {
      // Closed by its own frame (the disconnect policy on itself): its queue
      // was discarded before the ERROR was queued, so the ERROR is there, and
      // goes with it (counted as discarded when it leaves).
      const std::string all = router_queue(from);
      ASSERT_TRUE(from.queue.empty());
      ASSERT_GE(all.size(), 10U);
      ASSERT_EQ(static_cast<unsigned char>(all[5]), static_cast<unsigned char>(code));
      ++model_.errors_sent;
      enqueue(from, all);
      return;
    }
    if (queue_before > kMaxPending) {
      ++model_.errors_dropped;
      return;
    }
    const std::string all = router_queue(from);
    ASSERT_GT(all.size(), from.queue.size()) << "no ERROR for " << from.id;
    const std::string tail = all.substr(from.queue.size());
    ASSERT_GE(tail.size(), 10U);
    ASSERT_EQ(sb::protocol::load_be32(tail.data()) + 4U, tail.size()) << "one ERROR frame, whole";
    ASSERT_EQ(static_cast<unsigned char>(tail[4]), 0x83U);
    ASSERT_EQ(static_cast<unsigned char>(tail[5]), static_cast<unsigned char>(code));
    ASSERT_EQ(sb::protocol::load_be32(tail.data() + 6), subject);
    ++model_.errors_sent;
    enqueue(from, tail);
  }

  std::string router_queue(const SimClient& c) const {
    std::array<ConstBuffer, 64> bufs{};
    const std::size_t used = router_.gather(ClientId{c.id}, bufs);
    std::string s;
    for (std::size_t i = 0; i < used; ++i) s.append(bufs[i].data, bufs[i].size);
    return s;
  }

  void enqueue(SimClient& dest, std::string_view bytes) {
    if (dest.queue.empty()) dest.last_progress = now_;
    dest.queue.append(bytes);
    model_.pending_bytes += bytes.size();
    model_.peak_pending_bytes = std::max(model_.peak_pending_bytes, model_.pending_bytes);
    if (!dest.dirty) {
      dest.dirty = true;
      dirty_.push_back(dest.id);
    }
  }

  void connect() {
    const ClientId id = router_.on_connect(next_tag_++);
    expect_actions(take_actions(), {}, "on_connect");
    ASSERT_EQ(find(to_u32(id)), nullptr) << "ID " << to_u32(id) << " handed out again";
    ASSERT_GE(to_u32(id) - kUnknownBase, 1000U) << "the simulation's unknown IDs were reached";
    auto owned = std::make_unique<SimClient>();
    SimClient& c = *owned;
    clients_.emplace(to_u32(id), std::move(owned));
    c.id = to_u32(id);
    c.decoder = std::make_unique<FrameDecoder>(kMaxPayload, &decoder_pool_);
    c.wants_v2 = below(100) < static_cast<std::uint64_t>(p_.v2_percent);
    c.nonce = hex8(c.id) + hex8(static_cast<std::uint32_t>(rng_()));
    live_.push_back(&c);
    ++model_.connections_accepted;
    ++model_.live_clients;
    const auto greeting = sb::protocol::encode_greeting(id);
    enqueue(c, std::string_view(greeting.data(), greeting.size()));
    check_counters();
  }

  // The engine closes the client (or the client left).
  void disconnect(SimClient& c, CloseReason reason) {
    ASSERT_TRUE(c.live);
    router_.on_disconnect(ClientId{c.id}, reason);
    c.live = false;
    c.closing = false;
    std::erase(live_, &c);
    departed_.push_back(c.id);
    ++model_.connections_closed;
    switch (reason) {
      case CloseReason::peer_closed: ++model_.closed_peer; break;
      case CloseReason::oversized_frame: ++model_.closed_oversized; break;
      case CloseReason::slow_consumer: ++model_.closed_slow_consumer; break;
      case CloseReason::io_error: ++model_.closed_io_error; break;
      case CloseReason::shutdown: ++model_.closed_shutdown; break;
      default: FAIL() << "the simulation closes only for the reasons above";
    }
    --model_.live_clients;
    model_.pending_bytes -= c.queue.size();
    model_.discarded_bytes += c.queue.size();
    c.queue.clear();
    if (c.paused) {
      if (SimClient* d = find_live(c.paused_on)) std::erase(d->waiters, c.id);
    }
    std::vector<SimAction> expected;
    for (std::uint32_t w : c.waiters) {
      const SimClient* s = find_live(w);
      if (s != nullptr && s->paused && s->paused_on == c.id) {
        expected.push_back({SimAction::Kind::resume_reading, ClientId{w}, CloseReason::peer_closed});
      }
    }
    c.waiters.clear();
    expect_actions(take_actions(), expected, "on_disconnect");
    c.paused = false;
    c.decoder.reset();
    c.outgoing.clear();
    c.sent.clear();
    c.in_decoder = 0;
    check_counters();
    ASSERT_FALSE(router_.contains(ClientId{c.id}));
  }

  void tick(Time now) {
    now_ = now;
    router_.on_tick(now);
    const std::vector<SimAction> actions = take_actions();
    for (const SimAction& a : actions) {
      ASSERT_EQ(p_.policy, SlowConsumerPolicy::backpressure) << "a stall close without backpressure";
      ASSERT_EQ(a.kind, SimAction::Kind::close);
      ASSERT_EQ(a.reason, CloseReason::slow_consumer);
      SimClient* d = find_live(to_u32(a.client));
      ASSERT_NE(d, nullptr) << "close for a client that has left";
      ASSERT_FALSE(d->closing) << "close requested twice";
      ASSERT_FALSE(d->queue.empty()) << "stall close of a client with nothing queued";
      ASSERT_GE(now_ - d->last_progress, kStall) << "stall close before the timeout";
      ASSERT_FALSE(d->waiters.empty()) << "stall close of a destination nobody paused on";
      bool live_waiter = false;
      for (std::uint32_t w : d->waiters) {
        const SimClient* s = find_live(w);
        live_waiter |= s != nullptr && s->paused && s->paused_on == d->id;
      }
      ASSERT_TRUE(live_waiter) << "stall close of " << d->id << " with no live sender paused on it";
      d->closing = true;
      discard_queue(*d);  // a requested close discards the queue at once
      tasks_.push_back({Task::Kind::close, d->id});
    }
    // Every destination that stalls with a paused sender must be closed.
    if (p_.policy != SlowConsumerPolicy::backpressure) return;
    for (const SimClient* live : live_) {
      const SimClient& d = *live;
      if (d.closing || d.queue.empty() || now_ - d.last_progress < kStall) continue;
      for (std::uint32_t w : d.waiters) {
        const SimClient* s = find_live(w);
        ASSERT_FALSE(s != nullptr && s->paused && s->paused_on == d.id)
            << "client " << d.id << " stalled for " << (now_ - d.last_progress).count() << " ns with sender " << w
            << " paused on it, and was not closed";
      }
    }
  }

  // Writes some of the client's queued bytes, as one writev would.
  void write(SimClient& c, bool all) {
    std::array<ConstBuffer, 4> bufs{};
    const std::size_t entries = all ? bufs.size() : 1 + below(bufs.size());
    const std::size_t used = router_.gather(ClientId{c.id}, std::span<ConstBuffer>(bufs.data(), entries));
    std::string gathered;
    for (std::size_t i = 0; i < used; ++i) {
      ASSERT_GT(bufs[i].size, 0U);
      gathered.append(bufs[i].data, bufs[i].size);
    }
    ASSERT_TRUE(std::string_view(c.queue).substr(0, gathered.size()) == gathered)
        << "client " << c.id << ": queued bytes differ from what was routed to it";
    if (used < entries) {
      ASSERT_EQ(gathered.size(), c.queue.size()) << "gather left bytes out";
    }
    std::size_t n = gathered.size();
    if (!all) {
      if (c.slow_steps > 0) {
        n = below(20) == 0 ? std::min(n, static_cast<std::size_t>(below(9))) : 0;
      } else if (below(2) == 0) {
        n = below(n + 1);
      }
    }
    router_.on_written(ClientId{c.id}, n);
    c.queue.erase(0, n);
    model_.pending_bytes -= n;
    std::vector<SimAction> expected;
    if (n > 0) {
      c.last_progress = now_;
      if (!c.waiters.empty() && c.queue.size() <= kMaxPending / 2) {
        for (std::uint32_t w : c.waiters) {
          const SimClient* s = find_live(w);
          if (s != nullptr && s->paused && s->paused_on == c.id) {
            expected.push_back({SimAction::Kind::resume_reading, ClientId{w}, CloseReason::peer_closed});
          }
        }
        c.waiters.clear();
      }
    }
    expect_actions(take_actions(), expected, "on_written");
    c.rx.append(gathered, 0, n);
    receive(c);
  }

  // The client parses what it received.
  void receive(SimClient& c) {
    if (!c.greeted) {
      if (c.rx.size() < sb::protocol::kIdSize) return;
      ASSERT_EQ(sb::protocol::load_be32(c.rx.data()), c.id) << "greeting";
      c.greeted = true;
      c.rx.erase(0, sb::protocol::kIdSize);
    }
    for (;;) {
      if (c.welcomed) {
        // v2: DELIVER (its source must be the sender the payload names) or ERROR.
        if (c.rx.size() < sb::protocol::kLengthSize) return;
        const std::uint32_t length = sb::protocol::load_be32(c.rx.data());
        ASSERT_GE(length, 1U);
        ASSERT_LE(length, 5 + kMaxPayload + 64) << "a v2 frame longer than any valid frame";
        if (c.rx.size() < 4 + std::size_t{length}) return;
        const auto type = static_cast<unsigned char>(c.rx[4]);
        const std::string_view body = std::string_view(c.rx).substr(5, length - 1);
        if (type == 0x81) {
          ASSERT_GE(body.size(), 4U);
          check_payload(c, body.substr(4), sb::protocol::load_be32(body.data()));
        } else {
          ASSERT_EQ(type, 0x83U) << "client " << c.id << ": a v2 frame of unknown type";
          ASSERT_GE(body.size(), 5U);
          const auto code = static_cast<unsigned char>(body[0]);
          ASSERT_TRUE(code == 1 || code == 2) << "ERROR code " << int{code};
          ++c.errors_received;
        }
        if (testing::Test::HasFailure()) return;
        c.rx.erase(0, 4 + std::size_t{length});
        continue;
      }
      const std::size_t nul = c.rx.find('\0');
      if (nul == std::string::npos) {
        ASSERT_LE(c.rx.size(), kMaxPayload) << "a partial frame longer than any valid frame";
        return;
      }
      const std::string_view payload(c.rx.data(), nul);
      if (payload.starts_with("switchboard/")) {
        // The welcome: the last v1 delivery.
        ASSERT_TRUE(c.hello_sent) << "client " << c.id << " got a hello reply it did not ask for";
        ASSERT_EQ(payload, welcome(c));
        c.welcomed = true;
      } else {
        check_payload(c, payload, std::nullopt);
        if (testing::Test::HasFailure()) return;
      }
      c.rx.erase(0, nul + 1);
    }
  }

  // One delivered payload, v1 or v2 (then with the source the router gave).
  void check_payload(SimClient& c, std::string_view payload, std::optional<std::uint32_t> source) {
    std::uint32_t sender = 0, dest = 0, seq = 0, fill = 0;
    ASSERT_GE(payload.size(), kHeader) << "a frame cut short or two frames merged";
    ASSERT_TRUE(parse_hex8(payload.substr(0, 8), sender) && parse_hex8(payload.substr(8, 8), dest) &&
                parse_hex8(payload.substr(16, 8), seq) && parse_hex8(payload.substr(24, 8), fill));
    if (source) {
      ASSERT_EQ(*source, sender) << "client " << c.id << ": DELIVER names the wrong source";
      ++v2_deliveries_checked_;
    }
    ASSERT_EQ(dest, c.id) << "client " << c.id << " received a frame addressed to " << dest << " by " << sender;
    ASSERT_EQ(payload.size(), kHeader + fill) << "frame from " << sender << " seq " << seq;
    ASSERT_TRUE(payload.substr(kHeader) == filler(seq, fill)) << "corrupt payload from " << sender << " seq " << seq;
    std::uint32_t& next = c.next_seq_from[sender];
    if (p_.policy == SlowConsumerPolicy::drop) {
      ASSERT_GE(seq, next) << "frame from " << sender << " out of order or twice";
    } else {
      // Nothing is dropped on a live path under backpressure, and under
      // disconnect a drop ends the destination: what arrives is gapless.
      ASSERT_EQ(seq, next) << "frame from " << sender << " lost, reordered or repeated";
    }
    next = seq + 1;
    ++c.received_from[sender];
  }

  // Flushes dirty clients, and some of the clients whose socket is writable
  // with bytes left over from an earlier turn; then clear_dirty().
  void flush(bool all) {
    std::vector<std::uint32_t> targets;
    for (ClientId id : router_.dirty()) {
      ASSERT_EQ(std::count(router_.dirty().begin(), router_.dirty().end(), id), 1) << "dirty twice";
      targets.push_back(to_u32(id));
    }
    for (std::uint32_t id : dirty_) {
      const SimClient* c = find_live(id);
      if (c == nullptr || c->queue.empty()) continue;
      ASSERT_NE(std::find(targets.begin(), targets.end(), id), targets.end())
          << "client " << id << " has new output but is not dirty";
    }
    for (const SimClient* c : live_) {
      if (!c->queue.empty() && !c->dirty && (all || below(2) == 0)) targets.push_back(c->id);
    }
    for (std::uint32_t id : targets) {
      SimClient* c = find_live(id);
      if (c == nullptr) continue;  // dirty, then left: the engine skips it
      write(*c, all);
      if (testing::Test::HasFailure()) return;
    }
    router_.clear_dirty();
    for (std::uint32_t id : dirty_) {
      if (SimClient* c = find(id)) c->dirty = false;
    }
    dirty_.clear();
    run_tasks();
  }

  // Actions turn into engine work, carried out in order after the call.
  struct Task {
    enum class Kind { decode, close };
    Kind kind;
    std::uint32_t id;
  };

  void run_tasks() {
    while (!tasks_.empty() && !testing::Test::HasFailure()) {
      const Task t = tasks_.front();
      tasks_.pop_front();
      SimClient* c = find_live(t.id);
      if (c == nullptr) continue;
      if (t.kind == Task::Kind::close) {
        disconnect(*c, CloseReason::slow_consumer);
      } else {
        decode(*c);  // the held-back frame first, then whatever is buffered
      }
    }
  }

  std::vector<SimAction> take_actions() {
    std::vector<SimAction> out;
    for (const Action& a : router_.actions()) out.push_back(flatten(a));
    router_.clear_actions();
    return out;
  }

  // Compares actions to the model's and schedules them. No action may name a
  // client that has left.
  void expect_actions(const std::vector<SimAction>& actual, const std::vector<SimAction>& expected, const char* call) {
    const std::vector<SimAction>& kept = actual;
    for (const SimAction& a : kept) {
      ASSERT_NE(find_live(to_u32(a.client)), nullptr) << "action for a client that has left, after " << call;
    }
    ASSERT_EQ(kept.size(), expected.size()) << "actions after " << call;
    for (std::size_t i = 0; i < kept.size(); ++i) {
      ASSERT_EQ(kept[i].kind, expected[i].kind) << "action " << i << " after " << call;
      ASSERT_EQ(kept[i].client, expected[i].client) << "action " << i << " after " << call;
      if (kept[i].kind == SimAction::Kind::close) {
        ASSERT_EQ(kept[i].reason, expected[i].reason);
      }
    }
    for (const SimAction& a : kept) {
      SimClient& c = *find_live(to_u32(a.client));
      if (a.kind == SimAction::Kind::close) {
        c.closing = true;
        discard_queue(c);  // a requested close discards the queue at once
        tasks_.push_back({Task::Kind::close, c.id});
      } else {
        c.paused = false;
        tasks_.push_back({Task::Kind::decode, c.id});
      }
    }
  }

  void discard_queue(SimClient& c) {
    model_.pending_bytes -= c.queue.size();
    model_.discarded_bytes += c.queue.size();
    c.queue.clear();
  }

  void check_counters() {
    const Stats& s = router_.stats();
    ASSERT_EQ(s.discarded_bytes, model_.discarded_bytes);
    ASSERT_EQ(s.connections_accepted, model_.connections_accepted);
    ASSERT_EQ(s.connections_closed, model_.connections_closed);
    ASSERT_EQ(s.frames_routed, model_.frames_routed);
    ASSERT_EQ(s.bytes_routed, model_.bytes_routed);
    ASSERT_EQ(s.dropped_no_route, model_.dropped_no_route);
    ASSERT_EQ(s.dropped_slow_consumer, model_.dropped_slow_consumer);
    ASSERT_EQ(s.closed_peer, model_.closed_peer);
    ASSERT_EQ(s.closed_oversized, model_.closed_oversized);
    ASSERT_EQ(s.closed_slow_consumer, model_.closed_slow_consumer);
    ASSERT_EQ(s.closed_io_error, model_.closed_io_error);
    ASSERT_EQ(s.sender_pauses, model_.sender_pauses);
    ASSERT_EQ(s.upgrades, model_.upgrades);
    ASSERT_EQ(s.errors_sent, model_.errors_sent);
    ASSERT_EQ(s.errors_dropped, model_.errors_dropped);
    ASSERT_EQ(s.live_clients, model_.live_clients);
    ASSERT_EQ(s.pending_bytes, model_.pending_bytes);
    ASSERT_EQ(s.peak_pending_bytes, model_.peak_pending_bytes);
  }

  void check_invariants() {
    check_counters();
    std::size_t total = 0;
    for (const SimClient* c : live_) {
      const ClientId id{c->id};
      const std::size_t pending = router_.pending_bytes(id);
      // Plain comparisons first: this loop runs 300 times a step.
      if (!router_.contains(id) || pending > kMaxPending + kMaxPayload + 1 || pending != c->queue.size() ||
          router_.is_paused(id) != c->paused || c->closing || c->decoder->buffered() != c->in_decoder) {
        ASSERT_TRUE(router_.contains(id)) << "client " << c->id;
        ASSERT_LE(pending, kMaxPending + kMaxPayload + 1) << "client " << c->id << " over its bound";
        ASSERT_EQ(pending, c->queue.size()) << "client " << c->id;
        ASSERT_EQ(router_.is_paused(id), c->paused) << "client " << c->id;
        ASSERT_FALSE(c->closing) << "client " << c->id << " should have been closed in the last batch";
        ASSERT_EQ(c->decoder->buffered(), c->in_decoder) << "client " << c->id;
      }
      total += pending;
    }
    ASSERT_EQ(router_.stats().pending_bytes, total);
    ASSERT_GE(router_.stats().peak_pending_bytes, total);
    ASSERT_TRUE(tasks_.empty());
    for (int i = 0; i < 4 && !departed_.empty(); ++i) {
      ASSERT_FALSE(router_.contains(ClientId{departed_[below(departed_.size())]}));
    }
  }

  // Everyone turns into a fast reader and stops writing: everything left must
  // reach its destination (no deadlock, no paused sender left behind).
  void drain() {
    for (SimClient* c : live_) c->slow_steps = 0;
    for (int round = 0; round < 1000; ++round) {
      std::vector<std::uint32_t> ids;
      for (const SimClient* c : live_) ids.push_back(c->id);
      for (std::uint32_t id : ids) {
        if (SimClient* c = find_live(id)) read(*c, std::numeric_limits<std::size_t>::max());
        run_tasks();
        if (testing::Test::HasFailure()) return;
      }
      flush(true);
      if (testing::Test::HasFailure()) return;
      check_invariants();
      if (testing::Test::HasFailure()) return;
      bool idle = true;
      for (const SimClient* live : live_) {
        const SimClient& c = *live;
        idle = idle && c.outgoing.empty() && c.in_decoder == 0 && !c.paused && c.queue.empty();
      }
      if (idle) return;
    }
    FAIL() << "the router did not drain: a paused sender was never resumed";
  }

  void final_checks() {
    EXPECT_EQ(router_.stats().pending_bytes, 0U);
    auto count = [](const std::unordered_map<std::uint32_t, std::uint32_t>& m, std::uint32_t key) {
      const auto it = m.find(key);
      return it == m.end() ? 0U : it->second;
    };
    for (const SimClient* d : live_) {
      EXPECT_TRUE(d->rx.empty()) << "client " << d->id << " holds a partial frame";
      if (p_.policy != SlowConsumerPolicy::drop) {
        EXPECT_TRUE(d->dropped_from.empty()) << "client " << d->id << " lost frames but is still connected";
      }
      // Nothing arrived that was not sent.
      for (const auto& [sid, got] : d->received_from) {
        ASSERT_LE(got + count(d->dropped_from, sid), count(clients_.at(sid)->next_seq_to, d->id))
            << "from " << sid << " to " << d->id;
      }
    }
    // Everything a connected sender sent to a connected destination arrived,
    // or was dropped by the drop policy and counted.
    for (const SimClient* s : live_) {
      for (const auto& [did, sent] : s->next_seq_to) {
        const SimClient* d = find_live(did);
        if (d == nullptr) continue;
        ASSERT_EQ(count(d->received_from, s->id) + count(d->dropped_from, s->id), sent)
            << "from " << s->id << " to " << did;
      }
    }
  }

  SimParams p_;
  std::mt19937_64 rng_;
  Router router_;
  BlockPool decoder_pool_;
  Stats model_;
  Time now_{};
  int step_ = 0;
  std::uint64_t next_tag_ = 1;
  std::unordered_map<std::uint32_t, std::unique_ptr<SimClient>> clients_;  // every client ever, by ID
  std::vector<SimClient*> live_;  // owned by clients_
  std::vector<std::uint32_t> departed_;
  std::vector<std::uint32_t> hot_;    // popular destinations, so that queues fill up
  std::vector<std::uint32_t> dirty_;  // clients with output queued since the last flush
  std::uint64_t v2_deliveries_checked_ = 0;

 public:
  std::uint64_t v2_deliveries_checked() const { return v2_deliveries_checked_; }

 private:
  std::deque<Task> tasks_;
};

std::vector<std::uint64_t> seeds() {
  if (const char* env = std::getenv("SWITCHBOARD_SIM_SEED"); env != nullptr && *env != '\0') {
    return {std::strtoull(env, nullptr, 0)};
  }
  return {1, 0x5eed, 20240611};
}

class RouterSimulation : public testing::TestWithParam<SlowConsumerPolicy> {};

TEST_P(RouterSimulation, RandomTrafficKeepsEveryRule) {
  for (std::uint64_t seed : seeds()) {
    SCOPED_TRACE(testing::Message() << "seed " << seed << " policy " << to_string(GetParam())
                                    << " (rerun with SWITCHBOARD_SIM_SEED=" << seed << ")");
    Simulation sim({seed, GetParam()});
    sim.run();
    std::printf("[ sim      ] seed=%llu policy=%s %s\n", static_cast<unsigned long long>(seed),
                std::string(to_string(GetParam())).c_str(), sim.summary().c_str());
    if (HasFailure()) return;
    // The run must have exercised what it is there to test.
    const Stats& s = sim.stats();
    EXPECT_GT(s.dropped_no_route, 0U);
    EXPECT_GT(s.closed_oversized, 0U);
    EXPECT_GT(s.peak_pending_bytes, kMaxPending);
    switch (GetParam()) {
      case SlowConsumerPolicy::backpressure:
        EXPECT_GT(s.sender_pauses, 100U);
        EXPECT_GT(s.closed_slow_consumer, 0U) << "no stall was ever detected";
        break;
      case SlowConsumerPolicy::disconnect:
        EXPECT_GT(s.closed_slow_consumer, 10U);
        break;
      case SlowConsumerPolicy::drop:
        EXPECT_GT(s.dropped_slow_consumer, 100U);
        break;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Policies, RouterSimulation,
                         testing::Values(SlowConsumerPolicy::backpressure, SlowConsumerPolicy::disconnect,
                                         SlowConsumerPolicy::drop),
                         [](const testing::TestParamInfo<SlowConsumerPolicy>& param) {
                           return std::string(to_string(param.param));
                         });

// Mixed versions: half the clients upgrade to v2 at a random moment, with
// frames in flight both ways. Every DELIVER's source is checked against the
// sender the payload names, every queue byte for byte per receiver version.
class RouterSimulationV2 : public testing::TestWithParam<SlowConsumerPolicy> {};

TEST_P(RouterSimulationV2, MixedVersionsKeepEveryRule) {
  for (std::uint64_t seed : seeds()) {
    SCOPED_TRACE(testing::Message() << "seed " << seed << " policy " << to_string(GetParam())
                                    << " (rerun with SWITCHBOARD_SIM_SEED=" << seed << ")");
    SimParams p{seed, GetParam()};
    p.v2_percent = 50;
    p.steps = 10000;
    Simulation sim(p);
    sim.run();
    std::printf("[ sim      ] v2 seed=%llu policy=%s v2_deliveries=%llu %s\n", static_cast<unsigned long long>(seed),
                std::string(to_string(GetParam())).c_str(),
                static_cast<unsigned long long>(sim.v2_deliveries_checked()), sim.summary().c_str());
    if (HasFailure()) return;
    const Stats& s = sim.stats();
    EXPECT_GT(s.upgrades, 100U);
    EXPECT_GT(sim.v2_deliveries_checked(), 1000U);
    EXPECT_GT(s.errors_sent, 100U);
    EXPECT_GT(s.dropped_no_route, 0U);
  }
}

INSTANTIATE_TEST_SUITE_P(Policies, RouterSimulationV2,
                         testing::Values(SlowConsumerPolicy::backpressure, SlowConsumerPolicy::disconnect,
                                         SlowConsumerPolicy::drop),
                         [](const testing::TestParamInfo<SlowConsumerPolicy>& param) {
                           return std::string(to_string(param.param));
                         });

// The same, with the ID counter wrapping around in the middle of the run.
TEST(RouterSimulationWrap, IdsWrapAroundWhileClientsStayConnected) {
  for (std::uint64_t seed : seeds()) {
    SCOPED_TRACE(testing::Message() << "seed " << seed << " (rerun with SWITCHBOARD_SIM_SEED=" << seed << ")");
    SimParams p{seed, SlowConsumerPolicy::backpressure};
    p.first_id = std::numeric_limits<std::uint32_t>::max() - 150;
    p.steps = 5000;
    Simulation sim(p);
    sim.run();
    std::printf("[ sim      ] wrap seed=%llu %s\n", static_cast<unsigned long long>(seed), sim.summary().c_str());
    if (HasFailure()) return;
    EXPECT_GT(sim.stats().connections_accepted, 300U) << "the counter did not wrap";
  }
}

}  // namespace
