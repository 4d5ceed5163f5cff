#include "bench/worker.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>

#include "bench/process.hpp"
#include "protocol/client_id.hpp"

namespace sb::bench {

namespace {

constexpr std::size_t kReadChunk = std::size_t{256} * 1024;
// Output bytes queued on one connection before its streams wait for
// EPOLLOUT: enough to keep the socket busy, small enough that a stalled
// server shows up as a stalled sender rather than as bench memory.
constexpr std::size_t kHighWater = std::size_t{256} * 1024;
// Messages one stream may queue per loop turn, so that one stream with a
// large window cannot starve the others of the same thread.
constexpr std::uint64_t kBatch = 64;
constexpr int kMaxEvents = 512;
// The longest a loop sleeps before it looks at deadlines and abort again.
constexpr std::int64_t kMaxWaitNs = 50'000'000;
constexpr std::size_t kMaxErrorSamples = 5;
// Reconnections allowed per client, on average, to land it on its shard.
constexpr std::size_t kMaxPlacementRetries = 64;
constexpr std::int64_t kNever = std::numeric_limits<std::int64_t>::max();

std::string client_subject(std::uint32_t global_client) {
  return fmt::format("bench.{}", global_client);
}

}  // namespace

std::int64_t now_ns() noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// ---- Coordinator ----------------------------------------------------------

void Coordinator::report_ready(bool ok) {
  std::lock_guard lock(mu_);
  ++ready_;
  if (!ok) failed_ = true;
  cv_.notify_all();
}

bool Coordinator::wait_ready(std::chrono::steady_clock::time_point deadline) {
  std::unique_lock lock(mu_);
  cv_.wait_until(lock, deadline, [&] { return ready_ == expected_ || failed_; });
  return ready_ == expected_ && !failed_;
}

void Coordinator::release(const Timeline& t) {
  std::lock_guard lock(mu_);
  timeline_ = t;
  released_ = true;
  cv_.notify_all();
}

void Coordinator::abort() {
  aborted_.store(true, std::memory_order_relaxed);
  std::lock_guard lock(mu_);
  cv_.notify_all();
}

std::optional<Timeline> Coordinator::wait_release() {
  std::unique_lock lock(mu_);
  cv_.wait(lock, [&] { return released_ || aborted(); });
  if (aborted()) return std::nullopt;
  return timeline_;
}

// ---- Worker state -----------------------------------------------------------

struct Worker::Conn {
  net::Fd fd;
  std::uint32_t client = 0;
  bool publisher = false;  // Redis: the PUBLISH connection (the client's other one subscribes)
  bool ready = false;      // handshake confirmed by the server
  bool closed = false;
  bool deaf = false;      // stops reading once the run starts
  bool dirty = false;     // in dirty_, has output to flush this turn
  bool want_out = false;  // EPOLLOUT armed: the socket was full
  bool misplaced = false;  // greeted with an ID of another shard than planned: to be replaced
  std::string out;        // bytes queued, from out_head on
  std::size_t out_head = 0;
  std::string pending;  // an incomplete message carried over to the next read
  SwitchboardParser switchboard;
  SwitchboardV2Parser switchboard_v2;
  NatsParser nats;
  RespParser resp;
};

struct Worker::Client {
  std::uint32_t recv_conn = 0;
  std::uint32_t send_conn = 0;
  std::uint32_t server_id = 0;  // switchboard: the ID the server gave it
  bool flooder = false;
};

struct Worker::Stream {
  StreamPlan plan;
  std::uint32_t id = 0;  // global stream ID
  Envelope envelope;
  std::uint64_t sent = 0;
  std::int64_t next_due = 0;
};

// Receives a parser's findings for one connection.
struct Worker::Sink {
  Worker& w;
  std::uint32_t conn = 0;
  std::int64_t now = 0;
  bool failed = false;

