#include "engines/reactor/reactor_engine.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cassert>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <mutex>
#include <optional>
#include <sstream>
#include <variant>

#include "cluster/redis_transport.hpp"
#include "core/metrics.hpp"
#include "engines/common/router_upkeep.hpp"
#include "engines/common/token_file.hpp"
#include "engines/responder_metrics.hpp"
#include "net/socket.hpp"

namespace sb::engines::reactor {

namespace {

constexpr std::size_t kReadBlock = 64 * 1024;     // one read brings at most this much
constexpr std::size_t kMinReadSpace = 16 * 1024;  // compact or grow below this
constexpr std::size_t kReadPoolIdle = 256;        // 16 MiB of idle read blocks at most
// A turn reads at most about this much in all: when more sockets are ready
// than that covers at 64 KiB each, each gets an equal share (at least
// kMinReadShare). Hundreds of floods then cost a few milliseconds a turn,
// and the listener, new clients' greetings and everyone else's writes come
// around within milliseconds (level-triggered epoll reports the unread rest
// again next turn, after the sockets it has not reported yet).
constexpr std::size_t kTurnReadBudget = 4 * 1024 * 1024;
constexpr std::size_t kMinReadShare = 4 * 1024;
// A turn that routed at least this many frames was busy: the loop yields
// once before it sleeps (net::Loop::yield_before_sleep). A paced trickle
// (a frame or two a turn) never does, so its latency is the same on a
// loaded machine; measured in docs/BENCHMARKS.md.
constexpr std::uint64_t kBusyTurnFrames = 64;
constexpr int kAcceptBatch = 256;  // accepts per turn, so a connection storm cannot starve reads
constexpr std::size_t kMaxIov = 64;
constexpr std::chrono::milliseconds kTick{250};  // stall checks, deadlines and memory trimming granularity
constexpr auto kTrimInterval = std::chrono::seconds{1};

// The router's copy of the limits. --max-frame reaches ServerOptions::max_frame
// (the decoders' limit); the router tells it to v2 clients in the welcome, so
// it must be the same number.
// A shard's IDs carry its index (docs/ARCHITECTURE.md, "IDs and places").
core::RouterConfig router_config(const ServerOptions& options, const ShardLink* shard) {
  core::RouterConfig config = options.router;
  config.max_frame = options.max_frame;
  if (options.cluster) {
    // A node's IDs carry its number and the shard (docs/CLUSTER.md).
    config.counter_bits = cluster::kCounterBits;
    config.place = cluster::place_of(options.cluster->node, shard != nullptr ? shard->index : 0);
  } else if (shard != nullptr) {
    config.counter_bits = 32 - sb::shard_bits(shard->set->count);
    config.place = shard->index;
  }
  return config;
}

}  // namespace

struct ReactorEngine::Connection final : net::Handler {
  Connection(ReactorEngine& e, net::Fd f, std::size_t max_frame, protocol::BlockPool& pool)
      : engine{e}, fd{std::move(f)}, decoder{max_frame, &pool} {}
  void on_event(std::uint32_t events) override { engine.on_connection_event(*this, events); }

