// Router with several places (shards or nodes): IDs carry their place, a
// frame for another place is forwarded in a batch, and the destination's
// place judges it and sends its verdicts (ERRORs, pause, resume) back. Two
// or three routers exchange batches by hand, as the sharded engine's rings
// or the cluster's transport would.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <variant>
#include <vector>

#include "core/config.hpp"
#include "core/router.hpp"
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

constexpr unsigned kCounterBits = 20;

RouterConfig config(std::uint32_t place, std::size_t max_pending = 1000,
                    SlowConsumerPolicy policy = SlowConsumerPolicy::backpressure) {
  RouterConfig c;
  c.max_pending = max_pending;
  c.policy = policy;
  c.counter_bits = kCounterBits;
  c.place = place;
  return c;
}

// Places 0..n-1, each a router that knows the others.
struct Cluster {
  std::vector<std::unique_ptr<Router>> r;
  explicit Cluster(std::size_t n, std::size_t max_pending = 1000,
                   SlowConsumerPolicy policy = SlowConsumerPolicy::backpressure) {
    for (std::uint32_t p = 0; p < n; ++p)
      r.push_back(std::make_unique<Router>(config(p, max_pending, policy)));
    for (auto& x : r) {
      for (std::uint32_t p = 0; p < n; ++p) x->add_peer(p);
      x->on_tick(1000s);
    }
  }
  Router& operator[](std::size_t i) { return *r[i]; }
  // Hands every batch to its place until nothing moves (verdicts can cause
  // more batches: a frame, then its ERROR, then nothing).
  void exchange() {
    for (bool moved = true; moved;) {
      moved = false;
      for (std::uint32_t from = 0; from < r.size(); ++from) {
        std::vector<std::pair<std::uint32_t, std::vector<char>>> batches;
        r[from]->flush_peers(
            [&](std::uint32_t to, std::vector<char>& batch, std::size_t) { batches.emplace_back(to, std::move(batch)); });
        for (auto& [to, batch] : batches) {
          moved = true;
          r[to]->on_peer_batch(batch);
        }
      }
    }
  }
};

std::string wire(std::string_view payload) {
  std::string s(payload);
  s.push_back('\0');
  return s;
}

RouteResult send_v1(Router& r, ClientId from, ClientId to, const std::string& payload) {
  const std::string w = wire(payload);
  sb::protocol::Frame f;
  f.type = sb::protocol::FrameType::v1;
  f.destination = to;
  f.wire = std::span<const char>(w.data(), w.size());
  f.payload = f.wire.first(w.size() - 1);
  return r.on_frame(from, f);
}

RouteResult send_v2(Router& r, ClientId from, ClientId to, const std::string& payload) {
  sb::protocol::Frame f;
  f.type = sb::protocol::FrameType::send;
  f.destination = to;
  f.payload = std::span<const char>(payload.data(), payload.size());
  return r.on_frame(from, f);
}

std::string queued(const Router& r, ClientId id) {
  std::array<ConstBuffer, 256> bufs{};
  const std::size_t used = r.gather(id, bufs);
  std::string s;
  for (std::size_t i = 0; i < used; ++i) s.append(bufs[i].data, bufs[i].size);
  return s;
}

std::string write(Router& r, ClientId id, std::size_t n = std::string::npos) {
  std::string s = queued(r, id);
  s.resize(std::min(n, s.size()));
  r.on_written(id, s.size());
  return s;
}

ClientId join(Router& r) {
  const ClientId id = r.on_connect(0);
  write(r, id);
  return id;
}

// Upgrades `id` to v2 and writes the welcome away.
void upgrade(Router& r, ClientId id) {
  ASSERT_EQ(send_v1(r, id, ClientId{sb::protocol::kServerId}, "switchboard/2 nonce=0123456789abcdef"),
            RouteResult::upgraded);
  write(r, id);
}

std::string deliver(ClientId source, std::string_view payload) {
  const auto h = sb::protocol::encode_deliver_header(source, payload.size());
  return std::string(h.data(), h.size()) + std::string(payload);
}