  void on_greeting(std::uint32_t id) { w.on_greeting(conn, id); }
  void on_message(std::string_view payload) { w.on_message(conn, payload, now, std::nullopt); }
  void on_delivery(std::uint32_t source, std::string_view payload) {
    w.on_message(conn, payload, now, source);
  }
  void on_ready() { w.on_ready(conn); }
  void on_ping() { w.on_ping(conn); }
  void on_publish_reply(std::int64_t receivers) {
    if (receivers == 0) ++w.result_.publish_unrouted;
  }
  void on_server_error(std::string_view text) {
    ++w.result_.server_errors;
    w.note_error(std::string(text));
  }
  void on_protocol_error(std::string_view what) {
    ++w.result_.protocol_errors;
    w.note_error(std::string(what));
    failed = true;
  }
};

Worker::Worker(WorkerPlan plan)
    : plan_{std::move(plan)},
      verifier_{plan_.payload_size, plan_.first_stream, static_cast<std::uint32_t>(plan_.streams.size())} {
  result_.stream_delivered_in_window.assign(plan_.streams.size(), 0);
}

Worker::~Worker() {
  if (epoll_fd_ >= 0) ::close(epoll_fd_);
}

void Worker::note_error(std::string text) {
  if (result_.error_samples.size() < kMaxErrorSamples) result_.error_samples.push_back(std::move(text));
}

// ---- Run --------------------------------------------------------------------

void Worker::run(Coordinator& coordinator) {
  coordinator_ = &coordinator;
  // Paced sends wake from epoll_pwait2 on time only without the default
  // 50 us timer slack, which would otherwise show up as latency.
  ::prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
  const bool ok = setup();
  coordinator.report_ready(ok);
  if (ok) {
    if (auto t = coordinator.wait_release()) {
      loop(*t);
    } else {
      result_.error = "aborted before the start";
    }
  }
  finish();
  finished_.store(true, std::memory_order_release);
}

bool Worker::setup() {
  epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd_ < 0) {
    result_.error = fmt::format("epoll_create1: {}", errno_text(errno));
    return false;
  }
  clients_.resize(plan_.clients);
  at_receiver_endpoint_.assign(plan_.clients, false);
  if (plan_.receiver_endpoint) {
    std::vector<bool> sends(plan_.clients, false);
    for (const StreamPlan& s : plan_.streams) {
      sends[s.from] = true;
      at_receiver_endpoint_[s.to] = true;
    }
    for (std::uint32_t c = 0; c < plan_.clients; ++c) {
      if (sends[c] && at_receiver_endpoint_[c]) {
        result_.error =
            fmt::format("client {} both sends and receives, so it has no one node to connect to", c);
        return false;
      }
    }
  }
  const bool redis = plan_.protocol == PeerProtocol::redis;
  conns_.reserve(std::size_t{plan_.clients} * (redis ? 2 : 1));
  try {
    for (std::uint32_t c = 0; c < plan_.clients; ++c) {
      open_connection(c, false);
      if (redis) open_connection(c, true);
    }
  } catch (const std::exception& e) {
    result_.error = fmt::format("connecting client {} of {}: {}", conns_.size() / (redis ? 2 : 1),
                                plan_.clients, e.what());
    return false;
  }
  result_.connections = conns_.size();

  const std::int64_t deadline =
      now_ns() + std::chrono::duration_cast<std::chrono::nanoseconds>(plan_.setup_timeout).count();
  while (ready_conns_ < conns_.size()) {
    const std::int64_t now = now_ns();
    if (now >= deadline || coordinator_->aborted()) {
      result_.error = fmt::format("{} of {} connections confirmed their handshake within {} ms", ready_conns_,
                                  conns_.size(), plan_.setup_timeout.count());
      return false;
    }
    flush_dirty();
    if (!poll(std::min(deadline - now, kMaxWaitNs))) return false;
    for (const Conn& c : conns_) {
      if (c.closed) {
        result_.error =
            fmt::format("the server closed a connection during setup{}",
                        result_.error_samples.empty() ? "" : ": " + result_.error_samples.front());
        return false;
      }
    }
  }