  ReactorEngine& engine;
  net::Fd fd;
  ClientId id{};
  protocol::FrameDecoder decoder;
  net::Token token = net::Token::none;  // none until watched by the loop
  std::uint32_t interest = 0;           // events watched for
  bool want_write = false;              // bytes remain after a flush: EPOLLOUT armed
  bool paused = false;                  // backpressure: not reading until resumed
  bool read_closed = false;             // FIN seen, or the router said to stop reading it: never read again
  bool closing = false;
  core::CloseReason reason = core::CloseReason::peer_closed;
};

ReactorEngine::ReactorEngine(ServerOptions options, ShardLink* shard)
    : options_{std::move(options)},
      shard_{shard},
      name_{shard == nullptr ? std::string("reactor") : "shard " + std::to_string(shard->index)},
      max_conns_{shard == nullptr ? effective_max_conns(options_) : shard->set->max_conns},
      read_pool_{kReadBlock, kReadPoolIdle},
      router_{router_config(options_, shard)},
      listener_handler_{[this](std::uint32_t) { on_accept(); }},
      signal_handler_{[this](std::uint32_t) { on_signal(); }} {
  if (shard_ != nullptr) {
    for (unsigned i = 0; i < shard_->set->count; ++i) {
      if (i != shard_->index) router_.add_peer(shard_place(i));
    }
    pending_.resize(shard_->set->count);
  }
}

// The router's place of shard `i` of this node.
std::uint32_t ReactorEngine::shard_place(unsigned i) const noexcept {
  return options_.cluster ? cluster::place_of(options_.cluster->node, i) : i;
}

ReactorEngine::~ReactorEngine() = default;

core::Time ReactorEngine::now() const noexcept {
  return std::chrono::steady_clock::now().time_since_epoch();
}

int ReactorEngine::run() {
  setup();
  serve();
  return 0;
}

void ReactorEngine::setup_shard() {
  // The engine blocked the signals before starting this thread and handles
  // them itself; it bound the listener.
  spare_ = net::Fd{::open("/dev/null", O_RDONLY | O_CLOEXEC)};
  if (!spare_) throw net::StartupError(std::string("cannot set up the event loop: ") + std::strerror(errno));
  loop_ = std::make_unique<net::Loop>(kTick);
  listener_ = std::move(shard_->listener);
  listener_token_ = loop_->add(listener_.get(), EPOLLIN, &listener_handler_, net::Priority::first);
  if (listener_token_ == net::Token::none) {
    throw net::StartupError(std::string("cannot watch the listener: ") + std::strerror(errno));
  }
  loop_->set_turn_start([this] { on_turn_start(); });
  loop_->set_end_of_turn([this] { on_end_of_turn(); });
  router_.on_tick(now());
  next_trim_ = now() + kTrimInterval;
  if (options_.cluster) start_cluster();
  shard_->set->loops[shard_->index].store(loop_.get());
}

void ReactorEngine::run_shard(const std::function<void()>& started) {
  setup_shard();
  started();
  serve();
}

void ReactorEngine::post(std::function<void()> fn) {
  loop_->post(std::move(fn));
}

void ReactorEngine::set_tokens(std::vector<std::string> tokens) {
  router_.set_tokens(std::move(tokens));
}

void ReactorEngine::setup() {
  net::ignore_sigpipe();
  // Take signals as events of the loop rather than as interruptions. They
  // are blocked before the listener exists, so that none sent once the
  // "listening" line is out can take the default action (death).
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGUSR1);  // log the counters, keep running
  sigaddset(&mask, SIGHUP);   // re-read what can be re-read (the auth tokens)
  ::pthread_sigmask(SIG_BLOCK, &mask, nullptr);
  signals_ = net::Fd{::signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC)};
  spare_ = net::Fd{::open("/dev/null", O_RDONLY | O_CLOEXEC)};
  if (!signals_ || !spare_) {
    throw net::StartupError(std::string("cannot set up the event loop: ") + std::strerror(errno));
  }
  loop_ = std::make_unique<net::Loop>(kTick);
  if (options_.router.auth_required) load_tokens(true);
  if (options_.cluster) start_cluster();
  listener_ = net::listen_tcp(options_.listen);

  // The listener and the signals come first in every turn: new clients are
  // greeted in this turn's flush whatever else is ready.
  listener_token_ = loop_->add(listener_.get(), EPOLLIN, &listener_handler_, net::Priority::first);
  if (listener_token_ == net::Token::none) {
    throw net::StartupError(std::string("cannot watch the listener: ") + std::strerror(errno));
  }
  if (loop_->add(signals_.get(), EPOLLIN, &signal_handler_, net::Priority::first) == net::Token::none) {
    throw net::StartupError(std::string("cannot watch signals: ") + std::strerror(errno));
  }
  if (options_.metrics) start_metrics();
  loop_->set_turn_start([this] { on_turn_start(); });
  loop_->set_end_of_turn([this] { on_end_of_turn(); });

  router_.on_tick(now());
  next_trim_ = now() + kTrimInterval;
  net::Endpoint bound = options_.listen;
  bound.port = net::local_port(listener_.get());
  spdlog::info(
      "{}: listening on {} (max {} connections, policy {}, max-pending {} bytes, "
      "max-pending-total {} bytes{})",
      name_, bound.to_string(), max_conns_, core::to_string(options_.router.policy),
      options_.router.max_pending, options_.router.max_pending_total,
      options_.router.auth_required ? ", tokens required" : "");
  if (options_.on_listening) options_.on_listening(bound);
}