std::vector<std::string> take_actions(Router& r) {
  std::vector<std::string> out;
  for (const Action& a : r.actions()) {
    if (const auto* x = std::get_if<sb::core::ResumeReading>(&a))
      out.push_back("resume " + std::to_string(to_u32(x->client)));
    if (const auto* x = std::get_if<sb::core::PauseReading>(&a))
      out.push_back("pause " + std::to_string(to_u32(x->client)));
    if (const auto* x = std::get_if<sb::core::Close>(&a))
      out.push_back("close " + std::to_string(to_u32(x->client)));
  }
  r.clear_actions();
  return out;
}
using Actions = std::vector<std::string>;
std::string pause(ClientId id) {
  return "pause " + std::to_string(to_u32(id));
}
std::string resume(ClientId id) {
  return "resume " + std::to_string(to_u32(id));
}

TEST(Places, IdsCarryTheirPlaceAndRecurOnlyAfterTheWholeCounter) {
  Router r(config(5));
  const ClientId first = r.on_connect(0);
  EXPECT_EQ(to_u32(first) >> kCounterBits, 5U);
  EXPECT_EQ(r.place_of(first), 5U);
  r.on_disconnect(first, CloseReason::peer_closed);
  // Every later ID of this place differs from `first` until the counter wraps.
  std::uint64_t later = 0;
  for (;; ++later) {
    const ClientId id = r.on_connect(0);
    ASSERT_EQ(r.place_of(id), 5U);
    r.on_disconnect(id, CloseReason::peer_closed);
    if (id == first) break;
  }
  EXPECT_EQ(later, (std::uint64_t{1} << kCounterBits) - 1);
  EXPECT_GE(later, 1'000'000U);
}

TEST(Places, TheLastPlaceNeverHandsOutReservedIds) {
  Router r(config((1U << (32 - kCounterBits)) - 1));
  for (int i = 0; i < 2000; ++i) {
    const ClientId id = r.on_connect(0);
    ASSERT_FALSE(sb::protocol::is_reserved(id)) << to_u32(id);
    r.on_disconnect(id, CloseReason::peer_closed);
  }
}

TEST(Places, V1FrameCrossesPlacesInOrder) {
  Cluster c(2);
  const ClientId a = join(c[0]);
  const ClientId b = join(c[1]);
  EXPECT_EQ(send_v1(c[0], a, b, "one"), RouteResult::forwarded);
  EXPECT_EQ(send_v1(c[0], a, b, "two"), RouteResult::forwarded);
  EXPECT_EQ(queued(c[1], b), "") << "nothing arrives before the batch is handed over";
  c.exchange();
  EXPECT_EQ(write(c[1], b), wire("one") + wire("two"));
  EXPECT_EQ(c[0].stats().frames_forwarded, 2U);
  EXPECT_EQ(c[1].stats().frames_routed, 2U);
  EXPECT_EQ(c[0].stats().frames_routed, 0U);
}

TEST(Places, V2ReceiverLearnsTheRemoteSource) {
  Cluster c(3);
  const ClientId a = join(c[0]);
  const ClientId b = join(c[2]);
  upgrade(c[2], b);
  send_v1(c[0], a, b, "hello");
  c.exchange();
  EXPECT_EQ(write(c[2], b), deliver(a, "hello"));
}

TEST(Places, UnknownIdElsewhereIsNoRouteWithAnErrorBack) {
  Cluster c(2);
  const ClientId a = join(c[0]);
  upgrade(c[0], a);
  const ClientId b = join(c[1]);
  c[1].on_disconnect(b, CloseReason::peer_closed);
  EXPECT_EQ(send_v2(c[0], a, b, "ghost"), RouteResult::forwarded);
  c.exchange();
  EXPECT_EQ(c[1].stats().dropped_no_route, 1U);
  EXPECT_EQ(write(c[0], a), sb::protocol::encode_error(sb::protocol::ErrorCode::no_route, to_u32(b),
                                                       "no client with this ID"));
}

TEST(Places, V2PayloadWithNulForARemoteV1ReceiverIsRefused) {
  Cluster c(2);
  const ClientId a = join(c[0]);
  upgrade(c[0], a);
  const ClientId b = join(c[1]);
  send_v2(c[0], a, b, std::string("x\0y", 3));
  c.exchange();
  EXPECT_EQ(c[1].stats().dropped_not_representable, 1U);
  EXPECT_EQ(queued(c[1], b), "");
  EXPECT_EQ(static_cast<unsigned char>(write(c[0], a)[5]),
            static_cast<unsigned>(sb::protocol::ErrorCode::not_representable));
}

