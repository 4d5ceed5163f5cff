// A log-linear latency histogram in the manner of HdrHistogram: values below
// 2^kSubBucketBits are counted exactly, above that each power of two is cut
// into 2^(kSubBucketBits-1) equal buckets, so every recorded value is kept to
// within 1/512 (about 0.2%) of itself with a fixed 147 KiB of counters and
// O(1) recording. Debian 12 packages HdrHistogram only for Java and Go, so
// this is the C++ piece we need (record, merge, percentile), in ~100 lines.
//
// Not thread-safe: each worker records into its own and the results merge.
#pragma once

#include <cstdint>
#include <vector>

namespace sb::bench {

class LatencyHistogram {
 public:
  static constexpr unsigned kSubBucketBits = 10;
  static constexpr unsigned kMaxValueBits = 44;  // 2^44 ns is almost 5 hours; larger values are clamped

  LatencyHistogram();

  void record(std::uint64_t value) noexcept;
  void merge(const LatencyHistogram& other) noexcept;

  std::uint64_t count() const noexcept { return count_; }
  std::uint64_t min() const noexcept { return count_ ? min_ : 0; }
  std::uint64_t max() const noexcept { return max_; }
  double mean() const noexcept {
    return count_ ? static_cast<double>(sum_) / static_cast<double>(count_) : 0.0;
  }

  // The value at percentile p (0 < p <= 100): the highest value equivalent
  // to the bucket holding the ceil(p% of count)-th smallest value, capped at
  // the true maximum (as HdrHistogram's getValueAtPercentile). 0 if empty.
  std::uint64_t percentile(double p) const noexcept;

  // Exposed for tests: the bucket of a value and the values a bucket covers.
  static std::size_t bucket_of(std::uint64_t value) noexcept;
  static std::uint64_t bucket_low(std::size_t bucket) noexcept;
  static std::uint64_t bucket_high(std::size_t bucket) noexcept;
  static std::size_t bucket_count() noexcept;

 private:
  std::vector<std::uint64_t> counts_;
  std::uint64_t count_ = 0;
  std::uint64_t min_ = ~std::uint64_t{0};
  std::uint64_t max_ = 0;
  std::uint64_t sum_ = 0;  // nanoseconds: overflows only after ~584 years of summed latency
};

}  // namespace sb::bench
