// A free list of fixed-size byte blocks, so that the per-read and per-message
// paths reuse memory instead of calling malloc. Single-threaded: each event
// loop owns its pool. Memory only: no sockets, no clocks.
#pragma once

#include <cstddef>
#include <memory>
#include <vector>

namespace sb::protocol {

class BlockPool {
 public:
  // Blocks are `block_size` bytes; at most `max_free` idle blocks are kept,
  // the rest go back to the allocator, so an idle server shrinks.
  BlockPool(std::size_t block_size, std::size_t max_free) : block_size_{block_size}, max_free_{max_free} {}
  BlockPool(const BlockPool&) = delete;
  BlockPool& operator=(const BlockPool&) = delete;

  std::size_t block_size() const noexcept { return block_size_; }

  std::unique_ptr<char[]> take() {
    if (free_.empty()) return std::make_unique_for_overwrite<char[]>(block_size_);
    auto block = std::move(free_.back());
    free_.pop_back();
    return block;
  }

  void give(std::unique_ptr<char[]> block) {
    if (free_.size() < max_free_) free_.push_back(std::move(block));
  }

  std::size_t idle_blocks() const noexcept { return free_.size(); }

 private:
  std::size_t block_size_;
  std::size_t max_free_;
  std::vector<std::unique_ptr<char[]>> free_;
};

}  // namespace sb::protocol