  for (std::uint32_t i = 0; i < plan_.streams.size(); ++i) {
    Stream s;
    s.plan = plan_.streams[i];
    s.id = plan_.first_stream + i;
    const std::uint32_t global_to = plan_.first_client + s.plan.to;
    switch (plan_.protocol) {
      case PeerProtocol::switchboard:
        s.envelope = switchboard_envelope(clients_[s.plan.to].server_id);
        break;
      case PeerProtocol::switchboard_v2:
        s.envelope = switchboard_v2_envelope(clients_[s.plan.to].server_id, plan_.payload_size);
        break;
      case PeerProtocol::nats:
        s.envelope = nats_envelope(client_subject(global_to), plan_.payload_size);
        break;
      case PeerProtocol::redis:
        s.envelope = redis_envelope(client_subject(global_to), plan_.payload_size);
        break;
    }
    if (s.plan.flood) clients_[s.plan.from].flooder = true;
    verifier_.expect(s.id, s.plan.to);
    streams_.push_back(std::move(s));
  }
  return true;
}

void Worker::open_connection(std::uint32_t client, bool publisher, std::optional<std::uint32_t> reuse) {
  // A deaf client's receiving connection (Redis: not its PUBLISH one).
  const bool deaf = !publisher && std::find(plan_.deaf.begin(), plan_.deaf.end(), client) != plan_.deaf.end();
  // Blocking: one SYN in flight at a time, never a full backlog.
  const net::Endpoint& where = at_receiver_endpoint_[client] ? *plan_.receiver_endpoint : plan_.endpoint;
  net::Fd fd = net::connect_tcp(where, deaf ? kDeafReceiverConnect : net::ConnectOptions{});
  const int flags = ::fcntl(fd.get(), F_GETFL);
  if (flags < 0 || ::fcntl(fd.get(), F_SETFL, flags | O_NONBLOCK) != 0) {
    throw std::runtime_error(fmt::format("fcntl O_NONBLOCK: {}", errno_text(errno)));
  }
  const auto index = reuse.value_or(static_cast<std::uint32_t>(conns_.size()));
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u32 = index;
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd.get(), &ev) != 0) {
    throw std::runtime_error(fmt::format("epoll_ctl: {}", errno_text(errno)));
  }
  Conn& c = reuse ? (conns_[index] = Conn{}) : conns_.emplace_back();
  c.fd = std::move(fd);
  c.client = client;
  c.publisher = publisher;
  c.deaf = deaf;
  Client& cl = clients_[client];
  if (publisher) {
    cl.send_conn = index;
  } else {
    cl.recv_conn = index;
    cl.send_conn = index;
  }
  const std::string subject = client_subject(plan_.first_client + client);
  switch (plan_.protocol) {
    case PeerProtocol::switchboard:
      break;  // the server speaks first: the ID
    case PeerProtocol::switchboard_v2:
      // The hello goes after the ID (on_greeting); the nonce only has to
      // differ from any payload a client could have been sent before it.
      c.switchboard_v2.set_nonce(fmt::format("{:016x}", (std::uint64_t{plan_.first_client + client} << 20) ^
                                                            static_cast<std::uint64_t>(now_ns())));
      break;
    case PeerProtocol::nats:
      queue(index, nats_handshake(subject));
      break;
    case PeerProtocol::redis:
      queue(index, publisher ? redis_ping() : redis_subscribe(subject));
      break;
  }
}

void Worker::loop(const Timeline& t) {
  timeline_ = t;
  running_ = true;
  for (std::uint32_t i = 0; i < conns_.size(); ++i) {
    if (conns_[i].deaf && !conns_[i].closed) set_events(i);
  }
  for (Stream& s : streams_) s.next_due = t.start + s.plan.offset_ns;
  // Every worker starts sending at the same instant.
  for (std::int64_t now = now_ns(); now < t.start && !coordinator_->aborted(); now = now_ns()) {
    if (!poll(std::min(t.start - now, kMaxWaitNs))) return;
  }

  // The drain is as long after the last send as drain_until is after
  // send_until, also when every stream's budget ran out early (conns).
  std::int64_t drain_deadline = t.drain_until;
  bool stopped = false;
  while (true) {
    if (coordinator_->aborted()) {
      result_.error = "aborted";
      break;
    }
    const std::int64_t now = now_ns();
    const bool sending = now < t.send_until && !budgets_done();
    if (!sending) {
      if (!stopped) {
        stopped = true;
        drain_deadline = std::min(t.drain_until, now + (t.drain_until - t.send_until));
      }
      if (all_delivered()) {
        result_.drained = true;
        break;
      }
      if (now >= drain_deadline) break;
    }
    bool more = false;
    if (sending) generate(now, t, more);
    flush_dirty();
    const std::int64_t wake = sending ? std::min(t.send_until, next_wake_) : drain_deadline;
    const std::int64_t timeout = more ? 0 : std::clamp<std::int64_t>(wake - now, 0, kMaxWaitNs);
    if (!poll(timeout)) break;
    live_delivered_.store(delivered_total_, std::memory_order_relaxed);
  }
  if (!plan_.deaf.empty() && result_.error.empty()) readout(t);
  // A worker without a flood stream has nothing to wait for.
  if (plan_.deaf.empty()) result_.flood_settled = true;
}

