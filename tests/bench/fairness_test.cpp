// Fan-in fairness: min, max, mean and Jain's index of per-sender counts.
#include "bench/fairness.hpp"

#include <gtest/gtest.h>

#include <vector>

namespace sb::bench {
namespace {

TEST(Fairness, EqualSharesArePerfectlyFair) {
  const std::vector<std::uint64_t> x = {500, 500, 500, 500};
  const Fairness f = fairness_of(x);
  EXPECT_EQ(f.senders, 4u);
  EXPECT_EQ(f.min, 500u);
  EXPECT_EQ(f.max, 500u);
  EXPECT_DOUBLE_EQ(f.mean, 500.0);
  EXPECT_DOUBLE_EQ(f.jain, 1.0);
  EXPECT_DOUBLE_EQ(f.min_over_max, 1.0);
}

TEST(Fairness, OneSenderGettingEverythingIsOneOverN) {
  const std::vector<std::uint64_t> x = {0, 0, 9000, 0, 0};
  const Fairness f = fairness_of(x);
  EXPECT_EQ(f.min, 0u);
  EXPECT_EQ(f.max, 9000u);
  EXPECT_DOUBLE_EQ(f.mean, 1800.0);
  EXPECT_DOUBLE_EQ(f.jain, 1.0 / 5.0);
  EXPECT_DOUBLE_EQ(f.min_over_max, 0.0);
}

TEST(Fairness, JainsIndexByHand) {
  // (1 + 2 + 3)^2 / (3 * (1 + 4 + 9)) = 36 / 42
  const std::vector<std::uint64_t> x = {1, 2, 3};
  const Fairness f = fairness_of(x);
  EXPECT_DOUBLE_EQ(f.jain, 36.0 / 42.0);
  EXPECT_DOUBLE_EQ(f.mean, 2.0);
  EXPECT_DOUBLE_EQ(f.min_over_max, 1.0 / 3.0);
  // Half the senders at a share, half at nothing: k/n = 0.5.
  const std::vector<std::uint64_t> half = {7, 7, 0, 0};
  EXPECT_DOUBLE_EQ(fairness_of(half).jain, 0.5);
}

TEST(Fairness, ScaleDoesNotMatterAndLargeCountsDoNotOverflow) {
  const std::vector<std::uint64_t> small = {10, 20, 30, 40};
  const std::vector<std::uint64_t> large = {10'000'000'000, 20'000'000'000, 30'000'000'000, 40'000'000'000};
  EXPECT_NEAR(fairness_of(small).jain, fairness_of(large).jain, 1e-12);
  EXPECT_NEAR(fairness_of(small).jain, 100.0 * 100.0 / (4.0 * 3000.0), 1e-12);
}

TEST(Fairness, EmptyAndAllZeroAreFair) {
  const Fairness none = fairness_of({});
  EXPECT_EQ(none.senders, 0u);
  EXPECT_DOUBLE_EQ(none.jain, 1.0);
  const std::vector<std::uint64_t> zeros = {0, 0, 0};
  const Fairness z = fairness_of(zeros);
  EXPECT_EQ(z.senders, 3u);
  EXPECT_DOUBLE_EQ(z.jain, 1.0);
  EXPECT_DOUBLE_EQ(z.min_over_max, 1.0);
  const std::vector<std::uint64_t> one = {42};
  EXPECT_DOUBLE_EQ(fairness_of(one).jain, 1.0);
}

}  // namespace
}  // namespace sb::bench
