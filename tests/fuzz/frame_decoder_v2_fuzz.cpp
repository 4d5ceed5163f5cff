// libFuzzer target for protocol::FrameDecoder across the upgrade to v2.
//
// Input layout:
//   byte 0      payload limit: 0-254, or 255 for protocol::kDefaultMaxFrame
//   byte 1      bits 0-3: how many chunk-size bytes follow (1-16)
//               bit 4: the decoder takes its buffer from a BlockPool
//               bit 5: write through prepare()/commit() instead of feed()
//               bit 6: release_if_empty() whenever the decoder is drained
//   byte 2      upgrade after this many v1 frames (0: before the first byte)
//   next bytes  chunk sizes, used in turn: n -> n + 1 bytes, 255 -> 64 KiB
//   the rest    the client->server byte stream
//
// Every answer is checked against a direct reading of the stream (the
// oracle, DESIGN.md 1b for v2): each frame, encoded again, is exactly the
// bytes at the current position; no frame carries more than the limit (a
// PING more than 64 bytes); need_more means no complete frame is buffered;
// too_large and bad_frame come when and only when the header says so, and
// stay, whatever is fed after them. consumed + buffered always equals fed.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>
#include <string_view>

#include "protocol/block_pool.hpp"
#include "protocol/frame_decoder.hpp"
#include "protocol/v2.hpp"
#include "protocol/wire.hpp"

namespace {

namespace p = sb::protocol;
using p::DecodeStatus;
using p::Frame;
using p::FrameType;

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "frame_decoder_v2_fuzz: invariant broken: %s\n", what);
    std::abort();
  }
}

void append_be32(std::string& s, std::uint32_t v) {
  const auto b = p::encode_be32(v);
  s.append(b.data(), b.size());
}

// The frame as its sender wrote it.
std::string reencode(const Frame& f) {
  std::string s;
  switch (f.type) {
    case FrameType::v1:
      append_be32(s, sb::to_u32(f.destination));
      s.append(f.payload.data(), f.payload.size());
      s.push_back('\0');
      break;
    case FrameType::send:
      append_be32(s, static_cast<std::uint32_t>(5 + f.payload.size()));
      s.push_back(static_cast<char>(FrameType::send));
      append_be32(s, sb::to_u32(f.destination));
      s.append(f.payload.data(), f.payload.size());
      break;
    case FrameType::ping:
      append_be32(s, static_cast<std::uint32_t>(1 + f.payload.size()));
      s.push_back(static_cast<char>(FrameType::ping));
      s.append(f.payload.data(), f.payload.size());
      break;
    default:
      check(false, "the decoder yielded a server->client type");
  }
  return s;
}

// What the decoder must answer given the buffered bytes `b`.
DecodeStatus expected_v1(std::string_view b, std::size_t max) {
  if (b.size() <= p::kIdSize) return DecodeStatus::need_more;
  const std::string_view payload = b.substr(p::kIdSize);
  const std::size_t nul = payload.find('\0');
  if (nul == std::string_view::npos) return payload.size() > max ? DecodeStatus::too_large : DecodeStatus::need_more;
  return nul > max ? DecodeStatus::too_large : DecodeStatus::frame;
}