// The deaf receivers finally read what the server kept for them, so the
// flood stream is checked like any other: what arrived, in order, and what
// the server dropped or lost when it closed them. A close the server made
// while they were not reading shows only now: its FIN queues behind the
// unread data.
void Worker::readout(const Timeline& t) {
  readout_ = true;
  for (std::uint32_t i = 0; i < conns_.size(); ++i) {
    Conn& c = conns_[i];
    if (!c.deaf || c.closed) continue;
    // The small buffer has done its work; with it the readout would crawl.
    // If the kernel refuses, the readout is only slower (flood_settled
    // tells if it ran out of time).
    (void)::setsockopt(c.fd.get(), SOL_SOCKET, SO_RCVBUF, &kReadoutReceiveBuffer,
                       sizeof kReadoutReceiveBuffer);
    set_events(i);
  }
  const std::int64_t deadline = now_ns() + (t.drain_until - t.send_until);
  auto settled = [&] {
    for (const Stream& s : streams_) {
      if (!s.plan.flood) continue;
      if (!conns_[clients_[s.plan.to].recv_conn].closed && verifier_.tracker(s.id).unique() < s.sent)
        return false;
    }
    return true;
  };
  // Under a `drop` policy some flood messages never come: stop once the
  // deaf receivers have been quiet for a while and no flooder has output left.
  constexpr std::int64_t kQuiet = 500'000'000;
  std::uint64_t last_count = 0;
  std::int64_t last_change = now_ns();
  bool quiet = false;
  while (!settled() && !coordinator_->aborted()) {
    const std::int64_t now = now_ns();
    if (now >= deadline) break;
    std::uint64_t count = 0;
    bool flooders_idle = true;
    for (const Stream& s : streams_) {
      if (!s.plan.flood) continue;
      count += verifier_.tracker(s.id).unique();
      const Conn& from = conns_[clients_[s.plan.from].send_conn];
      flooders_idle = flooders_idle && (from.closed || from.out_head == from.out.size());
    }
    if (count != last_count) {
      last_count = count;
      last_change = now;
    } else if (flooders_idle && now - last_change >= kQuiet) {
      quiet = true;
      break;
    }
    flush_dirty();
    if (!poll(std::min(deadline - now, kMaxWaitNs))) break;
  }
  for (const Stream& s : streams_) {
    if (!s.plan.flood) continue;
    const SequenceTracker& tr = verifier_.tracker(s.id);
    result_.flood_delivered += tr.unique();
    result_.flood_lost += tr.lost(s.sent);
    result_.flood_duplicated += tr.duplicates();
    result_.flood_reordered += tr.reordered();
  }
  result_.flood_settled = quiet || settled();
}