void ReactorEngine::load_tokens(bool at_start) {
  if (auto tokens = read_token_file(options_.auth_token_file, at_start))
    router_.set_tokens(std::move(*tokens));
}

void ReactorEngine::serve() {
  if (!loop_->run()) spdlog::error("{}: epoll_wait failed: {}; stopping", name_, std::strerror(errno));
  leave_cluster();
  const std::size_t abandoned = router_.stats().pending_bytes;
  if (abandoned > 0) spdlog::warn("{}: drain timeout: {} queued bytes were not delivered", name_, abandoned);
  for (auto& c : conns_) {
    if (c) mark_closing(*c, core::CloseReason::shutdown);
  }
  finish_turn();
  metrics_.reset();  // its handlers leave the loop before the loop goes
}

void ReactorEngine::on_turn_start() {
  turn_start_ = now();
  turn_frames_ = frames_handled();
  router_.on_tick(turn_start_);
  if (cluster_) cluster_->on_tick(turn_start_);
  if (metrics_) metrics_->on_tick();
}

// The pages are built here, on the loop's thread, from the router's own
// state: no copy kept up to date elsewhere, no lock.
void ReactorEngine::start_metrics() {
  net::HttpResponder::Routes routes;
  routes["/metrics"] = [this] {
    return net::HttpResponder::Response{"text/plain; version=0.0.4; charset=utf-8", metrics_text()};
  };
  routes["/healthz"] = [] { return net::HttpResponder::Response{"text/plain; charset=utf-8", "ok\n"}; };
  routes["/clients"] = [this] { return net::HttpResponder::Response{"application/json", clients_json()}; };
  metrics_ = std::make_unique<net::HttpResponder>(*loop_, *options_.metrics, std::move(routes),
                                                  net::HttpResponder::Limits{});
  spdlog::info("reactor: metrics on http://{}:{}/metrics (also /healthz, /clients)", options_.metrics->host,
               metrics_->port());
}

std::string ReactorEngine::metrics_text() const {
  return core::prometheus_text(totals(), responder_metrics(metrics_->counts()));
}

std::string ReactorEngine::clients_json() const {
  const auto wall_minus_steady = std::chrono::system_clock::now().time_since_epoch() - now();
  // The router tags each client with its fd.
  return core::clients_json(
      router_.clients(), [](const core::ClientView& v) { return net::peer_name(static_cast<int>(v.tag)); },
      std::chrono::duration_cast<std::chrono::nanoseconds>(wall_minus_steady));
}

void ReactorEngine::on_end_of_turn() {
  finish_turn();
  if (shard_ != nullptr) exchange_with_peers();
  if (frames_handled() - turn_frames_ >= kBusyTurnFrames) loop_->yield_before_sleep();
  if (cluster_ && shard_ == nullptr) {
    router_.flush_peers([this](std::uint32_t place, std::vector<char>& batch, std::size_t frames) {
      cluster_->send(place, batch, frames);
    });
    cluster_->flush();
  }
  if (turn_start_ >= next_trim_) {
    next_trim_ = now() + kTrimInterval;
    give_memory_back(read_pool_, router_);
  }
  // A cluster node stops listening once its queues are written, and is
  // drained when what was still on its way has been routed and written too.
  if (draining_ && cluster_ && router_.stats().pending_bytes == 0) cluster_->stop_listening();
  const bool drained = router_.stats().pending_bytes == 0 && (!cluster_ || cluster_->idle()) &&
                       (shard_ == nullptr || !draining_ || shards_drained());
  if (draining_ && (drained || now() >= drain_deadline_)) loop_->request_stop();
}

