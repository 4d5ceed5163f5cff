// How evenly a fan-in run served its senders: from the number of messages
// each sender got delivered in the measurement window, the least, the most,
// the mean and Jain's fairness index,
//
//   J = (sum x_i)^2 / (n * sum x_i^2),
//
// which is 1 when every sender got the same share and 1/n when one sender
// got everything (R. Jain, D. Chiu, W. Hawe, DEC-TR-301, 1984). Pure.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace sb::bench {

struct Fairness {
  std::size_t senders = 0;
  std::uint64_t min = 0;
  std::uint64_t max = 0;
  double mean = 0;
  // 1 for an empty input or when nobody delivered anything: no sender was
  // treated worse than another.
  double jain = 1;
  // min / max, 1 when max is 0.
  double min_over_max = 1;
};

Fairness fairness_of(std::span<const std::uint64_t> delivered) noexcept;

}  // namespace sb::bench