void Worker::generate(std::int64_t now, const Timeline& t, bool& more) {
  next_wake_ = kNever;
  const bool in_window = now >= t.measure_from && now < t.send_until;
  for (Stream& s : streams_) {
    Conn& c = conns_[clients_[s.plan.from].send_conn];
    if (c.closed || c.out.size() - c.out_head >= kHighWater) continue;  // EPOLLOUT wakes us
    std::uint64_t n = kBatch;
    if (s.plan.budget != 0) {
      if (s.sent >= s.plan.budget) continue;
      n = std::min(n, s.plan.budget - s.sent);
    }
    if (!s.plan.flood) {
      const std::uint64_t in_flight = s.sent - verifier_.tracker(s.id).unique();
      if (in_flight >= plan_.window) continue;  // a delivery wakes us
      n = std::min<std::uint64_t>(n, plan_.window - in_flight);
    }
    const bool paced = s.plan.interval_ns > 0;
    if (paced) {
      if (s.next_due > now) {
        next_wake_ = std::min(next_wake_, s.next_due);
        continue;
      }
      n = std::min<std::uint64_t>(n, static_cast<std::uint64_t>((now - s.next_due) / s.plan.interval_ns) + 1);
    }
    for (std::uint64_t i = 0; i < n; ++i) {
      if (paced) {
        // Messages carry the time they are written (this turn's flush), so
        // the latency is the server's and the network's, not the wake-up
        // jitter of this thread. How far behind its plan the generator ran
        // (a full window or socket, a late wake-up) is recorded beside it,
        // so that a generator that fell behind cannot hide a stall
        // (coordinated omission) without it showing.
        if (in_window) result_.send_lag.record(static_cast<std::uint64_t>(now - s.next_due));
        s.next_due += s.plan.interval_ns;
      }
      append_message(c, s, now);
    }
    if (s.plan.flood) {
      result_.flood_sent += n;
      if (in_window) result_.flood_sent_in_window += n;
    }
    if (!c.dirty) {
      c.dirty = true;
      dirty_.push_back(clients_[s.plan.from].send_conn);
    }
    // Could this stream send again right away?
    const bool window_full = !s.plan.flood && s.sent - verifier_.tracker(s.id).unique() >= plan_.window;
    const bool budget_done = s.plan.budget != 0 && s.sent >= s.plan.budget;
    if (window_full || budget_done) continue;
    if (paced) {
      if (s.next_due <= now) {
        more = true;
      } else {
        next_wake_ = std::min(next_wake_, s.next_due);
      }
    } else if (n == kBatch) {
      more = true;
    }
  }
}

void Worker::append_message(Conn& c, Stream& s, std::int64_t sent_ns) {
  c.out.append(s.envelope.prefix);
  const std::size_t at = c.out.size();
  c.out.resize(at + plan_.payload_size);
  encode_payload({s.id, s.sent, static_cast<std::uint64_t>(sent_ns)},
                 std::span<char>(c.out.data() + at, plan_.payload_size));
  c.out.append(s.envelope.suffix);
  ++s.sent;
}

void Worker::queue(std::uint32_t conn, std::string_view bytes) {
  Conn& c = conns_[conn];
  if (c.closed) return;
  c.out.append(bytes);
  if (!c.dirty) {
    c.dirty = true;
    dirty_.push_back(conn);
  }
}

void Worker::flush_dirty() {
  for (std::uint32_t conn : dirty_) {
    conns_[conn].dirty = false;
    if (!conns_[conn].want_out) flush(conn);  // else EPOLLOUT will call flush
  }
  dirty_.clear();
}

void Worker::flush(std::uint32_t conn) {
  Conn& c = conns_[conn];
  while (!c.closed && c.out_head < c.out.size()) {
    const ssize_t n = ::send(c.fd.get(), c.out.data() + c.out_head, c.out.size() - c.out_head, MSG_NOSIGNAL);
    if (n > 0) {
      c.out_head += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (c.out_head >= c.out.size() / 2) {  // keep the buffer from creeping forward forever
        c.out.erase(0, c.out_head);
        c.out_head = 0;
      }
      if (!c.want_out) {
        c.want_out = true;
        set_events(conn);
      }
      return;
    }
    close_conn(conn, true);  // EPIPE, ECONNRESET: the server closed it
    return;
  }
  if (c.closed) return;
  c.out.clear();
  c.out_head = 0;
  if (c.want_out) {
    c.want_out = false;
    set_events(conn);
  }
}

void Worker::set_events(std::uint32_t conn) {
  Conn& c = conns_[conn];
  epoll_event ev{};
  // A deaf receiver is watched only for the server closing it.
  ev.events = (c.deaf && running_ && !readout_) ? EPOLLRDHUP : EPOLLIN;
  if (c.want_out) ev.events |= EPOLLOUT;
  ev.data.u32 = conn;
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, c.fd.get(), &ev);
}

