// OutboundQueue: bytes come out in the order they went in, whatever the block
// boundaries, gather sizes and partial writes; blocks go back to the pool.
#include <gtest/gtest.h>

#include <array>
#include <random>
#include <span>
#include <string>
#include <string_view>

#include "core/outbound_queue.hpp"
#include "protocol/block_pool.hpp"

namespace {

using sb::core::ConstBuffer;
using sb::core::OutboundQueue;
using sb::protocol::BlockPool;

void append(OutboundQueue& q, std::string_view s, BlockPool& pool) {
  q.append(std::span<const char>(s.data(), s.size()), pool);
}

// Everything `gather` returns with up to `entries` buffers, concatenated.
std::string gathered(const OutboundQueue& q, std::size_t entries = 64, std::size_t* used_out = nullptr) {
  std::array<ConstBuffer, 64> bufs{};
  const std::size_t used = q.gather(std::span<ConstBuffer>(bufs.data(), entries));
  std::string s;
  for (std::size_t i = 0; i < used; ++i) {
    EXPECT_GT(bufs[i].size, 0U) << "gather must not return empty entries";
    s.append(bufs[i].data, bufs[i].size);
  }
  if (used_out != nullptr) *used_out = used;
  return s;
}

TEST(OutboundQueue, EmptyQueueGathersNothing) {
  BlockPool pool(8, 16);
  OutboundQueue q;
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(q.size(), 0U);
  std::size_t used = 99;
  EXPECT_EQ(gathered(q, 64, &used), "");
  EXPECT_EQ(used, 0U);
  append(q, "", pool);
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(gathered(q, 64, &used), "");
  EXPECT_EQ(used, 0U);
}

TEST(OutboundQueue, AppendSpansBlocksAndGathersInOrder) {
  BlockPool pool(8, 16);
  OutboundQueue q;
  append(q, "hello world, this is thirty b", pool);  // 29 bytes: 8+8+8+5
  std::size_t used = 0;
  EXPECT_EQ(gathered(q, 64, &used), "hello world, this is thirty b");
  EXPECT_EQ(used, 4U);
  EXPECT_EQ(q.size(), 29U);
  // The next appends fill the last block before taking a new one.
  append(q, "AB", pool);  // into the last block
  EXPECT_EQ(gathered(q, 64, &used), "hello world, this is thirty bAB");
  EXPECT_EQ(used, 4U);
  append(q, "CDEFG", pool);  // 1 into the last block, 4 into a new one
  EXPECT_EQ(gathered(q, 64, &used), "hello world, this is thirty bABCDEFG");
  EXPECT_EQ(used, 5U);
  EXPECT_EQ(q.size(), 36U);
}

TEST(OutboundQueue, GatherStopsAtTheGivenNumberOfEntries) {
  BlockPool pool(8, 16);
  OutboundQueue q;
  append(q, "0123456789abcdefghijklmnopqrstuv", pool);  // four full blocks
  std::size_t used = 0;
  EXPECT_EQ(gathered(q, 2, &used), "0123456789abcdef");
  EXPECT_EQ(used, 2U);
  EXPECT_EQ(gathered(q, 1, &used), "01234567");
  EXPECT_EQ(used, 1U);
}

TEST(OutboundQueue, PartialConsumesAcrossBlockBoundaries) {
  BlockPool pool(8, 16);
  OutboundQueue q;
  append(q, "abcdefghijklmnopqrstuvwxyz", pool);
  q.consume(3, pool);  // inside the first block
  EXPECT_EQ(gathered(q), "defghijklmnopqrstuvwxyz");
  q.consume(5, pool);  // exactly to the end of the first block
  EXPECT_EQ(gathered(q), "ijklmnopqrstuvwxyz");
  EXPECT_EQ(pool.idle_blocks(), 1U) << "a fully written block goes back at once";
  q.consume(10, pool);  // across a boundary
  EXPECT_EQ(gathered(q), "stuvwxyz");
  EXPECT_EQ(q.size(), 8U);
  EXPECT_EQ(pool.idle_blocks(), 2U);
  append(q, "0123", pool);
  EXPECT_EQ(gathered(q), "stuvwxyz0123");
  q.consume(0, pool);
  EXPECT_EQ(gathered(q), "stuvwxyz0123");
  q.consume(12, pool);
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(gathered(q), "");
  append(q, "again", pool);
  EXPECT_EQ(gathered(q), "again");
}

TEST(OutboundQueue, ClearReturnsEveryBlock) {
  BlockPool pool(8, 100);
  OutboundQueue q;
  append(q, std::string(40, 'x'), pool);  // five blocks
  EXPECT_EQ(pool.idle_blocks(), 0U);
  q.clear(pool);
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(q.size(), 0U);
  EXPECT_EQ(pool.idle_blocks(), 5U);
  EXPECT_EQ(gathered(q), "");
  // The blocks are reused.
  append(q, std::string(17, 'y'), pool);
  EXPECT_EQ(pool.idle_blocks(), 2U);
  EXPECT_EQ(gathered(q), std::string(17, 'y'));
}

TEST(OutboundQueue, ConsumingEverythingReturnsEveryBlock) {
  BlockPool pool(8, 100);
  OutboundQueue q;
  append(q, std::string(21, 'x'), pool);  // three blocks, the last one partly filled
  q.consume(21, pool);
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(pool.idle_blocks(), 3U);
}

TEST(OutboundQueue, MoveKeepsTheBytes) {
  BlockPool pool(8, 16);
  OutboundQueue a;
  append(a, "moved across blocks", pool);
  OutboundQueue b(std::move(a));
  EXPECT_EQ(gathered(b), "moved across blocks");
  OutboundQueue c;
  c = std::move(b);
  EXPECT_EQ(gathered(c), "moved across blocks");
  c.clear(pool);
}

TEST(OutboundQueue, RandomAppendsGathersAndConsumesMatchAModel) {
  for (std::uint64_t seed : {7ULL, 8ULL, 9ULL}) {
    SCOPED_TRACE(testing::Message() << "seed=" << seed);
    std::mt19937_64 rng(seed);
    BlockPool pool(16, 4);
    OutboundQueue q;
    std::string model;
    char next = 'a';
    for (int op = 0; op < 20000; ++op) {
      if (rng() % 5 < 2) {
        std::string s(rng() % 50, ' ');
        for (char& ch : s) {
          ch = next;
          next = next == 'z' ? 'a' : static_cast<char>(next + 1);
        }
        append(q, s, pool);
        model += s;
      } else {
        // Write what one writev with few entries would, then part of it.
        const std::size_t entries = 1 + rng() % 4;
        std::size_t used = 0;
        const std::string g = gathered(q, entries, &used);
        ASSERT_TRUE(g == model.substr(0, g.size())) << "op " << op;
        if (used < entries) {
          ASSERT_EQ(g.size(), model.size()) << "gather left bytes out, op " << op;
        }
        ASSERT_LE(g.size(), entries * 16);
        const std::size_t n = g.empty() ? 0 : rng() % (g.size() + 1);
        q.consume(n, pool);
        model.erase(0, n);
      }
      ASSERT_EQ(q.size(), model.size());
      ASSERT_EQ(q.empty(), model.empty());
      ASSERT_LE(pool.idle_blocks(), 4U);
    }
    // Written out in full, in pieces.
    while (!q.empty()) {
      const std::string g = gathered(q, 3);
      ASSERT_TRUE(g == model.substr(0, g.size()));
      q.consume(g.size(), pool);
      model.erase(0, g.size());
    }
    EXPECT_TRUE(model.empty());
    q.clear(pool);
  }
}

}  // namespace
