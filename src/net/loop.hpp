// One event loop: an epoll set, a table from token to handler, a queue of
// functions posted from other threads, and an end-of-turn hook.
//
// Everything an engine watches is a Handler behind a Token: the listener,
// the signalfd, client sockets, the metrics endpoint's sockets. The token is
// a slot in a vector and is what epoll hands back in its user data, so an
// event reaches its handler by one index and one virtual call, no hashing.
//
// A turn: wait (at most max_wait, less if work was posted), call the
// turn-start hook, dispatch the `first` handlers (listener, signals: new
// clients are greeted in this very turn), then the others, then run posted
// functions and the end-of-turn hook until neither has anything left to do
// (iterating, never recursing). A handler removed during a turn is not
// called again in that turn even if epoll reported it; its slot is reused
// only after the next epoll_wait, so a stale event can never reach a new
// handler.
//
// Threads: the thread that constructs the Loop owns it. post() and
// request_stop() may be called from any thread; everything else only from
// the owner (asserted in debug builds). Handlers are not owned: whoever adds
// one removes it before destroying it.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "net/fd.hpp"

struct epoll_event;

namespace sb::net {

class Handler {
 public:
  // `events`: the EPOLL* bits the kernel reported.
  virtual void on_event(std::uint32_t events) = 0;

 protected:
  ~Handler() = default;
};

// A Handler that calls a function object, for the few fds that do not
// deserve a class of their own.
class FunctionHandler final : public Handler {
 public:
  explicit FunctionHandler(std::function<void(std::uint32_t)> fn) : fn_{std::move(fn)} {}
  void on_event(std::uint32_t events) override { fn_(events); }

 private:
  std::function<void(std::uint32_t)> fn_;
};

enum class Token : std::uint32_t { none = ~std::uint32_t{0} };

// Which pass of a turn calls a handler: `first` handlers before any other.
enum class Priority : std::uint8_t { normal, first };

class Loop {
 public:
  // Throws StartupError if epoll or the wake-up eventfd cannot be created.
  explicit Loop(std::chrono::milliseconds max_wait = std::chrono::milliseconds{250});
  ~Loop();
  Loop(const Loop&) = delete;
  Loop& operator=(const Loop&) = delete;

  // Watches `fd` for `events` (EPOLLIN, EPOLLOUT, ...; level-triggered).
  // Token::none if the kernel refuses (errno tells why: ENOMEM, ENOSPC).
  Token add(int fd, std::uint32_t events, Handler* handler, Priority priority = Priority::normal);
  // Changes what `token`'s fd is watched for; false if the kernel refuses.
  bool modify(Token token, std::uint32_t events);
  // Stops watching and forgets the handler: it is not called again, not
  // even for an event already reported in this turn. Call before closing
  // the fd.
  void remove(Token token);

  // Called at the start of every turn, after the wait, before any handler.
  void set_turn_start(std::function<void()> fn) {
    assert_owner();
    turn_start_ = std::move(fn);
  }
  // Called at the end of every turn, after the handlers and posted
  // functions, again while either leaves work behind.
  void set_end_of_turn(std::function<void()> fn) {
    assert_owner();
    end_of_turn_ = std::move(fn);
  }

  // How many `normal` handlers epoll reported readable this turn, for
  // handlers that share a per-turn read budget. Valid during dispatch.
  std::size_t turn_readable() const noexcept { return turn_readable_; }

  // Runs turns until request_stop(). Returns after the turn that saw it.
  // Returns false if epoll_wait failed (errno tells why).
  bool run();
  // Runs one turn (waiting at most max_wait), for a caller that waits for
  // something before it serves (the cluster's subscription at start-up).
  bool run_turn();

  // Any thread: runs `fn` on the loop's thread during its next turn.
  void post(std::function<void()> fn);
  // Any thread: the loop runs its end-of-turn hook once more soon, waking
  // up if it sleeps (the eventfd is written only then). For producers that
  // hand work over through their own queues (the sharded engine's rings).
  void notify() noexcept;
  // Owner: if the next wait would sleep, first give the CPU once to any
  // other thread that is ready to run on it (sched_yield) and look again.
  // For an engine whose turn was busy: on a machine whose cores are all
  // taken (its clients' processes among them), the work that arrives in
  // the meantime is taken in one turn rather than in many small ones, each
  // a wake-up that takes the core from whoever runs on it. Costs a system
  // call on an idle core (the yield returns at once); on a loaded one the
  // loop comes back after another thread's time slice, which is why only
  // busy turns ask (docs/ARCHITECTURE.md, "The loop").
  void yield_before_sleep() noexcept {
    assert_owner();
    yield_ = true;
  }
  // Any thread: the loop returns from run() at the end of its current turn.
  void request_stop() noexcept;
  bool stop_requested() const noexcept { return stop_.load(std::memory_order_acquire); }

  // The number of handlers watched now (the loop's own wake-up excluded).
  std::size_t size() const noexcept;

  bool in_owner_thread() const noexcept { return std::this_thread::get_id() == owner_; }

 private:
  struct Slot {
    Handler* handler = nullptr;
    int fd = -1;
    Priority priority = Priority::normal;
  };
  void assert_owner() const noexcept;
  void dispatch(const ::epoll_event* events, int n);
  bool run_posted();
  void wake() noexcept;
  void drain_wakeup() noexcept;

  std::chrono::milliseconds max_wait_;
  std::thread::id owner_;
  Fd epoll_;
  Fd wakeup_fd_;
  std::unique_ptr<::epoll_event[]> events_;  // what one wait returns
  std::vector<Slot> slots_;
  std::vector<std::uint32_t> free_;     // slots to reuse
  std::vector<std::uint32_t> retired_;  // removed this turn: reusable after the next wait
  std::size_t live_ = 0;
  std::size_t turn_readable_ = 0;
  bool yield_ = false;  // yield_before_sleep() was asked for this wait
  std::function<void()> turn_start_;
  std::function<void()> end_of_turn_;

  // Cross-thread state. `sleeping_` is set just before epoll_wait and
  // cleared after: a poster writes the eventfd only when it finds it set
  // (and clears it, so one write per sleep at most). Both sides use
  // sequentially consistent operations on `sleeping_` and `has_posted_`, so
  // either the poster sees the loop asleep or the loop sees the work.
  std::mutex posted_mutex_;
  std::vector<std::function<void()>> posted_;
  std::vector<std::function<void()>> running_;  // owner only: the batch being run
  std::atomic<bool> has_posted_{false};
  std::atomic<bool> sleeping_{false};
  std::atomic<bool> stop_{false};
};

}  // namespace sb::net