bool Worker::poll(std::int64_t timeout_ns) {
  epoll_event events[kMaxEvents];
  const timespec ts{static_cast<time_t>(timeout_ns / 1'000'000'000),
                    static_cast<long>(timeout_ns % 1'000'000'000)};
  const int n = ::epoll_pwait2(epoll_fd_, events, kMaxEvents, &ts, nullptr);
  if (n < 0) {
    if (errno == EINTR) return true;
    result_.error = fmt::format("epoll_pwait2: {}", errno_text(errno));
    return false;
  }
  for (int i = 0; i < n; ++i) {
    const std::uint32_t conn = events[i].data.u32;
    const std::uint32_t what = events[i].events;
    if (conns_[conn].closed) continue;
    if (conns_[conn].deaf && running_ && !readout_) {
      if (what & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) close_conn(conn, true);
      continue;
    }
    // Read before acting on an error: data that arrived before a reset counts.
    if (what & (EPOLLIN | EPOLLHUP | EPOLLERR)) on_readable(conn);
    if (!conns_[conn].closed && (what & EPOLLOUT)) flush(conn);
  }
  return true;
}

void Worker::on_readable(std::uint32_t conn) {
  Conn& c = conns_[conn];
  const std::size_t carried = c.pending.size();
  if (scratch_.size() < carried + kReadChunk) scratch_.resize(carried + kReadChunk);
  std::memcpy(scratch_.data(), c.pending.data(), carried);
  const ssize_t n = ::recv(c.fd.get(), scratch_.data() + carried, scratch_.size() - carried, 0);
  if (n == 0) {
    close_conn(conn, true);
    return;
  }
  if (n < 0) {
    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) close_conn(conn, true);
    return;
  }
  const std::size_t total = carried + static_cast<std::size_t>(n);
  const std::size_t used = parse(conn, std::string_view(scratch_.data(), total), now_ns());
  if (c.misplaced) {
    reconnect(conn);
    return;
  }
  if (c.closed) return;
  c.pending.assign(scratch_.data() + used, total - used);
  // No valid message (or NATS INFO line) comes near this without an end.
  if (c.pending.size() > plan_.payload_size + std::size_t{64} * 1024) {
    ++result_.protocol_errors;
    note_error("more bytes than any message without a message end");
    close_conn(conn, false);
  }
}

std::size_t Worker::parse(std::uint32_t conn, std::string_view bytes, std::int64_t now) {
  Sink sink{*this, conn, now};
  Conn& c = conns_[conn];
  std::size_t used = 0;
  switch (plan_.protocol) {
    case PeerProtocol::switchboard:
      used = c.switchboard.parse(bytes, sink);
      break;
    case PeerProtocol::switchboard_v2:
      used = c.switchboard_v2.parse(bytes, sink);
      break;
    case PeerProtocol::nats:
      used = c.nats.parse(bytes, sink);
      break;
    case PeerProtocol::redis:
      used = c.resp.parse(bytes, sink);
      break;
  }
  if (sink.failed) close_conn(conn, false);
  return used;
}

void Worker::close_conn(std::uint32_t conn, bool by_server) {
  Conn& c = conns_[conn];
  if (c.closed) return;
  c.closed = true;
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, c.fd.get(), nullptr);
  c.fd.reset();
  c.out.clear();
  c.out_head = 0;
  c.pending.clear();
  if (!by_server || !running_) return;  // during setup, setup() reports it
  if (c.deaf) {
    if (result_.deaf_closed++ == 0) result_.first_deaf_close_ns = now_ns() - timeline_.start;
  } else if (clients_[c.client].flooder && conn == clients_[c.client].send_conn) {
    ++result_.flood_closed;
  } else {
    ++result_.unexpected_closes;
  }
}

// A client that landed on the wrong shard (WorkerPlan::client_shard) gets a
// new connection in the same slot. Bounded, so that a server that does not
// lay IDs out by shard fails setup rather than being connected to forever.
void Worker::reconnect(std::uint32_t conn) {
  if (++placement_retries_ > kMaxPlacementRetries * plan_.clients) {
    note_error(fmt::format("clients did not land on their shards in {} connections: is the server sharded "
                           "with the number of shards the bench was given?",
                           placement_retries_));
    close_conn(conn, false);
    return;
  }
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, conns_[conn].fd.get(), nullptr);
  const bool publisher = conns_[conn].publisher;
  try {
    open_connection(conns_[conn].client, publisher, conn);  // closes the old socket as it replaces it
  } catch (const std::exception& e) {
    note_error(fmt::format("connecting client {} again to place it: {}", conns_[conn].client, e.what()));
    close_conn(conn, false);
  }
}

