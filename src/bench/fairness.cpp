#include "bench/fairness.hpp"

#include <algorithm>

namespace sb::bench {

Fairness fairness_of(std::span<const std::uint64_t> delivered) noexcept {
  Fairness f;
  f.senders = delivered.size();
  if (delivered.empty()) return f;
  const auto [lo, hi] = std::minmax_element(delivered.begin(), delivered.end());
  f.min = *lo;
  f.max = *hi;
  // In doubles: the square of a sum of message counts overflows 64 bits
  // long before a run could deliver that many (2^32 messages).
  double sum = 0;
  double sum_sq = 0;
  for (const std::uint64_t x : delivered) {
    const auto v = static_cast<double>(x);
    sum += v;
    sum_sq += v * v;
  }
  const auto n = static_cast<double>(delivered.size());
  f.mean = sum / n;
  if (sum_sq > 0) f.jain = (sum * sum) / (n * sum_sq);
  if (f.max > 0) f.min_over_max = static_cast<double>(f.min) / static_cast<double>(f.max);
  return f;
}

}  // namespace sb::bench
