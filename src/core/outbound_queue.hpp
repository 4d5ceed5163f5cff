// The bytes waiting to be written to one client: a chain of pooled blocks.
//
// Whole frames are appended, so bytes of two frames never interleave on the
// wire. Appending copies the payload once (from the sender's read buffer);
// writing gathers the blocks for one writev. An empty queue holds no blocks.
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <vector>

#include "protocol/block_pool.hpp"

namespace sb::core {

// Layout-compatible with POSIX iovec, without pulling socket headers into the
// core; engines copy it field by field.
struct ConstBuffer {
  const char* data;
  std::size_t size;
};

class OutboundQueue {
 public:
  OutboundQueue() = default;
  OutboundQueue(OutboundQueue&&) noexcept = default;
  OutboundQueue& operator=(OutboundQueue&&) noexcept = default;

  void append(std::span<const char> bytes, protocol::BlockPool& pool);
  // Fills `out` with the queued bytes in order; returns how many entries it used.
  std::size_t gather(std::span<ConstBuffer> out) const noexcept;
  // Drops the first `n` bytes (they were written).
  void consume(std::size_t n, protocol::BlockPool& pool) noexcept;
  void clear(protocol::BlockPool& pool) noexcept;

  std::size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }

 private:
  struct Block {
    std::unique_ptr<char[]> data;
    std::size_t head;  // first unwritten byte
    std::size_t tail;  // one past the last queued byte
  };
  std::vector<Block> blocks_;
  std::size_t size_ = 0;
};

}  // namespace sb::core
