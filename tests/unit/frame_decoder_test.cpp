// FrameDecoder and wire helpers: every input re-fed at every split point and
// fragment size (as Seastar's and picohttpparser's parser tests do), the
// payload limit at its exact boundary, peek-without-pop (backpressure), and
// the buffer's memory life cycle with and without a BlockPool.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <ostream>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/block_pool.hpp"
#include "protocol/frame_decoder.hpp"
#include "protocol/wire.hpp"

namespace {

using sb::ClientId;
using sb::protocol::BlockPool;
using sb::protocol::DecodeStatus;
using sb::protocol::Frame;
using sb::protocol::FrameDecoder;
using sb::protocol::kDefaultMaxFrame;

struct Decoded {
  std::uint32_t destination;
  std::string wire;  // payload + NUL
  bool operator==(const Decoded&) const = default;
};

void PrintTo(const Decoded& d, std::ostream* os) {
  *os << "{dest=0x" << std::hex << d.destination << std::dec << ", wire[" << d.wire.size() << "]=\"";
  for (char ch : d.wire.substr(0, 48)) {
    const auto u = static_cast<unsigned char>(ch);
    if (u >= 0x20 && u < 0x7f) {
      *os << ch;
    } else {
      *os << "\\x" << std::hex << static_cast<unsigned>(u) << std::dec;
    }
  }
  *os << (d.wire.size() > 48 ? "...\"}" : "\"}");
}

// The client->server bytes of one frame.
std::string frame_bytes(std::uint32_t destination, std::string_view payload) {
  const auto id = sb::protocol::encode_be32(destination);
  std::string s(id.data(), id.size());
  s.append(payload);
  s.push_back('\0');
  return s;
}

Decoded decoded(std::uint32_t destination, std::string_view payload) {
  std::string wire(payload);
  wire.push_back('\0');
  return {destination, wire};
}

void feed(FrameDecoder& d, std::string_view bytes) { d.feed(std::span<const char>(bytes.data(), bytes.size())); }

Decoded to_decoded(const Frame& f) {
  return {sb::to_u32(f.destination), std::string(f.wire.data(), f.wire.size())};
}

// Pops every complete frame into `out`; returns the status that stopped it.
DecodeStatus drain(FrameDecoder& d, std::vector<Decoded>& out) {
  for (;;) {
    Frame f{};
    const DecodeStatus st = d.peek(f);
    if (st != DecodeStatus::frame) return st;
    out.push_back(to_decoded(f));
    d.pop();
  }
}

// A stream that exercises the awkward cases: zero bytes in headers (the NUL
// scan must start after the 4-byte ID), an empty payload, high bytes.
std::string tricky_stream() {
  return frame_bytes(0x01020304, "hello") + frame_bytes(0, "") + frame_bytes(0x00FF0000, "x") +
         frame_bytes(0x00000100, "with\x01\x7f\x80\xff bytes") + frame_bytes(0, "after zero id") +
         frame_bytes(0xFFFFFFFF, std::string(40, 'z')) + frame_bytes(0x00000000, "");
}

std::vector<Decoded> tricky_expected() {
  return {decoded(0x01020304, "hello"),
          decoded(0, ""),
          decoded(0x00FF0000, "x"),
          decoded(0x00000100, "with\x01\x7f\x80\xff bytes"),
          decoded(0, "after zero id"),
          decoded(0xFFFFFFFF, std::string(40, 'z')),
          decoded(0, "")};
}

// Feeds `stream` in the given chunk sizes (the last one repeats) and returns
// the frames; fails the test if a frame is left over or the accounting drifts.
std::vector<Decoded> decode_in_chunks(std::string_view stream, const std::vector<std::size_t>& chunks,
                                      BlockPool* pool, std::size_t max_payload = 64) {
  FrameDecoder d(max_payload, pool);
  std::vector<Decoded> out;
  std::size_t pos = 0;
  std::size_t i = 0;
  while (pos < stream.size()) {
    const std::size_t n = std::min(chunks[std::min(i++, chunks.size() - 1)], stream.size() - pos);
    feed(d, stream.substr(pos, n));
    pos += n;
    EXPECT_EQ(drain(d, out), DecodeStatus::need_more) << "after " << pos << " bytes";
  }
  EXPECT_EQ(d.buffered(), 0U);
  return out;
}

TEST(Wire, Be32RoundTripIsBigEndian) {
  const auto bytes = sb::protocol::encode_be32(0x0A0B0C0D);
  EXPECT_EQ(std::string(bytes.data(), bytes.size()), std::string("\x0A\x0B\x0C\x0D", 4));
  for (std::uint32_t v : {0U, 1U, 0x80U, 0xFFU, 0x100U, 0x00FF00FFU, 0x80000000U, 0xFFFFFFFFU, 0xDEADBEEFU}) {
    EXPECT_EQ(sb::protocol::load_be32(sb::protocol::encode_be32(v).data()), v);
  }
  const auto greeting = sb::protocol::encode_greeting(ClientId{0x00000102});
  EXPECT_EQ(std::string(greeting.data(), greeting.size()), std::string("\x00\x00\x01\x02", 4));
}

TEST(FrameDecoder, EmptyDecoderNeedsMoreAndHoldsNoMemory) {
  FrameDecoder d(64);
  Frame f{};
  EXPECT_EQ(d.peek(f), DecodeStatus::need_more);
  EXPECT_EQ(d.buffered(), 0U);
  EXPECT_EQ(d.capacity(), 0U);
}

TEST(FrameDecoder, SplitAtEveryPositionIntoTwoChunks) {
  const std::string stream = tricky_stream();
  for (bool pooled : {false, true}) {
    BlockPool pool(32, 4);  // smaller than the stream: exercises pool-to-heap growth
    for (std::size_t split = 0; split <= stream.size(); ++split) {
      SCOPED_TRACE(testing::Message() << "pooled=" << pooled << " split=" << split);
      FrameDecoder d(64, pooled ? &pool : nullptr);
      std::vector<Decoded> out;
      feed(d, std::string_view(stream).substr(0, split));
      EXPECT_EQ(drain(d, out), DecodeStatus::need_more);
      feed(d, std::string_view(stream).substr(split));
      EXPECT_EQ(drain(d, out), DecodeStatus::need_more);
      EXPECT_EQ(out, tricky_expected());
      EXPECT_EQ(d.buffered(), 0U);
    }
  }
}

TEST(FrameDecoder, SplitAtEveryPairOfPositionsIntoThreeChunks) {
  const std::string stream = frame_bytes(0, "ab") + frame_bytes(0x00010000, "") + frame_bytes(0x7F000001, "cde");
  const std::vector<Decoded> expected = {decoded(0, "ab"), decoded(0x00010000, ""), decoded(0x7F000001, "cde")};
  for (std::size_t a = 0; a <= stream.size(); ++a) {
    for (std::size_t b = a; b <= stream.size(); ++b) {
      SCOPED_TRACE(testing::Message() << "splits=" << a << "," << b);
      FrameDecoder d(8);
      std::vector<Decoded> out;
      feed(d, std::string_view(stream).substr(0, a));
      EXPECT_EQ(drain(d, out), DecodeStatus::need_more);
      feed(d, std::string_view(stream).substr(a, b - a));
      EXPECT_EQ(drain(d, out), DecodeStatus::need_more);
      feed(d, std::string_view(stream).substr(b));
      EXPECT_EQ(drain(d, out), DecodeStatus::need_more);
      EXPECT_EQ(out, expected);
    }
  }
}

TEST(FrameDecoder, OneBytePerFeed) {
  BlockPool pool(16, 2);
  for (BlockPool* p : {static_cast<BlockPool*>(nullptr), &pool}) {
    SCOPED_TRACE(testing::Message() << "pooled=" << (p != nullptr));
    EXPECT_EQ(decode_in_chunks(tricky_stream(), {1}, p), tricky_expected());
  }
}

TEST(FrameDecoder, EveryFragmentSize) {
  const std::string stream = tricky_stream();
  BlockPool pool(64, 2);
  for (std::size_t size = 1; size <= stream.size(); ++size) {
    SCOPED_TRACE(testing::Message() << "fragment size " << size);
    EXPECT_EQ(decode_in_chunks(stream, {size}, nullptr), tricky_expected());
    EXPECT_EQ(decode_in_chunks(stream, {size}, &pool), tricky_expected());
  }
}

TEST(FrameDecoder, ManyFramesInOneChunk) {
  std::string stream;
  std::vector<Decoded> expected;
  for (std::uint32_t i = 0; i < 2000; ++i) {
    const std::string payload(i % 37, static_cast<char>('a' + i % 26));
    stream += frame_bytes(i * 0x01010101U, payload);  // every header byte takes the value 0 at some point
    expected.push_back(decoded(i * 0x01010101U, payload));
  }
  FrameDecoder d(64);
  feed(d, stream);
  std::vector<Decoded> out;
  EXPECT_EQ(drain(d, out), DecodeStatus::need_more);
  EXPECT_EQ(out, expected);
  EXPECT_EQ(d.buffered(), 0U);
}

TEST(FrameDecoder, ZeroBytesInTheHeaderDoNotEndTheFrame) {
  FrameDecoder d(64);
  std::vector<Decoded> out;
  feed(d, std::string("\0\0\0\0", 4));  // destination 0: four NULs that are not terminators
  EXPECT_EQ(drain(d, out), DecodeStatus::need_more);
  feed(d, "abc");
  EXPECT_EQ(drain(d, out), DecodeStatus::need_more);
  EXPECT_TRUE(out.empty());
  feed(d, std::string("\0", 1));
  EXPECT_EQ(drain(d, out), DecodeStatus::need_more);
  ASSERT_EQ(out.size(), 1U);
  EXPECT_EQ(out[0], decoded(0, "abc"));

  // Ten zero bytes are two frames for ID 0 with empty payloads.
  out.clear();
  feed(d, std::string(10, '\0'));
  EXPECT_EQ(drain(d, out), DecodeStatus::need_more);
  EXPECT_EQ(out, (std::vector<Decoded>{decoded(0, ""), decoded(0, "")}));
}

TEST(FrameDecoder, ZeroLengthPayloadIsIdPlusNul) {
  FrameDecoder d(0);  // even a zero limit admits an empty payload
  feed(d, frame_bytes(0x11223344, ""));
  Frame f{};
  ASSERT_EQ(d.peek(f), DecodeStatus::frame);
  EXPECT_EQ(sb::to_u32(f.destination), 0x11223344U);
  ASSERT_EQ(f.wire.size(), 1U);
  EXPECT_EQ(f.wire[0], '\0');
  d.pop();
  EXPECT_EQ(d.buffered(), 0U);
  // One payload byte is over a zero limit.
  feed(d, frame_bytes(1, "x"));
  EXPECT_EQ(d.peek(f), DecodeStatus::too_large);
}

TEST(FrameDecoder, PayloadOfExactlyMaxIsAcceptedInOneChunk) {
  constexpr std::size_t kMax = 100;
  FrameDecoder d(kMax);
  feed(d, frame_bytes(7, std::string(kMax, 'p')));
  std::vector<Decoded> out;
  EXPECT_EQ(drain(d, out), DecodeStatus::need_more);
  ASSERT_EQ(out.size(), 1U);
  EXPECT_EQ(out[0].wire.size(), kMax + 1);
}

TEST(FrameDecoder, PayloadOfMaxPlusOneIsRejectedInOneChunk) {
  constexpr std::size_t kMax = 100;
  FrameDecoder d(kMax);
  // A complete frame (the NUL is there) one byte over the limit, followed by a
  // valid frame: the oversized one must not be delivered.
  feed(d, frame_bytes(7, std::string(kMax + 1, 'p')) + frame_bytes(8, "ok"));
  Frame f{};
  EXPECT_EQ(d.peek(f), DecodeStatus::too_large);
  EXPECT_EQ(d.peek(f), DecodeStatus::too_large) << "the error is sticky until the owner closes the sender";
}

TEST(FrameDecoder, TooLargeIsReportedAsSoonAsMaxPlusOneBytesTrickleInWithoutNul) {
  constexpr std::size_t kMax = 100;
  for (bool pooled : {false, true}) {
    SCOPED_TRACE(testing::Message() << "pooled=" << pooled);
    BlockPool pool(32, 2);
    FrameDecoder d(kMax, pooled ? &pool : nullptr);
    Frame f{};
    feed(d, std::string("\0\0\0\x09", 4));
    for (std::size_t i = 0; i < kMax; ++i) {
      feed(d, "q");
      ASSERT_EQ(d.peek(f), DecodeStatus::need_more) << "after " << i + 1 << " payload bytes";
    }
    feed(d, "q");
    EXPECT_EQ(d.peek(f), DecodeStatus::too_large) << "after " << kMax + 1 << " payload bytes";
  }
}

TEST(FrameDecoder, PayloadOfExactlyMaxTricklingInIsAccepted) {
  constexpr std::size_t kMax = 100;
  FrameDecoder d(kMax);
  Frame f{};
  feed(d, std::string("\0\0\0\x09", 4));
  for (std::size_t i = 0; i < kMax; ++i) {
    feed(d, "q");
    ASSERT_EQ(d.peek(f), DecodeStatus::need_more);
  }
  feed(d, std::string("\0", 1));
  ASSERT_EQ(d.peek(f), DecodeStatus::frame);
  EXPECT_EQ(to_decoded(f), decoded(9, std::string(kMax, 'q')));
}

TEST(FrameDecoder, OneMebibytePayloadWithDefaultMax) {
  constexpr std::size_t kChunk = 64 * 1024;
  std::string payload(kDefaultMaxFrame, 'm');
  for (std::size_t i = 0; i < payload.size(); i += 4093) payload[i] = static_cast<char>('A' + i % 26);
  const std::string stream = frame_bytes(0x00000042, payload) + frame_bytes(0x00000043, "next");

  FrameDecoder d(kDefaultMaxFrame);
  std::vector<Decoded> out;
  for (std::size_t pos = 0; pos < stream.size();) {
    const auto space = d.prepare(kChunk);
    ASSERT_GE(space.size(), kChunk);
    const std::size_t n = std::min(kChunk, stream.size() - pos);
    std::memcpy(space.data(), stream.data() + pos, n);
    d.commit(n);
    pos += n;
    ASSERT_EQ(drain(d, out), DecodeStatus::need_more) << "at " << pos;
  }
  ASSERT_EQ(out.size(), 2U);
  EXPECT_EQ(out[0].destination, 0x42U);
  EXPECT_EQ(out[0].wire.size(), kDefaultMaxFrame + 1);
  EXPECT_TRUE(out[0].wire == payload + std::string(1, '\0'));
  EXPECT_EQ(out[1], decoded(0x43, "next"));
}

TEST(FrameDecoder, OneMebibytePlusOneIsTooLargeWithDefaultMax) {
  FrameDecoder d(kDefaultMaxFrame);
  Frame f{};
  feed(d, std::string("\0\0\0\x01", 4) + std::string(kDefaultMaxFrame, 'm'));
  EXPECT_EQ(d.peek(f), DecodeStatus::need_more);
  feed(d, "m");
  EXPECT_EQ(d.peek(f), DecodeStatus::too_large);
}

TEST(FrameDecoder, PeekWithoutPopReturnsTheSameFrameAndLosesNothing) {
  // No pool: the buffer is exactly as big as the first feed, so the next feed
  // must reallocate while a frame is peeked.
  FrameDecoder d(64);
  feed(d, frame_bytes(1, "first") + frame_bytes(2, "second") + frame_bytes(0, "third"));
  Frame f{};
  ASSERT_EQ(d.peek(f), DecodeStatus::frame);
  EXPECT_EQ(to_decoded(f), decoded(1, "first"));
  ASSERT_EQ(d.peek(f), DecodeStatus::frame);
  EXPECT_EQ(to_decoded(f), decoded(1, "first"));

  feed(d, frame_bytes(3, "fourth"));  // arrives while the first is held back
  ASSERT_EQ(d.peek(f), DecodeStatus::frame);
  EXPECT_EQ(to_decoded(f), decoded(1, "first"));
  d.pop();

  std::vector<Decoded> out;
  EXPECT_EQ(drain(d, out), DecodeStatus::need_more);
  EXPECT_EQ(out, (std::vector<Decoded>{decoded(2, "second"), decoded(0, "third"), decoded(3, "fourth")}));
}

TEST(FrameDecoder, PeekedFrameSurvivesCompaction) {
  // feed A+B into an exactly sized buffer, pop A, peek B, then feed bytes that
  // fit only once B is moved to the front of the buffer.
  const std::string a = frame_bytes(1, "aaaaaaaaaaaaaaaa");
  const std::string b = frame_bytes(0x00000200, "bb");
  FrameDecoder d(64);
  feed(d, a + b);
  const std::size_t capacity = d.capacity();
  Frame f{};
  ASSERT_EQ(d.peek(f), DecodeStatus::frame);
  d.pop();
  ASSERT_EQ(d.peek(f), DecodeStatus::frame);
  EXPECT_EQ(to_decoded(f), decoded(0x200, "bb"));

  const std::string c = frame_bytes(3, "ccc") + std::string("\0\0\0\x04" "partial", 11);
  ASSERT_LE(c.size(), a.size());
  feed(d, c);
  EXPECT_EQ(d.capacity(), capacity) << "expected compaction, not a new buffer";
  ASSERT_EQ(d.peek(f), DecodeStatus::frame);
  EXPECT_EQ(to_decoded(f), decoded(0x200, "bb"));
  d.pop();
  ASSERT_EQ(d.peek(f), DecodeStatus::frame);
  EXPECT_EQ(to_decoded(f), decoded(3, "ccc"));
  d.pop();
  EXPECT_EQ(d.peek(f), DecodeStatus::need_more);
  feed(d, std::string("!\0", 2));
  ASSERT_EQ(d.peek(f), DecodeStatus::frame);
  EXPECT_EQ(to_decoded(f), decoded(4, "partial!"));
}

TEST(FrameDecoder, ReleaseIfEmptyFreesOnlyWhenEmpty) {
  FrameDecoder d(64);
  feed(d, std::string("\0\0\0\x01" "partial", 11));
  const std::size_t capacity = d.capacity();
  ASSERT_GT(capacity, 0U);
  d.release_if_empty();
  EXPECT_EQ(d.capacity(), capacity) << "a partial frame must be kept";
  EXPECT_EQ(d.buffered(), 11U);

  feed(d, std::string("\0", 1));
  Frame f{};
  ASSERT_EQ(d.peek(f), DecodeStatus::frame);
  d.release_if_empty();
  EXPECT_GT(d.capacity(), 0U) << "a peeked but unpopped frame must be kept";
  ASSERT_EQ(d.peek(f), DecodeStatus::frame);
  EXPECT_EQ(to_decoded(f), decoded(1, "partial"));
  d.pop();
  EXPECT_EQ(d.buffered(), 0U);
  d.release_if_empty();
  EXPECT_EQ(d.capacity(), 0U);
  EXPECT_EQ(d.peek(f), DecodeStatus::need_more);

  // Usable again after a release.
  feed(d, frame_bytes(2, "again"));
  ASSERT_EQ(d.peek(f), DecodeStatus::frame);
  EXPECT_EQ(to_decoded(f), decoded(2, "again"));
}

TEST(FrameDecoder, PoolBlocksAreTakenAndGivenBack) {
  BlockPool pool(64, 4);
  {
    FrameDecoder d(1000, &pool);
    feed(d, frame_bytes(1, "small"));
    EXPECT_EQ(d.capacity(), 64U) << "a small read uses one pool block";
    std::vector<Decoded> out;
    EXPECT_EQ(drain(d, out), DecodeStatus::need_more);
    EXPECT_EQ(pool.idle_blocks(), 0U);
    d.release_if_empty();
    EXPECT_EQ(d.capacity(), 0U);
    EXPECT_EQ(pool.idle_blocks(), 1U);

    // A partial frame in a pool block, then growth beyond the block: the block
    // goes back to the pool and the bigger buffer comes from the heap.
    feed(d, std::string("\0\0\0\x02", 4) + std::string(30, 'x'));
    EXPECT_EQ(pool.idle_blocks(), 0U);
    EXPECT_EQ(d.capacity(), 64U);
    feed(d, std::string(100, 'y'));
    EXPECT_GT(d.capacity(), 64U);
    EXPECT_EQ(pool.idle_blocks(), 1U);
    feed(d, std::string("\0", 1));
    out.clear();
    EXPECT_EQ(drain(d, out), DecodeStatus::need_more);
    EXPECT_EQ(out, (std::vector<Decoded>{decoded(2, std::string(30, 'x') + std::string(100, 'y'))}));
    d.release_if_empty();
    EXPECT_EQ(d.capacity(), 0U);
    EXPECT_EQ(pool.idle_blocks(), 1U) << "a heap buffer must not enter the pool";

    feed(d, std::string("\0\0\0\x03" "z", 5));  // partial: the decoder keeps its block
    EXPECT_EQ(pool.idle_blocks(), 0U);
  }
  EXPECT_EQ(pool.idle_blocks(), 1U) << "the destructor gives the block back";
}

TEST(FrameDecoder, PoolKeepsAtMostMaxFreeBlocks) {
  BlockPool pool(64, 1);
  {
    FrameDecoder a(100, &pool);
    FrameDecoder b(100, &pool);
    feed(a, "\x01");
    feed(b, "\x01");
  }
  EXPECT_EQ(pool.idle_blocks(), 1U);
}

// The engine's read path: prepare(64 KiB), read into the span, commit, decode,
// and give the buffer back when it is empty.
TEST(FrameDecoder, PrepareCommitAsAnEngineUsesIt) {
  constexpr std::size_t kRead = 64 * 1024;
  std::mt19937_64 rng(42);
  std::string stream;
  std::vector<Decoded> expected;
  for (std::uint32_t i = 0; i < 3000; ++i) {
    const std::size_t len = rng() % 8 == 0 ? rng() % 100000 : rng() % 300;
    std::string payload(len, static_cast<char>('a' + i % 26));
    stream += frame_bytes(i << 8, payload);
    expected.push_back(decoded(i << 8, payload));
  }
  BlockPool pool(kRead, 8);
  FrameDecoder d(kDefaultMaxFrame, &pool);
  std::vector<Decoded> out;
  std::size_t releases = 0;
  for (std::size_t pos = 0; pos < stream.size();) {
    const auto space = d.prepare(kRead);
    ASSERT_GE(space.size(), kRead);
    // A read returns anything from one byte to the whole span.
    const std::size_t want = rng() % 4 == 0 ? space.size() : 1 + rng() % 5000;
    const std::size_t n = std::min({want, space.size(), stream.size() - pos});
    std::memcpy(space.data(), stream.data() + pos, n);
    d.commit(n);
    pos += n;
    ASSERT_EQ(drain(d, out), DecodeStatus::need_more);
    if (d.buffered() == 0) {
      d.release_if_empty();
      ASSERT_EQ(d.capacity(), 0U);
      ++releases;
    }
  }
  EXPECT_EQ(out, expected);
  EXPECT_GT(releases, 0U);
}

TEST(FrameDecoder, RandomStreamAtRandomChunkSizesMatchesExpected) {
  for (std::uint64_t seed : {1ULL, 2ULL, 0xC0FFEEULL}) {
    for (bool pooled : {false, true}) {
      SCOPED_TRACE(testing::Message() << "seed=" << seed << " pooled=" << pooled);
      std::mt19937_64 rng(seed);
      constexpr std::size_t kMax = 5000;
      std::string stream;
      std::vector<Decoded> expected;
      for (int i = 0; i < 3000; ++i) {
        // Destinations with zero bytes in every position.
        std::uint32_t dest = static_cast<std::uint32_t>(rng());
        dest &= rng() % 2 == 0 ? 0x00FFFF00U : 0xFF0000FFU;
        const std::size_t r = rng() % 100;
        const std::size_t len = r < 10 ? 0 : r < 90 ? rng() % 200 : r < 99 ? rng() % kMax : kMax;
        std::string payload(len, 'x');
        for (char& ch : payload) ch = static_cast<char>(1 + rng() % 255);  // anything but NUL
        stream += frame_bytes(dest, payload);
        expected.push_back(decoded(dest, payload));
      }
      BlockPool pool(4096, 4);
      FrameDecoder d(kMax, pooled ? &pool : nullptr);
      std::vector<Decoded> out;
      for (std::size_t pos = 0; pos < stream.size();) {
        const std::size_t r = rng() % 10;
        const std::size_t want = r < 4 ? 1 + rng() % 8 : r < 8 ? 1 + rng() % 1000 : 1 + rng() % 20000;
        const std::size_t n = std::min(want, stream.size() - pos);
        feed(d, std::string_view(stream).substr(pos, n));
        pos += n;
        // Sometimes peek twice before popping, as a paused engine does.
        for (;;) {
          Frame f{};
          const DecodeStatus st = d.peek(f);
          if (st != DecodeStatus::frame) {
            ASSERT_EQ(st, DecodeStatus::need_more);
            break;
          }
          const Decoded first = to_decoded(f);
          if (rng() % 4 == 0) {
            Frame again{};
            ASSERT_EQ(d.peek(again), DecodeStatus::frame);
            ASSERT_EQ(to_decoded(again), first);
          }
          out.push_back(first);
          d.pop();
        }
        if (rng() % 3 == 0) d.release_if_empty();
      }
      EXPECT_EQ(out.size(), expected.size());
      EXPECT_TRUE(out == expected);
      EXPECT_EQ(d.buffered(), 0U);
    }
  }
}

}  // namespace
