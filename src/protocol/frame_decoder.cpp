#include "protocol/frame_decoder.hpp"

#include <algorithm>
#include <cassert>
#include <cstring>

#include "protocol/wire.hpp"

namespace sb::protocol {

std::span<char> FrameDecoder::prepare(std::size_t at_least) {
  if (capacity_ - end_ >= at_least) return {data_.get() + end_, capacity_ - end_};
  const std::size_t live = end_ - begin_;
  if (begin_ > 0 && capacity_ - live >= at_least) {
    // Compact: move the unfinished frame to the front of the buffer.
    std::memmove(data_.get(), data_.get() + begin_, live);
    scan_ -= begin_;
    if (found_ != 0) found_ -= begin_;
    begin_ = 0;
    end_ = live;
    return {data_.get() + end_, capacity_ - end_};
  }
  const std::size_t need = live + at_least;
  const bool pooled = pool_ != nullptr && need <= pool_->block_size();
  const std::size_t want = pooled ? pool_->block_size() : std::max(need, capacity_ * 2);
  std::unique_ptr<char[]> fresh = pooled ? pool_->take() : std::make_unique_for_overwrite<char[]>(want);
  if (live > 0) std::memcpy(fresh.get(), data_.get() + begin_, live);
  const std::size_t scan = scan_ - begin_;
  const std::size_t found = found_ != 0 ? found_ - begin_ : 0;
  release();
  data_ = std::move(fresh);
  capacity_ = want;
  end_ = live;
  scan_ = scan;
  found_ = found;
  return {data_.get() + end_, capacity_ - end_};
}

void FrameDecoder::feed(std::span<const char> bytes) {
  if (bytes.empty()) return;
  auto space = prepare(bytes.size());
  std::memcpy(space.data(), bytes.data(), bytes.size());
  commit(bytes.size());
}

DecodeStatus FrameDecoder::peek(Frame& out) noexcept {
  if (found_ == 0) {
    const std::size_t payload_start = begin_ + kIdSize;
    if (end_ <= payload_start) return DecodeStatus::need_more;
    const std::size_t from = std::max(scan_, payload_start);
    const char* base = data_.get();
    const void* nul = std::memchr(base + from, '\0', end_ - from);
    if (nul == nullptr) {
      scan_ = end_;
      return end_ - payload_start > max_payload_ ? DecodeStatus::too_large : DecodeStatus::need_more;
    }
    const auto at = static_cast<std::size_t>(static_cast<const char*>(nul) - base);
    if (at - payload_start > max_payload_) return DecodeStatus::too_large;
    found_ = at + 1;
  }
  const char* frame = data_.get() + begin_;
  out.destination = ClientId{load_be32(frame)};
  out.wire = {frame + kIdSize, found_ - begin_ - kIdSize};
  return DecodeStatus::frame;
}

void FrameDecoder::pop() noexcept {
  assert(found_ != 0 && "pop() without a successful peek()");
  begin_ = found_;
  scan_ = found_;
  found_ = 0;
  if (begin_ == end_) begin_ = end_ = scan_ = 0;
}

void FrameDecoder::release() noexcept {
  if (data_ && pool_ && capacity_ == pool_->block_size()) {
    pool_->give(std::move(data_));
  }
  data_.reset();
  capacity_ = 0;
  begin_ = end_ = scan_ = found_ = 0;
}

}  // namespace sb::protocol
