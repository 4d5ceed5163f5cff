// Router, protocol v2 and authentication (DESIGN.md 1b), driven by hand with
// a fake clock: the upgrade, mixed versions, each ERROR code, the PING
// barrier, reserved IDs and the token rules, one situation per test.
#include <gtest/gtest.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "core/config.hpp"
#include "core/router.hpp"
#include "core/stats.hpp"
#include "protocol/frame_decoder.hpp"
#include "protocol/v2.hpp"
#include "protocol/wire.hpp"

namespace {

using namespace std::chrono_literals;
using namespace std::string_literals;
using sb::ClientId;
using sb::to_u32;
using sb::core::Action;
using sb::core::CloseReason;
using sb::core::ConstBuffer;
using sb::core::Router;
using sb::core::RouterConfig;
using sb::core::RouteResult;
using sb::core::SlowConsumerPolicy;
using sb::core::Time;
using sb::protocol::ErrorCode;
using sb::protocol::FrameType;
using sb::protocol::DecodeStatus;

constexpr Time kT0 = 1000s;
constexpr std::size_t kMaxFrame = 4000;
constexpr std::uint32_t kServer = 0xFFFFFFFF;
const std::string kNonce = "00112233445566778899aabbccddeeff";
const std::string kToken = "s3cr3t-T0ken!";  // must never appear in any output
const std::string kOtherToken = "0ther-t0ken";

RouterConfig config(std::size_t max_pending = 1000, SlowConsumerPolicy policy = SlowConsumerPolicy::backpressure) {
  RouterConfig c;
  c.max_pending = max_pending;
  c.policy = policy;
  c.stall_timeout = 10s;
  c.max_frame = kMaxFrame;
  c.first_id = 1;
  return c;
}

RouterConfig auth_config() {
  RouterConfig c = config();
  c.auth_required = true;
  c.auth_timeout = 5s;
  return c;
}

std::string be32(std::uint32_t v) {
  const auto b = sb::protocol::encode_be32(v);
  return std::string(b.data(), b.size());
}

std::string queued(const Router& r, ClientId id) {
  std::array<ConstBuffer, 512> bufs{};
  const std::size_t used = r.gather(id, bufs);
  std::string s;
  for (std::size_t i = 0; i < used; ++i) s.append(bufs[i].data, bufs[i].size);
  return s;
}

std::string write(Router& r, ClientId id) {
  std::string s = queued(r, id);
  r.on_written(id, s.size());
  return s;
}

ClientId join(Router& r, std::uint64_t tag = 0) {
  const ClientId id = r.on_connect(tag);
  write(r, id);
  return id;
}

// A v1 frame, as the decoder hands it over.
RouteResult send_v1(Router& r, ClientId from, std::uint32_t to, std::string_view payload) {
  const std::string w = std::string(payload) + '\0';
  sb::protocol::Frame f;
  f.type = FrameType::v1;
  f.destination = ClientId{to};
  f.wire = std::span<const char>(w.data(), w.size());
  f.payload = f.wire.first(payload.size());
  return r.on_frame(from, f);
}

RouteResult send_v2(Router& r, ClientId from, std::uint32_t to, std::string_view payload) {
  sb::protocol::Frame f;
  f.type = FrameType::send;
  f.destination = ClientId{to};
  f.payload = std::span<const char>(payload.data(), payload.size());
  return r.on_frame(from, f);
}

RouteResult ping(Router& r, ClientId from, std::string_view body) {
  sb::protocol::Frame f;
  f.type = FrameType::ping;
  f.payload = std::span<const char>(body.data(), body.size());
  return r.on_frame(from, f);
}

RouteResult hello(Router& r, ClientId from, std::string_view text) { return send_v1(r, from, kServer, text); }

std::string welcome(ClientId id, std::string_view nonce = kNonce) {
  return "switchboard/2 ok nonce=" + std::string(nonce) + " id=" + std::to_string(to_u32(id)) +
         " max_frame=" + std::to_string(kMaxFrame) + '\0';
}

// A connected client that has upgraded, its greeting and welcome written.
ClientId join_v2(Router& r) {
  const ClientId id = join(r);
  EXPECT_EQ(hello(r, id, "switchboard/2 nonce=" + kNonce), RouteResult::upgraded);
  EXPECT_EQ(write(r, id), welcome(id));
  EXPECT_EQ(r.version(id), 2);
  return id;
}

// Server -> client v2 frames, written out by hand.
std::string deliver(ClientId source, std::string_view payload) {
  return be32(static_cast<std::uint32_t>(5 + payload.size())) + '\x81' + be32(to_u32(source)) + std::string(payload);
}
std::string pong(std::string_view body) {
  return be32(static_cast<std::uint32_t>(1 + body.size())) + '\x82' + std::string(body);
}

// One server -> client v2 frame, parsed.
struct V2Out {
  std::uint8_t type;
  std::uint32_t id;      // DELIVER: source; ERROR: subject
  std::uint8_t code;     // ERROR only
  std::string payload;   // DELIVER: payload; PONG: body; ERROR: reason
};

// Parses a whole queue of v2 frames; fails the test on a torn frame.
std::vector<V2Out> parse_v2(std::string_view s) {
  std::vector<V2Out> out;
  while (!s.empty()) {
    EXPECT_GE(s.size(), 5U) << "torn frame";
    if (s.size() < 5) break;
    const std::uint32_t length = sb::protocol::load_be32(s.data());
    EXPECT_GE(length, 1U);
    EXPECT_LE(4 + length, s.size()) << "torn frame";
    if (length < 1 || 4 + length > s.size()) break;
    V2Out f{static_cast<std::uint8_t>(s[4]), 0, 0, {}};
    std::string_view body = s.substr(5, length - 1);
    if (f.type == 0x81) {
      f.id = sb::protocol::load_be32(body.data());
      f.payload = body.substr(4);
    } else if (f.type == 0x83) {
      f.code = static_cast<std::uint8_t>(body[0]);
      f.id = sb::protocol::load_be32(body.data() + 1);
      f.payload = body.substr(5);
    } else {
      EXPECT_EQ(f.type, 0x82);
      f.payload = body;
    }
    out.push_back(f);
    s.remove_prefix(4 + length);
  }
  return out;
}

// The queue of `id` holds exactly one ERROR with this code and subject, and
// a non-empty reason.
void expect_one_error(const Router& r, ClientId id, ErrorCode code, std::uint32_t subject) {
  const auto frames = parse_v2(queued(r, id));
  ASSERT_EQ(frames.size(), 1U);
  EXPECT_EQ(frames[0].type, 0x83);
  EXPECT_EQ(frames[0].code, static_cast<std::uint8_t>(code));
  EXPECT_EQ(frames[0].id, subject);
  EXPECT_FALSE(frames[0].payload.empty());
}

std::string describe(const Action& a) {
  if (const auto* resume = std::get_if<sb::core::ResumeReading>(&a)) {
    return "resume " + std::to_string(to_u32(resume->client));
  }
  const auto& close = std::get<sb::core::Close>(a);
  return "close " + std::to_string(to_u32(close.client)) + " " + std::string(to_string(close.reason));
}

std::vector<std::string> take_actions(Router& r) {
  std::vector<std::string> out;
  for (const Action& a : r.actions()) out.push_back(describe(a));
  r.clear_actions();
  return out;
}

using Actions = std::vector<std::string>;
std::string close_action(ClientId id, std::string_view reason) {
  return "close " + std::to_string(to_u32(id)) + " " + std::string(reason);
}

// ---------------------------------------------------------------------------
// The upgrade.

TEST(RouterV2, HelloIsAnsweredWithTheWelcomeAsAV1DeliveryThenV2) {
  Router r(config());
  r.on_tick(kT0);
  const ClientId a = join(r);
  EXPECT_EQ(r.version(a), 1);
  EXPECT_EQ(hello(r, a, "switchboard/2 nonce=" + kNonce), RouteResult::upgraded);
  EXPECT_EQ(queued(r, a), "switchboard/2 ok nonce=" + kNonce + " id=" + std::to_string(to_u32(a)) + " max_frame=4000" +
                              '\0');
  EXPECT_EQ(r.version(a), 2);
  EXPECT_EQ(r.stats().upgrades, 1U);
  write(r, a);
  // Now a frame to it is a DELIVER with its source.
  const ClientId b = join(r);
  EXPECT_EQ(send_v1(r, b, to_u32(a), "hi"), RouteResult::queued);
  EXPECT_EQ(queued(r, a), deliver(b, "hi"));
  EXPECT_TRUE(take_actions(r).empty());
}

TEST(RouterV2, DeliveriesBeforeTheUpgradeStayV1AndLaterOnesAreDeliver) {
  Router r(config());
  r.on_tick(kT0);
  const ClientId a = join(r);
  const ClientId b = join(r);
  EXPECT_EQ(send_v1(r, b, to_u32(a), "one"), RouteResult::queued);
  EXPECT_EQ(hello(r, a, "switchboard/2 nonce=" + kNonce), RouteResult::upgraded);
  EXPECT_EQ(send_v1(r, b, to_u32(a), "two"), RouteResult::queued);
  EXPECT_EQ(queued(r, a), "one\0"s + welcome(a) + deliver(b, "two"));
}

TEST(RouterV2, AClientUpgradesAtMostOnceASecondHelloIsNoRoute) {
  Router r(config());
  r.on_tick(kT0);
  const ClientId a = join_v2(r);
  const std::string again = "switchboard/2 nonce=" + kNonce;
  EXPECT_EQ(send_v2(r, a, kServer, again), RouteResult::dropped);
  expect_one_error(r, a, ErrorCode::no_route, kServer);
  EXPECT_EQ(r.stats().dropped_no_route, 1U);
  EXPECT_EQ(r.stats().upgrades, 1U);
  EXPECT_EQ(r.stats().hellos_rejected, 0U);
  EXPECT_EQ(r.version(a), 2);
  EXPECT_TRUE(take_actions(r).empty());
}

TEST(RouterV2, FrameToTheServerThatIsNotAHelloIsNoRoute) {
  Router r(config());
  r.on_tick(kT0);
  const ClientId a = join(r);
  EXPECT_EQ(send_v1(r, a, kServer, "hello server"), RouteResult::dropped);
  EXPECT_EQ(send_v1(r, a, kServer, " switchboard/2 nonce=" + kNonce), RouteResult::dropped);
  EXPECT_EQ(r.stats().dropped_no_route, 2U);
  EXPECT_EQ(r.stats().hellos_rejected, 0U);
  EXPECT_EQ(queued(r, a), "") << "a v1 sender has no error channel";
  EXPECT_EQ(r.version(a), 1);
  EXPECT_TRUE(take_actions(r).empty());
}

TEST(RouterV2, OtherReservedIdsAreNoRouteEvenForAHello) {
  Router r(config());
  r.on_tick(kT0);
  const ClientId v1 = join(r);
  const ClientId v2 = join_v2(r);
  for (const std::uint32_t reserved : {0xFFFFFF00u, 0xFFFFFF01u, 0xFFFFFFFEu}) {
    SCOPED_TRACE(reserved);
    EXPECT_EQ(send_v1(r, v1, reserved, "switchboard/2 nonce=" + kNonce), RouteResult::dropped);
    EXPECT_EQ(send_v2(r, v2, reserved, "x"), RouteResult::dropped);
    expect_one_error(r, v2, ErrorCode::no_route, reserved);
    write(r, v2);
  }
  EXPECT_EQ(r.stats().dropped_no_route, 6U);
  EXPECT_EQ(r.version(v1), 1);
  EXPECT_EQ(queued(r, v1), "");
}

TEST(RouterV2, InvalidHelloIsAnsweredThenTheConnectionIsClosed) {
  struct Case {
    std::string hello;
    std::string reply;
  };
  const std::vector<Case> cases = {
      {"switchboard/2 nonce=" + kNonce + " junk", "switchboard/2 error nonce=" + kNonce + " malformed"},
      {"switchboard/2 nonce=ABC", "switchboard/2 error bad_nonce"},
      {"switchboard/2", "switchboard/2 error missing_nonce"},
      {"switchboard/9 nonce=" + kNonce, "switchboard/2 error nonce=" + kNonce + " unsupported_version"},
      {"switchboard/2 nonce=" + kNonce + " token=", "switchboard/2 error nonce=" + kNonce + " bad_token"},
      {"switchboard/2 nonce=" + kNonce + " nonce=" + kNonce,
       "switchboard/2 error nonce=" + kNonce + " repeated_field"},
      {"switchboard/1 foo", "switchboard/1 error malformed"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.hello);
    Router r(config());
    r.on_tick(kT0);
    const ClientId a = join(r);
    const ClientId b = join_v2(r);
    EXPECT_EQ(hello(r, a, c.hello), RouteResult::closing);
    EXPECT_EQ(queued(r, a), c.reply + '\0');
    EXPECT_EQ(r.stats().hellos_rejected, 1U);
    EXPECT_EQ(r.version(a), 1);
    EXPECT_TRUE(take_actions(r).empty()) << "closed only once the reply is written";
    // No longer a destination.
    EXPECT_EQ(send_v2(r, b, to_u32(a), "late"), RouteResult::dropped);
    expect_one_error(r, b, ErrorCode::no_route, to_u32(a));
    write(r, a);
    EXPECT_EQ(take_actions(r), (Actions{close_action(a, "protocol_error")}));
    r.on_disconnect(a, CloseReason::protocol_error);
    EXPECT_EQ(r.stats().closed_protocol_error, 1U);
  }
}

TEST(RouterV2, RejectedHelloWhoseReplyIsNeverReadIsClosedAfterTheStallTimeout) {
  Router r(config());
  r.on_tick(kT0);
  const ClientId a = join(r);
  EXPECT_EQ(hello(r, a, "switchboard/2"), RouteResult::closing);
  r.on_tick(kT0 + 9s);
  EXPECT_TRUE(take_actions(r).empty());
  r.on_tick(kT0 + 10s);
  EXPECT_EQ(take_actions(r), (Actions{close_action(a, "protocol_error")}));
}

TEST(RouterV2, V1HelloWithoutAuthIsAnsweredOkAndMayUpgradeLater) {
  Router r(config());
  r.on_tick(kT0);
  const ClientId a = join(r);
  // Without --auth-token-file a token is not checked, only its form.
  EXPECT_EQ(hello(r, a, "switchboard/1 token=whatever"), RouteResult::handled);
  EXPECT_EQ(write(r, a), "switchboard/1 ok id=" + std::to_string(to_u32(a)) + '\0');
  EXPECT_EQ(r.stats().hellos_v1, 1U);
  EXPECT_EQ(r.version(a), 1);
  EXPECT_EQ(hello(r, a, "switchboard/2 nonce=" + kNonce + " token=ignored"), RouteResult::upgraded);
  EXPECT_EQ(write(r, a), welcome(a));
  EXPECT_EQ(r.version(a), 2);
}

TEST(RouterV2, RepeatedV1HellosMeetTheSendersOwnLimit) {
  // Each `switchboard/1` hello is answered; a client that repeats it without
  // reading meets its own max_pending, as with PING, instead of growing its
  // queue without bound.
  Router r(config(100));
  r.on_tick(kT0);
  const ClientId a = join(r);
  int handled = 0;
  for (int i = 0; i < 1000; ++i) {
    const RouteResult res = hello(r, a, "switchboard/1");
    if (res == RouteResult::paused) break;
    ASSERT_EQ(res, RouteResult::handled);
    ++handled;
  }
  EXPECT_LE(r.pending_bytes(a), 100U);
  EXPECT_GT(handled, 1);
  EXPECT_TRUE(r.is_paused(a));
  write(r, a);
  EXPECT_EQ(take_actions(r), (Actions{"resume " + std::to_string(to_u32(a))}));
  EXPECT_EQ(hello(r, a, "switchboard/1"), RouteResult::handled);
  EXPECT_EQ(queued(r, a), "switchboard/1 ok id=" + std::to_string(to_u32(a)) + '\0');
}

// ---------------------------------------------------------------------------
// Mixed versions.

TEST(RouterV2, V1SenderToV2ReceiverIsDeliverWithoutTheNul) {
  Router r(config());
  r.on_tick(kT0);
  const ClientId a = join_v2(r);
  const ClientId b = join(r);
  EXPECT_EQ(send_v1(r, b, to_u32(a), "from v1"), RouteResult::queued);
  EXPECT_EQ(send_v1(r, b, to_u32(a), ""), RouteResult::queued);
  EXPECT_EQ(write(r, a), deliver(b, "from v1") + deliver(b, ""));
  EXPECT_EQ(r.stats().bytes_routed, 9U + 7 + 9);
}

TEST(RouterV2, V2SenderToV1ReceiverIsPayloadAndNul) {
  Router r(config());
  r.on_tick(kT0);
  const ClientId a = join_v2(r);
  const ClientId b = join(r);
  EXPECT_EQ(send_v2(r, a, to_u32(b), "from v2"), RouteResult::queued);
  EXPECT_EQ(send_v2(r, a, to_u32(b), ""), RouteResult::queued);
  EXPECT_EQ(write(r, b), "from v2\0\0"s);
  EXPECT_EQ(queued(r, a), "");
}

TEST(RouterV2, V2ToV2CarriesEveryByteValueAndTheSource) {
  Router r(config(100000));
  r.on_tick(kT0);
  const ClientId a = join_v2(r);
  const ClientId b = join_v2(r);
  std::string all;
  for (int i = 0; i < 256; ++i) all.push_back(static_cast<char>(i));
  EXPECT_EQ(send_v2(r, a, to_u32(b), all), RouteResult::queued);
  EXPECT_EQ(send_v2(r, b, to_u32(b), "self"), RouteResult::queued);
  EXPECT_EQ(write(r, b), deliver(a, all) + deliver(b, "self"));
}

TEST(RouterV2, OrderPerSenderHoldsAcrossTheReceiversUpgrade) {
  Router r(config(100000));
  r.on_tick(kT0);
  const ClientId a = join(r);
  const ClientId b = join_v2(r);
  std::string expected;
  for (int i = 0; i < 10; ++i) {
    const std::string m = "m" + std::to_string(i);
    EXPECT_EQ(send_v2(r, b, to_u32(a), m), RouteResult::queued);
    expected += m + '\0';
  }
  EXPECT_EQ(hello(r, a, "switchboard/2 nonce=" + kNonce), RouteResult::upgraded);
  expected += welcome(a);
  for (int i = 10; i < 20; ++i) {
    const std::string m = "m" + std::to_string(i);
    EXPECT_EQ(send_v2(r, b, to_u32(a), m), RouteResult::queued);
    expected += deliver(b, m);
  }
  EXPECT_EQ(queued(r, a), expected);
}

TEST(RouterV2, PayloadWithANulToAV1ReceiverIsNotRepresentable) {
  Router r(config());
  r.on_tick(kT0);
  const ClientId a = join_v2(r);
  const ClientId b = join(r);
  EXPECT_EQ(send_v2(r, a, to_u32(b), "bin\0ary"s), RouteResult::dropped);
  EXPECT_EQ(queued(r, b), "");
  expect_one_error(r, a, ErrorCode::not_representable, to_u32(b));
  EXPECT_EQ(r.stats().dropped_not_representable, 1U);
  EXPECT_EQ(r.stats().errors_sent, 1U);
  EXPECT_EQ(r.stats().frames_routed, 0U);
  // A NUL at either end too; to a v2 receiver the same payload is fine.
  write(r, a);
  EXPECT_EQ(send_v2(r, a, to_u32(b), "\0"s), RouteResult::dropped);
  EXPECT_EQ(send_v2(r, a, to_u32(b), "x\0"s), RouteResult::dropped);
  EXPECT_EQ(r.stats().dropped_not_representable, 3U);
  write(r, a);
  EXPECT_EQ(send_v2(r, a, to_u32(a), "bin\0ary"s), RouteResult::queued);
  EXPECT_EQ(queued(r, a), deliver(a, "bin\0ary"s));
}

// ---------------------------------------------------------------------------
// ERROR frames.

TEST(RouterV2Errors, NoRouteForUnknownAndDepartedDestinations) {
  Router r(config());
  r.on_tick(kT0);
  const ClientId a = join_v2(r);
  EXPECT_EQ(send_v2(r, a, 4242, "x"), RouteResult::dropped);
  expect_one_error(r, a, ErrorCode::no_route, 4242);
  write(r, a);
  const ClientId gone = join(r);
  r.on_disconnect(gone, CloseReason::peer_closed);
  EXPECT_EQ(send_v2(r, a, to_u32(gone), "x"), RouteResult::dropped);
  expect_one_error(r, a, ErrorCode::no_route, to_u32(gone));
  EXPECT_EQ(r.stats().dropped_no_route, 2U);
  EXPECT_EQ(r.stats().errors_sent, 2U);
}

TEST(RouterV2Errors, AV1SenderGetsNoErrorFrames) {
  Router r(config());
  r.on_tick(kT0);
  const ClientId a = join(r);
  const ClientId b = join_v2(r);
  EXPECT_EQ(send_v1(r, a, 4242, "x"), RouteResult::dropped);
  EXPECT_EQ(queued(r, a), "");
  EXPECT_EQ(r.stats().errors_sent, 0U);
  EXPECT_EQ(r.stats().dropped_no_route, 1U);
  (void)b;
}

TEST(RouterV2Errors, SlowConsumerUnderTheDropPolicy) {
  Router r(config(100, SlowConsumerPolicy::drop));
  r.on_tick(kT0);
  const ClientId a = join_v2(r);
  const ClientId b = join(r);
  EXPECT_EQ(send_v2(r, a, to_u32(b), std::string(80, 'x')), RouteResult::queued);
  EXPECT_EQ(send_v2(r, a, to_u32(b), std::string(30, 'y')), RouteResult::dropped);
  expect_one_error(r, a, ErrorCode::slow_consumer, to_u32(b));
  EXPECT_EQ(r.stats().dropped_slow_consumer, 1U);
}

TEST(RouterV2Errors, SlowConsumerWhileTheDestinationIsBeingClosedAsSlow) {
  Router r(config(100, SlowConsumerPolicy::disconnect));
  r.on_tick(kT0);
  const ClientId a = join_v2(r);
  const ClientId b = join(r);
  EXPECT_EQ(send_v2(r, a, to_u32(b), std::string(80, 'x')), RouteResult::queued);
  EXPECT_EQ(send_v2(r, a, to_u32(b), std::string(30, 'y')), RouteResult::dropped);
  EXPECT_EQ(take_actions(r), (Actions{close_action(b, "slow_consumer")}));
  expect_one_error(r, a, ErrorCode::slow_consumer, to_u32(b));
  write(r, a);
  // The engine has not closed it yet: a frame now is still slow_consumer.
  EXPECT_EQ(send_v2(r, a, to_u32(b), "z"), RouteResult::dropped);
  expect_one_error(r, a, ErrorCode::slow_consumer, to_u32(b));
  EXPECT_EQ(r.stats().dropped_slow_consumer, 2U);
}

TEST(RouterV2Errors, TooLargeNamesTheSenderAndClosesAfterTheError) {
  Router r(config());
  r.on_tick(kT0);
  const ClientId a = join_v2(r);
  r.on_decode_error(a, DecodeStatus::too_large, "");
  expect_one_error(r, a, ErrorCode::too_large, to_u32(a));
  EXPECT_TRUE(take_actions(r).empty()) << "the ERROR is written first";
  write(r, a);
  EXPECT_EQ(take_actions(r), (Actions{close_action(a, "oversized_frame")}));
  r.on_disconnect(a, CloseReason::oversized_frame);
  EXPECT_EQ(r.stats().closed_oversized, 1U);
}

TEST(RouterV2Errors, BadFrameHasSubjectZeroAndTheDecodersReason) {
  Router r(config());
  r.on_tick(kT0);
  const ClientId a = join_v2(r);
  r.on_decode_error(a, DecodeStatus::bad_frame, "unknown frame type");
  const auto frames = parse_v2(queued(r, a));
  ASSERT_EQ(frames.size(), 1U);
  EXPECT_EQ(frames[0].type, 0x83);
  EXPECT_EQ(frames[0].code, 5);
  EXPECT_EQ(frames[0].id, 0U);
  EXPECT_EQ(frames[0].payload, "unknown frame type");
  EXPECT_TRUE(take_actions(r).empty());
  write(r, a);
  EXPECT_EQ(take_actions(r), (Actions{close_action(a, "protocol_error")}));
}

TEST(RouterV2Errors, AV1ClientsDecodeErrorClosesAtOnceWithoutAWord) {
  Router r(config());
  r.on_tick(kT0);
  const ClientId a = join(r);
  r.on_decode_error(a, DecodeStatus::too_large, "");
  EXPECT_EQ(queued(r, a), "");
  EXPECT_EQ(take_actions(r), (Actions{close_action(a, "oversized_frame")}));
}

TEST(RouterV2Errors, ErrorsAreDroppedWhenTheSendersOwnQueueIsOverMaxPending) {
  Router r(config(100));
  r.on_tick(kT0);
  const ClientId a = join_v2(r);
  const ClientId b = join(r);
  // A frame into an empty queue is taken even over the limit: a's queue is
  // now over max_pending, because a does not read.
  EXPECT_EQ(send_v1(r, b, to_u32(a), std::string(150, 'x')), RouteResult::queued);
  const std::size_t before = r.pending_bytes(a);
  ASSERT_GT(before, 100U);
  EXPECT_EQ(send_v2(r, a, 4242, "x"), RouteResult::dropped);
  EXPECT_EQ(send_v2(r, a, to_u32(b), "bin\0"s), RouteResult::dropped);
  EXPECT_EQ(r.pending_bytes(a), before);
  EXPECT_EQ(r.stats().errors_dropped, 2U);
  EXPECT_EQ(r.stats().errors_sent, 0U);
  EXPECT_EQ(r.stats().dropped_no_route, 1U);
  EXPECT_EQ(r.stats().dropped_not_representable, 1U);
  // Once it reads, errors flow again.
  write(r, a);
  EXPECT_EQ(send_v2(r, a, 4242, "x"), RouteResult::dropped);
  expect_one_error(r, a, ErrorCode::no_route, 4242);
  EXPECT_EQ(r.stats().errors_sent, 1U);
}

// ---------------------------------------------------------------------------
// PING.

TEST(RouterV2Ping, PongComesAfterEveryEarlierFramesOutcome) {
  Router r(config(1 << 20));
  r.on_tick(kT0);
  const ClientId a = join_v2(r);
  const ClientId b = join(r);
  std::vector<std::string> expected;
  for (int i = 0; i < 200; ++i) {
    const std::string m = "m" + std::to_string(i);
    switch (i % 4) {
      case 0: EXPECT_EQ(send_v2(r, a, to_u32(a), m), RouteResult::queued); break;
      case 1: EXPECT_EQ(send_v2(r, a, 4242, m), RouteResult::dropped); break;
      case 2: EXPECT_EQ(send_v2(r, a, to_u32(b), m + '\0'), RouteResult::dropped); break;
      default: EXPECT_EQ(send_v2(r, a, to_u32(b), m), RouteResult::queued); break;
    }
  }
  const std::string body = "barrier-" + std::string(56, 'b');  // 64 bytes
  ASSERT_EQ(body.size(), 64U);
  EXPECT_EQ(ping(r, a, body), RouteResult::handled);
  const auto frames = parse_v2(queued(r, a));
  ASSERT_EQ(frames.size(), 151U);  // 50 self-deliveries, 100 errors, the PONG
  for (std::size_t i = 0; i + 1 < frames.size(); ++i) EXPECT_NE(frames[i].type, 0x82) << i;
  EXPECT_EQ(frames.back().type, 0x82);
  EXPECT_EQ(frames.back().payload, body);
  EXPECT_TRUE(queued(r, a).ends_with(pong(body)));
  EXPECT_EQ(r.stats().pongs, 1U);
}

TEST(RouterV2Ping, EmptyPingAndPongBytes) {
  Router r(config());
  r.on_tick(kT0);
  const ClientId a = join_v2(r);
  EXPECT_EQ(ping(r, a, ""), RouteResult::handled);
  EXPECT_EQ(ping(r, a, "\0\xff"s), RouteResult::handled);
  EXPECT_EQ(write(r, a), "\x00\x00\x00\x01\x82"s + "\x00\x00\x00\x03\x82\x00\xff"s);
  EXPECT_EQ(r.stats().pongs, 2U);
}

TEST(RouterV2Ping, PingIntoAFullOwnQueuePausesTheSenderUntilItReads) {
  Router r(config(100));
  r.on_tick(kT0);
  const ClientId a = join_v2(r);
  const ClientId b = join(r);
  EXPECT_EQ(send_v1(r, b, to_u32(a), std::string(98, 'x')), RouteResult::queued);
  EXPECT_EQ(ping(r, a, "p"), RouteResult::paused);
  EXPECT_TRUE(r.is_paused(a));
  write(r, a);
  EXPECT_EQ(take_actions(r), (Actions{"resume " + std::to_string(to_u32(a))}));
  EXPECT_EQ(ping(r, a, "p"), RouteResult::handled);
  EXPECT_EQ(queued(r, a), pong("p"));
}

// ---------------------------------------------------------------------------
// Reserved IDs.

TEST(RouterV2, ReservedIdsAreNeverAllocated) {
  RouterConfig c = config();
  c.first_id = 0xFFFFFEFD;
  Router r(c);
  r.on_tick(kT0);
  std::vector<std::uint32_t> ids;
  for (int i = 0; i < 6; ++i) ids.push_back(to_u32(join(r)));
  EXPECT_EQ(ids, (std::vector<std::uint32_t>{0xFFFFFEFD, 0xFFFFFEFE, 0xFFFFFEFF, 0, 1, 2}));
  RouterConfig inside = config();
  inside.first_id = 0xFFFFFF80;  // a start inside the reserved range is skipped too
  Router r2(inside);
  r2.on_tick(kT0);
  EXPECT_EQ(to_u32(join(r2)), 0U);
}

// ---------------------------------------------------------------------------
// Authentication.

// Every byte queued for any of `ids` so far holds no token text.
void expect_no_token_in_output(const Router& r, const std::vector<ClientId>& ids,
                               const std::vector<std::string>& tokens) {
  for (ClientId id : ids) {
    const std::string out = queued(r, id);
    for (const std::string& t : tokens) EXPECT_EQ(out.find(t), std::string::npos) << "client " << to_u32(id);
  }
}

TEST(RouterAuth, BeforeAuthFramesAreDroppedAndFramesToItAreNoRoute) {
  Router r(auth_config());
  r.set_tokens({kToken});
  r.on_tick(kT0);
  const ClientId a = join(r);
  const ClientId ok = join(r);
  EXPECT_EQ(hello(r, ok, "switchboard/2 nonce=" + kNonce + " token=" + kToken), RouteResult::upgraded);
  write(r, ok);
  EXPECT_EQ(send_v1(r, a, to_u32(ok), "sneaky"), RouteResult::dropped);
  EXPECT_EQ(send_v1(r, a, to_u32(a), "self"), RouteResult::dropped);
  EXPECT_EQ(r.stats().dropped_unauthenticated, 2U);
  EXPECT_EQ(queued(r, ok), "");
  EXPECT_EQ(queued(r, a), "");
  EXPECT_EQ(send_v2(r, ok, to_u32(a), "hello?"), RouteResult::dropped);
  expect_one_error(r, ok, ErrorCode::no_route, to_u32(a));
  EXPECT_EQ(queued(r, a), "");
  EXPECT_TRUE(take_actions(r).empty());
}

TEST(RouterAuth, V1HelloWithAListedTokenThenFramesFlowAndItMayUpgrade) {
  Router r(auth_config());
  r.set_tokens({kOtherToken, kToken});
  r.on_tick(kT0);
  const ClientId a = join(r);
  const ClientId b = join(r);
  EXPECT_EQ(hello(r, a, "switchboard/1 token=" + kToken), RouteResult::handled);
  EXPECT_EQ(queued(r, a), "switchboard/1 ok id=" + std::to_string(to_u32(a)) + '\0');
  expect_no_token_in_output(r, {a, b}, {kToken, kOtherToken});
  write(r, a);
  EXPECT_EQ(send_v1(r, a, to_u32(a), "mine"), RouteResult::queued);
  EXPECT_EQ(write(r, a), "mine\0"s);
  EXPECT_EQ(send_v1(r, a, to_u32(b), "to b"), RouteResult::dropped);  // b has not authenticated
  EXPECT_EQ(r.stats().dropped_no_route, 1U);
  // The upgrade needs no token once authenticated.
  EXPECT_EQ(hello(r, a, "switchboard/2 nonce=" + kNonce), RouteResult::upgraded);
  EXPECT_EQ(write(r, a), welcome(a));
  EXPECT_EQ(r.stats().hellos_v1, 1U);
  EXPECT_EQ(r.stats().upgrades, 1U);
  r.on_tick(kT0 + 60s);
  EXPECT_EQ(take_actions(r), (Actions{close_action(b, "unauthenticated")})) << "a, authenticated, has no deadline";
}

TEST(RouterAuth, V2HelloWithAListedToken) {
  Router r(auth_config());
  r.set_tokens({kToken});
  r.on_tick(kT0);
  const ClientId a = join(r);
  EXPECT_EQ(hello(r, a, "switchboard/2 token=" + kToken + " nonce=" + kNonce), RouteResult::upgraded);
  EXPECT_EQ(queued(r, a), welcome(a));
  expect_no_token_in_output(r, {a}, {kToken});
}

TEST(RouterAuth, WrongOrMissingTokenIsUnauthorizedThenClosed) {
  struct Case {
    std::string hello;
    std::string reply;
  };
  const std::vector<Case> cases = {
      {"switchboard/2 nonce=" + kNonce + " token=" + kOtherToken, "switchboard/2 error nonce=" + kNonce + " unauthorized"},
      {"switchboard/2 nonce=" + kNonce, "switchboard/2 error nonce=" + kNonce + " unauthorized"},
      {"switchboard/2 nonce=" + kNonce + " token=" + kToken + "x", "switchboard/2 error nonce=" + kNonce + " unauthorized"},
      {"switchboard/2 nonce=" + kNonce + " token=" + kToken.substr(1), "switchboard/2 error nonce=" + kNonce + " unauthorized"},
      {"switchboard/2 nonce=" + kNonce + " token=" + kToken.substr(0, kToken.size() - 1),
       "switchboard/2 error nonce=" + kNonce + " unauthorized"},
      {"switchboard/1 token=" + kOtherToken, "switchboard/1 error unauthorized"},
      {"switchboard/1", "switchboard/1 error unauthorized"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.hello);
    Router r(auth_config());
    r.set_tokens({kToken});
    r.on_tick(kT0);
    const ClientId a = join(r);
    EXPECT_EQ(hello(r, a, c.hello), RouteResult::closing);
    EXPECT_EQ(queued(r, a), c.reply + '\0');
    expect_no_token_in_output(r, {a}, {kToken});
    EXPECT_TRUE(take_actions(r).empty());
    write(r, a);
    EXPECT_EQ(take_actions(r), (Actions{close_action(a, "auth_failed")}));
    r.on_disconnect(a, CloseReason::auth_failed);
    EXPECT_EQ(r.stats().auth_failures, 1U);
    EXPECT_EQ(r.stats().upgrades + r.stats().hellos_v1, 0U);
  }
}

TEST(RouterAuth, MalformedHelloIsRejectedBeforeTheTokenIsChecked) {
  Router r(auth_config());
  r.set_tokens({kToken});
  r.on_tick(kT0);
  const ClientId a = join(r);
  EXPECT_EQ(hello(r, a, "switchboard/2 token=" + kToken + " junk"), RouteResult::closing);
  EXPECT_EQ(queued(r, a), "switchboard/2 error malformed\0"s);
  expect_no_token_in_output(r, {a}, {kToken});
}

TEST(RouterAuth, UnauthenticatedClientIsClosedAtTheTimeout) {
  Router r(auth_config());
  r.set_tokens({kToken});
  r.on_tick(kT0);
  const ClientId a = join(r);
  r.on_tick(kT0 + 1s);
  const ClientId b = join(r);
  const ClientId c = join(r);
  EXPECT_EQ(hello(r, c, "switchboard/1 token=" + kToken), RouteResult::handled);
  r.on_tick(kT0 + 5s - 1ns);
  EXPECT_TRUE(take_actions(r).empty());
  r.on_tick(kT0 + 5s);
  EXPECT_EQ(take_actions(r), (Actions{close_action(a, "unauthenticated")}));
  EXPECT_EQ(queued(r, a), "") << "closed without a word";
  r.on_disconnect(a, CloseReason::unauthenticated);
  EXPECT_EQ(r.stats().closed_unauthenticated, 1U);
  r.on_tick(kT0 + 6s);
  EXPECT_EQ(take_actions(r), (Actions{close_action(b, "unauthenticated")}));
  r.on_tick(kT0 + 100s);
  EXPECT_TRUE(take_actions(r).empty()) << "c authenticated in time";
  EXPECT_TRUE(r.contains(c));
}

TEST(RouterAuth, AClientThatLeavesBeforeItsDeadlineGetsNoAction) {
  Router r(auth_config());
  r.set_tokens({kToken});
  r.on_tick(kT0);
  const ClientId a = join(r);
  r.on_disconnect(a, CloseReason::peer_closed);
  r.on_tick(kT0 + 10s);
  EXPECT_TRUE(take_actions(r).empty());
}

TEST(RouterAuth, ReloadedTokensApplyToNewHellosOnly) {
  Router r(auth_config());
  r.set_tokens({kToken});
  r.on_tick(kT0);
  const ClientId old_session = join(r);
  EXPECT_EQ(hello(r, old_session, "switchboard/2 nonce=" + kNonce + " token=" + kToken), RouteResult::upgraded);
  write(r, old_session);
  r.set_tokens({kOtherToken});
  // The session stays and keeps routing.
  EXPECT_EQ(send_v2(r, old_session, to_u32(old_session), "still here"), RouteResult::queued);
  EXPECT_EQ(write(r, old_session), deliver(old_session, "still here"));
  // A new hello with the removed token is refused, one with the new token taken.
  const ClientId late = join(r);
  EXPECT_EQ(hello(r, late, "switchboard/2 nonce=" + kNonce + " token=" + kToken), RouteResult::closing);
  EXPECT_EQ(queued(r, late), "switchboard/2 error nonce=" + kNonce + " unauthorized" + '\0');
  const ClientId fresh = join(r);
  EXPECT_EQ(hello(r, fresh, "switchboard/1 token=" + kOtherToken), RouteResult::handled);
  expect_no_token_in_output(r, {old_session, late, fresh}, {kToken, kOtherToken});
  // An empty list refuses everyone.
  r.set_tokens({});
  const ClientId none = join(r);
  EXPECT_EQ(hello(r, none, "switchboard/1 token=" + kOtherToken), RouteResult::closing);
}

TEST(RouterAuth, TokenFileParsing) {
  const auto list = sb::core::parse_token_file(
      "# comment\n\n  tok-one  \r\n\ttok-two\n# another\nbad token with spaces\n" + std::string(257, 'x') + "\nlast");
  EXPECT_EQ(list.tokens, (std::vector<std::string>{"tok-one", "tok-two", "last"}));
  EXPECT_EQ(list.rejected, 2U);
}

}  // namespace