TEST(Places, UnreachablePlaceIsNoRouteAtOnce) {
  Router r(config(0));
  const ClientId a = join(r);
  const ClientId elsewhere{(7U << kCounterBits) | 3U};
  EXPECT_EQ(send_v1(r, a, elsewhere, "x"), RouteResult::dropped);
  EXPECT_EQ(r.stats().dropped_no_route, 1U);
  EXPECT_FALSE(r.has_peer_output());
}

TEST(Places, BackpressurePausesOnlyTheRemoteSenderAndResumesIt) {
  Cluster c(2, 1000);
  const ClientId s = join(c[0]);
  const ClientId other = join(c[0]);
  const ClientId d = join(c[1]);
  const ClientId e = join(c[1]);
  EXPECT_EQ(send_v1(c[0], s, d, std::string(900, 'a')), RouteResult::forwarded);
  EXPECT_EQ(send_v1(c[0], s, d, std::string(200, 'b')), RouteResult::forwarded);
  EXPECT_EQ(send_v1(c[0], s, d, std::string(200, 'c')), RouteResult::forwarded);
  c.exchange();
  // In flight when the limit was reached: taken past it, nothing lost.
  EXPECT_EQ(c[1].pending_bytes(d), 901U + 201U + 201U);
  EXPECT_EQ(take_actions(c[0]), Actions{pause(s)}) << "one pause, however many frames were in flight";
  EXPECT_EQ(c[0].stats().sender_pauses, 1U);
  EXPECT_TRUE(c[0].is_paused(s) == false) << "no frame is held: the sender just is not read";
  // Others keep flowing, to the same place too.
  EXPECT_EQ(send_v1(c[0], other, e, "free"), RouteResult::forwarded);
  c.exchange();
  EXPECT_EQ(write(c[1], e), wire("free"));
  // d drains to half the limit: s resumes.
  write(c[1], d, 901U + 201U);
  EXPECT_EQ(take_actions(c[0]), Actions{});
  c.exchange();
  EXPECT_EQ(take_actions(c[0]), Actions{resume(s)});
}

TEST(Places, StalledRemoteDestinationIsClosedAndItsRemoteSenderResumes) {
  Cluster c(2, 1000);
  const ClientId s = join(c[0]);
  const ClientId d = join(c[1]);
  send_v1(c[0], s, d, std::string(999, 'a'));
  send_v1(c[0], s, d, std::string(10, 'b'));
  c.exchange();
  EXPECT_EQ(take_actions(c[0]), Actions{pause(s)});
  c[1].on_tick(1000s + 10s);
  EXPECT_EQ(take_actions(c[1]), Actions{"close " + std::to_string(to_u32(d))});
  c[1].on_disconnect(d, CloseReason::slow_consumer);
  c.exchange();
  EXPECT_EQ(take_actions(c[0]), Actions{resume(s)});
}

TEST(Places, DropPolicyDecidesAtTheDestinationAndTellsAV2Sender) {
  Cluster c(2, 1000, SlowConsumerPolicy::drop);
  const ClientId s = join(c[0]);
  upgrade(c[0], s);
  const ClientId d = join(c[1]);
  send_v2(c[0], s, d, std::string(999, 'a'));
  send_v2(c[0], s, d, std::string(10, 'b'));
  c.exchange();
  EXPECT_EQ(c[1].stats().dropped_slow_consumer, 1U);
  EXPECT_EQ(write(c[0], s), sb::protocol::encode_error(sb::protocol::ErrorCode::slow_consumer, to_u32(d),
                                                       "the destination is not keeping up"));
  EXPECT_EQ(take_actions(c[0]), Actions{});
}

