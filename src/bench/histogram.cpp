#include "bench/histogram.hpp"

#include <algorithm>
#include <bit>
#include <cmath>

namespace sb::bench {

namespace {

constexpr unsigned kB = LatencyHistogram::kSubBucketBits;
constexpr std::uint64_t kExact = std::uint64_t{1} << kB;       // values counted one per bucket
constexpr std::uint64_t kHalf = std::uint64_t{1} << (kB - 1);  // buckets per power of two above that
constexpr std::uint64_t kClamp = (std::uint64_t{1} << LatencyHistogram::kMaxValueBits) - 1;

}  // namespace

std::size_t LatencyHistogram::bucket_count() noexcept {
  return static_cast<std::size_t>(kExact + (LatencyHistogram::kMaxValueBits - kB) * kHalf);
}

std::size_t LatencyHistogram::bucket_of(std::uint64_t value) noexcept {
  value = std::min(value, kClamp);
  if (value < kExact) return static_cast<std::size_t>(value);
  const unsigned shift = static_cast<unsigned>(std::bit_width(value)) - kB;  // >= 1
  const std::uint64_t top = value >> shift;                                  // in [kHalf, kExact)
  return static_cast<std::size_t>(kExact + (shift - 1) * kHalf + (top - kHalf));
}

std::uint64_t LatencyHistogram::bucket_low(std::size_t bucket) noexcept {
  if (bucket < kExact) return bucket;
  const std::uint64_t r = bucket - kExact;
  const std::uint64_t shift = r / kHalf + 1;
  const std::uint64_t top = r % kHalf + kHalf;
  return top << shift;
}

std::uint64_t LatencyHistogram::bucket_high(std::size_t bucket) noexcept {
  if (bucket < kExact) return bucket;
  const std::uint64_t shift = (bucket - kExact) / kHalf + 1;
  return bucket_low(bucket) + (std::uint64_t{1} << shift) - 1;
}

LatencyHistogram::LatencyHistogram() : counts_(bucket_count(), 0) {}

void LatencyHistogram::record(std::uint64_t value) noexcept {
  ++counts_[bucket_of(value)];
  ++count_;
  min_ = std::min(min_, value);
  max_ = std::max(max_, value);
  sum_ += value;
}

void LatencyHistogram::merge(const LatencyHistogram& other) noexcept {
  for (std::size_t i = 0; i < counts_.size(); ++i) counts_[i] += other.counts_[i];
  count_ += other.count_;
  min_ = std::min(min_, other.min_);
  max_ = std::max(max_, other.max_);
  sum_ += other.sum_;
}

std::uint64_t LatencyHistogram::percentile(double p) const noexcept {
  if (count_ == 0) return 0;
  if (p >= 100.0) return max_;
  const double exact = std::ceil(std::max(p, 0.0) / 100.0 * static_cast<double>(count_));
  const std::uint64_t rank = std::max<std::uint64_t>(1, static_cast<std::uint64_t>(exact));
  std::uint64_t seen = 0;
  for (std::size_t i = 0; i < counts_.size(); ++i) {
    seen += counts_[i];
    if (seen >= rank) return std::min(bucket_high(i), max_);
  }
  return max_;
}

}  // namespace sb::bench
