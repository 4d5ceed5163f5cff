#include "bench/payload.hpp"

#include <algorithm>
#include <array>
#include <cstring>

namespace sb::bench {

namespace {

constexpr std::size_t kStreamAt = 1;
constexpr std::size_t kSequenceAt = 9;
constexpr std::size_t kSentAt = 25;
constexpr std::size_t kChecksumAt = 41;
constexpr std::size_t kPaddingAt = 49;
static_assert(kPaddingAt == kMinPayloadSize);

constexpr char kHexDigits[] = "0123456789abcdef";

// 'A'..'Z' repeated twice plus a 26-byte run, so that padding of any length
// starting at any phase is a single memcpy/memcmp per kPatternChunk bytes.
constexpr std::size_t kPatternChunk = 4096;
constexpr std::array<char, kPatternChunk + 26> make_pattern() {
  std::array<char, kPatternChunk + 26> p{};
  for (std::size_t i = 0; i < p.size(); ++i) p[i] = static_cast<char>('A' + i % 26);
  return p;
}
constexpr auto kPattern = make_pattern();

// Hex through tables: a byte to its two digits, a digit to its value (0x10
// and up for anything else). Encoding and checking every payload is most of
// the bench's own CPU, so the generator would otherwise be the bottleneck.
constexpr std::array<std::array<char, 2>, 256> make_hex_pairs() {
  constexpr char digits[] = "0123456789abcdef";
  std::array<std::array<char, 2>, 256> t{};
  for (std::size_t i = 0; i < 256; ++i) t[i] = {digits[i >> 4], digits[i & 0xf]};
  return t;
}
constexpr auto kHexPairs = make_hex_pairs();

constexpr std::array<std::uint8_t, 256> make_hex_values() {
  std::array<std::uint8_t, 256> t{};
  for (auto& v : t) v = 0xff;
  for (int c = '0'; c <= '9'; ++c) t[static_cast<std::size_t>(c)] = static_cast<std::uint8_t>(c - '0');
  for (int c = 'a'; c <= 'f'; ++c) t[static_cast<std::size_t>(c)] = static_cast<std::uint8_t>(c - 'a' + 10);
  return t;
}
constexpr auto kHexValues = make_hex_values();

template <std::size_t Digits>
void put_hex(char* out, std::uint64_t v) noexcept {
  static_assert(Digits % 2 == 0);
  for (std::size_t i = Digits / 2; i-- > 0;) {
    std::memcpy(out + 2 * i, kHexPairs[v & 0xff].data(), 2);
    v >>= 8;
  }
}

template <std::size_t Digits>
bool get_hex(const char* in, std::uint64_t& v) noexcept {
  std::uint64_t r = 0;
  unsigned bad = 0;
  for (std::size_t i = 0; i < Digits; ++i) {
    const unsigned d = kHexValues[static_cast<unsigned char>(in[i])];
    bad |= d;
    r = (r << 4) | (d & 0xf);
  }
  v = r;
  return (bad & 0xf0) == 0;
}

// A word-at-a-time hash. Each step (xor the word in, multiply by an odd
// constant, xor-shift) is a bijection of the word for a given state, so a
// change confined to one 8-byte word, any single byte among them, always
// changes the 64-bit state; folded to the 32 bits the payload carries,
// other corruptions slip through with odds of about 2^-32. Byte-at-a-time
// FNV-1a did the same job at a quarter of the speed.
std::uint64_t mix(std::uint64_t h, const char* p, std::size_t n) noexcept {
  auto step = [](std::uint64_t state, std::uint64_t word) {
    state = (state ^ word) * 0x9e3779b97f4a7c15ULL;
    return state ^ (state >> 32);
  };
  for (; n >= 8; p += 8, n -= 8) {
    std::uint64_t w = 0;
    std::memcpy(&w, p, 8);
    h = step(h, w);
  }
  if (n > 0) {
    std::uint64_t w = 0;
    std::memcpy(&w, p, n);
    h = step(h, w);
  }
  return h;
}

std::uint32_t checksum(const char* p, std::size_t size) noexcept {
  const std::uint64_t h = mix(mix(0x243f6a8885a308d3ULL, p, kChecksumAt), p + kPaddingAt, size - kPaddingAt);
  return static_cast<std::uint32_t>(h ^ (h >> 32));
}

std::size_t padding_phase(std::uint64_t sequence) noexcept {
  return static_cast<std::size_t>((sequence + kPaddingAt) % 26);
}

}  // namespace

void encode_payload(const MessageHeader& header, std::span<char> out) noexcept {
  char* p = out.data();
  const std::size_t size = out.size();
  p[0] = 'm';
  put_hex<8>(p + kStreamAt, header.stream);
  put_hex<16>(p + kSequenceAt, header.sequence);
  put_hex<16>(p + kSentAt, header.sent_ns);
  std::size_t phase = padding_phase(header.sequence);
  for (std::size_t at = kPaddingAt; at < size;) {
    const std::size_t n = std::min(kPatternChunk, size - at);
    std::memcpy(p + at, kPattern.data() + phase, n);
    phase = (phase + n) % 26;
    at += n;
  }
  put_hex<8>(p + kChecksumAt, checksum(p, size));
}

std::optional<MessageHeader> decode_payload(std::string_view payload, std::size_t expected_size) noexcept {
  if (payload.size() != expected_size || payload.size() < kMinPayloadSize || payload[0] != 'm') {
    return std::nullopt;
  }
  const char* p = payload.data();
  std::uint64_t stream = 0;
  std::uint64_t sum = 0;
  MessageHeader h;
  if (!get_hex<8>(p + kStreamAt, stream) || !get_hex<16>(p + kSequenceAt, h.sequence) ||
      !get_hex<16>(p + kSentAt, h.sent_ns) || !get_hex<8>(p + kChecksumAt, sum)) {
    return std::nullopt;
  }
  h.stream = static_cast<std::uint32_t>(stream);
  if (sum != checksum(p, payload.size())) return std::nullopt;
  std::size_t phase = padding_phase(h.sequence);
  for (std::size_t at = kPaddingAt; at < payload.size();) {
    const std::size_t n = std::min(kPatternChunk, payload.size() - at);
    if (std::memcmp(p + at, kPattern.data() + phase, n) != 0) return std::nullopt;
    phase = (phase + n) % 26;
    at += n;
  }
  return h;
}

}  // namespace sb::bench
