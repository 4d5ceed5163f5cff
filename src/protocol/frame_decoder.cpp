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
  const std::size_t want = pooled ? pool_->block_size() : unpooled_size(need);
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

// Outside the pool, a buffer grows by doubling but never past what the
// largest acceptable frame needs: a v1 frame of max_payload (plus one read's
// worth of what follows it), or, in v2, exactly the frame whose header is
// buffered. A client parking a frame just under --max-frame therefore costs
// one buffer of about that frame's size, not twice it.
std::size_t FrameDecoder::unpooled_size(std::size_t need) const noexcept {
  std::size_t want = std::max(need, capacity_ * 2);
  if (v2_ && end_ - begin_ >= kLengthSize) {
    // Only a length the decoder accepts sizes the buffer: after too_large
    // (L up to 4 GiB) more input must not allocate what L claims.
    const std::size_t length = load_be32(data_.get() + begin_);
    const std::size_t frame = kLengthSize + length;
    if (length <= max_payload_ + kSendOverhead && need <= frame) return frame;
  }
  const std::size_t largest = max_payload_ + kIdSize + 1 + need - (end_ - begin_);
  return std::max(need, std::min(want, largest));
}

DecodeStatus FrameDecoder::peek(Frame& out) noexcept {
  if (v2_) return peek_v2(out);
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
  out.type = FrameType::v1;
  out.destination = ClientId{load_be32(frame)};
  out.wire = {frame + kIdSize, found_ - begin_ - kIdSize};
  out.payload = out.wire.first(out.wire.size() - 1);
  return DecodeStatus::frame;
}

DecodeStatus FrameDecoder::peek_v2(Frame& out) noexcept {
  const std::size_t have = end_ - begin_;
  if (have < kLengthSize) return DecodeStatus::need_more;
  const char* frame = data_.get() + begin_;
  const std::size_t length = load_be32(frame);
  // The length alone decides too_large, before anything else is known.
  if (length > max_payload_ + kSendOverhead) return DecodeStatus::too_large;
  if (length == 0) {
    detail_ = "empty frame (length 0)";
    return DecodeStatus::bad_frame;
  }
  if (have < kV2HeaderSize) return DecodeStatus::need_more;
  const auto type = static_cast<FrameType>(static_cast<unsigned char>(frame[kLengthSize]));
  if (type == FrameType::send) {
    if (length < kSendOverhead) {
      detail_ = "SEND shorter than its 4-byte destination";
      return DecodeStatus::bad_frame;
    }
  } else if (type == FrameType::ping) {
    if (length > kMaxPingBody + 1) {
      detail_ = "PING body over 64 bytes";
      return DecodeStatus::bad_frame;
    }
  } else {
    detail_ = "unknown frame type";
    return DecodeStatus::bad_frame;
  }
  if (have < kLengthSize + length) return DecodeStatus::need_more;
  const char* body = frame + kV2HeaderSize;
  out.type = type;
  out.wire = {};
  if (type == FrameType::send) {
    out.destination = ClientId{load_be32(body)};
    out.payload = {body + kIdSize, length - kSendOverhead};
  } else {
    out.destination = ClientId{};
    out.payload = {body, length - 1};
  }
  found_ = begin_ + kLengthSize + length;
  return DecodeStatus::frame;
}

void FrameDecoder::upgrade() noexcept {
  assert(found_ == 0 && "upgrade() between pop() and peek()");
  v2_ = true;
  scan_ = begin_;
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
