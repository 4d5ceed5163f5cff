// The three client protocols the bench speaks, as sans-IO parsers and
// encoders: switchboard v1, the NATS client protocol (text), and RESP2 pub/sub
// (Redis). Each parser is fed the bytes received so far, reports what it
// found to a sink, and returns how many bytes it consumed; the caller keeps
// the rest for the next read. A message split across reads is simply left
// unconsumed and parsed again whole, which costs a re-scan of one header.
//
// The NATS and RESP parsers are written here, not taken from hiredis or a
// NATS client, because the bench needs exactly the handful of reply shapes
// below, with no allocation per message on the receive path (hiredis builds a
// reply object per message), on a socket the bench's own epoll loop owns.
//
// A sink provides:
//   on_greeting(std::uint32_t id)          switchboard: the 4-byte ID
//   on_message(std::string_view payload)   a delivered message
//   on_ready()                             NATS PONG, Redis subscribe confirmation or +PONG
//   on_ping()                              NATS PING (the caller answers PONG)
//   on_publish_reply(std::int64_t n)       Redis PUBLISH reply: receivers reached
//   on_server_error(std::string_view)      NATS -ERR, Redis -ERR
//   on_protocol_error(std::string_view)    bytes that fit no rule: the caller closes
#pragma once

#include <charconv>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "protocol/wire.hpp"

namespace sb::bench {

// switchboard_v2: the client upgrades with a hello (DESIGN.md 1b) and then
// sends SEND frames and reads DELIVER frames, whose source the bench checks.
enum class PeerProtocol { switchboard, switchboard_v2, nats, redis };

// What a sender writes around each payload to reach one destination.
struct Envelope {
  std::string prefix;
  std::string suffix;
};

Envelope switchboard_envelope(std::uint32_t destination_id);
Envelope switchboard_v2_envelope(std::uint32_t destination_id, std::size_t payload_size);
// The v1 frame that asks for v2: [0xFFFFFFFF]switchboard/2 nonce=<nonce>[NUL].
std::string switchboard_v2_hello(std::string_view nonce);
Envelope nats_envelope(std::string_view subject, std::size_t payload_size);
Envelope redis_envelope(std::string_view channel, std::size_t payload_size);

// Sent once a connection is up; the reply to the last command is the
// "ready" signal (PONG / subscribe confirmation), so that no message is sent
// before the subscription exists.
std::string nats_handshake(std::string_view subject);
std::string redis_subscribe(std::string_view channel);
std::string redis_ping();
inline constexpr std::string_view kNatsPong = "PONG\r\n";

class SwitchboardParser {
 public:
  template <class Sink>
  std::size_t parse(std::string_view in, Sink& sink) {
    std::size_t pos = 0;
    if (!greeted_) {
      if (in.size() < protocol::kIdSize) return 0;
      sink.on_greeting(protocol::load_be32(in.data()));
      greeted_ = true;
      pos = protocol::kIdSize;
    }
    while (pos < in.size()) {
      const void* nul = std::memchr(in.data() + pos, 0, in.size() - pos);
      if (nul == nullptr) break;
      const std::size_t end = static_cast<std::size_t>(static_cast<const char*>(nul) - in.data());
      sink.on_message(in.substr(pos, end - pos));
      pos = end + 1;
    }
    return pos;
  }

 private:
  bool greeted_ = false;
};

// v2 after the hello: v1 deliveries until the welcome that carries this
// connection's nonce, then [u32 L][u8 type][body] frames. Sink extras:
//   on_delivery(std::uint32_t source, std::string_view payload)   a DELIVER
//   on_ready()                                                     the welcome
class SwitchboardV2Parser {
 public:
  void set_nonce(std::string nonce) {
    welcome_ = "switchboard/2 ok nonce=" + nonce + " ";
    nonce_ = std::move(nonce);
  }
  const std::string& nonce() const noexcept { return nonce_; }

