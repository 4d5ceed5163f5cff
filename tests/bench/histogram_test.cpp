#include "bench/histogram.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <vector>

namespace sb::bench {
namespace {

TEST(Histogram, EmptyReportsZero) {
  LatencyHistogram h;
  EXPECT_EQ(h.count(), 0u);
  EXPECT_EQ(h.percentile(50), 0u);
  EXPECT_EQ(h.max(), 0u);
}

TEST(Histogram, SmallValuesAreExact) {
  LatencyHistogram h;
  for (std::uint64_t v = 1; v <= 100; ++v) h.record(v);
  EXPECT_EQ(h.percentile(50), 50u);
  EXPECT_EQ(h.percentile(99), 99u);
  EXPECT_EQ(h.percentile(100), 100u);
  EXPECT_EQ(h.min(), 1u);
  EXPECT_DOUBLE_EQ(h.mean(), 50.5);
}

TEST(Histogram, BucketsAreContiguousAndTight) {
  for (std::size_t b = 1; b < LatencyHistogram::bucket_count(); ++b) {
    ASSERT_EQ(LatencyHistogram::bucket_low(b), LatencyHistogram::bucket_high(b - 1) + 1) << "bucket " << b;
  }
  for (std::uint64_t v : {0ull, 1ull, 1023ull, 1024ull, 1025ull, 4097ull, 123456789ull, 1ull << 40}) {
    const auto b = LatencyHistogram::bucket_of(v);
    EXPECT_LE(LatencyHistogram::bucket_low(b), v);
    EXPECT_GE(LatencyHistogram::bucket_high(b), v);
    EXPECT_LE(LatencyHistogram::bucket_high(b) - LatencyHistogram::bucket_low(b), v / 512) << v;
  }
}

TEST(Histogram, PercentilesMatchSortedSamplesWithinPrecision) {
  std::mt19937_64 rng(7);
  std::lognormal_distribution<double> dist(10.0, 1.5);  // ~20 us median, long tail
  LatencyHistogram a;
  LatencyHistogram b;
  std::vector<std::uint64_t> all;
  for (int i = 0; i < 200000; ++i) {
    const auto v = static_cast<std::uint64_t>(dist(rng));
    all.push_back(v);
    (i % 2 ? a : b).record(v);
  }
  a.merge(b);
  std::sort(all.begin(), all.end());
  ASSERT_EQ(a.count(), all.size());
  EXPECT_EQ(a.max(), all.back());
  for (double p : {50.0, 90.0, 99.0, 99.9}) {
    const auto rank = static_cast<std::size_t>(p / 100.0 * static_cast<double>(all.size()) + 0.999999) - 1;
    const double exact = static_cast<double>(all[rank]);
    const double got = static_cast<double>(a.percentile(p));
    EXPECT_GE(got, exact) << p;
    EXPECT_LE(got, exact * (1.0 + 1.0 / 512) + 1) << p;
  }
}

TEST(Histogram, HugeValuesAreClampedNotLost) {
  LatencyHistogram h;
  h.record(~std::uint64_t{0});
  EXPECT_EQ(h.count(), 1u);
  // Reported as the top of the range it was clamped to; the maximum stays exact.
  EXPECT_EQ(h.percentile(50), (std::uint64_t{1} << LatencyHistogram::kMaxValueBits) - 1);
  EXPECT_EQ(h.percentile(100), ~std::uint64_t{0});
}

}  // namespace
}  // namespace sb::bench
