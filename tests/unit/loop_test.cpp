// net::Loop: cross-thread wake-ups and stops, handlers added and removed in
// the middle of a turn, the end-of-turn hook, the owner-thread assertion.
// Readiness comes from eventfds, so every test is deterministic; the only
// sleeps give a loop time to fall asleep before another thread wakes it,
// and the loops wait up to 30 s when nothing wakes them, so a broken wake-up
// shows as a wait far over the 10 s these tests allow.
#include "net/loop.hpp"

#include <gtest/gtest.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>
#include <vector>

#include "net/fd.hpp"

namespace {

using namespace std::chrono_literals;
using sb::net::Fd;
using sb::net::FunctionHandler;
using sb::net::Loop;
using sb::net::Priority;
using sb::net::Token;

constexpr auto kLongWait = 30s;
constexpr auto kWakeBound = 10s;

Fd readable_eventfd() {
  Fd fd{::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)};
  const std::uint64_t one = 1;
  EXPECT_EQ(::write(fd.get(), &one, sizeof one), static_cast<ssize_t>(sizeof one));
  return fd;
}

Fd quiet_eventfd() {
  return Fd{::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)};
}

template <typename F>
std::chrono::steady_clock::duration timed(F&& f) {
  const auto start = std::chrono::steady_clock::now();
  f();
  return std::chrono::steady_clock::now() - start;
}

TEST(LoopTest, PostFromAnotherThreadWakesASleepingLoop) {
  Loop loop{kLongWait};
  std::atomic<bool> ran{false};
  std::thread poster([&] {
    std::this_thread::sleep_for(100ms);  // let the loop fall asleep
    loop.post([&] {
      EXPECT_TRUE(loop.in_owner_thread());
      ran = true;
      loop.request_stop();
    });
  });
  bool ok = false;
  const auto took = timed([&] { ok = loop.run(); });
  poster.join();
  EXPECT_TRUE(ok);
  EXPECT_TRUE(ran);
  EXPECT_LT(took, kWakeBound) << "the post did not wake the loop: it slept until its timeout";
}

TEST(LoopTest, PostsFromManyThreadsAllRun) {
  Loop loop{kLongWait};
  constexpr int kThreads = 4;
  constexpr int kPosts = 2000;
  int ran = 0;  // touched only by the loop's thread
  std::vector<std::thread> posters;
  for (int t = 0; t < kThreads; ++t) {
    posters.emplace_back([&] {
      for (int i = 0; i < kPosts; ++i) {
        loop.post([&] {
          if (++ran == kThreads * kPosts) loop.request_stop();
        });
        if (i % 500 == 0) std::this_thread::sleep_for(1ms);
      }
    });
  }
  const auto took = timed([&] { EXPECT_TRUE(loop.run()); });
  for (auto& p : posters) p.join();
  EXPECT_EQ(ran, kThreads * kPosts);
  EXPECT_LT(took, kWakeBound);
}

TEST(LoopTest, RequestStopFromAnotherThread) {
  Loop loop{kLongWait};
  int turns = 0;
  loop.set_turn_start([&] { ++turns; });
  std::thread stopper([&] {
    std::this_thread::sleep_for(100ms);
    loop.request_stop();
  });
  const auto took = timed([&] { EXPECT_TRUE(loop.run()); });
  stopper.join();
  EXPECT_TRUE(loop.stop_requested());
  EXPECT_GE(turns, 1);
  EXPECT_LT(took, kWakeBound) << "request_stop did not wake the loop";
}