// Each readable socket's share of the turn's read budget.
std::size_t ReactorEngine::read_share() const noexcept {
  const std::size_t readable = loop_->turn_readable();
  return readable == 0 ? kReadBlock : std::clamp(kTurnReadBudget / readable, kMinReadShare, kReadBlock);
}

void ReactorEngine::on_connection_event(Connection& c, std::uint32_t events) {
  if (c.closing) return;
  if ((events & EPOLLIN) != 0 && !c.paused && !c.read_closed && !draining_) on_readable(c, read_share());
  if (c.closing) return;
  if ((events & EPOLLOUT) != 0) flush(c);
  if ((events & (EPOLLERR | EPOLLHUP)) != 0 && !c.closing) {
    // Readable data is read first (above); a hang-up without it is the end.
    if ((events & EPOLLIN) == 0 || draining_ || c.paused || c.read_closed) {
      mark_closing(c, core::CloseReason::peer_closed);
    }
  }
}

void ReactorEngine::on_signal() {
  signalfd_siginfo info{};
  while (::read(signals_.get(), &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
    if (info.ssi_signo == SIGUSR1) {
      net::log_always("stats: " + totals().summary());
      continue;
    }
    if (info.ssi_signo == SIGHUP) {
      if (options_.router.auth_required) {
        load_tokens(false);
      } else {
        spdlog::info("SIGHUP: nothing to reload (no --auth-token-file)");
      }
      continue;
    }
    if (draining_) {
      spdlog::warn("reactor: second signal: stopping without waiting for the drain");
      loop_->request_stop();
      return;
    }
    spdlog::info("reactor: signal {}: no longer accepting or reading; draining queued output for up to {} ms",
                 info.ssi_signo, options_.drain_timeout.count());
    if (options_.on_draining) options_.on_draining();
    begin_drain();
  }
}

void ReactorEngine::begin_drain() {
  if (draining_) return;
  draining_ = true;
  drain_deadline_ = now() + options_.drain_timeout;
  if (listener_token_ != net::Token::none) loop_->remove(listener_token_);
  listener_token_ = net::Token::none;
  listener_.reset();
  for (auto& c : conns_) {
    if (c && !c->closing) update_interest(*c);
  }
}

void ReactorEngine::stop_now() {
  loop_->request_stop();
}

// ---- Cluster: batches to and from the other nodes (--cluster) ----

// Joins before serving: the listening line comes only once this node hears
// its channel, so no client of it can be named to another node before
// frames for it can arrive.
void ReactorEngine::start_cluster() {
  const cluster::Lease& lease = *options_.cluster;
  cluster::TransportEvents& events = *this;
  cluster_ = std::make_unique<cluster::RedisTransport>(*loop_, lease, shard_ != nullptr ? shard_->index : 0, events);
  constexpr auto kJoinTimeout = std::chrono::seconds{5};
  const core::Time deadline = now() + kJoinTimeout;
  while (!cluster_->ready()) {
    if (now() >= deadline) {
      cluster_->leave();
      throw net::StartupError("--cluster: no subscription at Redis " + lease.options.url + " within 5 s");
    }
    if (!loop_->run_turn()) throw net::StartupError(std::string("epoll_wait failed: ") + std::strerror(errno));
  }
  if (shard_ == nullptr || shard_->index == 0) {
    spdlog::info("{}: node {} of cluster '{}' at {} (lease {} ms)", name_, lease.node, lease.options.name,
                 lease.options.url, lease.options.lease.count());
  }
}

void ReactorEngine::leave_cluster() {
  if (!cluster_) return;
  cluster_->leave();
  cluster_stats_ = cluster_->stats();
  cluster_.reset();
}

void ReactorEngine::on_batch(std::span<const char> batch) {
  router_.on_peer_batch(batch);
}

void ReactorEngine::on_node(std::uint32_t node, bool up, std::uint32_t shards) {
  for (std::uint32_t s = 0; s < std::min(shards, cluster::kMaxShards); ++s) {
    if (up) {
      router_.add_peer(cluster::place_of(node, s));
    } else {
      router_.remove_peer(cluster::place_of(node, s));
    }
  }
}

void ReactorEngine::on_blocked(bool blocked) {
  for (std::uint32_t place = 0; place < cluster::kMaxPlaces; ++place) {
    if (cluster::node_of(place) != options_.cluster->node) router_.set_peer_blocked(place, blocked);
  }
}

core::Stats ReactorEngine::totals() const {
  core::Stats s = router_.stats();
  s += cluster_ ? cluster_->stats() : cluster_stats_;
  return s;
}

// ---- Shards: batches to and from the other shards (sharded engine) ----

// Once per turn, after the clients' writes: take in what the other shards
// sent (routing it here), then hand over what this turn built for them. A
// few rounds, since each side can make work for the other (a delivery here
// resumes a sender, whose frames go out); what is left waits for the next
// turn, which notify() makes sure comes.
void ReactorEngine::exchange_with_peers() {
  for (int round = 0; round < 4; ++round) {
    const bool received = receive_from_peers();
    if (received) finish_turn();
    publish_to_peers();
    if (!router_.actions().empty() || !router_.dirty().empty()) {
      finish_turn();
      continue;
    }
    if (!received) break;
  }
  if (router_.has_peer_output()) loop_->notify();
}

// Draining: whether every shard has handed over all it had for the others
// and nothing is left in this shard's incoming rings (ShardSet::drained_out).
bool ReactorEngine::shards_drained() {
  ShardSet& set = *shard_->set;
  const bool clear = !router_.has_peer_output() &&
                     std::all_of(pending_.begin(), pending_.end(), [](const auto& q) { return q.empty(); });
  if (set.drained_out[shard_->index].exchange(clear) != clear && clear) {
    // The others may wait for this to stop: let them look again now.
    for (unsigned i = 0; i < set.count; ++i) {
      if (i == shard_->index) continue;
      if (net::Loop* other = set.loops[i].load()) other->notify();
    }
  }
  if (!clear) return false;
  for (unsigned i = 0; i < set.count; ++i) {
    if (!set.drained_out[i].load()) return false;
  }
  for (unsigned from = 0; from < set.count; ++from) {
    if (from != shard_->index && !set.ring(from, shard_->index).queue.empty()) return false;
  }
  return true;
}

bool ReactorEngine::receive_from_peers() {
  ShardSet& set = *shard_->set;
  bool any = false;
  for (unsigned from = 0; from < set.count; ++from) {
    if (from == shard_->index) continue;
    ShardRing& ring = set.ring(from, shard_->index);
    ShardRing::Batch* batch = nullptr;
    while (ring.queue.pop(batch)) {
      router_.on_peer_batch(*batch);
      ring.bytes.fetch_sub(batch->size());
      delete batch;
      any = true;
    }
    if (any && ring.producer_waiting.exchange(false)) {
      if (net::Loop* producer = set.loops[from].load()) producer->notify();
    }
  }
  return any;
}

void ReactorEngine::publish_to_peers() {
  ShardSet& set = *shard_->set;
  router_.flush_peers([this](std::uint32_t place, std::vector<char>& batch, std::size_t frames) {
    if (!options_.cluster) {
      pending_[place].push_back(std::move(batch));
    } else if (cluster::node_of(place) == options_.cluster->node) {
      pending_[cluster::shard_of(place)].push_back(std::move(batch));
    } else {
      cluster_->send(place, batch, frames);  // another node's
    }
  });
  if (cluster_) cluster_->flush();
  for (unsigned to = 0; to < set.count; ++to) {
    if (pending_[to].empty()) continue;
    ShardRing& ring = set.ring(shard_->index, to);
    auto push_all = [&] {
      bool pushed = false;
      while (!pending_[to].empty() && ring.bytes.load() < set.ring_bytes) {
        auto* batch = new ShardRing::Batch(std::move(pending_[to].front()));
        const std::size_t size = batch->size();
        if (!ring.queue.push(batch)) {
          pending_[to].front() = std::move(*batch);
          delete batch;
          break;
        }
        ring.bytes.fetch_add(size);
        pending_[to].pop_front();
        pushed = true;
      }
      return pushed;
    };
    bool pushed = push_all();
    if (!pending_[to].empty()) {
      // Full: ask to be woken when the consumer takes some, then look once
      // more, in case it did between the two.
      ring.producer_waiting.store(true);
      pushed = push_all() || pushed;
    }
    if (pushed) {
      if (net::Loop* consumer = set.loops[to].load()) consumer->notify();
    }
    router_.set_peer_blocked(shard_place(to), !pending_[to].empty());
  }
}

void ReactorEngine::on_accept() {
  for (int i = 0; i < kAcceptBatch && listener_; ++i) {
    // Shards share the process' descriptors: without this lock, another
    // shard's accept could take the descriptor a spare gives up for an
    // EMFILE rejection, and the rejected connection would wait forever.
    std::unique_lock<std::mutex> shared_fds;
    if (shard_ != nullptr) shared_fds = std::unique_lock<std::mutex>(shard_->set->accept_mutex);
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
        if (!spare_) spare_ = net::Fd{::open("/dev/null", O_RDONLY | O_CLOEXEC)};  // lost earlier: retry
        spare_.reset();
        net::Fd victim{::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC)};
        const bool took_one = victim.valid();
        if (took_one) reject(std::move(victim), "out of file descriptors");
        spare_ = net::Fd{::open("/dev/null", O_RDONLY | O_CLOEXEC)};
        if (!took_one) return;
        continue;
      }
      spdlog::warn("{}: accept failed: {}", name_, std::strerror(err));
      return;
    }
    if (shard_ != nullptr) {
      // The limit is the whole server's: the shards count together.
      if (shard_->set->live.fetch_add(1) >= max_conns_) {
        shard_->set->live.fetch_sub(1);
        reject(std::move(fd), "connection limit reached");
        continue;
      }
    } else if (router_.stats().live_clients >= max_conns_) {
      reject(std::move(fd), "connection limit reached");
      continue;
    }
    net::set_nodelay(fd.get());
    const int raw = fd.get();
    if (static_cast<std::size_t>(raw) >= conns_.size()) conns_.resize(static_cast<std::size_t>(raw) + 1);
    auto conn = std::make_unique<Connection>(*this, std::move(fd), options_.max_frame, read_pool_);
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
    spdlog::warn("{}: refused a connection from {}: {} ({} refused in all, {} similar lines suppressed)",
                 name_, net::peer_name(fd.get()), why, router_.stats().connections_rejected, suppressed);
  }
}

