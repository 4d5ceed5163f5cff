#include "bench/verifier.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace sb::bench {
namespace {

constexpr std::size_t kSize = 64;

std::string msg(std::uint32_t stream, std::uint64_t seq) {
  std::string s(kSize, '\0');
  encode_payload({stream, seq, 1000 + seq}, s);
  return s;
}

using Verdict = DeliveryVerifier::Verdict;

TEST(Verifier, CleanRunCountsNothingWrong) {
  DeliveryVerifier v(kSize, 0, 2);
  for (std::uint64_t i = 0; i < 10; ++i) {
    EXPECT_EQ(v.on_payload(msg(0, i)).verdict, Verdict::fresh);
    EXPECT_EQ(v.on_payload(msg(1, i)).verdict, Verdict::fresh);
  }
  const std::vector<std::uint64_t> sent = {10, 10};
  const auto c = v.counts(sent);
  EXPECT_TRUE(c.clean());
  EXPECT_EQ(c.delivered, 20u);
}

TEST(Verifier, DetectsALostMessage) {
  DeliveryVerifier v(kSize, 0, 1);
  for (std::uint64_t i = 0; i < 10; ++i) {
    if (i != 4) v.on_payload(msg(0, i));
  }
  const std::vector<std::uint64_t> sent = {10};
  const auto c = v.counts(sent);
  EXPECT_EQ(c.lost, 1u);
  EXPECT_EQ(c.reordered, 0u);
  EXPECT_EQ(c.duplicated, 0u);
  EXPECT_EQ(c.delivered, 9u);
  EXPECT_FALSE(c.clean());
}

TEST(Verifier, DetectsLossAtTheTail) {
  DeliveryVerifier v(kSize, 0, 1);
  for (std::uint64_t i = 0; i < 7; ++i) v.on_payload(msg(0, i));
  const std::vector<std::uint64_t> sent = {10};
  EXPECT_EQ(v.counts(sent).lost, 3u);
}

TEST(Verifier, DetectsADuplicate) {
  DeliveryVerifier v(kSize, 0, 1);
  for (std::uint64_t i = 0; i < 5; ++i) v.on_payload(msg(0, i));
  EXPECT_EQ(v.on_payload(msg(0, 3)).verdict, Verdict::duplicate);
  EXPECT_EQ(v.on_payload(msg(0, 4)).verdict, Verdict::duplicate);
  const std::vector<std::uint64_t> sent = {5};
  const auto c = v.counts(sent);
  EXPECT_EQ(c.duplicated, 2u);
  EXPECT_EQ(c.lost, 0u);
  EXPECT_EQ(c.delivered, 5u);
}

TEST(Verifier, DetectsAReorderedMessage) {
  DeliveryVerifier v(kSize, 0, 1);
  for (std::uint64_t i : {0, 1, 3, 2, 4}) v.on_payload(msg(0, i));
  const std::vector<std::uint64_t> sent = {5};
  const auto c = v.counts(sent);
  EXPECT_EQ(c.reordered, 1u);
  EXPECT_EQ(c.lost, 0u);
  EXPECT_EQ(c.duplicated, 0u);
}

TEST(Verifier, LateArrivalThenItsDuplicate) {
  DeliveryVerifier v(kSize, 0, 1);
  EXPECT_EQ(v.on_payload(msg(0, 0)).verdict, Verdict::fresh);
  EXPECT_EQ(v.on_payload(msg(0, 5)).verdict, Verdict::fresh);  // 1..4 now missing
  EXPECT_EQ(v.tracker(0).missing(), 4u);
  EXPECT_EQ(v.on_payload(msg(0, 3)).verdict, Verdict::reordered);
  EXPECT_EQ(v.on_payload(msg(0, 3)).verdict, Verdict::duplicate);
  EXPECT_EQ(v.on_payload(msg(0, 1)).verdict, Verdict::reordered);
  EXPECT_EQ(v.tracker(0).missing(), 2u);  // 2 and 4
  const std::vector<std::uint64_t> sent = {6};
  const auto c = v.counts(sent);
  EXPECT_EQ(c.lost, 2u);
  EXPECT_EQ(c.reordered, 2u);
  EXPECT_EQ(c.duplicated, 1u);
  EXPECT_EQ(c.delivered, 4u);
}

TEST(Verifier, DetectsACorruptedMessage) {
  DeliveryVerifier v(kSize, 0, 1);
  std::string m = msg(0, 0);
  m[kSize - 1] = static_cast<char>(m[kSize - 1] + 1);  // one padding byte
  EXPECT_EQ(v.on_payload(m).verdict, Verdict::corrupt);
  std::string header = msg(0, 1);
  header[12] = header[12] == '0' ? '1' : '0';  // one sequence digit
  EXPECT_EQ(v.on_payload(header).verdict, Verdict::corrupt);
  EXPECT_EQ(v.on_payload(msg(0, 0).substr(0, 40)).verdict, Verdict::corrupt);
  const std::vector<std::uint64_t> sent = {2};
  const auto c = v.counts(sent);
  EXPECT_EQ(c.corrupt, 3u);
  EXPECT_EQ(c.lost, 2u);  // corrupt copies do not count as delivered
}

TEST(Verifier, DetectsMisroutingAndUnknownStreams) {
  DeliveryVerifier v(kSize, 10, 2);  // streams 10 and 11
  v.expect(10, 1);
  v.expect(11, 2);
  EXPECT_EQ(v.on_payload(msg(10, 0), 1).verdict, Verdict::fresh);
  EXPECT_EQ(v.on_payload(msg(10, 1), 2).verdict, Verdict::misrouted);
  EXPECT_EQ(v.on_payload(msg(9, 0), 1).verdict, Verdict::misrouted);
  EXPECT_EQ(v.on_payload(msg(12, 0), 1).verdict, Verdict::misrouted);
  const std::vector<std::uint64_t> sent = {2, 0};
  const auto c = v.counts(sent);
  EXPECT_EQ(c.misrouted, 3u);
  EXPECT_EQ(c.lost, 1u);
}

TEST(SequenceTracker, GapsSplitAndCloseExactly) {
  SequenceTracker t;
  EXPECT_EQ(t.on_sequence(10), SequenceTracker::Arrival::ahead);  // 0..9 missing
  for (std::uint64_t i : {5, 0, 9, 1, 8}) EXPECT_EQ(t.on_sequence(i), SequenceTracker::Arrival::late);
  EXPECT_EQ(t.missing(), 5u);  // 2, 3, 4, 6, 7
  for (std::uint64_t i : {5, 0, 9, 10}) EXPECT_EQ(t.on_sequence(i), SequenceTracker::Arrival::duplicate);
  for (std::uint64_t i : {2, 3, 4, 6, 7}) EXPECT_EQ(t.on_sequence(i), SequenceTracker::Arrival::late);
  EXPECT_EQ(t.missing(), 0u);
  EXPECT_EQ(t.on_sequence(11), SequenceTracker::Arrival::in_order);
  EXPECT_EQ(t.unique(), 12u);
  EXPECT_EQ(t.lost(12), 0u);
}

}  // namespace
}  // namespace sb::bench