TEST(LoopTest, FirstHandlersRunBeforeOthersAndCountReadable) {
  Loop loop{kLongWait};
  Fd a = readable_eventfd(), b = readable_eventfd(), f = readable_eventfd();
  std::vector<char> order;
  std::size_t readable_seen = 0;
  FunctionHandler ha{[&](std::uint32_t) {
    order.push_back('a');
    readable_seen = loop.turn_readable();
  }};
  FunctionHandler hb{[&](std::uint32_t) { order.push_back('b'); }};
  FunctionHandler hf{[&](std::uint32_t) { order.push_back('f'); }};
  // Added last, dispatched first.
  ASSERT_NE(loop.add(a.get(), EPOLLIN, &ha), Token::none);
  ASSERT_NE(loop.add(b.get(), EPOLLIN, &hb), Token::none);
  ASSERT_NE(loop.add(f.get(), EPOLLIN, &hf, Priority::first), Token::none);
  loop.set_end_of_turn([&] { loop.request_stop(); });
  EXPECT_TRUE(loop.run());
  ASSERT_EQ(order.size(), 3U);
  EXPECT_EQ(order[0], 'f');
  EXPECT_EQ(readable_seen, 2U);
  EXPECT_EQ(loop.size(), 3U);
}

TEST(LoopTest, HandlerRemovedInTheTurnOfItsEventIsNotCalled) {
  Loop loop{kLongWait};
  Fd a = readable_eventfd(), b = readable_eventfd();
  // Both are ready in the same turn; whichever runs first removes the other.
  Token ta{}, tb{};
  int calls = 0;
  FunctionHandler ha{[&](std::uint32_t) {
    ++calls;
    loop.remove(tb);
  }};
  FunctionHandler hb{[&](std::uint32_t) {
    ++calls;
    loop.remove(ta);
  }};
  ta = loop.add(a.get(), EPOLLIN, &ha);
  tb = loop.add(b.get(), EPOLLIN, &hb);
  loop.set_end_of_turn([&] { loop.request_stop(); });
  EXPECT_TRUE(loop.run());
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(loop.size(), 1U);  // the one that ran
}

TEST(LoopTest, SlotOfARemovedHandlerIsNotReusedInTheSameTurn) {
  Loop loop{kLongWait};
  Fd first = readable_eventfd(), victim = readable_eventfd(), quiet = quiet_eventfd();
  // The `first` handler removes `victim` (which has an event pending in this
  // turn) and adds a handler for an fd that is not ready: if it got the
  // victim's slot, the victim's pending event would reach it.
  int victim_calls = 0, newcomer_calls = 0, turns = 0;
  Token tv{}, tn = Token::none;
  FunctionHandler hv{[&](std::uint32_t) { ++victim_calls; }};
  FunctionHandler hn{[&](std::uint32_t) { ++newcomer_calls; }};
  FunctionHandler hf{[&](std::uint32_t) {
    if (tn != Token::none) return;
    loop.remove(tv);
    tn = loop.add(quiet.get(), EPOLLIN, &hn);
  }};
  tv = loop.add(victim.get(), EPOLLIN, &hv);
  ASSERT_NE(loop.add(first.get(), EPOLLIN, &hf, Priority::first), Token::none);
  loop.set_end_of_turn([&] {
    if (++turns == 2) loop.request_stop();
  });
  EXPECT_TRUE(loop.run());
  EXPECT_EQ(victim_calls, 0);
  EXPECT_EQ(newcomer_calls, 0);
  EXPECT_NE(tn, Token::none);
  EXPECT_NE(tn, tv);
}

TEST(LoopTest, HandlerAddedDuringATurnIsCalledFromTheNextOne) {
  Loop loop{kLongWait};
  Fd a = readable_eventfd(), c = readable_eventfd();
  int turn = 0, c_turn = 0;
  FunctionHandler hc{[&](std::uint32_t) {
    if (c_turn == 0) c_turn = turn;
    loop.request_stop();
  }};
  Token ta{};
  FunctionHandler ha{[&](std::uint32_t) {
    loop.remove(ta);
    ASSERT_NE(loop.add(c.get(), EPOLLIN, &hc), Token::none);
  }};
  ta = loop.add(a.get(), EPOLLIN, &ha);
  loop.set_turn_start([&] { ++turn; });
  EXPECT_TRUE(loop.run());
  EXPECT_EQ(c_turn, 2);
}

