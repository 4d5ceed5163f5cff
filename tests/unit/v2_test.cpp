// Protocol v2 in the sans-IO layer (DESIGN.md 1b): the decoder after
// upgrade() at every split point and with every byte value, the errors it
// decides from a frame's header alone, the hello parser over a table of good
// and bad hellos, the encoders byte for byte, and tokens_equal.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <memory>
#include <ostream>
#include <cstdint>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/block_pool.hpp"
#include "protocol/frame_decoder.hpp"
#include "protocol/v2.hpp"
#include "protocol/wire.hpp"

namespace {

using namespace std::string_literals;
using sb::ClientId;
using sb::to_u32;
using sb::protocol::BlockPool;
using sb::protocol::DecodeStatus;
using sb::protocol::ErrorCode;
using sb::protocol::Frame;
using sb::protocol::FrameDecoder;
using sb::protocol::FrameType;
using sb::protocol::HelloParse;

std::span<const char> bytes(std::string_view s) { return {s.data(), s.size()}; }

std::string be32(std::uint32_t v) {
  const auto b = sb::protocol::encode_be32(v);
  return std::string(b.data(), b.size());
}

// Client -> server v2 frames, written out by hand from DESIGN.md's layout.
std::string v2_frame(std::uint32_t length, std::uint8_t type, std::string_view body) {
  return be32(length) + static_cast<char>(type) + std::string(body);
}
std::string send_frame(std::uint32_t dest, std::string_view payload) {
  return v2_frame(static_cast<std::uint32_t>(5 + payload.size()), 0x01, be32(dest) + std::string(payload));
}
std::string ping_frame(std::string_view body) {
  return v2_frame(static_cast<std::uint32_t>(1 + body.size()), 0x02, body);
}
std::string v1_frame(std::uint32_t dest, std::string_view payload) { return be32(dest) + std::string(payload) + '\0'; }

// A decoded frame, copied out of the decoder's buffer.
struct Got {
  FrameType type;
  std::uint32_t destination;
  std::string payload;
  bool operator==(const Got&) const = default;
};

std::ostream& operator<<(std::ostream& os, const Got& g) {
  return os << "{type " << static_cast<int>(g.type) << " dest " << g.destination << " payload " << g.payload.size()
            << " bytes}";
}

Got copy(const Frame& f) {
  return {f.type, to_u32(f.destination), std::string(f.payload.data(), f.payload.size())};
}

// Decodes everything buffered; a hello (a v1 frame to 0xFFFFFFFF) upgrades
// the decoder once it is popped, as the engine does on RouteResult::upgraded.
DecodeStatus drain(FrameDecoder& d, std::vector<Got>& out) {
  for (;;) {
    Frame f{};
    const DecodeStatus st = d.peek(f);
    if (st != DecodeStatus::frame) return st;
    out.push_back(copy(f));
    const bool hello = f.type == FrameType::v1 && to_u32(f.destination) == sb::protocol::kServerId;
    d.pop();
    if (hello) d.upgrade();
  }
}

// Every byte value, and payload sizes around the interesting edges.
std::string all_bytes() {
  std::string s;
  for (int i = 0; i < 256; ++i) s.push_back(static_cast<char>(i));
  return s;
}

struct Stream {
  std::string bytes;
  std::vector<Got> frames;
};

// v2 frames only: SENDs (empty, one byte, every byte value, NULs, a
// destination with NUL bytes in it) and PINGs (empty, 64 bytes).
Stream v2_stream() {
  Stream s;
  auto add_send = [&](std::uint32_t dest, std::string payload) {
    s.bytes += send_frame(dest, payload);
    s.frames.push_back({FrameType::send, dest, std::move(payload)});
  };
  auto add_ping = [&](std::string body) {
    s.bytes += ping_frame(body);
    s.frames.push_back({FrameType::ping, 0, std::move(body)});
  };
  add_send(7, "hello");
  add_send(0x00000100, "");
  add_ping("");
  add_send(0xFFFFFFFF, all_bytes());
  add_send(1, std::string(1, '\0'));
  add_ping(std::string(64, '\x81'));
  add_send(0x01000000, "\0\0x\0"s);
  add_ping("p");
  return s;
}

// A hello in v1 framing, then v2: what an upgrading client writes in one go.
Stream mixed_stream() {
  Stream s;
  s.bytes = v1_frame(3, "before") + v1_frame(0xFFFFFFFF, "switchboard/2 nonce=0123456789abcdef");
  s.frames.push_back({FrameType::v1, 3, "before"});
  s.frames.push_back({FrameType::v1, 0xFFFFFFFF, "switchboard/2 nonce=0123456789abcdef"});
  const Stream v2 = v2_stream();
  s.bytes += v2.bytes;
  s.frames.insert(s.frames.end(), v2.frames.begin(), v2.frames.end());
  return s;
}

std::unique_ptr<FrameDecoder> v2_decoder(std::size_t max_payload = 1000, BlockPool* pool = nullptr) {
  auto d = std::make_unique<FrameDecoder>(max_payload, pool);
  d->upgrade();
  return d;
}

// ---------------------------------------------------------------------------
// The decoder in v2.

TEST(V2Decoder, UpgradeSwitchesTheVersion) {
  FrameDecoder d(100);
  EXPECT_EQ(d.version(), 1);
  d.upgrade();
  EXPECT_EQ(d.version(), 2);
}

TEST(V2Decoder, WholeStreamInOneFeed) {
  const Stream s = v2_stream();
  auto d = v2_decoder();
  d->feed(bytes(s.bytes));
  std::vector<Got> got;
  EXPECT_EQ(drain(*d, got), DecodeStatus::need_more);
  EXPECT_EQ(got, s.frames);
  EXPECT_EQ(d->buffered(), 0U);
}

TEST(V2Decoder, SplitAtEveryPositionIntoTwoChunks) {
  const Stream s = v2_stream();
  for (std::size_t cut = 0; cut <= s.bytes.size(); ++cut) {
    SCOPED_TRACE(testing::Message() << "cut at " << cut);
    auto d = v2_decoder();
    std::vector<Got> got;
    d->feed(bytes(std::string_view(s.bytes).substr(0, cut)));
    ASSERT_EQ(drain(*d, got), DecodeStatus::need_more);
    d->feed(bytes(std::string_view(s.bytes).substr(cut)));
    ASSERT_EQ(drain(*d, got), DecodeStatus::need_more);
    ASSERT_EQ(got, s.frames);
    ASSERT_EQ(d->buffered(), 0U);
  }
}

TEST(V2Decoder, SplitAtEveryPairOfPositionsWithAPool) {
  // Three chunks, and a pool whose blocks are smaller than the big frame, so
  // that the decoder moves between pooled and heap buffers mid-stream.
  const Stream s = v2_stream();
  BlockPool pool(64, 4);
  for (std::size_t a = 0; a <= s.bytes.size(); a += 3) {
    for (std::size_t b = a; b <= s.bytes.size(); b += 5) {
      SCOPED_TRACE(testing::Message() << "cuts at " << a << " and " << b);
      auto d = v2_decoder(1000, &pool);
      std::vector<Got> got;
      d->feed(bytes(std::string_view(s.bytes).substr(0, a)));
      ASSERT_EQ(drain(*d, got), DecodeStatus::need_more);
      d->feed(bytes(std::string_view(s.bytes).substr(a, b - a)));
      ASSERT_EQ(drain(*d, got), DecodeStatus::need_more);
      d->feed(bytes(std::string_view(s.bytes).substr(b)));
      ASSERT_EQ(drain(*d, got), DecodeStatus::need_more);
      ASSERT_EQ(got, s.frames);
      d->release_if_empty();
      ASSERT_EQ(d->capacity(), 0U);
    }
  }
}

TEST(V2Decoder, RandomPiecesThroughPrepareAndCommit) {
  const Stream s = v2_stream();
  std::mt19937 rng(42);
  for (int round = 0; round < 500; ++round) {
    SCOPED_TRACE(testing::Message() << "round " << round);
    auto d = v2_decoder();
    std::vector<Got> got;
    std::size_t at = 0;
    while (at < s.bytes.size()) {
      const std::size_t n = std::min<std::size_t>(1 + rng() % 40, s.bytes.size() - at);
      if (rng() % 2 == 0) {
        const auto space = d->prepare(n);
        ASSERT_GE(space.size(), n);
        std::memcpy(space.data(), s.bytes.data() + at, n);
        d->commit(n);
      } else {
        d->feed(bytes(std::string_view(s.bytes).substr(at, n)));
      }
      at += n;
      ASSERT_EQ(drain(*d, got), DecodeStatus::need_more);
    }
    ASSERT_EQ(got, s.frames);
  }
}

TEST(V2Decoder, OneBytePerFeed) {
  const Stream s = v2_stream();
  auto d = v2_decoder();
  std::vector<Got> got;
  for (char c : s.bytes) {
    d->feed(std::span<const char>(&c, 1));
    ASSERT_EQ(drain(*d, got), DecodeStatus::need_more);
  }
  EXPECT_EQ(got, s.frames);
}

TEST(V2Decoder, EveryByteValueAsAOneBytePayloadAndInThePing) {
  std::string stream;
  for (int i = 0; i < 256; ++i) {
    const std::string one(1, static_cast<char>(i));
    stream += send_frame(static_cast<std::uint32_t>(i) * 0x01010101u, one) + ping_frame(one);
  }
  auto d = v2_decoder();
  d->feed(bytes(stream));
  std::vector<Got> got;
  ASSERT_EQ(drain(*d, got), DecodeStatus::need_more);
  ASSERT_EQ(got.size(), 512U);
  for (int i = 0; i < 256; ++i) {
    const std::string one(1, static_cast<char>(i));
    EXPECT_EQ(got[2 * i], (Got{FrameType::send, static_cast<std::uint32_t>(i) * 0x01010101u, one}));
    EXPECT_EQ(got[2 * i + 1], (Got{FrameType::ping, 0, one}));
  }
}

TEST(V2Decoder, V1BytesBeforeTheUpgradeAndV2AfterInOneBuffer) {
  const Stream s = mixed_stream();
  for (std::size_t cut = 0; cut <= s.bytes.size(); ++cut) {
    SCOPED_TRACE(testing::Message() << "cut at " << cut);
    FrameDecoder d(1000);
    std::vector<Got> got;
    d.feed(bytes(std::string_view(s.bytes).substr(0, cut)));
    ASSERT_EQ(drain(d, got), DecodeStatus::need_more);
    d.feed(bytes(std::string_view(s.bytes).substr(cut)));
    ASSERT_EQ(drain(d, got), DecodeStatus::need_more);
    ASSERT_EQ(got, s.frames);
    ASSERT_EQ(d.version(), 2);
  }
}

TEST(V2Decoder, WithoutTheUpgradeTheSameBytesAreNotReadAsV2) {
  // The upgrade is what makes the bytes after the hello v2: a decoder that
  // is not told reads them as v1 (here the SEND's length word 0x0000000a
  // holds NULs, so the v1 reading ends a frame inside it).
  const std::string stream = v1_frame(0xFFFFFFFF, "switchboard/2 nonce=0123456789abcdef") + send_frame(7, "hello");
  FrameDecoder d(1000);
  d.feed(bytes(stream));
  Frame f{};
  ASSERT_EQ(d.peek(f), DecodeStatus::frame);
  d.pop();
  ASSERT_EQ(d.peek(f), DecodeStatus::frame);
  EXPECT_EQ(f.type, FrameType::v1);
  EXPECT_NE(copy(f), (Got{FrameType::send, 7, "hello"}));
}

TEST(V2Decoder, PeekWithoutPopKeepsTheFrameInPlaceAcrossFeeds) {
  const std::string first = send_frame(9, "held back");
  const std::string second = send_frame(10, std::string(300, 'x'));  // forces the buffer to grow
  auto d = v2_decoder();
  d->feed(bytes(first));
  Frame f{};
  ASSERT_EQ(d->peek(f), DecodeStatus::frame);
  EXPECT_EQ(copy(f), (Got{FrameType::send, 9, "held back"}));
  for (char c : second) {
    d->feed(std::span<const char>(&c, 1));
    Frame again{};
    ASSERT_EQ(d->peek(again), DecodeStatus::frame);
    ASSERT_EQ(copy(again), (Got{FrameType::send, 9, "held back"}));
  }
  EXPECT_EQ(d->buffered(), first.size() + second.size());
  d->pop();
  ASSERT_EQ(d->peek(f), DecodeStatus::frame);
  EXPECT_EQ(copy(f), (Got{FrameType::send, 10, std::string(300, 'x')}));
  d->pop();
  EXPECT_EQ(d->buffered(), 0U);
}

TEST(V2Decoder, PayloadOfExactlyMaxIsAcceptedAndMaxPlusOneIsTooLarge) {
  constexpr std::size_t kMax = 100;
  {
    auto d = v2_decoder(kMax);
    d->feed(bytes(send_frame(1, std::string(kMax, 'm'))));
    Frame f{};
    ASSERT_EQ(d->peek(f), DecodeStatus::frame);
    EXPECT_EQ(f.payload.size(), kMax);
  }
  {
    auto d = v2_decoder(kMax);
    d->feed(bytes(send_frame(1, std::string(kMax + 1, 'm'))));
    Frame f{};
    EXPECT_EQ(d->peek(f), DecodeStatus::too_large);
  }
}

TEST(V2Decoder, TooLargeIsDecidedFromTheLengthAloneBeforeTheBody) {
  constexpr std::size_t kMax = 100;
  // L = max + 5 is the largest SEND; one more is too large, whatever the
  // type byte says (even an unknown type, even before the type arrives).
  for (const int type : {0x01, 0x02, 0x00, 0x7F, 0xFF}) {
    SCOPED_TRACE(testing::Message() << "type " << type);
    auto d = v2_decoder(kMax);
    const std::string header = be32(kMax + 6) + static_cast<char>(type);
    d->feed(bytes(header.substr(0, 4)));
    Frame f{};
    ASSERT_EQ(d->peek(f), DecodeStatus::too_large) << "with the 4-byte length only";
    d->feed(bytes(header.substr(4)));
    ASSERT_EQ(d->peek(f), DecodeStatus::too_large) << "with the 5-byte header";
    ASSERT_EQ(d->peek(f), DecodeStatus::too_large) << "sticky";
  }
  for (const std::uint32_t length : {0x7FFFFFFFu, 0xFFFFFFFFu}) {
    auto d = v2_decoder(kMax);
    d->feed(bytes(be32(length)));
    Frame f{};
    EXPECT_EQ(d->peek(f), DecodeStatus::too_large) << length;
  }
  // The largest acceptable length is not judged before its body arrives.
  auto d = v2_decoder(kMax);
  d->feed(bytes(be32(kMax + 5) + '\x01'));
  Frame f{};
  EXPECT_EQ(d->peek(f), DecodeStatus::need_more);
}

TEST(V2Decoder, TooLargeAfterGoodFrames) {
  auto d = v2_decoder(10);
  d->feed(bytes(send_frame(1, "ok") + be32(16)));
  std::vector<Got> got;
  EXPECT_EQ(drain(*d, got), DecodeStatus::too_large);
  EXPECT_EQ(got, (std::vector<Got>{{FrameType::send, 1, "ok"}}));
}

struct BadHeader {
  const char* what;
  std::string header;  // all that is fed: the verdict needs nothing more
};

TEST(V2Decoder, BadFrameIsDecidedFromTheHeader) {
  const std::vector<BadHeader> cases = {
      {"L = 0", be32(0)},
      {"L = 0 with bytes after it", be32(0) + "\x01\x00\x00\x00\x01"},
      {"type 0x00", be32(1) + '\x00'},
      {"type 0x03", be32(5) + '\x03'},
      {"type 0x81 (server to client)", be32(9) + '\x81'},
      {"type 0x83", be32(6) + '\x83'},
      {"type 0xFF", be32(1) + '\xFF'},
      {"SEND with L = 1 (no destination)", be32(1) + '\x01'},
      {"SEND with L = 4 (3 bytes of destination)", be32(4) + '\x01'},
      {"PING with 65 bytes of body", be32(66) + '\x02'},
      {"PING with 1000 bytes of body", be32(1001) + '\x02'},
  };
  for (const BadHeader& c : cases) {
    SCOPED_TRACE(c.what);
    auto d = v2_decoder(2000);
    d->feed(bytes(c.header));
    Frame f{};
    ASSERT_EQ(d->peek(f), DecodeStatus::bad_frame);
    EXPECT_FALSE(d->error_detail().empty());
    EXPECT_EQ(d->peek(f), DecodeStatus::bad_frame) << "sticky";
  }
}

TEST(V2Decoder, EdgesThatAreNotBad) {
  // SEND with exactly its destination, PING with exactly 64 bytes, PING empty.
  const std::string stream = send_frame(5, "") + ping_frame(std::string(64, 'p')) + ping_frame("");
  auto d = v2_decoder(2000);
  d->feed(bytes(stream));
  std::vector<Got> got;
  EXPECT_EQ(drain(*d, got), DecodeStatus::need_more);
  EXPECT_EQ(got, (std::vector<Got>{{FrameType::send, 5, ""},
                                   {FrameType::ping, 0, std::string(64, 'p')},
                                   {FrameType::ping, 0, ""}}));
}

TEST(V2Decoder, BadFrameAfterGoodFramesInOneFeed) {
  auto d = v2_decoder();
  d->feed(bytes(send_frame(1, "a") + ping_frame("b") + be32(3) + '\x09' + "zz"));
  std::vector<Got> got;
  EXPECT_EQ(drain(*d, got), DecodeStatus::bad_frame);
  EXPECT_EQ(got.size(), 2U);
}

TEST(V2Decoder, ABigFrameIsReceivedIntoOneBufferOfItsSize) {
  // Larger than a pool block: one heap buffer of exactly 4 + L bytes.
  constexpr std::size_t kMax = 1 << 20;
  BlockPool pool(1024, 2);
  auto d = v2_decoder(kMax, &pool);
  const std::string frame = send_frame(2, std::string(100000, 'b'));
  d->feed(bytes(frame.substr(0, 9)));
  d->feed(bytes(frame.substr(9, 5000)));
  EXPECT_EQ(d->capacity(), frame.size());
  d->feed(bytes(frame.substr(9 + 5000)));
  EXPECT_EQ(d->capacity(), frame.size());
  Frame f{};
  ASSERT_EQ(d->peek(f), DecodeStatus::frame);
  EXPECT_EQ(f.payload.size(), 100000U);
}

// ---------------------------------------------------------------------------
// The hello parser.

const std::string kN16 = "0123456789abcdef";
const std::string kN64 = kN16 + kN16 + kN16 + kN16;
const std::string kN15 = kN16.substr(1);
const std::string kN65 = kN64 + "0";

// Every printable byte once (0x21..0x7E: 94 bytes), and tokens of the limits.
std::string printable_token() {
  std::string s;
  for (int c = 0x21; c <= 0x7E; ++c) s.push_back(static_cast<char>(c));
  return s;
}
const std::string kT256 = std::string(256, 'T');
const std::string kT257 = std::string(257, 'T');

struct HelloCase {
  std::string what;
  std::string payload;
  HelloParse::Status status;
  int version;                       // ok: the hello's version; invalid: the reply's
  std::string nonce;                 // ok: the hello's; invalid: reported back (empty if none well-formed)
  std::optional<std::string> token;  // ok only
  std::string reason;                // invalid only
};

using S = HelloParse::Status;

std::vector<HelloCase> hello_cases() {
  const std::string v2 = "switchboard/2 ";
  return {
      // Good hellos.
      {"v2, 16-digit nonce", v2 + "nonce=" + kN16, S::ok, 2, kN16, std::nullopt, ""},
      {"v2, 64-digit nonce", v2 + "nonce=" + kN64, S::ok, 2, kN64, std::nullopt, ""},
      {"v2 with token", v2 + "nonce=" + kN16 + " token=abc", S::ok, 2, kN16, "abc", ""},
      {"fields in any order", v2 + "token=abc nonce=" + kN16, S::ok, 2, kN16, "abc", ""},
      {"token of 256 bytes", v2 + "nonce=" + kN16 + " token=" + kT256, S::ok, 2, kN16, kT256, ""},
      {"token of one byte", v2 + "nonce=" + kN16 + " token=x", S::ok, 2, kN16, "x", ""},
      {"token of every printable byte, '=' included", v2 + "nonce=" + kN16 + " token=" + printable_token(), S::ok,
       2, kN16, printable_token(), ""},
      {"unknown well-formed field ignored", v2 + "nonce=" + kN16 + " future=thing", S::ok, 2, kN16, std::nullopt,
       ""},
      {"unknown field with an empty value ignored", v2 + "x-y_z9= nonce=" + kN16, S::ok, 2, kN16, std::nullopt, ""},
      {"switchboard/1 alone", "switchboard/1", S::ok, 1, "", std::nullopt, ""},
      {"switchboard/1 with token", "switchboard/1 token=T0k", S::ok, 1, "", "T0k", ""},
      {"switchboard/1 with a nonce", "switchboard/1 nonce=" + kN16, S::ok, 1, kN16, std::nullopt, ""},

      // unsupported_version: checked first.
      {"version 3", "switchboard/3 nonce=" + kN16, S::invalid, 2, kN16, std::nullopt, "unsupported_version"},
      {"no version", "switchboard/", S::invalid, 2, "", std::nullopt, "unsupported_version"},
      {"version 22", "switchboard/22 nonce=" + kN16, S::invalid, 2, kN16, std::nullopt, "unsupported_version"},
      {"version 2.0", "switchboard/2.0 nonce=" + kN16, S::invalid, 2, kN16, std::nullopt, "unsupported_version"},
      {"tab after the version", "switchboard/2\tnonce=" + kN16, S::invalid, 2, "", std::nullopt,
       "unsupported_version"},
      {"version 3 and malformed", "switchboard/3 junk", S::invalid, 2, "", std::nullopt, "unsupported_version"},

      // missing_nonce.
      {"v2 alone", "switchboard/2", S::invalid, 2, "", std::nullopt, "missing_nonce"},
      {"v2 with only a token", v2 + "token=abc", S::invalid, 2, "", std::nullopt, "missing_nonce"},

      // bad_nonce: the nonce is not reported back.
      {"15-digit nonce", v2 + "nonce=" + kN15, S::invalid, 2, "", std::nullopt, "bad_nonce"},
      {"65-digit nonce", v2 + "nonce=" + kN65, S::invalid, 2, "", std::nullopt, "bad_nonce"},
      {"uppercase hex nonce", v2 + "nonce=0123456789ABCDEF", S::invalid, 2, "", std::nullopt, "bad_nonce"},
      {"non-hex nonce", v2 + "nonce=0123456789abcdeg", S::invalid, 2, "", std::nullopt, "bad_nonce"},
      {"empty nonce", v2 + "nonce=", S::invalid, 2, "", std::nullopt, "bad_nonce"},
      {"bad nonce in a v1 hello", "switchboard/1 nonce=xyz", S::invalid, 1, "", std::nullopt, "bad_nonce"},

      // bad_token: the nonce is reported back.
      {"token of 257 bytes", v2 + "nonce=" + kN16 + " token=" + kT257, S::invalid, 2, kN16, std::nullopt,
       "bad_token"},
      {"empty token", v2 + "nonce=" + kN16 + " token=", S::invalid, 2, kN16, std::nullopt, "bad_token"},
      {"v1 token of 257 bytes", "switchboard/1 token=" + kT257, S::invalid, 1, "", std::nullopt, "bad_token"},
      {"v1 empty token", "switchboard/1 token=", S::invalid, 1, "", std::nullopt, "bad_token"},
      {"bad token before missing nonce", v2 + "token=", S::invalid, 2, "", std::nullopt, "bad_token"},

      // repeated_field.
      {"nonce twice", v2 + "nonce=" + kN16 + " nonce=" + kN16, S::invalid, 2, kN16, std::nullopt, "repeated_field"},
      {"token twice", v2 + "nonce=" + kN16 + " token=a token=b", S::invalid, 2, kN16, std::nullopt,
       "repeated_field"},
      {"unknown field twice", v2 + "nonce=" + kN16 + " x=1 x=2", S::invalid, 2, kN16, std::nullopt,
       "repeated_field"},
      {"repeated before bad nonce", v2 + "nonce=xyz nonce=" + kN16, S::invalid, 2, "", std::nullopt,
       "repeated_field"},
      {"v1 token twice", "switchboard/1 token=a token=a", S::invalid, 1, "", std::nullopt, "repeated_field"},

      // malformed: a byte outside 0x21..0x7E inside a word, a word without
      // '=', an empty word, a bad key. The nonce comes back when well-formed.
      {"token holding 0x7F", v2 + "nonce=" + kN16 + " token=ab\x7F" "cd", S::invalid, 2, kN16, std::nullopt,
       "malformed"},
      {"token holding a space", v2 + "nonce=" + kN16 + " token=ab cd", S::invalid, 2, kN16, std::nullopt,
       "malformed"},
      {"token holding 0x80", v2 + "nonce=" + kN16 + " token=ab\x80", S::invalid, 2, kN16, std::nullopt,
       "malformed"},
      {"double space", "switchboard/2  nonce=" + kN16, S::invalid, 2, kN16, std::nullopt, "malformed"},
      {"trailing space", v2 + "nonce=" + kN16 + " ", S::invalid, 2, kN16, std::nullopt, "malformed"},
      {"trailing space after the version", "switchboard/2 ", S::invalid, 2, "", std::nullopt, "malformed"},
      {"word without '='", v2 + "nonce=" + kN16 + " hello", S::invalid, 2, kN16, std::nullopt, "malformed"},
      {"empty key", v2 + "nonce=" + kN16 + " =x", S::invalid, 2, kN16, std::nullopt, "malformed"},
      {"uppercase key", v2 + "nonce=" + kN16 + " Key=x", S::invalid, 2, kN16, std::nullopt, "malformed"},
      {"key with a dot", v2 + "nonce=" + kN16 + " a.b=x", S::invalid, 2, kN16, std::nullopt, "malformed"},
      {"tab in a value", v2 + "nonce=" + kN16 + " x=a\tb", S::invalid, 2, kN16, std::nullopt, "malformed"},
      {"CR at the end", v2 + "nonce=" + kN16 + "\r", S::invalid, 2, "", std::nullopt, "malformed"},
      {"malformed before repeated", v2 + "nonce=" + kN16 + " nonce=" + kN16 + " x", S::invalid, 2, kN16,
       std::nullopt, "malformed"},
      {"malformed before bad nonce", v2 + "nonce=" + kN15 + " x", S::invalid, 2, "", std::nullopt, "malformed"},
      {"malformed v1", "switchboard/1 foo", S::invalid, 1, "", std::nullopt, "malformed"},
      {"malformed v1, double space", "switchboard/1  token=a", S::invalid, 1, "", std::nullopt, "malformed"},

      // Not a hello at all: an ordinary no_route to 0xFFFFFFFF.
      {"empty", "", S::not_a_hello, 2, "", std::nullopt, ""},
      {"leading space", " switchboard/2 nonce=" + kN16, S::not_a_hello, 2, "", std::nullopt, ""},
      {"other text", "hello server", S::not_a_hello, 2, "", std::nullopt, ""},
      {"capitalised", "Switchboard/2 nonce=" + kN16, S::not_a_hello, 2, "", std::nullopt, ""},
      {"prefix cut short", "switchboard", S::not_a_hello, 2, "", std::nullopt, ""},
  };
}

TEST(Hello, TableOfGoodAndBadHellos) {
  for (const HelloCase& c : hello_cases()) {
    SCOPED_TRACE(c.what + ": \"" + c.payload + "\"");
    EXPECT_EQ(sb::protocol::is_hello(bytes(c.payload)), c.status != S::not_a_hello);
    const HelloParse r = sb::protocol::parse_hello(bytes(c.payload));
    ASSERT_EQ(r.status, c.status);
    switch (c.status) {
      case S::ok:
        EXPECT_EQ(r.hello.version, c.version);
        EXPECT_EQ(r.hello.nonce, c.nonce);
        EXPECT_EQ(r.hello.token.has_value(), c.token.has_value());
        if (c.token && r.hello.token) {
          EXPECT_EQ(*r.hello.token, *c.token);
        }
        break;
      case S::invalid:
        EXPECT_EQ(r.reason, c.reason);
        EXPECT_EQ(r.reply_version, c.version);
        EXPECT_EQ(r.nonce, c.nonce);
        break;
      case S::not_a_hello:
        break;
    }
  }
}

TEST(Hello, EveryReasonIsInTheTable) {
  std::vector<std::string> reasons;
  for (const HelloCase& c : hello_cases()) reasons.push_back(c.reason);
  for (const char* want :
       {"unsupported_version", "missing_nonce", "bad_nonce", "bad_token", "repeated_field", "malformed"}) {
    EXPECT_NE(std::find(reasons.begin(), reasons.end(), want), reasons.end()) << want;
  }
}

TEST(Hello, ViewsPointIntoThePayload) {
  const std::string payload = "switchboard/2 token=tok nonce=" + kN16;
  const HelloParse r = sb::protocol::parse_hello(bytes(payload));
  ASSERT_EQ(r.status, S::ok);
  EXPECT_EQ(r.hello.nonce.data(), payload.data() + payload.size() - 16);
  EXPECT_EQ(r.hello.token->data(), payload.data() + 20);
}

TEST(Hello, ManyDistinctUnknownFields) {
  // 31 unknown fields and the nonce fit; more distinct keys than the parser
  // keeps are malformed, never accepted unchecked.
  std::string ok = "switchboard/2 nonce=" + kN16;
  for (int i = 0; i < 31; ++i) ok += " k" + std::to_string(i) + "=v";
  EXPECT_EQ(sb::protocol::parse_hello(bytes(ok)).status, S::ok);
  const std::string too_many = ok + " k31=v";
  const HelloParse r = sb::protocol::parse_hello(bytes(too_many));
  EXPECT_EQ(r.status, S::invalid);
  EXPECT_EQ(r.reason, "malformed");
}

// ---------------------------------------------------------------------------
// Encoders, byte for byte.

std::string str(std::span<const char> s) { return std::string(s.data(), s.size()); }

TEST(V2Encoders, DeliverHeader) {
  EXPECT_EQ(str(sb::protocol::encode_deliver_header(ClientId{0x01020304}, 3)),
            "\x00\x00\x00\x08\x81\x01\x02\x03\x04"s);
  EXPECT_EQ(str(sb::protocol::encode_deliver_header(ClientId{0}, 0)), "\x00\x00\x00\x05\x81\x00\x00\x00\x00"s);
  EXPECT_EQ(str(sb::protocol::encode_deliver_header(ClientId{0xFFFFFEFF}, 0x0100FFFB)),
            "\x01\x01\x00\x00\x81\xFF\xFF\xFE\xFF"s);
}

TEST(V2Encoders, PongHeader) {
  EXPECT_EQ(str(sb::protocol::encode_pong_header(0)), "\x00\x00\x00\x01\x82"s);
  EXPECT_EQ(str(sb::protocol::encode_pong_header(64)), "\x00\x00\x00\x41\x82"s);
}

TEST(V2Encoders, Error) {
  EXPECT_EQ(sb::protocol::encode_error(ErrorCode::no_route, 0xFFFFFFFF, "x"),
            "\x00\x00\x00\x07\x83\x01\xFF\xFF\xFF\xFF"
            "x"s);
  EXPECT_EQ(sb::protocol::encode_error(ErrorCode::bad_frame, 0, ""), "\x00\x00\x00\x06\x83\x05\x00\x00\x00\x00"s);
  EXPECT_EQ(sb::protocol::encode_error(ErrorCode::too_large, 0x00000102, "big"),
            "\x00\x00\x00\x09\x83\x04\x00\x00\x01\x02"
            "big"s);
  EXPECT_EQ(static_cast<int>(ErrorCode::slow_consumer), 2);
  EXPECT_EQ(static_cast<int>(ErrorCode::not_representable), 3);
}

TEST(V2Encoders, ErrorCodeNames) {
  EXPECT_EQ(to_string(ErrorCode::no_route), "no_route");
  EXPECT_EQ(to_string(ErrorCode::slow_consumer), "slow_consumer");
  EXPECT_EQ(to_string(ErrorCode::not_representable), "not_representable");
  EXPECT_EQ(to_string(ErrorCode::too_large), "too_large");
  EXPECT_EQ(to_string(ErrorCode::bad_frame), "bad_frame");
}

TEST(V2Encoders, HelloReplies) {
  EXPECT_EQ(sb::protocol::encode_welcome(kN16, ClientId{42}, 1048576),
            "switchboard/2 ok nonce=0123456789abcdef id=42 max_frame=1048576");
  EXPECT_EQ(sb::protocol::encode_welcome(kN16, ClientId{0xFFFFFEFF}, 0),
            "switchboard/2 ok nonce=0123456789abcdef id=4294967039 max_frame=0");
  EXPECT_EQ(sb::protocol::encode_v1_ok(ClientId{7}), "switchboard/1 ok id=7");
  EXPECT_EQ(sb::protocol::encode_v1_ok(ClientId{0}), "switchboard/1 ok id=0");
  EXPECT_EQ(sb::protocol::encode_hello_error(2, kN16, "bad_token"),
            "switchboard/2 error nonce=0123456789abcdef bad_token");
  EXPECT_EQ(sb::protocol::encode_hello_error(2, "", "malformed"), "switchboard/2 error malformed");
  EXPECT_EQ(sb::protocol::encode_hello_error(2, kN16, "unauthorized"),
            "switchboard/2 error nonce=0123456789abcdef unauthorized");
  // v1 error replies never carry a nonce.
  EXPECT_EQ(sb::protocol::encode_hello_error(1, kN16, "unauthorized"), "switchboard/1 error unauthorized");
  EXPECT_EQ(sb::protocol::encode_hello_error(1, "", "bad_token"), "switchboard/1 error bad_token");
}

TEST(V2Encoders, ReservedIds) {
  EXPECT_FALSE(sb::protocol::is_reserved(ClientId{0}));
  EXPECT_FALSE(sb::protocol::is_reserved(ClientId{0xFFFFFEFF}));
  EXPECT_TRUE(sb::protocol::is_reserved(ClientId{0xFFFFFF00}));
  EXPECT_TRUE(sb::protocol::is_reserved(ClientId{0xFFFFFFFE}));
  EXPECT_TRUE(sb::protocol::is_reserved(ClientId{0xFFFFFFFF}));
}

// ---------------------------------------------------------------------------
// tokens_equal.

TEST(Tokens, EqualOnlyWhenEveryByteAndTheLengthMatch) {
  using sb::protocol::tokens_equal;
  EXPECT_TRUE(tokens_equal("s3cret", "s3cret"));
  EXPECT_TRUE(tokens_equal(kT256, kT256));
  EXPECT_FALSE(tokens_equal("X3cret", "s3cret"));  // first byte
  EXPECT_FALSE(tokens_equal("s3creX", "s3cret"));  // last byte
  EXPECT_FALSE(tokens_equal("s3cre", "s3cret"));   // a prefix
  EXPECT_FALSE(tokens_equal("s3crett", "s3cret"));  // longer
  EXPECT_FALSE(tokens_equal("", "s3cret"));
  EXPECT_FALSE(tokens_equal("s3cret", ""));
  EXPECT_FALSE(tokens_equal("s3cret\0"s, "s3cret"));  // a NUL past the end is still a difference
  // Bytes that differ only in their high bit.
  EXPECT_FALSE(tokens_equal("\xE1", "a"));
}

}  // namespace