TEST(Places, BlockedTransportPausesSendersAndHoldsTheirFrame) {
  Cluster c(2);
  const ClientId s = join(c[0]);
  const ClientId d = join(c[1]);
  c[0].set_peer_blocked(1, true);
  EXPECT_EQ(send_v1(c[0], s, d, "held"), RouteResult::paused);
  EXPECT_TRUE(c[0].is_paused(s));
  c[0].set_peer_blocked(1, false);
  EXPECT_EQ(take_actions(c[0]), Actions{resume(s)});
  EXPECT_EQ(send_v1(c[0], s, d, "held"), RouteResult::forwarded);
  c.exchange();
  EXPECT_EQ(write(c[1], d), wire("held"));
}

TEST(Places, PeerGoneResumesWhatItPausedAndItsIdsBecomeNoRoute) {
  Cluster c(2, 1000);
  const ClientId s = join(c[0]);
  const ClientId d = join(c[1]);
  send_v1(c[0], s, d, std::string(999, 'a'));
  send_v1(c[0], s, d, std::string(10, 'b'));
  c.exchange();
  EXPECT_EQ(take_actions(c[0]), Actions{pause(s)});
  c[0].remove_peer(1);
  EXPECT_EQ(take_actions(c[0]), Actions{resume(s)});
  EXPECT_EQ(send_v1(c[0], s, d, "late"), RouteResult::dropped);
  EXPECT_EQ(c[0].stats().dropped_no_route, 1U);
}

TEST(Places, MalformedBatchIsCountedNotFatal) {
  Router r(config(0));
  const ClientId d = join(r);
  std::vector<char> junk = {'\x09', 'x', 'y'};
  r.on_peer_batch(junk);
  EXPECT_EQ(r.stats().peer_errors, 1U);
  // A truncated frame: its header promises more than there is.
  std::vector<char> cut = {'\x01', 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 9, 'a'};
  r.on_peer_batch(cut);
  EXPECT_EQ(r.stats().peer_errors, 2U);
  // Flag 2 promises the v1 NUL after the payload; a batch without it is
  // not framed as the list says.
  std::vector<char> no_nul = {'\x01', 0, 0, 0, 1, 0, 0, 0, 0, 2, 0, 0, 0, 1, 'a', 'b'};
  const auto dest = sb::protocol::encode_be32(to_u32(d));
  std::copy(dest.begin(), dest.end(), no_nul.begin() + 5);
  r.on_peer_batch(no_nul);
  EXPECT_EQ(r.stats().peer_errors, 3U);
  EXPECT_EQ(queued(r, d), "");
}

// A seeded simulation of 2 to 4 places joined by bounded rings, as the
// sharded engine joins its shards: clients on every place send numbered v1
// frames to random clients anywhere; a place's turn flushes its batches into
// its rings (a ring holds two batches: a full one leaves the batch with its
// producer and blocks the place, whose senders are then paused, as the
// engine does) and takes in every batch waiting for it; receivers read
// random amounts; pause and resume actions stop and restart senders, and a
// frame the router refused with `paused` is offered again on resume. After
// every step: every receiver has each sender's frames in order, none twice;
// each router's routed count is what its clients read plus what is queued
// for them; its pending bytes are what its queues hold. At the end, once
// everything has been exchanged and read, every frame a router accepted
// arrived. Deterministic for a seed.
struct SimClient {
  std::uint32_t place = 0;
  ClientId id{};
  bool reading = true;                   // PauseReading / ResumeReading
  std::optional<std::string> held;       // refused with `paused`: offered again on resume
  std::uint32_t held_to = 0;
  std::string inbox;                     // bytes read, an incomplete frame at the end
  std::map<std::uint32_t, std::uint64_t> next_from;  // sender -> next sequence number expected
  std::uint64_t frames_read = 0;
};

class PlacesSimulation : public testing::TestWithParam<std::tuple<unsigned, std::uint64_t>> {};

