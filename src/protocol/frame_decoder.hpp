// Incremental decoder for client->server frames, v1 and v2 on one buffer.
//
//   v1 (every connection starts here):  [u32 dest][payload][0x00]
//   v2 (after upgrade()):              [u32 L][u8 type][L-1 bytes]; SEND and PING
//
// Sans-IO: the owner writes received bytes in (`prepare`/`commit`, or `feed`),
// then asks for frames with `peek`/`pop`. The NUL scan resumes where it
// stopped, so no byte is scanned twice however the input is fragmented, and a
// frame whose payload exceeds `max_payload` is reported as soon as that many
// bytes have arrived without a NUL (its sender must then be closed).
//
// v2 frames are judged from their header alone, before the body arrives:
// `too_large` when L > max_payload + 5, `bad_frame` when L = 0, the type is
// not SEND or PING, a SEND has L < 5 or a PING has L > 65. A v2 frame larger
// than a pool block is received into one buffer of exactly its size.
//
// The upgrade: a connection's hello is a v1 frame; once the owner has popped
// it, upgrade() makes every later byte (already buffered or not) v2.
//
// `peek` does not consume: a caller that cannot route the frame yet (its
// destination is full) leaves it in the buffer and asks again later; that is
// how backpressure keeps the frame in the sender's read buffer.
//
// Thread: one owner. Spans returned by `prepare` and `peek` stay valid until
// the next call to `prepare`, `feed` or `release_if_empty`.
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <string_view>

#include "protocol/block_pool.hpp"
#include "protocol/client_id.hpp"
#include "protocol/v2.hpp"

namespace sb::protocol {

struct Frame {
  FrameType type = FrameType::v1;  // v1, send or ping
  ClientId destination{};          // v1 and send
  std::span<const char> payload;   // v1: without its NUL; send: after the destination; ping: the opaque bytes
  std::span<const char> wire;      // v1 only: payload followed by its NUL (what a v1 destination receives)
};

// too_large and bad_frame are final: the sender must be closed (a v2 sender
// is told why first, with ERROR too_large or bad_frame).
enum class DecodeStatus { frame, need_more, too_large, bad_frame };

class FrameDecoder {
 public:
  // `pool` (optional, must outlive the decoder) supplies the usual buffer;
  // larger buffers, needed only for frames bigger than a pool block, come
  // from the heap.
  explicit FrameDecoder(std::size_t max_payload, BlockPool* pool = nullptr) noexcept
      : max_payload_{max_payload}, pool_{pool} {}
  ~FrameDecoder() { release(); }
  FrameDecoder(const FrameDecoder&) = delete;
  FrameDecoder& operator=(const FrameDecoder&) = delete;

  // Writable space of at least `at_least` bytes after the buffered input.
  std::span<char> prepare(std::size_t at_least);
  void commit(std::size_t n) noexcept { end_ += n; }
  void feed(std::span<const char> bytes);

  DecodeStatus peek(Frame& out) noexcept;
  // Consumes the frame the last successful `peek` returned.
  void pop() noexcept;

  // From now on the input is v2. Call between a pop() and the next peek().
  void upgrade() noexcept;
  int version() const noexcept { return v2_ ? 2 : 1; }
  // For a bad_frame status: what was wrong, for the ERROR frame's reason
  // ("empty frame", "unknown frame type 0x07", ...). Static strings.
  std::string_view error_detail() const noexcept { return detail_; }

  std::size_t buffered() const noexcept { return end_ - begin_; }
  std::size_t capacity() const noexcept { return capacity_; }
  // Gives the buffer back when nothing is buffered: idle clients hold no memory.
  void release_if_empty() noexcept {
    if (begin_ == end_) release();
  }

 private:
  void release() noexcept;
  DecodeStatus peek_v2(Frame& out) noexcept;
  std::size_t unpooled_size(std::size_t need) const noexcept;

  std::size_t max_payload_;
  BlockPool* pool_;
  std::unique_ptr<char[]> data_;
  std::size_t capacity_ = 0;
  std::size_t begin_ = 0;   // first unconsumed byte
  std::size_t end_ = 0;     // one past the last buffered byte
  std::size_t scan_ = 0;    // the NUL scan resumes here (absolute index)
  std::size_t found_ = 0;   // v1: one past the NUL of the peeked frame; v2: one past its last byte; 0 if none
  bool v2_ = false;
  std::string_view detail_;
};

}  // namespace sb::protocol
