#include "core/outbound_queue.hpp"

#include <algorithm>
#include <cstring>

namespace sb::core {

void OutboundQueue::append(std::span<const char> bytes, protocol::BlockPool& pool) {
  const std::size_t block_size = pool.block_size();
  size_ += bytes.size();
  while (!bytes.empty()) {
    if (blocks_.empty() || blocks_.back().tail == block_size) blocks_.push_back({pool.take(), 0, 0});
    Block& b = blocks_.back();
    const std::size_t n = std::min(bytes.size(), block_size - b.tail);
    std::memcpy(b.data.get() + b.tail, bytes.data(), n);
    b.tail += n;
    bytes = bytes.subspan(n);
  }
}

std::size_t OutboundQueue::gather(std::span<ConstBuffer> out) const noexcept {
  std::size_t used = 0;
  for (const Block& b : blocks_) {
    if (used == out.size()) break;
    if (b.tail > b.head) out[used++] = {b.data.get() + b.head, b.tail - b.head};
  }
  return used;
}

void OutboundQueue::consume(std::size_t n, protocol::BlockPool& pool) noexcept {
  size_ -= n;
  std::size_t done = 0;
  while (n > 0) {
    Block& b = blocks_[done];
    const std::size_t k = std::min(n, b.tail - b.head);
    b.head += k;
    n -= k;
    if (b.head == b.tail) ++done;
  }
  // Fully written blocks go back to the pool at once.
  for (std::size_t i = 0; i < done; ++i) pool.give(std::move(blocks_[i].data));
  blocks_.erase(blocks_.begin(), blocks_.begin() + static_cast<std::ptrdiff_t>(done));
  if (size_ == 0) clear(pool);
}

void OutboundQueue::clear(protocol::BlockPool& pool) noexcept {
  for (Block& b : blocks_) pool.give(std::move(b.data));
  blocks_.clear();
  size_ = 0;
}

}  // namespace sb::core