  template <class Sink>
  std::size_t parse(std::string_view in, Sink& sink) {
    std::size_t pos = 0;
    if (!greeted_) {
      if (in.size() < protocol::kIdSize) return 0;
      sink.on_greeting(protocol::load_be32(in.data()));
      greeted_ = true;
      pos = protocol::kIdSize;
    }
    while (!welcomed_ && pos < in.size()) {
      const void* nul = std::memchr(in.data() + pos, 0, in.size() - pos);
      if (nul == nullptr) return pos;
      const std::size_t end = static_cast<std::size_t>(static_cast<const char*>(nul) - in.data());
      const std::string_view text = in.substr(pos, end - pos);
      pos = end + 1;
      if (text.starts_with(welcome_)) {
        welcomed_ = true;
        sink.on_ready();
      } else if (text.starts_with("switchboard/2 error")) {
        sink.on_protocol_error(std::string("the server refused the v2 hello: ") + std::string(text));
        return pos;
      } else {
        sink.on_message(text);  // a v1 delivery from before the upgrade
      }
    }
    while (welcomed_ && in.size() - pos >= 4) {
      const std::uint32_t length = protocol::load_be32(in.data() + pos);
      if (length == 0) {
        sink.on_protocol_error("v2 frame with L = 0 from the server");
        return pos;
      }
      if (in.size() - pos - 4 < length) break;
      const auto type = static_cast<unsigned char>(in[pos + 4]);
      const std::string_view body = in.substr(pos + 5, length - 1);
      if (type == 0x81 && body.size() >= 4) {
        sink.on_delivery(protocol::load_be32(body.data()), body.substr(4));
      } else if (type == 0x83 && body.size() >= 5) {
        sink.on_server_error("ERROR " + std::to_string(static_cast<unsigned char>(body[0])) + " subject " +
                             std::to_string(protocol::load_be32(body.data() + 1)) + ": " +
                             std::string(body.substr(5)));
      } else if (type != 0x82) {
        sink.on_protocol_error("unexpected v2 frame from the server");
        return pos;
      }
      pos += 4 + length;
    }
    return pos;
  }

 private:
  std::string nonce_;
  std::string welcome_;
  bool greeted_ = false;
  bool welcomed_ = false;
};

namespace detail {

inline bool to_u64(std::string_view s, std::uint64_t& v) noexcept {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return ec == std::errc{} && p == s.data() + s.size() && !s.empty();
}

inline bool to_i64(std::string_view s, std::int64_t& v) noexcept {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return ec == std::errc{} && p == s.data() + s.size() && !s.empty();
}

// Position of the "\r\n" at or after `from`, or npos.
inline std::size_t find_crlf(std::string_view in, std::size_t from) noexcept {
  while (from < in.size()) {
    const void* lf = std::memchr(in.data() + from, '\n', in.size() - from);
    if (lf == nullptr) return std::string_view::npos;
    const std::size_t at = static_cast<std::size_t>(static_cast<const char*>(lf) - in.data());
    if (at > 0 && in[at - 1] == '\r') return at - 1;
    from = at + 1;
  }
  return std::string_view::npos;
}

}  // namespace detail

// NATS server -> client: INFO, MSG, PING, PONG, +OK, -ERR (HMSG is never sent
// to a client that did not ask for headers).
class NatsParser {
 public:
  template <class Sink>
  std::size_t parse(std::string_view in, Sink& sink) {
    std::size_t pos = 0;
    while (pos < in.size()) {
      const std::size_t eol = detail::find_crlf(in, pos);
      if (eol == std::string_view::npos) break;
      const std::string_view line = in.substr(pos, eol - pos);
      const std::size_t after = eol + 2;
      if (line.starts_with("MSG ")) {
        // MSG <subject> <sid> [reply-to] <#bytes>
        std::string_view tokens[5];
        std::size_t n = 0;
        for (std::size_t i = 4; i < line.size() && n < 5;) {
          while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
          const std::size_t start = i;
          while (i < line.size() && line[i] != ' ' && line[i] != '\t') ++i;
          if (i > start) tokens[n++] = line.substr(start, i - start);
        }
        std::uint64_t bytes = 0;
        if (n < 3 || n > 4 || !detail::to_u64(tokens[n - 1], bytes)) {
          sink.on_protocol_error("malformed NATS MSG line");
          return pos;
        }
        if (in.size() - after < bytes + 2) break;  // wait for the whole payload
        if (in[after + bytes] != '\r' || in[after + bytes + 1] != '\n') {
          sink.on_protocol_error("NATS payload not followed by CRLF");
          return pos;
        }
        sink.on_message(in.substr(after, bytes));
        pos = after + bytes + 2;
        continue;
      }
      if (line == "PING") {
        sink.on_ping();
      } else if (line == "PONG") {
        sink.on_ready();
      } else if (line.starts_with("-ERR")) {
        sink.on_server_error(line);
      } else if (!line.starts_with("INFO") && line != "+OK") {
        sink.on_protocol_error("unexpected NATS line");
        return pos;
      }
      pos = after;
    }
    return pos;
  }
};

// RESP2 replies a pub/sub client sees: arrays of bulk strings and integers
// (["message", channel, payload], ["subscribe", channel, count]), integers
// (PUBLISH's receiver count), simple strings (+PONG) and errors.
class RespParser {
 public:
  template <class Sink>
  std::size_t parse(std::string_view in, Sink& sink) {
    std::size_t pos = 0;
    while (pos < in.size()) {
      Item items[kMaxItems];
      std::size_t count = 0;
      const std::size_t used = parse_reply(in.substr(pos), items, count);
      if (used == kIncomplete) break;
      if (used == kBad) {
        sink.on_protocol_error("malformed RESP reply");
        return pos;
      }
      dispatch(items, count, sink);
      pos += used;
    }
    return pos;
  }

