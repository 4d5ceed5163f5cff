// Protocol v2 from the test's side (DESIGN.md 1b): frame bytes, a parser,
// and a client after its upgrade. Shared by the v2 suite and the cluster's.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <deque>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "harness.hpp"

namespace sb::itest {

inline constexpr std::uint32_t kServerId = 0xFFFFFFFFu;
inline constexpr std::uint32_t kFirstReserved = 0xFFFFFF00u;

inline constexpr std::uint8_t kSend = 0x01;
inline constexpr std::uint8_t kPing = 0x02;
inline constexpr std::uint8_t kDeliver = 0x81;
inline constexpr std::uint8_t kPong = 0x82;
inline constexpr std::uint8_t kError = 0x83;

enum Code : std::uint8_t {
  no_route = 1,
  slow_consumer = 2,
  not_representable = 3,
  too_large = 4,
  bad_frame = 5
};

// ---------------------------------------------------------------------------
// v2 bytes

inline std::string v2_frame(std::uint8_t type, std::string_view body) {
  std::string out = be32(static_cast<std::uint32_t>(1 + body.size()));
  out.push_back(static_cast<char>(type));
  out.append(body);
  return out;
}
inline std::string v2_send(std::uint32_t dest, std::string_view payload) {
  return v2_frame(kSend, be32(dest) + std::string(payload));
}
inline std::string v2_ping(std::string_view body) {
  return v2_frame(kPing, body);
}

// Every byte value, NUL included: what v1 cannot carry.
inline std::string all_bytes() {
  std::string s(256, '\0');
  for (int i = 0; i < 256; ++i) s[static_cast<std::size_t>(i)] = static_cast<char>(i);
  return s;
}

struct V2Frame {
  std::uint8_t type = 0;
  std::string body;

  // DELIVER: [u32 source][payload]
  std::uint32_t source() const { return from_be32(std::string_view(body).substr(0, 4)); }
  std::string payload() const { return body.substr(4); }
  // ERROR: [u8 code][u32 subject][reason]
  std::uint8_t code() const { return static_cast<std::uint8_t>(body.at(0)); }
  std::uint32_t subject() const { return from_be32(std::string_view(body).substr(1, 4)); }
  std::string reason() const { return body.substr(5); }

  std::string describe() const {
    std::string s = "type 0x" + std::to_string(type) + " (" + std::to_string(body.size()) + " body bytes)";
    if (type == kError && body.size() >= 5) {
      s = "ERROR code " + std::to_string(code()) + " subject " + std::to_string(subject()) + " \"" +
          reason() + "\"";
    } else if (type == kDeliver && body.size() >= 4) {
      s = "DELIVER from " + std::to_string(source()) + " (" + std::to_string(body.size() - 4) + " bytes)";
    } else if (type == kPong) {
      s = "PONG (" + std::to_string(body.size()) + " bytes)";
    }
    return s;
  }
};

// Cuts whole v2 frames off the front of `bytes`.
inline std::deque<V2Frame> parse_v2(std::string& bytes) {
  std::deque<V2Frame> frames;
  std::size_t at = 0;
  while (bytes.size() - at >= 5) {
    const std::uint32_t length = from_be32(std::string_view(bytes).substr(at, 4));
    if (length == 0) throw HarnessError("the server sent a v2 frame with L = 0");
    if (bytes.size() - at - 4 < length) break;
    V2Frame f;
    f.type = static_cast<std::uint8_t>(bytes[at + 4]);
    f.body = bytes.substr(at + 5, length - 1);
    frames.push_back(std::move(f));
    at += 4 + length;
  }
  bytes.erase(0, at);
  return frames;
}

inline std::string random_nonce() {
  static std::mt19937_64 rng{std::random_device{}()};
  static constexpr char kHex[] = "0123456789abcdef";
  std::string n(32, '0');
  for (auto& c : n) c = kHex[rng() % 16];
  return n;
}

// A client after its upgrade: the bytes it receives are v2 frames.
class V2Client {
 public:
  explicit V2Client(Client c) : c_(std::move(c)) {}

  Client& raw() { return c_; }
  std::uint32_t id() const { return c_.id(); }
  const std::string& welcome() const { return welcome_; }
  const std::vector<std::string>& before_welcome() const { return before_; }

