// A free list of fixed-size byte blocks, so that the per-read and per-message
// paths reuse memory instead of calling malloc. Single-threaded: each event
// loop owns its pool. Memory only: no sockets, no clocks.
#pragma once

#include <algorithm>
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
    low_water_ = std::min(low_water_, free_.size());
    return block;
  }

  void give(std::unique_ptr<char[]> block) {
    if (free_.size() < max_free_) free_.push_back(std::move(block));
  }

  std::size_t idle_blocks() const noexcept { return free_.size(); }

  // Gives back the idle blocks nobody needed since the last call (the free
  // list's low-water mark since then), so that a burst's surplus goes back
  // to the allocator while a steady load keeps what it uses. Call it on a
  // timer (about once a second). Returns the bytes released.
  std::size_t trim() {
    const std::size_t surplus = std::min(low_water_, free_.size());
    free_.resize(free_.size() - surplus);
    low_water_ = free_.size();
    return surplus * block_size_;
  }

 private:
  std::size_t block_size_;
  std::size_t max_free_;
  std::vector<std::unique_ptr<char[]>> free_;
  std::size_t low_water_ = 0;  // fewest idle blocks since the last trim()
};

}  // namespace sb::protocol