void ReactorEngine::on_readable(Connection& c, std::size_t budget) {
  const std::span<char> space = c.decoder.prepare(kMinReadSpace);
  const ssize_t n = ::read(c.fd.get(), space.data(), std::min(space.size(), budget));
  if (n > 0) {
    c.decoder.commit(static_cast<std::size_t>(n));
    decode(c);
  } else if (n == 0) {
    // FIN: the client sends nothing more but may still read (TCP
    // half-close). Frames already buffered were routed above; the router
    // keeps delivering to it until its queue is written.
    c.read_closed = true;
    update_interest(c);
    router_.on_read_closed(c.id);
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
    if (status == protocol::DecodeStatus::too_large || status == protocol::DecodeStatus::bad_frame) {
      std::uint64_t suppressed = 0;
      if (policy_log_.allow(suppressed)) {
        if (status == protocol::DecodeStatus::too_large) {
          spdlog::warn(
              "client {} ({}) sent a frame over --max-frame ({} bytes): disconnected ({} lines suppressed)",
              to_u32(c.id), net::peer_name(c.fd.get()), options_.max_frame, suppressed);
        } else {
          spdlog::warn("client {} ({}) sent a malformed v2 frame ({}): disconnected ({} lines suppressed)",
                       to_u32(c.id), net::peer_name(c.fd.get()), c.decoder.error_detail(), suppressed);
        }
      }
      router_.on_decode_error(c.id, status, c.decoder.error_detail());
      c.read_closed = true;  // whatever follows is not read: the router closes it after its ERROR
      update_interest(c);
      return;
    }
    switch (router_.on_frame(c.id, frame)) {
      case core::RouteResult::queued:
      case core::RouteResult::forwarded:
      case core::RouteResult::dropped:
      case core::RouteResult::handled:
        c.decoder.pop();
        break;
      case core::RouteResult::upgraded:
        c.decoder.pop();
        c.decoder.upgrade();
        break;
      case core::RouteResult::paused:
        c.paused = true;
        update_interest(c);
        return;
      case core::RouteResult::closing:
        c.decoder.pop();
        c.read_closed = true;  // the router closes it once its reply is written
        update_interest(c);
        return;
    }
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
  // Destroying clients resumes the senders that waited on them, so that too
  // goes round again. Iterative: a long chain costs turns of this loop, not
  // stack.
  for (;;) {
    carry_out_actions();
    if (!router_.dirty().empty()) {
      for (ClientId id : router_.dirty()) {
        Connection* c = by_id(id);
        if (c != nullptr && !c->closing) flush(*c);
      }
      router_.clear_dirty();
      continue;
    }
    if (closing_.empty()) break;
    for (int fd : closing_) destroy(*conns_[static_cast<std::size_t>(fd)]);
    closing_.clear();
  }
  log_policy_counts(router_.stats(), logged_, counts_log_, options_.router);
}

void ReactorEngine::carry_out_actions() {
  // Copy out: resuming a sender can add actions while we iterate.
  while (!router_.actions().empty()) {
    actions_.assign(router_.actions().begin(), router_.actions().end());
    router_.clear_actions();
    for (const core::Action& action : actions_) {
      if (const auto* close = std::get_if<core::Close>(&action)) {
        Connection* c = by_id(close->client);
        if (c == nullptr || c->closing) continue;
        if (close->reason == core::CloseReason::slow_consumer) {
          std::uint64_t suppressed = 0;
          if (policy_log_.allow(suppressed)) {
            spdlog::warn("client {} ({}) closed as a slow consumer (policy {}) ({} lines suppressed)",
                         to_u32(c->id), net::peer_name(c->fd.get()), core::to_string(options_.router.policy),
                         suppressed);
          }
        }
        mark_closing(*c, close->reason);
        continue;
      }
      if (const auto* pause = std::get_if<core::PauseReading>(&action)) {
        // A destination in another place is full (no peers here yet, but
        // the router's contract says what to do): stop reading the sender.
        Connection* c = by_id(pause->client);
        if (c == nullptr || c->closing || c->paused) continue;
        c->paused = true;
        update_interest(*c);
        continue;
      }
      const auto& resume = std::get<core::ResumeReading>(action);
      Connection* c = by_id(resume.client);
      if (c == nullptr || c->closing || !c->paused) continue;
      c->paused = false;
      if (!draining_) decode(*c);
      if (!c->paused) update_interest(*c);
      c->decoder.release_if_empty();
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
  if (shard_ != nullptr) shard_->set->live.fetch_sub(1);
  if (c.token != net::Token::none) loop_->remove(c.token);
  conns_[static_cast<std::size_t>(c.fd.get())].reset();
}

void ReactorEngine::update_interest(Connection& c) {
  std::uint32_t want = 0;
  if (!c.paused && !c.read_closed && !draining_) want |= EPOLLIN;
  if (c.want_write) want |= EPOLLOUT;
  const bool watched = c.token != net::Token::none;
  if (watched && want == c.interest) return;
  bool ok = false;
  if (watched) {
    ok = loop_->modify(c.token, want);
  } else {
    c.token = loop_->add(c.fd.get(), want, &c);
    ok = c.token != net::Token::none;
  }
  if (!ok) {
    // Only ENOMEM/ENOSPC can get here for a valid fd: the kernel cannot
    // watch this client, so it cannot be served.
    spdlog::warn("client {}: epoll_ctl failed: {}; closing it", to_u32(c.id), std::strerror(errno));
    mark_closing(c, core::CloseReason::io_error);
    return;
  }
  c.interest = want;
}

ReactorEngine::Connection* ReactorEngine::by_id(ClientId id) noexcept {
  const std::uint64_t fd = router_.tag(id);
  return fd < conns_.size() ? conns_[fd].get() : nullptr;
}

}  // namespace sb::engines::reactor