TEST_P(PlacesSimulation, RandomTrafficThroughBoundedRingsKeepsOrderAndLosesNothing) {
  const auto [places, seed] = GetParam();
  SCOPED_TRACE("places " + std::to_string(places) + ", seed " + std::to_string(seed));
  constexpr std::size_t kClientsPerPlace = 5;
  constexpr std::size_t kRingBatches = 2;
  constexpr int kSteps = 6000;
  std::mt19937_64 rng(seed);
  auto below = [&](std::uint64_t n) { return std::uniform_int_distribution<std::uint64_t>(0, n - 1)(rng); };

  Cluster c(places, 600);
  std::vector<SimClient> clients;
  std::map<std::uint32_t, std::size_t> by_id;
  for (std::uint32_t p = 0; p < places; ++p) {
    for (std::size_t i = 0; i < kClientsPerPlace; ++i) {
      SimClient sc;
      sc.place = p;
      sc.id = join(c[p]);
      by_id[to_u32(sc.id)] = clients.size();
      clients.push_back(std::move(sc));
    }
  }
  // rings[from][to]: batches in flight; waiting[from][to]: batches a full ring left with their producer.
  std::vector<std::vector<std::deque<std::vector<char>>>> rings(places, std::vector<std::deque<std::vector<char>>>(places));
  auto waiting = rings;
  std::map<std::pair<std::uint32_t, std::uint32_t>, std::uint64_t> next_seq;  // (from, to) -> next to send
  std::uint64_t accepted = 0, accepted_across = 0, ring_full = 0;

  auto offer = [&](SimClient& s, std::uint32_t to, const std::string& payload) {
    const RouteResult r = send_v1(c[s.place], s.id, ClientId{to}, payload);
    if (r == RouteResult::paused) {
      s.held = payload;
      s.held_to = to;
      return;
    }
    ASSERT_TRUE(r == RouteResult::queued || r == RouteResult::forwarded) << "frame refused: " << payload;
    ++accepted;
    if (r == RouteResult::forwarded) ++accepted_across;
  };
  auto carry_out_actions = [&] {
    for (std::uint32_t p = 0; p < places; ++p) {
      std::vector<Action> acts(c[p].actions().begin(), c[p].actions().end());
      c[p].clear_actions();
      for (const Action& a : acts) {
        if (const auto* x = std::get_if<sb::core::PauseReading>(&a)) clients[by_id.at(to_u32(x->client))].reading = false;
        if (const auto* x = std::get_if<sb::core::ResumeReading>(&a)) {
          SimClient& s = clients[by_id.at(to_u32(x->client))];
          s.reading = true;
          if (s.held) {
            const std::string payload = *std::exchange(s.held, std::nullopt);
            offer(s, s.held_to, payload);
          }
        }
        ASSERT_EQ(std::get_if<sb::core::Close>(&a), nullptr) << "nobody stalls for long enough to be closed";
      }
    }
  };
  auto turn = [&](std::uint32_t p) {
    c[p].flush_peers([&](std::uint32_t to, std::vector<char>& batch, std::size_t) {
      waiting[p][to].push_back(std::move(batch));
    });
    for (std::uint32_t to = 0; to < places; ++to) {
      while (!waiting[p][to].empty() && rings[p][to].size() < kRingBatches) {
        rings[p][to].push_back(std::move(waiting[p][to].front()));
        waiting[p][to].pop_front();
      }
      if (!waiting[p][to].empty()) ++ring_full;
      c[p].set_peer_blocked(to, !waiting[p][to].empty());
    }
    for (std::uint32_t from = 0; from < places; ++from) {
      while (!rings[from][p].empty()) {
        c[p].on_peer_batch(rings[from][p].front());
        rings[from][p].pop_front();
      }
    }
  };
  auto read = [&](SimClient& r, std::size_t n) {
    const std::string got = write(c[r.place], r.id, n);
    r.inbox += got;
    for (std::size_t nul; (nul = r.inbox.find('\0')) != std::string::npos;) {
      const std::string frame = r.inbox.substr(0, nul);
      r.inbox.erase(0, nul + 1);
      unsigned from = 0, to = 0;
      unsigned long long seq = 0;
      ASSERT_EQ(std::sscanf(frame.c_str(), "f %u t %u n %llu", &from, &to, &seq), 3) << "corrupt frame " << frame;
      ASSERT_EQ(to, to_u32(r.id)) << "misrouted frame " << frame;
      ASSERT_EQ(seq, r.next_from[from]) << "frame out of order, lost or twice: " << frame;
      ++r.next_from[from];
      ++r.frames_read;
    }
  };
  auto check = [&](int step) {
    for (std::uint32_t p = 0; p < places; ++p) {
      std::uint64_t read_frames = 0, queued_frames = 0, queued_bytes = 0;
      for (const SimClient& s : clients) {
        if (s.place != p) continue;
        const std::string q = queued(c[p], s.id);
        read_frames += s.frames_read;
        queued_frames += static_cast<std::uint64_t>(std::count(q.begin(), q.end(), '\0'));
        queued_bytes += q.size();
      }
      ASSERT_EQ(c[p].stats().frames_routed, read_frames + queued_frames) << "place " << p << ", step " << step;
      ASSERT_EQ(c[p].stats().pending_bytes, queued_bytes) << "place " << p << ", step " << step;
    }
  };

  for (int step = 0; step < kSteps; ++step) {
    const std::uint64_t what = below(10);
    if (what < 5) {  // a client sends
      SimClient& s = clients[below(clients.size())];
      if (s.reading && !s.held) {
        const SimClient& d = clients[below(clients.size())];
        const std::uint32_t to = to_u32(d.id);
        const std::uint64_t seq = next_seq[{to_u32(s.id), to}]++;
        // Sizes from a few bytes to a few hundred: queues go past their
        // 600-byte limit, so senders are paused and resumed all along.
        const std::string payload = "f " + std::to_string(to_u32(s.id)) + " t " + std::to_string(to) + " n " +
                                    std::to_string(seq) + " " + std::string(below(300), 'x');
        offer(s, to, payload);
      }
    } else if (what < 8) {  // a place's turn
      turn(static_cast<std::uint32_t>(below(places)));
    } else {  // a receiver reads some
      read(clients[below(clients.size())], below(2) == 0 ? std::string::npos : below(700));
    }
    if (HasFatalFailure()) return;
    carry_out_actions();
    if (HasFatalFailure()) return;
    check(step);
    if (HasFatalFailure()) return;
  }

  // The end: turns and reads until nothing is held, in flight or queued.
  for (int round = 0; round < 10000; ++round) {
    for (std::uint32_t p = 0; p < places; ++p) turn(p);
    for (SimClient& s : clients) read(s, std::string::npos);
    if (HasFatalFailure()) return;
    carry_out_actions();
    if (HasFatalFailure()) return;
    check(kSteps + round);
    if (HasFatalFailure()) return;
    bool idle = true;
    for (std::uint32_t p = 0; p < places; ++p) {
      idle = idle && c[p].stats().pending_bytes == 0 && !c[p].has_peer_output();
      for (std::uint32_t q = 0; q < places; ++q) idle = idle && rings[p][q].empty() && waiting[p][q].empty();
    }
    for (const SimClient& s : clients) idle = idle && !s.held && s.reading && s.inbox.empty();
    if (idle) break;
  }
  std::uint64_t routed = 0, forwarded = 0, read_frames = 0, pauses = 0;
  for (std::uint32_t p = 0; p < places; ++p) {
    routed += c[p].stats().frames_routed;
    forwarded += c[p].stats().frames_forwarded;
    pauses += c[p].stats().sender_pauses;
    EXPECT_EQ(c[p].stats().dropped_no_route + c[p].stats().dropped_slow_consumer, 0U);
  }
  for (const SimClient& s : clients) {
    read_frames += s.frames_read;
    EXPECT_FALSE(s.held) << "a sender was never resumed";
    EXPECT_TRUE(s.reading) << "a sender was never resumed";
  }
  EXPECT_EQ(read_frames, accepted) << "accepted frames were lost";
  EXPECT_EQ(routed, accepted);
  EXPECT_EQ(forwarded, accepted_across);
  EXPECT_GT(accepted_across, accepted / 4) << "too few frames crossed places to mean anything";
  EXPECT_GT(pauses, 0U) << "no sender was ever paused: the limits were never reached";
  EXPECT_GT(ring_full, 0U) << "no ring was ever full";
  for (const auto& [key, n] : next_seq) {
    const SimClient& d = clients[by_id.at(key.second)];
    const auto it = d.next_from.find(key.first);
    EXPECT_EQ(it == d.next_from.end() ? 0 : it->second, n) << "from " << key.first << " to " << key.second;
  }
}

INSTANTIATE_TEST_SUITE_P(Seeds, PlacesSimulation,
                         testing::Combine(testing::Values(2U, 3U, 4U), testing::Values(1ULL, 2ULL, 3ULL)));

}  // namespace
