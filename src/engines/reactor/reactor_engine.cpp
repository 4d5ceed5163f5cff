#include "engines/reactor/reactor_engine.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <array>
#include <cassert>
#include <cerrno>
#include <chrono>
#include <cstring>

#include "net/socket.hpp"

namespace sb::engines::reactor {

namespace {

constexpr std::size_t kReadBlock = 64 * 1024;     // one read brings at most this much
constexpr std::size_t kMinReadSpace = 16 * 1024;  // compact or grow below this
constexpr std::size_t kReadPoolIdle = 256;        // 16 MiB of idle read blocks at most
constexpr int kMaxEvents = 1024;
constexpr int kAcceptBatch = 256;  // accepts per turn, so a connection storm cannot starve reads
constexpr std::size_t kMaxIov = 64;
constexpr int kTickMs = 250;  // stall checks and drain deadline granularity

// epoll user data: fds for connections, these two for the rest.
constexpr std::uint64_t kListenerToken = ~std::uint64_t{0};
constexpr std::uint64_t kSignalToken = ~std::uint64_t{0} - 1;

}  // namespace

struct ReactorEngine::Connection {
  Connection(net::Fd f, std::size_t max_frame, protocol::BlockPool& pool)
      : fd{std::move(f)}, decoder{max_frame, &pool} {}
  net::Fd fd;
  ClientId id{};
  protocol::FrameDecoder decoder;
  std::uint32_t interest = 0;  // events registered with epoll
  bool registered = false;
  bool want_write = false;     // bytes remain after a flush: EPOLLOUT armed
  bool paused = false;         // backpressure: not reading until resumed
  bool closing = false;
  core::CloseReason reason = core::CloseReason::peer_closed;
};

ReactorEngine::ReactorEngine(ServerOptions options)
    : options_{std::move(options)},
      max_conns_{effective_max_conns(options_)},
      read_pool_{kReadBlock, kReadPoolIdle},
      router_{options_.router} {}

ReactorEngine::~ReactorEngine() = default;

core::Time ReactorEngine::now() const noexcept {
  return std::chrono::steady_clock::now().time_since_epoch();
}

int ReactorEngine::run() {
  setup();
  loop();
  return 0;
}

void ReactorEngine::setup() {
  net::ignore_sigpipe();
  // Take signals as events of the loop rather than as interruptions.
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGUSR1);  // log the counters, keep running
  ::pthread_sigmask(SIG_BLOCK, &mask, nullptr);
  signals_ = net::Fd{::signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC)};
  epoll_ = net::Fd{::epoll_create1(EPOLL_CLOEXEC)};
  spare_ = net::Fd{::open("/dev/null", O_RDONLY | O_CLOEXEC)};
  if (!signals_ || !epoll_ || !spare_) {
    throw net::StartupError(std::string("cannot set up the event loop: ") + std::strerror(errno));
  }
  listener_ = net::listen_tcp(options_.listen);

  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kListenerToken;
  ::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, listener_.get(), &ev);
  ev.data.u64 = kSignalToken;
  ::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, signals_.get(), &ev);

  router_.on_tick(now());
  net::Endpoint bound = options_.listen;
  bound.port = net::local_port(listener_.get());
  spdlog::info("reactor: listening on {} (max {} connections, policy {}, max-pending {} bytes)",
               bound.to_string(), max_conns_, core::to_string(options_.router.policy),
               options_.router.max_pending);
  if (options_.on_listening) options_.on_listening(bound);
}

void ReactorEngine::loop() {
  std::array<epoll_event, kMaxEvents> events{};
  while (!stop_) {
    const int n = ::epoll_wait(epoll_.get(), events.data(), kMaxEvents, kTickMs);
    if (n < 0 && errno != EINTR) {
      spdlog::error("reactor: epoll_wait failed: {}; stopping", std::strerror(errno));
      break;
    }
    router_.on_tick(now());
    for (int i = 0; i < n; ++i) {
      const epoll_event& ev = events[static_cast<std::size_t>(i)];
      if (ev.data.u64 == kListenerToken) {
        on_accept();
        continue;
      }
      if (ev.data.u64 == kSignalToken) {
        on_signal();
        continue;
      }
      Connection* c = conns_[ev.data.u64].get();
      if (c == nullptr || c->closing) continue;
      if ((ev.events & EPOLLIN) != 0 && !c->paused && !draining_) on_readable(*c);
      if (c->closing) continue;
      if ((ev.events & EPOLLOUT) != 0) flush(*c);
      if ((ev.events & (EPOLLERR | EPOLLHUP)) != 0 && !c->closing) {
        // Readable data is read first (above); a hang-up without it is the end.
        if ((ev.events & EPOLLIN) == 0 || draining_ || c->paused) mark_closing(*c, core::CloseReason::peer_closed);
      }
    }
    finish_turn();
    if (draining_ && (router_.stats().pending_bytes == 0 || now() >= drain_deadline_)) stop_ = true;
  }
  const std::size_t abandoned = router_.stats().pending_bytes;
  if (abandoned > 0) spdlog::warn("reactor: drain timeout: {} queued bytes were not delivered", abandoned);
  for (auto& c : conns_) {
    if (c) mark_closing(*c, core::CloseReason::shutdown);
  }
  finish_turn();
}

