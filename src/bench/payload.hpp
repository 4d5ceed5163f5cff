// The bench's message payload: who sent it, its place in the sender's
// sequence, when it was sent, and a checksum, padded to the payload size.
//
// Layout (S = payload size, at least kMinPayloadSize bytes):
//
//   [0]        'm'                        marker
//   [1, 9)     stream id, 8 hex digits    the sending stream (one sender -> one receiver)
//   [9, 25)    sequence, 16 hex digits    0, 1, 2, ... per stream
//   [25, 41)   sent at, 16 hex digits     steady_clock nanoseconds
//   [41, 49)   checksum, 8 hex digits     a 64-bit word hash of bytes [0, 41) and [49, S), folded to 32
//   [49, S)    padding                    'A' + (sequence + offset) % 26
//
// Every byte is printable ASCII, so a payload never holds the NUL that ends
// a switchboard frame, nor anything NATS or RESP framing could trip on. Hex
// costs a few bytes over binary but needs no escaping. The padding depends on
// the sequence number, so a receiver notices a payload whose tail was swapped
// with another message's, not only a flipped byte.
//
// Pure functions: no sockets, no clocks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

namespace sb::bench {

inline constexpr std::size_t kMinPayloadSize = 49;
inline constexpr std::size_t kMaxPayloadSize = std::size_t{1} << 20;  // the server's default --max-frame

struct MessageHeader {
  std::uint32_t stream = 0;
  std::uint64_t sequence = 0;
  std::uint64_t sent_ns = 0;
  friend bool operator==(const MessageHeader&, const MessageHeader&) = default;
};

// Writes one payload of exactly out.size() bytes (>= kMinPayloadSize).
void encode_payload(const MessageHeader& header, std::span<char> out) noexcept;

// Decodes and checks marker, hex fields, checksum and padding. nullopt means
// corrupt (including a wrong length: every payload of a run has one size).
std::optional<MessageHeader> decode_payload(std::string_view payload, std::size_t expected_size) noexcept;

}  // namespace sb::bench