 private:
  enum class Kind { bulk, integer, simple, error, array };
  struct Item {
    Kind kind = Kind::simple;
    std::string_view text;
    std::int64_t number = 0;
  };
  static constexpr std::size_t kMaxItems = 4;
  static constexpr std::size_t kIncomplete = ~std::size_t{0};
  static constexpr std::size_t kBad = kIncomplete - 1;

  // One scalar at the start of `in`: its length in bytes, kIncomplete or kBad.
  static std::size_t parse_scalar(std::string_view in, Item& item) {
    const std::size_t eol = detail::find_crlf(in, 0);
    if (eol == std::string_view::npos) return in.size() > std::size_t{64} * 1024 ? kBad : kIncomplete;
    const std::string_view rest = in.substr(1, eol - 1);
    switch (in[0]) {
      case '+':
        item = {Kind::simple, rest, 0};
        return eol + 2;
      case '-':
        item = {Kind::error, rest, 0};
        return eol + 2;
      case ':':
        item.kind = Kind::integer;
        return detail::to_i64(rest, item.number) ? eol + 2 : kBad;
      case '$': {
        std::int64_t len = 0;
        if (!detail::to_i64(rest, len) || len < -1) return kBad;
        if (len == -1) {
          item = {Kind::bulk, {}, -1};
          return eol + 2;
        }
        const std::size_t need = eol + 2 + static_cast<std::size_t>(len) + 2;
        if (in.size() < need) return kIncomplete;
        if (in[need - 2] != '\r' || in[need - 1] != '\n') return kBad;
        item = {Kind::bulk, in.substr(eol + 2, static_cast<std::size_t>(len)), len};
        return need;
      }
      default:
        return kBad;
    }
  }

  static std::size_t parse_reply(std::string_view in, Item* items, std::size_t& count) {
    if (in[0] != '*') {
      count = 1;
      return parse_scalar(in, items[0]);
    }
    const std::size_t eol = detail::find_crlf(in, 0);
    if (eol == std::string_view::npos) return in.size() > 64 ? kBad : kIncomplete;
    std::int64_t n = 0;
    if (!detail::to_i64(in.substr(1, eol - 1), n) || n < 0 || n > static_cast<std::int64_t>(kMaxItems))
      return kBad;
    std::size_t pos = eol + 2;
    count = static_cast<std::size_t>(n);
    for (std::size_t i = 0; i < count; ++i) {
      if (pos >= in.size()) return kIncomplete;
      if (in[pos] == '*') return kBad;  // pub/sub replies never nest
      const std::size_t used = parse_scalar(in.substr(pos), items[i]);
      if (used == kIncomplete || used == kBad) return used;
      pos += used;
    }
    return pos;
  }

  template <class Sink>
  static void dispatch(const Item* items, std::size_t count, Sink& sink) {
    if (count == 1 && items[0].kind != Kind::bulk) {
      const Item& it = items[0];
      if (it.kind == Kind::integer) {
        sink.on_publish_reply(it.number);
      } else if (it.kind == Kind::error) {
        sink.on_server_error(it.text);
      } else if (it.text == "PONG") {
        sink.on_ready();
      }
      return;  // +OK and other simple strings need nothing
    }
    if (count >= 1 && items[0].kind == Kind::bulk) {
      const std::string_view kind = items[0].text;
      if (kind == "message" && count == 3 && items[2].kind == Kind::bulk) {
        sink.on_message(items[2].text);
        return;
      }
      if (kind == "subscribe" && count == 3) {
        sink.on_ready();
        return;
      }
    }
    sink.on_protocol_error("unexpected RESP reply");
  }
};

}  // namespace sb::bench
