#include "protocol/v2.hpp"

#include <charconv>

#include "protocol/wire.hpp"

namespace sb::protocol {

std::string_view to_string(ErrorCode code) noexcept {
  switch (code) {
    case ErrorCode::no_route:
      return "no_route";
    case ErrorCode::slow_consumer:
      return "slow_consumer";
    case ErrorCode::not_representable:
      return "not_representable";
    case ErrorCode::too_large:
      return "too_large";
    case ErrorCode::bad_frame:
      return "bad_frame";
  }
  return "unknown";
}

std::array<char, kDeliverHeaderSize> encode_deliver_header(ClientId source,
                                                           std::size_t payload_size) noexcept {
  std::array<char, kDeliverHeaderSize> h{};
  const auto length = encode_be32(static_cast<std::uint32_t>(payload_size + 5));
  const auto src = encode_be32(to_u32(source));
  for (std::size_t i = 0; i < 4; ++i) h[i] = length[i];
  h[4] = static_cast<char>(FrameType::deliver);
  for (std::size_t i = 0; i < 4; ++i) h[5 + i] = src[i];
  return h;
}

std::array<char, kV2HeaderSize> encode_pong_header(std::size_t body_size) noexcept {
  std::array<char, kV2HeaderSize> h{};
  const auto length = encode_be32(static_cast<std::uint32_t>(body_size + 1));
  for (std::size_t i = 0; i < 4; ++i) h[i] = length[i];
  h[4] = static_cast<char>(FrameType::pong);
  return h;
}

std::string encode_error(ErrorCode code, std::uint32_t subject, std::string_view reason) {
  std::string out;
  out.reserve(10 + reason.size());
  const auto length = encode_be32(static_cast<std::uint32_t>(1 + 1 + 4 + reason.size()));
  out.append(length.data(), length.size());
  out.push_back(static_cast<char>(FrameType::error));
  out.push_back(static_cast<char>(code));
  const auto subj = encode_be32(subject);
  out.append(subj.data(), subj.size());
  out.append(reason);
  return out;
}

namespace {

void append_number(std::string& out, std::uint64_t v) {
  char buf[24];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

constexpr bool printable(char c) noexcept {
  const auto u = static_cast<unsigned char>(c);
  return u >= 0x21 && u <= 0x7E;
}

constexpr bool key_char(char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
}

constexpr bool well_formed_nonce(std::string_view v) noexcept {
  if (v.size() < 16 || v.size() > 64) return false;
  for (const char c : v)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

constexpr bool well_formed_token(std::string_view v) noexcept {
  if (v.empty() || v.size() > 256) return false;
  for (const char c : v)
    if (!printable(c)) return false;
  return true;
}

}  // namespace

std::string encode_welcome(std::string_view nonce, ClientId id, std::size_t max_frame) {
  std::string out = "switchboard/2 ok nonce=";
  out.append(nonce);
  out.append(" id=");
  append_number(out, to_u32(id));
  out.append(" max_frame=");
  append_number(out, max_frame);
  return out;
}

std::string encode_v1_ok(ClientId id) {
  std::string out = "switchboard/1 ok id=";
  append_number(out, to_u32(id));
  return out;
}

std::string encode_hello_error(int version, std::string_view nonce, std::string_view reason) {
  std::string out = version == 1 ? "switchboard/1 error" : "switchboard/2 error";
  if (version != 1 && !nonce.empty()) {
    out.append(" nonce=");
    out.append(nonce);
  }
  out.push_back(' ');
  out.append(reason);
  return out;
}

bool is_hello(std::span<const char> payload) noexcept {
  return std::string_view(payload.data(), payload.size()).starts_with(kHelloPrefix);
}

// One pass over the words, then the checks in a fixed order, so that a hello
// with several faults always gets the same reason: unsupported_version,
// malformed, repeated_field, bad_nonce, bad_token, missing_nonce
// (docs/PROTOCOL.md).
HelloParse parse_hello(std::span<const char> payload) noexcept {
  HelloParse r;
  const std::string_view text(payload.data(), payload.size());
  if (!text.starts_with(kHelloPrefix)) return r;  // not_a_hello

  const std::size_t first_end = text.find(' ');
  const std::string_view first = text.substr(0, first_end);
  const std::string_view version = first.substr(kHelloPrefix.size());
  int v = 0;
  if (version == "1") v = 1;
  if (version == "2") v = 2;

  bool malformed = false;
  bool repeated = false;
  std::optional<std::string_view> nonce;
  std::optional<std::string_view> token;
  // Keys seen so far; a hello has a handful of fields, so a small linear
  // list is enough, and repeated keys past the list's size are still caught
  // because the list is only ever compared, never dropped.
  constexpr std::size_t kMaxKeys = 32;
  std::array<std::string_view, kMaxKeys> keys{};
  std::size_t key_count = 0;

  for (const char c : first)
    if (!printable(c)) malformed = true;
  std::size_t pos = first_end;
  while (pos != std::string_view::npos) {
    const std::size_t start = pos + 1;
    const std::size_t end = text.find(' ', start);
    const std::string_view word =
        text.substr(start, end == std::string_view::npos ? text.size() - start : end - start);
    pos = end;
    const std::size_t eq = word.find('=');
    if (word.empty() || eq == std::string_view::npos || eq == 0) {
      malformed = true;
      continue;
    }
    const std::string_view key = word.substr(0, eq);
    const std::string_view value = word.substr(eq + 1);
    bool bad_word = false;
    for (const char c : key)
      if (!key_char(c)) bad_word = true;
    for (const char c : value)
      if (!printable(c)) bad_word = true;
    if (bad_word) {
      malformed = true;
      continue;
    }
    bool seen = false;
    for (std::size_t i = 0; i < key_count; ++i)
      if (keys[i] == key) seen = true;
    if (seen) {
      repeated = true;
      continue;
    }
    if (key_count < kMaxKeys) {
      keys[key_count++] = key;
    } else {
      malformed = true;  // more distinct fields than any version defines
      continue;
    }
    if (key == "nonce") nonce = value;
    if (key == "token") token = value;
  }

  const bool nonce_ok = nonce && well_formed_nonce(*nonce);
  r.reply_version = v == 1 ? 1 : 2;
  r.nonce = nonce_ok ? *nonce : std::string_view{};
  r.status = HelloParse::Status::invalid;
  if (v == 0) {
    r.reason = "unsupported_version";
  } else if (malformed) {
    r.reason = "malformed";
  } else if (repeated) {
    r.reason = "repeated_field";
  } else if (nonce && !nonce_ok) {
    r.reason = "bad_nonce";
  } else if (token && !well_formed_token(*token)) {
    r.reason = "bad_token";
  } else if (v == 2 && !nonce) {
    r.reason = "missing_nonce";
  } else {
    r.status = HelloParse::Status::ok;
    r.hello.version = v;
    r.hello.nonce = r.nonce;
    r.hello.token = token;
  }
  return r;
}

bool tokens_equal(std::string_view presented, std::string_view listed) noexcept {
  // Runs over the listed token's length whatever the presented one holds, and
  // folds every difference into one accumulator: no early exit.
  volatile unsigned char diff = presented.size() == listed.size() ? 0 : 1;
  for (std::size_t i = 0; i < listed.size(); ++i) {
    const char p = i < presented.size() ? presented[i] : 0;
    diff = diff | static_cast<unsigned char>(p ^ listed[i]);
  }
  return diff == 0;
}

}  // namespace sb::protocol
