// Incremental decoder for client->server frames: [u32 dest][payload][0x00].
//
// Sans-IO: the owner writes received bytes in (`prepare`/`commit`, or `feed`),
// then asks for frames with `peek`/`pop`. The NUL scan resumes where it
// stopped, so no byte is scanned twice however the input is fragmented, and a
// frame whose payload exceeds `max_payload` is reported as soon as that many
// bytes have arrived without a NUL (its sender must then be closed).
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

#include "protocol/block_pool.hpp"
#include "protocol/client_id.hpp"

namespace sb::protocol {

struct Frame {
  ClientId destination;
  std::span<const char> wire;  // payload followed by its NUL: exactly what the destination receives
};

enum class DecodeStatus { frame, need_more, too_large };

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

  std::size_t buffered() const noexcept { return end_ - begin_; }
  std::size_t capacity() const noexcept { return capacity_; }
  // Gives the buffer back when nothing is buffered: idle clients hold no memory.
  void release_if_empty() noexcept {
    if (begin_ == end_) release();
  }

 private:
  void release() noexcept;

  std::size_t max_payload_;
  BlockPool* pool_;
  std::unique_ptr<char[]> data_;
  std::size_t capacity_ = 0;
  std::size_t begin_ = 0;   // first unconsumed byte
  std::size_t end_ = 0;     // one past the last buffered byte
  std::size_t scan_ = 0;    // the NUL scan resumes here (absolute index)
  std::size_t found_ = 0;   // one past the NUL of the peeked frame, 0 if none
};

}  // namespace sb::protocol