  // Sends the hello and reads v1 deliveries until the welcome that names
  // this nonce; the ones before it are kept (before_welcome()).
  void upgrade(const std::string& extra_fields = "") {
    const std::string nonce = random_nonce();
    c_.send_frame(kServerId, "switchboard/2 nonce=" + nonce + extra_fields, after(kIoTimeout));
    const std::string want = "switchboard/2 ok nonce=" + nonce + " ";
    for (int i = 0; i < 100000; ++i) {
      std::string f = c_.read_frame(after(kIoTimeout));
      if (f.starts_with(want)) {
        welcome_ = std::move(f);
        // Whatever came after the welcome's NUL is already v2.
        buf_ += c_.take_all();
        return;
      }
      before_.push_back(std::move(f));
    }
    throw HarnessError(c_.where() + ": no welcome among 100000 deliveries");
  }

  void queue_send(std::uint32_t dest, std::string_view payload) { c_.queue(v2_send(dest, payload)); }
  void send(std::uint32_t dest, std::string_view payload) {
    c_.send_raw(v2_send(dest, payload), after(kIoTimeout));
  }
  void ping(std::string_view body) { c_.send_raw(v2_ping(body), after(kIoTimeout)); }

  // Moves received bytes into frames; for pump() conditions.
  std::size_t poll() {
    buf_ += c_.take_all();
    for (auto& f : parse_v2(buf_)) frames_.push_back(std::move(f));
    return frames_.size();
  }
  std::deque<V2Frame>& frames() { return frames_; }

  V2Frame next(Deadline deadline) {
    pump({&c_}, deadline, [&] { return poll() > 0 || c_.end() != Client::End::open; });
    poll();
    if (frames_.empty()) {
      throw HarnessError(c_.where() + ": no v2 frame" +
                         (c_.end() == Client::End::open ? " before the deadline" : " before the end") + " (" +
                         std::to_string(buf_.size()) + " bytes of a partial frame)");
    }
    V2Frame f = std::move(frames_.front());
    frames_.pop_front();
    return f;
  }

  // Pings with `tag` and returns every frame that came before the PONG.
  std::vector<V2Frame> barrier(std::string_view tag, std::span<Client* const> background = {}) {
    c_.queue(v2_ping(tag));
    std::vector<Client*> all{&c_};
    all.insert(all.end(), background.begin(), background.end());
    std::vector<V2Frame> before;
    const Deadline deadline = after(kIoTimeout);
    for (;;) {
      pump(all, deadline, [&] { return poll() > 0 || c_.end() != Client::End::open; });
      if (poll() == 0) throw HarnessError(c_.where() + ": no PONG \"" + std::string(tag) + "\"");
      V2Frame f = std::move(frames_.front());
      frames_.pop_front();
      if (f.type == kPong && f.body == tag) return before;
      before.push_back(std::move(f));
    }
  }

  // Everything up to the server's close: the whole frames and what the
  // connection ended with.
  std::pair<std::vector<V2Frame>, Client::End> until_close() {
    auto closing = c_.read_until_close(after(kIoTimeout));
    buf_ += closing.data;
    for (auto& f : parse_v2(buf_)) frames_.push_back(std::move(f));
    std::vector<V2Frame> out(std::make_move_iterator(frames_.begin()),
                             std::make_move_iterator(frames_.end()));
    frames_.clear();
    if (!buf_.empty())
      throw HarnessError(c_.where() + ": " + std::to_string(buf_.size()) + " bytes of a cut frame");
    return {std::move(out), closing.how};
  }

 private:
  Client c_;
  std::string welcome_;
  std::vector<std::string> before_;
  std::string buf_;
  std::deque<V2Frame> frames_;
};

inline ::testing::AssertionResult is_error(const V2Frame& f, std::uint8_t code, std::uint32_t subject) {
  if (f.type != kError || f.body.size() < 5)
    return ::testing::AssertionFailure() << "not an ERROR: " << f.describe();
  if (f.code() != code || f.subject() != subject) {
    return ::testing::AssertionFailure()
           << "expected ERROR code " << int(code) << " subject " << subject << ", got " << f.describe();
  }
  return ::testing::AssertionSuccess();
}

inline ::testing::AssertionResult is_deliver(const V2Frame& f, std::uint32_t source,
                                             std::string_view payload) {
  if (f.type != kDeliver || f.body.size() < 4)
    return ::testing::AssertionFailure() << "not a DELIVER: " << f.describe();
  if (f.source() != source) {
    return ::testing::AssertionFailure() << "DELIVER from " << f.source() << ", expected from " << source;
  }
  return same_bytes(payload, f.payload());
}

}  // namespace sb::itest
