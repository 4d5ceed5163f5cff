// libFuzzer target for protocol::parse_hello (DESIGN.md 1b).
//
// Input: byte 0 picks a prefix from kPrefixes (so that most inputs are
// hellos worth parsing), the rest is appended to it.
//
// Checked: parse_hello never crashes; is_hello agrees with its status; an ok
// result satisfies the grammar, as a separate reading of it says, and every
// payload that grammar accepts is ok (the two readings agree both ways); an
// invalid result has a reason from the list, the reply version of its first
// word, and a nonce that is well-formed or empty; every view points into
// the payload; the error reply built from it holds only printable ASCII.
#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/v2.hpp"

namespace {

namespace p = sb::protocol;
using p::HelloParse;

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "hello_fuzz: invariant broken: %s\n", what);
    std::abort();
  }
}

constexpr std::array<std::string_view, 8> kPrefixes = {
    "",
    "switchboard/",
    "switchboard/1",
    "switchboard/2 ",
    "switchboard/2 nonce=0123456789abcdef",
    "switchboard/2 nonce=0123456789abcdef token=",
    "switchboard/1 token=",
    "switchboard/2 token=t nonce=",
};

bool printable(char c) { return static_cast<unsigned char>(c) >= 0x21 && static_cast<unsigned char>(c) <= 0x7E; }
bool key_char(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'; }
bool nonce_ok(std::string_view v) {
  return v.size() >= 16 && v.size() <= 64 &&
         std::all_of(v.begin(), v.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}
bool token_ok(std::string_view v) {
  return !v.empty() && v.size() <= 256 && std::all_of(v.begin(), v.end(), printable);
}

// The grammar, read a second way: split on single spaces, then each rule.
// Returns the version when the hello is valid.
struct Reading {
  int version = 0;
  std::optional<std::string_view> nonce, token;
};
std::optional<Reading> read_grammar(std::string_view text) {
  std::vector<std::string_view> words;
  std::size_t start = 0;
  for (;;) {
    const std::size_t sp = text.find(' ', start);
    words.push_back(text.substr(start, sp == std::string_view::npos ? std::string_view::npos : sp - start));
    if (sp == std::string_view::npos) break;
    start = sp + 1;
  }
  Reading r;
  if (words[0] == "switchboard/1") r.version = 1;
  if (words[0] == "switchboard/2") r.version = 2;
  if (r.version == 0) return std::nullopt;
  std::vector<std::string_view> keys;
  for (std::size_t i = 1; i < words.size(); ++i) {
    const std::string_view w = words[i];
    const std::size_t eq = w.find('=');
    if (eq == std::string_view::npos || eq == 0) return std::nullopt;
    const std::string_view key = w.substr(0, eq), value = w.substr(eq + 1);
    if (!std::all_of(key.begin(), key.end(), key_char) || !std::all_of(value.begin(), value.end(), printable)) {
      return std::nullopt;
    }
    if (std::find(keys.begin(), keys.end(), key) != keys.end()) return std::nullopt;
    keys.push_back(key);
    if (key == "nonce") r.nonce = value;
    if (key == "token") r.token = value;
  }
  if (keys.size() > 32) return std::nullopt;  // the parser's documented bound on distinct fields
  if (r.nonce && !nonce_ok(*r.nonce)) return std::nullopt;
  if (r.token && !token_ok(*r.token)) return std::nullopt;
  if (r.version == 2 && !r.nonce) return std::nullopt;
  return r;
}

bool inside(std::string_view view, std::string_view whole) {
  return view.empty() || (view.data() >= whole.data() && view.data() + view.size() <= whole.data() + whole.size());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  std::string text(kPrefixes[data[0] % kPrefixes.size()]);
  text.append(reinterpret_cast<const char*>(data + 1), size - 1);
  const std::span<const char> payload(text.data(), text.size());
  const std::string_view whole(text);

  const HelloParse r = p::parse_hello(payload);
  const bool hello = whole.starts_with("switchboard/");
  check(p::is_hello(payload) == hello, "is_hello disagrees with the prefix");
  check((r.status == HelloParse::Status::not_a_hello) == !hello, "not_a_hello iff the prefix is missing");
  if (!hello) return 0;

  const std::optional<Reading> reading = read_grammar(whole);
  check((r.status == HelloParse::Status::ok) == reading.has_value(), "parse_hello and the grammar disagree");
  if (r.status == HelloParse::Status::ok) {
    check(r.hello.version == reading->version, "version");
    check(r.hello.nonce == reading->nonce.value_or(std::string_view{}), "nonce");
    check(r.hello.token.has_value() == reading->token.has_value(), "token presence");
    if (r.hello.token) check(*r.hello.token == *reading->token && inside(*r.hello.token, whole), "token");
    check(inside(r.hello.nonce, whole), "nonce view outside the payload");
    return 0;
  }

  static constexpr std::array<std::string_view, 6> kReasons = {
      "unsupported_version", "missing_nonce", "bad_nonce", "bad_token", "repeated_field", "malformed"};
  check(std::find(kReasons.begin(), kReasons.end(), r.reason) != kReasons.end(), "reason not from the list");
  check(r.nonce.empty() || nonce_ok(r.nonce), "reported nonce is not well-formed");
  check(inside(r.nonce, whole), "nonce view outside the payload");
  const std::string_view first = whole.substr(0, whole.find(' '));
  check(r.reply_version == (first == "switchboard/1" ? 1 : 2), "reply version");
  const std::string reply = p::encode_hello_error(r.reply_version, r.nonce, r.reason);
  check(std::all_of(reply.begin(), reply.end(), [](char c) { return c == ' ' || printable(c); }),
        "the error reply holds a byte outside printable ASCII");
  return 0;
}