void ReactorEngine::on_signal() {
  signalfd_siginfo info{};
  while (::read(signals_.get(), &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
    if (info.ssi_signo == SIGUSR1) {
      spdlog::info("stats: {}", router_.stats().summary());
      continue;
    }
    if (draining_) {
      spdlog::warn("reactor: second signal: stopping without waiting for the drain");
      stop_ = true;
      return;
    }
    spdlog::info("reactor: signal {}: no longer accepting or reading; draining queued output for up to {} ms",
                 info.ssi_signo, options_.drain_timeout.count());
    draining_ = true;
    drain_deadline_ = now() + options_.drain_timeout;
    ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, listener_.get(), nullptr);
    listener_.reset();
    for (auto& c : conns_) {
      if (c && !c->closing) update_interest(*c);
    }
  }
}

void ReactorEngine::on_accept() {
  for (int i = 0; i < kAcceptBatch && listener_; ++i) {
    net::Fd fd{::accept4(listener_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC)};
    if (!fd) {
      const int err = errno;
      if (err == EAGAIN || err == EWOULDBLOCK) return;
      if (err == EINTR || err == ECONNABORTED) continue;
      if (err == EMFILE || err == ENFILE) {
        // Out of descriptors: the pending connection would make the listener
        // readable forever. Free the spare, take the connection, close it.
        // The victim must be closed before the spare is reopened: it holds
        // the one descriptor the spare gave up.
        spare_.reset();
        net::Fd victim{::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC)};
        const bool took_one = victim.valid();
        if (took_one) reject(std::move(victim), "out of file descriptors");
        spare_ = net::Fd{::open("/dev/null", O_RDONLY | O_CLOEXEC)};
        if (!took_one) return;
        continue;
      }
      spdlog::warn("reactor: accept failed: {}", std::strerror(err));
      return;
    }
    if (router_.stats().live_clients >= max_conns_) {
      reject(std::move(fd), "connection limit reached");
      continue;
    }
    net::set_nodelay(fd.get());
    const int raw = fd.get();
    if (static_cast<std::size_t>(raw) >= conns_.size()) conns_.resize(static_cast<std::size_t>(raw) + 1);
    auto conn = std::make_unique<Connection>(std::move(fd), options_.max_frame, read_pool_);
    conn->id = router_.on_connect(static_cast<std::uint64_t>(raw));
    Connection& c = *conn;
    conns_[static_cast<std::size_t>(raw)] = std::move(conn);
    update_interest(c);
    if (spdlog::should_log(spdlog::level::debug)) {
      spdlog::debug("client {} connected from {}", to_u32(c.id), net::peer_name(raw));
    }
  }
}

// Takes ownership of `fd` and closes it on return.
void ReactorEngine::reject(net::Fd fd, const char* why) {
  router_.on_rejected();
  std::uint64_t suppressed = 0;
  if (reject_log_.allow(suppressed)) {
    spdlog::warn("reactor: refused a connection from {}: {} ({} refused in all, {} similar lines suppressed)",
                 net::peer_name(fd.get()), why, router_.stats().connections_rejected, suppressed);
  }
}

void ReactorEngine::on_readable(Connection& c) {
  const std::span<char> space = c.decoder.prepare(kMinReadSpace);
  const ssize_t n = ::read(c.fd.get(), space.data(), std::min(space.size(), kReadBlock));
  if (n > 0) {
    c.decoder.commit(static_cast<std::size_t>(n));
    decode(c);
  } else if (n == 0) {
    mark_closing(c, core::CloseReason::peer_closed);
  } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
    mark_closing(c, errno == ECONNRESET ? core::CloseReason::peer_closed : core::CloseReason::io_error);
  }
  c.decoder.release_if_empty();
}

void ReactorEngine::decode(Connection& c) {
  protocol::Frame frame{};
  while (!c.closing) {
    const protocol::DecodeStatus status = c.decoder.peek(frame);
    if (status == protocol::DecodeStatus::need_more) return;
    if (status == protocol::DecodeStatus::too_large) {
      std::uint64_t suppressed = 0;
      if (policy_log_.allow(suppressed)) {
        spdlog::warn("client {} ({}) sent a frame over --max-frame ({} bytes): disconnected ({} lines suppressed)",
                     to_u32(c.id), net::peer_name(c.fd.get()), options_.max_frame, suppressed);
      }
      mark_closing(c, core::CloseReason::oversized_frame);
      return;
    }
    if (router_.on_frame(c.id, frame.destination, frame.wire) == core::RouteResult::paused) {
      c.paused = true;
      update_interest(c);
      return;
    }
    c.decoder.pop();
  }
}