bool Worker::all_delivered() const {
  for (const Stream& s : streams_) {
    if (s.plan.flood) continue;
    if (conns_[clients_[s.plan.to].recv_conn].closed) continue;  // nothing more can arrive
    if (verifier_.tracker(s.id).unique() < s.sent) return false;
  }
  return true;
}

bool Worker::budgets_done() const {
  for (const Stream& s : streams_) {
    if (s.plan.budget == 0 || s.sent < s.plan.budget) return false;
  }
  return !streams_.empty();
}

void Worker::finish() {
  std::vector<std::uint64_t> sent;
  sent.reserve(streams_.size());
  for (const Stream& s : streams_) {
    // A flood stream's receiver is deaf by design: its messages are not lost.
    sent.push_back(s.plan.flood ? verifier_.tracker(s.id).unique() : s.sent);
    if (!s.plan.flood) result_.sent += s.sent;
  }
  if (streams_.size() == plan_.streams.size()) {
    result_.integrity = verifier_.counts(sent);
  } else {
    // Setup never finished: nothing was sent, so nothing can be counted.
    result_.integrity = {};
  }
  conns_.clear();  // closes every socket
  if (epoll_fd_ >= 0) ::close(epoll_fd_);
  epoll_fd_ = -1;
}

// ---- Sink callbacks -----------------------------------------------------------

void Worker::on_greeting(std::uint32_t conn, std::uint32_t id) {
  const std::uint32_t client = conns_[conn].client;
  if (!plan_.client_shard.empty() && shard_of(id, plan_.shards) != plan_.client_shard[client]) {
    // On the wrong shard: SO_REUSEPORT chose by a hash of the address, so a
    // new connection lands on each shard about as often. Replaced once its
    // parser has returned (on_readable, reconnect).
    conns_[conn].misplaced = true;
    return;
  }
  clients_[client].server_id = id;
  if (plan_.protocol == PeerProtocol::switchboard_v2) {
    const std::string hello = switchboard_v2_hello(conns_[conn].switchboard_v2.nonce());
    queue(conn, hello);  // ready once the welcome arrives
    return;
  }
  on_ready(conn);
}

void Worker::on_ready(std::uint32_t conn) {
  Conn& c = conns_[conn];
  if (!c.ready) {
    c.ready = true;
    ++ready_conns_;
  }
}

void Worker::on_ping(std::uint32_t conn) {
  queue(conn, kNatsPong);
}

void Worker::on_message(std::uint32_t conn, std::string_view payload, std::int64_t now,
                        std::optional<std::uint32_t> source) {
  const Conn& c = conns_[conn];
  if (c.publisher) {  // a PUBLISH connection never subscribed: the server broke protocol
    ++result_.protocol_errors;
    note_error("a message arrived on a publishing connection");
    return;
  }
  const auto outcome = verifier_.on_payload(payload, c.client);
  if (!outcome.delivered()) return;
  if (plan_.protocol == PeerProtocol::switchboard_v2) {
    // v2: the DELIVER names its sender, which must be the stream's sender.
    const Stream& s = streams_[outcome.header.stream - plan_.first_stream];
    if (!source || *source != clients_[s.plan.from].server_id) {
      ++result_.protocol_errors;
      note_error(source ? fmt::format("DELIVER from {} for a stream sent by {}", *source,
                                      clients_[s.plan.from].server_id)
                        : std::string("a message without its source after the upgrade"));
      return;
    }
  }
  // The flood stream is read only after the run: it has no rate or latency.
  if (streams_[outcome.header.stream - plan_.first_stream].plan.flood) return;
  ++delivered_total_;
  if (now >= timeline_.measure_from && now < timeline_.send_until) {
    ++result_.delivered_in_window;
    ++result_.stream_delivered_in_window[outcome.header.stream - plan_.first_stream];
  }
  const auto sent = static_cast<std::int64_t>(outcome.header.sent_ns);
  if (sent >= timeline_.measure_from && sent < timeline_.send_until) {
    result_.latency.record(static_cast<std::uint64_t>(std::max<std::int64_t>(0, now - sent)));
  }
}

}  // namespace sb::bench
