// Protocol v2 (DESIGN.md section 1b, docs/PROTOCOL.md): constants, the
// upgrade hello's parser and the encoders for everything the server sends in
// v2. Pure functions: no sockets, no clocks, no allocation on the per-message
// path (the DELIVER and PONG headers are fixed-size arrays; the strings are
// for the hello exchange and ERROR frames, which are not per message).
//
//   after the upgrade, both directions:  [u32 length L][u8 type][L-1 bytes of body]
//   client -> server   0x01 SEND     [u32 destination][payload]
//                      0x02 PING     [0..64 opaque bytes]
//   server -> client   0x81 DELIVER  [u32 source ID][payload]
//                      0x82 PONG     [the PING's bytes]
//                      0x83 ERROR    [u8 code][u32 subject ID][reason, UTF-8]
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "protocol/client_id.hpp"

namespace sb::protocol {

// IDs 0xFFFFFF00..0xFFFFFFFF are never given to a client; 0xFFFFFFFF is the
// server itself (the destination of the hello).
inline constexpr std::uint32_t kFirstReservedId = 0xFFFFFF00u;
inline constexpr std::uint32_t kServerId = 0xFFFFFFFFu;
constexpr bool is_reserved(ClientId id) noexcept { return to_u32(id) >= kFirstReservedId; }

inline constexpr std::size_t kLengthSize = 4;        // the u32 L
inline constexpr std::size_t kV2HeaderSize = 5;      // L and the type byte
inline constexpr std::size_t kSendOverhead = 5;      // type + destination: L = payload + 5
inline constexpr std::size_t kDeliverHeaderSize = 9; // L, type, source
inline constexpr std::size_t kMaxPingBody = 64;

enum class FrameType : std::uint8_t {
  v1 = 0x00,  // not on the wire: a v1 frame, [u32 destination][payload][0x00]
  send = 0x01,
  ping = 0x02,
  deliver = 0x81,
  pong = 0x82,
  error = 0x83,
};

enum class ErrorCode : std::uint8_t {
  no_route = 1,           // subject: the destination; the frame was dropped
  slow_consumer = 2,      // subject: the destination; dropped by the `drop` policy or being closed as slow
  not_representable = 3,  // subject: the destination, a v1 client; the payload holds a 0x00
  too_large = 4,          // subject: the sender's own ID; the connection is closed
  bad_frame = 5,          // subject: 0; the connection is closed
};
// "no_route", "slow_consumer", ...: the names of DESIGN.md's table.
std::string_view to_string(ErrorCode code) noexcept;

// ---- Server -> client encoders ----

// The 9 bytes before a DELIVER's payload: L = 5 + payload_size, 0x81, source.
std::array<char, kDeliverHeaderSize> encode_deliver_header(ClientId source, std::size_t payload_size) noexcept;
// The 5 bytes before a PONG's body (body_size <= kMaxPingBody).
std::array<char, kV2HeaderSize> encode_pong_header(std::size_t body_size) noexcept;
// A whole ERROR frame.
std::string encode_error(ErrorCode code, std::uint32_t subject, std::string_view reason);

// The hello exchange's replies, each sent as one v1 delivery (the caller
// adds the NUL):
//   switchboard/2 ok nonce=<NONCE> id=<ID> max_frame=<BYTES>
//   switchboard/1 ok id=<ID>
//   switchboard/2 error[ nonce=<NONCE>] <reason>     (nonce when the hello held a well-formed one)
//   switchboard/1 error <reason>
std::string encode_welcome(std::string_view nonce, ClientId id, std::size_t max_frame);
std::string encode_v1_ok(ClientId id);
std::string encode_hello_error(int version, std::string_view nonce, std::string_view reason);

// ---- The hello ----

// A v1 frame to kServerId whose payload begins with this is a hello (valid
// or not); any other payload to kServerId is an ordinary no_route.
inline constexpr std::string_view kHelloPrefix = "switchboard/";
bool is_hello(std::span<const char> payload) noexcept;

struct Hello {
  int version = 2;                        // 1 or 2
  std::string_view nonce;                 // v2: 16..64 of [0-9a-f]; v1: empty unless given (then well-formed)
  std::optional<std::string_view> token;  // 1..256 bytes of 0x21..0x7E, when given
};

// What parse_hello made of a payload. Views point into that payload.
struct HelloParse {
  enum class Status { ok, not_a_hello, invalid } status = Status::not_a_hello;
  Hello hello;  // status ok
  // status invalid: the version the error reply is written in (1 when the
  // first word was `switchboard/1`, else 2), a well-formed nonce if the hello
  // held one (else empty), and a one-word reason for the reply:
  //   unsupported_version  the first word is switchboard/<anything but 1 or 2>
  //   missing_nonce        v2 without nonce=
  //   bad_nonce            a nonce that is not 16..64 of [0-9a-f]
  //   bad_token            a token that is not 1..256 bytes of 0x21..0x7E
  //   repeated_field       a key given twice
  //   malformed            anything else: a word without `=`, an empty word
  //                        (double, leading or trailing space), a bad key,
  //                        a byte outside 0x21..0x7E
  int reply_version = 2;
  std::string_view nonce;
  std::string_view reason;
};

// Pure: the fields of DESIGN.md 1b. Well-formed fields it does not know
// (key of [a-z0-9_-]+, value of 0..n bytes in 0x21..0x7E) are ignored.
HelloParse parse_hello(std::span<const char> payload) noexcept;

// Constant-time comparison of a presented token with a listed one: the time
// taken depends on the lengths only, never on where they first differ.
bool tokens_equal(std::string_view presented, std::string_view listed) noexcept;

}  // namespace sb::protocol
