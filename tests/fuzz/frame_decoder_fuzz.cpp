// libFuzzer target for protocol::FrameDecoder.
//
// Input layout:
//   byte 0      payload limit: 0-254, or 255 for protocol::kDefaultMaxFrame
//   byte 1      bits 0-3: how many chunk-size bytes follow (1-16)
//               bit 4: the decoder takes its buffer from a BlockPool
//               bit 5: write through prepare()/commit() instead of feed()
//               bit 6: release_if_empty() whenever the decoder is drained
//               bit 7: hold every third frame back across the next feed
//                      (peek without pop, as a paused sender's engine does)
//   next bytes  chunk sizes, used in turn: n -> n + 1 bytes, 255 -> 64 KiB
//   the rest    the client->server byte stream
//
// Every answer of the decoder is checked against a direct reading of the
// stream (the oracle): a frame is exactly [u32 id][payload][NUL] at the
// current position, with the first NUL after the 4-byte header; need_more
// means no complete frame is buffered; too_large means more than the limit of
// payload bytes arrived before any NUL. Byte accounting: consumed + buffered
// always equals what was fed.
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
#include "protocol/wire.hpp"

namespace {

using sb::protocol::BlockPool;
using sb::protocol::DecodeStatus;
using sb::protocol::Frame;
using sb::protocol::FrameDecoder;
using sb::protocol::kIdSize;

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "frame_decoder_fuzz: invariant broken: %s\n", what);
    std::abort();
  }
}

class Harness {
 public:
  Harness(std::string_view stream, std::size_t max_payload) : stream_{stream}, max_payload_{max_payload} {}

  // What the decoder must answer, given the bytes fed so far.
  DecodeStatus expected(std::size_t* nul_at) const {
    const std::size_t avail = fed_ - consumed_;
    if (avail <= kIdSize) return DecodeStatus::need_more;
    const std::size_t payload_start = consumed_ + kIdSize;
    const void* nul = std::memchr(stream_.data() + payload_start, '\0', fed_ - payload_start);
    if (nul == nullptr) return fed_ - payload_start > max_payload_ ? DecodeStatus::too_large : DecodeStatus::need_more;
    *nul_at = static_cast<std::size_t>(static_cast<const char*>(nul) - stream_.data());
    return *nul_at - payload_start > max_payload_ ? DecodeStatus::too_large : DecodeStatus::frame;
  }

  // Checks one answer of peek(); returns the frame's size on the wire.
  std::size_t check_answer(DecodeStatus st, const Frame& f) const {
    std::size_t nul_at = 0;
    const DecodeStatus want = expected(&nul_at);
    check(st == want, "peek() status differs from the oracle");
    if (st != DecodeStatus::frame) return 0;
    const std::size_t payload_start = consumed_ + kIdSize;
    check(sb::to_u32(f.destination) == sb::protocol::load_be32(stream_.data() + consumed_), "destination");
    check(!f.wire.empty(), "empty wire");
    check(f.wire.size() - 1 <= max_payload_, "frame exceeds max payload");
    check(f.wire.back() == '\0', "wire does not end with NUL");
    check(std::memchr(f.wire.data(), '\0', f.wire.size() - 1) == nullptr, "NUL inside the payload");
    check(f.wire.size() == nul_at - payload_start + 1, "wire length");
    check(std::memcmp(f.wire.data(), stream_.data() + payload_start, f.wire.size()) == 0, "wire bytes");
    return kIdSize + f.wire.size();
  }

  std::string_view stream_;
  std::size_t max_payload_;
  std::size_t fed_ = 0;
  std::size_t consumed_ = 0;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  const std::size_t max_payload = data[0] == 255 ? sb::protocol::kDefaultMaxFrame : data[0];
  const std::uint8_t flags = data[1];
  const std::size_t n_chunks = (flags & 0x0f) + 1U;
  const bool pooled = (flags & 0x10) != 0;
  const bool use_prepare = (flags & 0x20) != 0;
  const bool release = (flags & 0x40) != 0;
  const bool hold = (flags & 0x80) != 0;
  if (size < 2 + n_chunks) return 0;
  const std::uint8_t* chunks = data + 2;
  const std::string_view stream(reinterpret_cast<const char*>(data + 2 + n_chunks), size - 2 - n_chunks);

  BlockPool pool(64, 2);
  FrameDecoder decoder(max_payload, pooled ? &pool : nullptr);
  Harness h(stream, max_payload);
  std::string held;  // the bytes of a frame peeked but not popped before the last feed
  std::size_t frames = 0;

  for (std::size_t i = 0; h.fed_ < stream.size(); ++i) {
    const std::uint8_t c = chunks[i % n_chunks];
    const std::size_t want = c == 255 ? std::size_t{64} * 1024 : std::size_t{c} + 1;
    const std::size_t n = std::min(want, stream.size() - h.fed_);
    if (use_prepare) {
      const std::span<char> space = decoder.prepare(n);
      check(space.size() >= n, "prepare() returned less than asked");
      std::memcpy(space.data(), stream.data() + h.fed_, n);
      decoder.commit(n);
    } else {
      decoder.feed(std::span<const char>(stream.data() + h.fed_, n));
    }
    h.fed_ += n;
    check(decoder.buffered() == h.fed_ - h.consumed_, "consumed + buffered != fed");

    for (;;) {
      Frame f{};
      const DecodeStatus st = decoder.peek(f);
      const std::size_t frame_size = h.check_answer(st, f);
      if (st == DecodeStatus::too_large) {
        Frame again{};
        check(decoder.peek(again) == DecodeStatus::too_large, "too_large is not sticky");
        return 0;  // the engine closes the sender here
      }
      if (st == DecodeStatus::need_more) {
        check(held.empty(), "a held frame vanished");
        if (release) {
          decoder.release_if_empty();
          check(decoder.buffered() != 0 || decoder.capacity() == 0, "release_if_empty kept an empty buffer");
          check(decoder.buffered() == h.fed_ - h.consumed_, "release_if_empty dropped bytes");
        }
        break;
      }
      if (!held.empty()) {
        check(std::string_view(f.wire.data(), f.wire.size()) == held, "held frame changed across a feed");
        held.clear();
      } else if (hold && ++frames % 3 == 0 && h.fed_ < stream.size()) {
        held.assign(f.wire.data(), f.wire.size());
        break;  // feed more before popping
      }
      Frame again{};
      check(decoder.peek(again) == DecodeStatus::frame, "second peek");
      check(again.wire.data() == f.wire.data() && again.wire.size() == f.wire.size(), "second peek differs");
      decoder.pop();
      h.consumed_ += frame_size;
      check(decoder.buffered() == h.fed_ - h.consumed_, "consumed + buffered != fed after pop");
    }
  }
  return 0;
}