TEST(LoopTest, ModifyChangesWhatIsReported) {
  Loop loop{kLongWait};
  Fd a = readable_eventfd();
  int calls = 0, turns = 0;
  Token ta{};
  FunctionHandler ha{[&](std::uint32_t) {
    ++calls;
    EXPECT_TRUE(loop.modify(ta, 0));  // readable still, but no longer watched for it
  }};
  ta = loop.add(a.get(), EPOLLIN, &ha);
  // Three turns; a fresh post keeps the loop from sleeping between them.
  loop.set_end_of_turn([&] {
    if (++turns == 3) {
      loop.request_stop();
    } else {
      loop.post([] {});
    }
  });
  EXPECT_TRUE(loop.run());
  EXPECT_EQ(calls, 1);
}

TEST(LoopTest, EndOfTurnRunsToQuiescenceWithinOneTurn) {
  Loop loop{kLongWait};
  int turns = 0, hooks = 0, posted_ran = 0;
  loop.set_turn_start([&] { ++turns; });
  // Each end-of-turn posts once more, three times deep: all of it must
  // happen in the first turn, iterating.
  loop.set_end_of_turn([&] {
    ++hooks;
    if (posted_ran < 3) {
      loop.post([&] { ++posted_ran; });
    } else {
      loop.request_stop();
    }
  });
  loop.post([] {});  // so that the first wait does not sleep
  EXPECT_TRUE(loop.run());
  EXPECT_EQ(turns, 1);
  EXPECT_EQ(posted_ran, 3);
  EXPECT_EQ(hooks, 4);
}

// yield_before_sleep: the look after the yield dispatches what is ready,
// and a loop that then sleeps is still woken by a post.
TEST(LoopTest, AfterAYieldWhatIsReadyIsDispatched) {
  Loop loop{kLongWait};
  Fd ready = readable_eventfd();
  int calls = 0;
  FunctionHandler h{[&](std::uint32_t) { ++calls; }};
  loop.add(ready.get(), EPOLLIN, &h);
  loop.yield_before_sleep();
  const auto took = timed([&] { EXPECT_TRUE(loop.run_turn()); });
  EXPECT_EQ(calls, 1);
  EXPECT_LT(took, kWakeBound) << "the loop slept although a handler was ready";
}

TEST(LoopTest, APostWakesALoopThatYieldedAndThenSlept) {
  Loop loop{kLongWait};
  std::atomic<bool> ran{false};
  std::atomic<bool> asked{false};
  loop.set_end_of_turn([&] {
    if (!ran) loop.yield_before_sleep();  // every turn until the post: as a busy engine asks
    asked = true;
  });
  std::thread poster([&] {
    // Once a turn has asked for the yield, the loop's next wait yields,
    // looks, and sleeps; the post must wake it whenever it comes.
    const auto deadline = std::chrono::steady_clock::now() + kWakeBound;
    while (!asked && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
    loop.post([&] {
      ran = true;
      loop.request_stop();
    });
  });
  loop.post([] {});  // a first turn that runs the hook, without sleeping
  bool ok = false;
  const auto took = timed([&] { ok = loop.run(); });
  poster.join();
  EXPECT_TRUE(ok);
  EXPECT_TRUE(ran);
  EXPECT_LT(took, kWakeBound) << "the post did not wake the loop after its yield";
}

#ifndef NDEBUG
TEST(LoopDeathTest, OnlyTheOwnerThreadMayAddHandlers) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        Loop loop{kLongWait};
        Fd a = quiet_eventfd();
        FunctionHandler h{[](std::uint32_t) {}};
        std::thread other([&] { loop.add(a.get(), EPOLLIN, &h); });
        other.join();
      },
      "used only by the thread that created it");
}
#endif

}  // namespace
