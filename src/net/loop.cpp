#include "net/loop.hpp"

#include <sched.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <array>
#include <cassert>
#include <cerrno>
#include <cstring>
#include <string>
#include <utility>

#include "net/socket.hpp"

namespace sb::net {

namespace {

constexpr int kMaxEvents = 1024;
// epoll user data of the wake-up eventfd; every other value is a slot.
constexpr std::uint64_t kWakeData = ~std::uint64_t{0};

}  // namespace

Loop::Loop(std::chrono::milliseconds max_wait)
    : max_wait_{max_wait},
      owner_{std::this_thread::get_id()},
      epoll_{::epoll_create1(EPOLL_CLOEXEC)},
      wakeup_fd_{::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)},
      events_{std::make_unique<epoll_event[]>(kMaxEvents)} {
  if (!epoll_ || !wakeup_fd_) {
    throw StartupError(std::string("cannot set up the event loop: ") + std::strerror(errno));
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kWakeData;
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, wakeup_fd_.get(), &ev) != 0) {
    throw StartupError(std::string("cannot watch the loop's eventfd: ") + std::strerror(errno));
  }
}

Loop::~Loop() = default;

void Loop::assert_owner() const noexcept {
  assert(in_owner_thread() &&
         "a Loop is used only by the thread that created it (post/request_stop excepted)");
}

Token Loop::add(int fd, std::uint32_t events, Handler* handler, Priority priority) {
  assert_owner();
  assert(handler != nullptr);
  std::uint32_t slot = 0;
  if (!free_.empty()) {
    slot = free_.back();
    free_.pop_back();
  } else {
    slot = static_cast<std::uint32_t>(slots_.size());
    slots_.emplace_back();
  }
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = slot;
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) {
    const int err = errno;
    free_.push_back(slot);
    errno = err;
    return Token::none;
  }
  slots_[slot] = Slot{handler, fd, priority};
  ++live_;
  return static_cast<Token>(slot);
}

bool Loop::modify(Token token, std::uint32_t events) {
  assert_owner();
  const auto slot = static_cast<std::uint32_t>(token);
  assert(slot < slots_.size() && slots_[slot].handler != nullptr);
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = slot;
  return ::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, slots_[slot].fd, &ev) == 0;
}

void Loop::remove(Token token) {
  assert_owner();
  const auto slot = static_cast<std::uint32_t>(token);
  assert(slot < slots_.size() && slots_[slot].handler != nullptr);
  Slot& s = slots_[slot];
  // Fails only if the fd is already closed, which removed it anyway.
  ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, s.fd, nullptr);
  s = Slot{};
  retired_.push_back(slot);
  --live_;
}

std::size_t Loop::size() const noexcept {
  return live_;
}

bool Loop::run() {
  assert_owner();
  while (!stop_.load()) {
    if (!run_turn()) return false;
  }
  return true;
}

bool Loop::run_turn() {
  assert_owner();
  // The events of the last wait are all dispatched: a slot removed since
  // can no longer be named by a stale event.
  free_.insert(free_.end(), retired_.begin(), retired_.end());
  retired_.clear();

  int n = 0;
  if (std::exchange(yield_, false) && !has_posted_.load() && !stop_.load()) {
    ::sched_yield();
    n = ::epoll_wait(epoll_.get(), events_.get(), kMaxEvents, 0);
  }
  if (n == 0) {
    sleeping_.store(true);
    const int timeout = has_posted_.load() || stop_.load() ? 0 : static_cast<int>(max_wait_.count());
    n = ::epoll_wait(epoll_.get(), events_.get(), kMaxEvents, timeout);
    sleeping_.store(false);
  }
  if (n < 0) {
    if (errno != EINTR) return false;
    n = 0;
  }
  if (turn_start_) turn_start_();
  dispatch(events_.get(), n);
  // Posted work and the end-of-turn hook can each leave work for the
  // other (a posted function dirties a client, a flush resumes a sender
  // that posts): go round until neither does.
  do {
    run_posted();
    if (end_of_turn_) end_of_turn_();
  } while (has_posted_.load());
  return true;
}

void Loop::dispatch(const epoll_event* events, int n) {
  // Pass 1: the `first` handlers, and a count of the readable others.
  turn_readable_ = 0;
  for (int i = 0; i < n; ++i) {
    const epoll_event& ev = events[i];
    if (ev.data.u64 == kWakeData) {
      drain_wakeup();
      continue;
    }
    const Slot& s = slots_[ev.data.u64];
    if (s.handler == nullptr) continue;
    if (s.priority == Priority::first) {
      s.handler->on_event(ev.events);  // may add: `s` is not used after this
    } else if ((ev.events & EPOLLIN) != 0) {
      ++turn_readable_;
    }
  }
  // Pass 2: the others. The slot is read afresh each time: a handler removed
  // by an earlier one in this turn is null and is skipped.
  for (int i = 0; i < n; ++i) {
    const epoll_event& ev = events[i];
    if (ev.data.u64 == kWakeData) continue;
    const Slot& s = slots_[ev.data.u64];
    if (s.handler == nullptr || s.priority == Priority::first) continue;
    s.handler->on_event(ev.events);
  }
}

bool Loop::run_posted() {
  {
    std::lock_guard lock{posted_mutex_};
    if (posted_.empty()) {
      has_posted_.store(false);
      return false;
    }
    running_.swap(posted_);
    has_posted_.store(false);
  }
  for (auto& fn : running_) fn();
  running_.clear();
  return true;
}

void Loop::post(std::function<void()> fn) {
  {
    std::lock_guard lock{posted_mutex_};
    posted_.push_back(std::move(fn));
    has_posted_.store(true);
  }
  wake();
}

void Loop::notify() noexcept {
  has_posted_.store(true);
  wake();
}

void Loop::request_stop() noexcept {
  stop_.store(true);
  wake();
}

void Loop::wake() noexcept {
  // Only a loop that may be asleep needs the eventfd; the exchange makes it
  // one write per sleep however many threads post.
  if (!sleeping_.exchange(false)) return;
  const std::uint64_t one = 1;
  [[maybe_unused]] const ssize_t w = ::write(wakeup_fd_.get(), &one, sizeof one);
}

void Loop::drain_wakeup() noexcept {
  std::uint64_t count = 0;
  [[maybe_unused]] const ssize_t r = ::read(wakeup_fd_.get(), &count, sizeof count);
}

}  // namespace sb::net