void ReactorEngine::flush(Connection& c) {
  std::array<core::ConstBuffer, kMaxIov> bufs{};
  std::array<iovec, kMaxIov> iov{};
  for (;;) {
    const std::size_t k = router_.gather(c.id, bufs);
    if (k == 0) break;
    std::size_t total = 0;
    for (std::size_t i = 0; i < k; ++i) {
      iov[i] = {const_cast<char*>(bufs[i].data), bufs[i].size};
      total += bufs[i].size;
    }
    const ssize_t n = ::writev(c.fd.get(), iov.data(), static_cast<int>(k));
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      if (errno == EINTR) continue;
      mark_closing(c, errno == EPIPE || errno == ECONNRESET ? core::CloseReason::peer_closed
                                                              : core::CloseReason::io_error);
      return;
    }
    router_.on_written(c.id, static_cast<std::size_t>(n));
    if (static_cast<std::size_t>(n) < total) break;  // the socket buffer is full
  }
  const bool remains = router_.pending_bytes(c.id) > 0;
  if (remains != c.want_write) {
    c.want_write = remains;
    update_interest(c);
  }
}

void ReactorEngine::finish_turn() {
  // Resuming a paused sender routes more frames, which dirties more clients,
  // whose writes may resume more senders: go on until nothing is left to do.
  for (;;) {
    carry_out_actions();
    if (router_.dirty().empty()) break;
    for (ClientId id : router_.dirty()) {
      Connection* c = by_id(id);
      if (c != nullptr && !c->closing) flush(*c);
    }
    router_.clear_dirty();
  }
  for (int fd : closing_) destroy(*conns_[static_cast<std::size_t>(fd)]);
  closing_.clear();
  // Destroying clients resumes the senders that waited on them.
  if (!router_.actions().empty()) finish_turn();
  log_policy_counts();
}

// Drops and pauses are too frequent to log one by one: once per turn the
// counters are compared with the last line written, and at most one line a
// second says what happened since.
void ReactorEngine::log_policy_counts() {
  const core::Stats& now = router_.stats();
  const std::uint64_t no_route = now.dropped_no_route - logged_.dropped_no_route;
  const std::uint64_t slow = now.dropped_slow_consumer - logged_.dropped_slow_consumer;
  const std::uint64_t pauses = now.sender_pauses - logged_.sender_pauses;
  if (no_route + slow + pauses == 0) return;
  std::uint64_t suppressed = 0;
  if (!counts_log_.allow(suppressed)) return;
  if (no_route + slow > 0) {
    spdlog::warn("dropped {} frames for unknown or departed clients and {} for slow consumers (policy {})",
                 no_route, slow, core::to_string(options_.router.policy));
  }
  if (pauses > 0) {
    spdlog::info("backpressure: paused senders {} times: their destinations were over --max-pending", pauses);
  }
  logged_ = now;
}

void ReactorEngine::carry_out_actions() {
  // Copy out: resuming a sender can add actions while we iterate.
  while (!router_.actions().empty()) {
    actions_.assign(router_.actions().begin(), router_.actions().end());
    router_.clear_actions();
    for (const core::Action& a : actions_) {
      Connection* c = by_id(a.client);
      if (c == nullptr || c->closing) continue;
      if (a.kind == core::Action::Kind::close) {
        std::uint64_t suppressed = 0;
        if (policy_log_.allow(suppressed)) {
          spdlog::warn("client {} ({}) closed as a slow consumer: {} bytes queued ({} lines suppressed)",
                       to_u32(c->id), net::peer_name(c->fd.get()), router_.pending_bytes(c->id), suppressed);
        }
        mark_closing(*c, a.reason);
      } else if (c->paused) {
        c->paused = false;
        if (!draining_) decode(*c);
        if (!c->paused) update_interest(*c);
        c->decoder.release_if_empty();
      }
    }
  }
}

void ReactorEngine::mark_closing(Connection& c, core::CloseReason reason) {
  if (c.closing) return;
  c.closing = true;
  c.reason = reason;
  closing_.push_back(c.fd.get());
}

void ReactorEngine::destroy(Connection& c) {
  if (spdlog::should_log(spdlog::level::debug)) {
    spdlog::debug("client {} ({}) disconnected: {}", to_u32(c.id), net::peer_name(c.fd.get()),
                  core::to_string(c.reason));
  }
  router_.on_disconnect(c.id, c.reason);
  conns_[static_cast<std::size_t>(c.fd.get())].reset();  // closing the fd removes it from epoll
}

void ReactorEngine::update_interest(Connection& c) {
  std::uint32_t want = 0;
  if (!c.paused && !draining_) want |= EPOLLIN;
  if (c.want_write) want |= EPOLLOUT;
  if (c.registered && want == c.interest) return;
  epoll_event ev{};
  ev.events = want;
  ev.data.u64 = static_cast<std::uint64_t>(c.fd.get());
  ::epoll_ctl(epoll_.get(), c.registered ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, c.fd.get(), &ev);
  c.registered = true;
  c.interest = want;
}

ReactorEngine::Connection* ReactorEngine::by_id(ClientId id) noexcept {
  const std::uint64_t fd = router_.tag(id);
  return fd < conns_.size() ? conns_[fd].get() : nullptr;
}

}  // namespace sb::engines::reactor
