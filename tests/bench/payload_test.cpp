#include "bench/payload.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <string>

namespace sb::bench {
namespace {

std::string make(const MessageHeader& h, std::size_t size) {
  std::string s(size, '\0');
  encode_payload(h, s);
  return s;
}

TEST(Payload, RoundTripsAtEverySizeFromTheMinimum) {
  for (std::size_t size = kMinPayloadSize; size < kMinPayloadSize + 80; ++size) {
    const MessageHeader h{7, size * 1000 + 3, 123456789012345ULL};
    const std::string p = make(h, size);
    const auto back = decode_payload(p, size);
    ASSERT_TRUE(back.has_value()) << "size " << size;
    EXPECT_EQ(*back, h);
  }
}

TEST(Payload, NeverHoldsANulByteEvenForExtremeFields) {
  const std::uint64_t big = std::numeric_limits<std::uint64_t>::max();
  for (const MessageHeader& h : {MessageHeader{0, 0, 0}, MessageHeader{0xffffffffu, big, big},
                                 MessageHeader{0x01000000u, 0x0100000000000000ULL, 256}}) {
    const std::string p = make(h, 4096 + 17);
    EXPECT_EQ(p.find('\0'), std::string::npos);
    EXPECT_EQ(p.find('\r'), std::string::npos);
    EXPECT_EQ(p.find('\n'), std::string::npos);
    EXPECT_EQ(decode_payload(p, p.size()), h);
  }
}

TEST(Payload, LargePayloadRoundTrips) {
  const MessageHeader h{3, 99, 42};
  const std::string p = make(h, kMaxPayloadSize);
  EXPECT_EQ(decode_payload(p, p.size()), h);
}

TEST(Payload, AnySingleByteChangeIsCaught) {
  const std::string good = make({5, 17, 1000}, 96);
  for (std::size_t i = 0; i < good.size(); ++i) {
    // Out of alphabet (not a hex digit, not padding) ...
    std::string bad = good;
    bad[i] = static_cast<char>(bad[i] == 'x' ? 'y' : 'x');
    EXPECT_FALSE(decode_payload(bad, bad.size()).has_value()) << "byte " << i;
    // ... and within it: another hex digit in the header, another letter in
    // the padding, so that only the checksum or the padding rule can tell.
    bad = good;
    const char c = good[i];
    bad[i] = i < kMinPayloadSize ? (c == '0' ? '1' : '0') : (c == 'A' ? 'B' : 'A');
    EXPECT_FALSE(decode_payload(bad, bad.size()).has_value()) << "byte " << i << " within the alphabet";
  }
}

TEST(Payload, ChecksumCoversFieldsThePaddingDoesNotDependOn) {
  const std::string good = make({5, 17, 1000}, 64);
  std::string bad = good;
  bad[30] = good[30] == '0' ? '1' : '0';  // a digit of the send time
  EXPECT_FALSE(decode_payload(bad, bad.size()).has_value());
  bad = good;
  bad[3] = good[3] == '0' ? '1' : '0';  // a digit of the stream ID
  EXPECT_FALSE(decode_payload(bad, bad.size()).has_value());
}

TEST(Payload, WrongLengthIsCorrupt) {
  const std::string p = make({1, 2, 3}, 64);
  EXPECT_FALSE(decode_payload(p.substr(0, 63), 64).has_value());
  EXPECT_FALSE(decode_payload(p + "A", 64).has_value());
  EXPECT_FALSE(decode_payload(p, 65).has_value());
}

TEST(Payload, PaddingOfAnotherMessageIsCaught) {
  // Same header, padding taken from a message with another sequence number.
  std::string a = make({1, 10, 5}, 120);
  const std::string b = make({1, 11, 5}, 120);
  std::copy(b.begin() + kMinPayloadSize, b.end(), a.begin() + kMinPayloadSize);
  EXPECT_FALSE(decode_payload(a, a.size()).has_value());
}

}  // namespace
}  // namespace sb::bench