DecodeStatus expected_v2(std::string_view b, std::size_t max) {
  if (b.size() < 4) return DecodeStatus::need_more;
  const std::uint32_t length = p::load_be32(b.data());
  if (length > max + 5) return DecodeStatus::too_large;
  if (length == 0) return DecodeStatus::bad_frame;
  if (b.size() < 5) return DecodeStatus::need_more;
  const auto type = static_cast<unsigned char>(b[4]);
  if (type == 0x01) {
    if (length < 5) return DecodeStatus::bad_frame;
  } else if (type == 0x02) {
    if (length > 65) return DecodeStatus::bad_frame;
  } else {
    return DecodeStatus::bad_frame;
  }
  return b.size() < 4 + std::size_t{length} ? DecodeStatus::need_more : DecodeStatus::frame;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 3) return 0;
  const std::size_t max = data[0] == 255 ? p::kDefaultMaxFrame : data[0];
  const std::uint8_t flags = data[1];
  const std::size_t upgrade_after = data[2];
  const std::size_t n_chunks = (flags & 0x0f) + 1U;
  const bool pooled = (flags & 0x10) != 0;
  const bool use_prepare = (flags & 0x20) != 0;
  const bool release = (flags & 0x40) != 0;
  if (size < 3 + n_chunks) return 0;
  const std::uint8_t* chunks = data + 3;
  const std::string_view stream(reinterpret_cast<const char*>(data + 3 + n_chunks), size - 3 - n_chunks);

  p::BlockPool pool(64, 2);
  p::FrameDecoder decoder(max, pooled ? &pool : nullptr);
  std::size_t fed = 0;
  std::size_t consumed = 0;
  std::size_t v1_frames = 0;
  if (upgrade_after == 0) decoder.upgrade();
  DecodeStatus final_error = DecodeStatus::frame;  // frame: no error yet

  for (std::size_t i = 0; fed < stream.size(); ++i) {
    const std::uint8_t c = chunks[i % n_chunks];
    const std::size_t want = c == 255 ? std::size_t{64} * 1024 : std::size_t{c} + 1;
    const std::size_t n = std::min(want, stream.size() - fed);
    if (use_prepare) {
      const std::span<char> space = decoder.prepare(n);
      check(space.size() >= n, "prepare() returned less than asked");
      std::memcpy(space.data(), stream.data() + fed, n);
      decoder.commit(n);
    } else {
      decoder.feed(std::span<const char>(stream.data() + fed, n));
    }
    fed += n;
    check(decoder.buffered() == fed - consumed, "consumed + buffered != fed");

    for (;;) {
      Frame f{};
      const DecodeStatus st = decoder.peek(f);
      if (final_error != DecodeStatus::frame) {
        check(st == final_error, "an error did not stay");
        break;
      }
      const std::string_view buffered = stream.substr(consumed, fed - consumed);
      const DecodeStatus want_st = decoder.version() == 2 ? expected_v2(buffered, max) : expected_v1(buffered, max);
      check(st == want_st, "peek() status differs from the oracle");
      if (st == DecodeStatus::too_large || st == DecodeStatus::bad_frame) {
        if (st == DecodeStatus::bad_frame) check(!decoder.error_detail().empty(), "bad_frame without a detail");
        final_error = st;
        break;  // keep feeding: the error must stay
      }
      if (st == DecodeStatus::need_more) {
        if (release) {
          decoder.release_if_empty();
          check(decoder.buffered() != 0 || decoder.capacity() == 0, "release_if_empty kept an empty buffer");
        }
        break;
      }
      check(f.type == (decoder.version() == 2 ? f.type : FrameType::v1), "a v2 frame before the upgrade");
      if (f.type == FrameType::ping) {
        check(f.payload.size() <= p::kMaxPingBody, "PING body over 64 bytes");
      } else {
        check(f.payload.size() <= max, "frame exceeds the limit");
      }
      if (f.type == FrameType::v1) {
        check(f.wire.size() == f.payload.size() + 1 && f.wire.data() == f.payload.data(), "v1 wire");
        check(std::memchr(f.payload.data(), '\0', f.payload.size()) == nullptr, "NUL inside a v1 payload");
      } else {
        check(decoder.version() == 2, "a v2 frame before the upgrade");
      }
      const std::string again = reencode(f);
      check(again.size() <= buffered.size() && buffered.substr(0, again.size()) == again,
            "the frame does not re-encode to the bytes it came from");
      Frame second{};
      check(decoder.peek(second) == DecodeStatus::frame && second.payload.data() == f.payload.data(),
            "second peek differs");
      decoder.pop();
      consumed += again.size();
      check(decoder.buffered() == fed - consumed, "consumed + buffered != fed after pop");
      if (f.type == FrameType::v1 && ++v1_frames == upgrade_after) decoder.upgrade();
    }
  }
  return 0;
}
