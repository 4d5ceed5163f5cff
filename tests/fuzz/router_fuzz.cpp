// libFuzzer target for core::Router: random event sequences, decoded from
// the input, played the way an engine plays them (no frame from a client
// that is paused, closing or half-closed; v1 frames before the upgrade and
// v2 frames after it; every Close carried out before the next event; a
// paused sender's frame offered again when it is resumed).
//
// Input: 4 bytes of configuration (max_pending, policy, auth, a global cap),
// then events, each an opcode byte and its operands:
//   connect, v1 frame, v2 SEND, hello, PING, written, disconnect,
//   read-closed, tick, decode error, set_tokens
//
// Checked after every event: stats.pending_bytes is the sum of
// pending_bytes(id) over the live clients, and gather() returns exactly those
// bytes; live_clients is the number of live clients; contains() agrees; no
// action names a client that is not live, and no client is closed twice; no
// reserved ID is handed out, no live ID twice; is_paused() and version()
// agree with what the engine was told; every sender paused on a destination
// that leaves is resumed; no queued byte holds a listed token; a queue stays
// within max_pending plus one frame and the replies that may follow it.
#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "core/config.hpp"
#include "core/router.hpp"
#include "protocol/frame_decoder.hpp"
#include "protocol/v2.hpp"

namespace {

using namespace std::chrono_literals;
namespace p = sb::protocol;
using sb::ClientId;
using sb::to_u32;
using sb::core::CloseReason;
using sb::core::ConstBuffer;
using sb::core::Router;
using sb::core::RouterConfig;
using sb::core::RouteResult;
using sb::core::SlowConsumerPolicy;

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "router_fuzz: invariant broken: %s\n", what);
    std::abort();
  }
}

const std::array<std::string, 2> kTokens = {"tok-A-s3cr3t", "tok-B-s3cr3t"};
const std::string kNonce = "0123456789abcdef0123";
constexpr std::size_t kMaxFrame = 2048;
constexpr std::size_t kMaxClients = 24;

class Input {
 public:
  Input(const std::uint8_t* d, std::size_t n) : d_{d}, n_{n} {}
  bool empty() const { return i_ >= n_; }
  std::uint8_t byte() { return i_ < n_ ? d_[i_++] : 0; }
  std::string_view bytes(std::size_t n) {
    n = std::min(n, n_ - std::min(i_, n_));
    const std::string_view s(reinterpret_cast<const char*>(d_ + i_), n);
    i_ += n;
    return s;
  }

 private:
  const std::uint8_t* d_;
  std::size_t n_;
  std::size_t i_ = 0;
};

struct HeldFrame {
  p::FrameType type;
  std::uint32_t destination;
  std::string payload;
};

struct Model {
  ClientId id;
  int version = 1;
  bool paused = false;
  std::uint32_t paused_on = 0;
  bool stopped = false;      // not read any more: closing, or told to close
  bool read_closed = false;
  std::optional<HeldFrame> held;  // the frame that paused it
};

class Harness {
 public:
  explicit Harness(RouterConfig c) : router_{c}, config_{c} {
    if (c.auth_required) router_.set_tokens({kTokens[0]});  // set_tokens events change it later
  }

  void run(Input& in) {
    router_.on_tick(now_);
    int events = 0;
    while (!in.empty() && ++events < 2000) {
      event(in);
      carry_out_actions();
      check_invariants();
    }
    // The end: everyone leaves, nothing may be left behind.
    while (!live_.empty()) {
      disconnect(live_.begin()->first, CloseReason::shutdown);
      carry_out_actions();
      check_invariants();
    }
    check(router_.stats().pending_bytes == 0, "bytes pending with no client left");
  }

 private:
  Model* pick(Input& in) {
    if (live_.empty()) return nullptr;
    auto it = live_.begin();
    std::advance(it, in.byte() % live_.size());
    return &it->second;
  }

  std::uint32_t pick_destination(Input& in) {
    const std::uint8_t b = in.byte();
    switch (b % 8) {
      case 0: return p::kServerId;
      case 1: return p::kFirstReservedId + (b >> 3);
      case 2: return departed_.empty() ? 77777 : departed_[b % departed_.size()];
      case 3: return 0x40000000u + b;
      default: {
        Model* m = pick(in);
        return m == nullptr ? 1 : to_u32(m->id);
      }
    }
  }

  // Payloads from a fixed alphabet (so no token text can be in one), with a
  // NUL in v2 payloads when asked.
  static std::string payload(Input& in, bool may_hold_nul) {
    const std::uint8_t len = in.byte();
    const std::uint8_t fill = in.byte();
    std::size_t n = len;
    if (len >= 250) n = kMaxFrame - 255 + len;  // up to max_frame
    std::string s(n, static_cast<char>('a' + fill % 26));
    if (may_hold_nul && (fill & 0x80) != 0 && !s.empty()) s[fill % s.size()] = '\0';
    return s;
  }

  std::string hello_text(Input& in) {
    const std::uint8_t b = in.byte();
    const std::string token = kTokens[b >> 7];
    switch (b % 10) {
      case 0: return "switchboard/2 nonce=" + kNonce;
      case 1: return "switchboard/2 nonce=" + kNonce + " token=" + token;
      case 2: return "switchboard/2 nonce=" + kNonce + " token=wrong-token";
      case 3: return "switchboard/1";
      case 4: return "switchboard/1 token=" + token;
      case 5: return "switchboard/1 token=wrong-token";
      case 6: return "switchboard/2 nonce=" + kNonce + " token=" + token + " junk";
      case 7: return "switchboard/3 nonce=" + kNonce;
      case 8: return "not a hello";
      default: {
        // Raw bytes after the prefix, without a NUL (a v1 frame cannot hold one).
        std::string s = "switchboard/";
        for (char c : in.bytes(in.byte() % 64)) s.push_back(c == '\0' ? ' ' : c);
        return s;
      }
    }
  }

  void event(Input& in) {
    const std::uint8_t op = in.byte();
    switch (op % 12) {
      case 0:
      case 1:
        if (live_.size() < kMaxClients) connect();
        break;
      case 2: {  // a v1 frame
        Model* m = pick(in);
        const std::uint32_t to = pick_destination(in);
        std::string body = payload(in, false);
        if (m != nullptr) offer(*m, {p::FrameType::v1, to, std::move(body)});
        break;
      }
      case 3: {  // a v2 SEND
        Model* m = pick(in);
        const std::uint32_t to = pick_destination(in);
        std::string body = payload(in, true);
        if (m != nullptr) offer(*m, {p::FrameType::send, to, std::move(body)});
        break;
      }
      case 4: {  // a hello
        Model* m = pick(in);
        std::string text = hello_text(in);
        if (m != nullptr) offer(*m, {p::FrameType::v1, p::kServerId, std::move(text)});
        break;
      }
      case 5: {  // a PING
        Model* m = pick(in);
        std::string body(in.byte() % 65, 'p');
        if (m != nullptr) offer(*m, {p::FrameType::ping, 0, std::move(body)});
        break;
      }
      case 6:
      case 7: {  // the engine writes some of a client's queue
        Model* m = pick(in);
        const std::uint8_t how = in.byte();
        if (m == nullptr) break;
        const std::size_t queued = gathered(m->id).size();
        const std::size_t n = how >= 128 ? queued : queued * how / 128;
        router_.on_written(m->id, n);
        validate_new_actions();
        break;
      }
      case 8: {
        Model* m = pick(in);
        const std::uint8_t r = in.byte();
        if (m != nullptr) disconnect(to_u32(m->id), r % 2 == 0 ? CloseReason::peer_closed : CloseReason::io_error);
        break;
      }
      case 9: {
        Model* m = pick(in);
        if (m != nullptr && !m->stopped && !m->read_closed) {
          m->read_closed = true;
          router_.on_read_closed(m->id);
          validate_new_actions();
        }
        break;
      }
      case 10: {
        const std::uint8_t t = in.byte();
        now_ += std::chrono::milliseconds{std::int64_t{t} * 50};
        router_.on_tick(now_);
        validate_new_actions();
        break;
      }
      default: {
        const std::uint8_t b = in.byte();
        if ((b & 0x80) != 0) {
          std::vector<std::string> tokens;
          if ((b & 1) != 0) tokens.push_back(kTokens[0]);
          if ((b & 2) != 0) tokens.push_back(kTokens[1]);
          router_.set_tokens(std::move(tokens));
          break;
        }
        Model* m = pick(in);
        if (m == nullptr || m->stopped || m->read_closed || m->paused) break;
        m->stopped = true;  // the engine reads no further after a decode error
        router_.on_decode_error(m->id, (b & 1) != 0 ? p::DecodeStatus::too_large : p::DecodeStatus::bad_frame,
                                (b & 2) != 0 ? "unknown frame type" : "");
        validate_new_actions();
        break;
      }
    }
  }

  void connect() {
    const ClientId id = router_.on_connect(next_tag_++);
    validate_new_actions();
    check(!p::is_reserved(id), "a reserved ID was handed out");
    check(live_.find(to_u32(id)) == live_.end(), "a live ID was handed out again");
    Model m;
    m.id = id;
    live_.emplace(to_u32(id), std::move(m));
  }

  // The engine hands a decoded frame to the router, if it reads this client.
  void offer(Model& m, HeldFrame f) {
    if (m.stopped || m.read_closed || m.paused) return;
    // A v2 client's hello would be a SEND; a v1 client cannot send v2 frames.
    if (m.version == 2 && f.type == p::FrameType::v1) f.type = p::FrameType::send;
    if (m.version == 1 && f.type != p::FrameType::v1) return;
    if (f.type == p::FrameType::v1) std::replace(f.payload.begin(), f.payload.end(), '\0', 'z');
    deliver(m, std::move(f));
  }

  void deliver(Model& m, HeldFrame f) {
    std::string wire = f.payload;
    wire.push_back('\0');
    p::Frame frame;
    frame.type = f.type;
    frame.destination = ClientId{f.destination};
    frame.payload = std::span<const char>(wire.data(), f.payload.size());
    if (f.type == p::FrameType::v1) frame.wire = std::span<const char>(wire.data(), wire.size());
    const RouteResult r = router_.on_frame(m.id, frame);
    validate_new_actions();
    switch (r) {
      case RouteResult::paused:
        m.paused = true;
        m.paused_on = f.type == p::FrameType::ping ? to_u32(m.id) : f.destination;
        m.held = std::move(f);
        break;
      case RouteResult::upgraded:
        check(m.version == 1 && f.type == p::FrameType::v1, "upgraded twice or by a v2 frame");
        m.version = 2;
        break;
      case RouteResult::closing:
        m.stopped = true;
        break;
      case RouteResult::handled:
        check(f.type == p::FrameType::ping || f.destination == p::kServerId, "handled: not for the server");
        break;
      case RouteResult::queued:
        check(f.destination != p::kServerId && !p::is_reserved(ClientId{f.destination}), "queued to a reserved ID");
        check(live_.count(f.destination) != 0, "queued for a client that is not live");
        break;
      case RouteResult::dropped:
        break;
    }
    check(router_.version(m.id) == m.version, "version() disagrees with what the engine was told");
    check(router_.is_paused(m.id) == m.paused, "is_paused() disagrees");
  }

  void disconnect(std::uint32_t id, CloseReason reason) {
    const auto it = live_.find(id);
    if (it == live_.end()) return;
    // Everyone paused on it (but itself) must be told to read again.
    std::vector<std::uint32_t> must_resume;
    for (const auto& [other, m] : live_) {
      if (other != id && m.paused && m.paused_on == id) must_resume.push_back(other);
    }
    router_.on_disconnect(it->second.id, reason);
    live_.erase(it);
    validate_new_actions();
    departed_.push_back(id);
    for (std::uint32_t w : must_resume) {
      bool found = false;
      for (const auto& a : router_.actions()) {
        if (const auto* r = std::get_if<sb::core::ResumeReading>(&a)) found |= to_u32(r->client) == w;
      }
      check(found, "a sender paused on a destination that left was not resumed");
    }
  }

  // The engine carries out the actions in order; closes happen after the batch.
  void carry_out_actions() {
    for (int rounds = 0; rounds < 100; ++rounds) {
      if (router_.actions().empty()) break;
      const std::vector<sb::core::Action> actions(router_.actions().begin(), router_.actions().end());
      router_.clear_actions();
      seen_actions_ = 0;
      std::vector<std::pair<std::uint32_t, CloseReason>> closes;
      std::vector<std::uint32_t> resumes;
      for (const auto& a : actions) {
        if (const auto* r = std::get_if<sb::core::ResumeReading>(&a)) {
          // Named a live client when issued (checked then); it may have been
          // closed since, earlier in this batch, and the engine skips it.
          const auto it = live_.find(to_u32(r->client));
          if (it == live_.end()) continue;
          check(it->second.paused, "ResumeReading for a client that is not paused");
          it->second.paused = false;
          resumes.push_back(to_u32(r->client));
        } else {
          const auto& c = std::get<sb::core::Close>(a);
          const auto it = live_.find(to_u32(c.client));
          if (it == live_.end()) continue;
          check(std::none_of(closes.begin(), closes.end(), [&](const auto& x) { return x.first == to_u32(c.client); }),
                "Close twice in one batch");
          it->second.stopped = true;
          closes.emplace_back(to_u32(c.client), c.reason);
        }
      }
      for (std::uint32_t id : resumes) {
        const auto it = live_.find(id);
        if (it == live_.end() || it->second.stopped || !it->second.held) continue;
        HeldFrame f = std::move(*it->second.held);
        it->second.held.reset();
        deliver(it->second, std::move(f));
      }
      for (const auto& [id, reason] : closes) disconnect(id, reason);
    }
  }

  // Every action issued since the last look names a client that is live
  // now (called after each call into the router), and none closes a client
  // twice.
  void validate_new_actions() {
    const auto actions = router_.actions();
    for (std::size_t i = seen_actions_; i < actions.size(); ++i) {
      std::uint32_t id = 0;
      if (const auto* r = std::get_if<sb::core::ResumeReading>(&actions[i])) {
        id = to_u32(r->client);
      } else {
        id = to_u32(std::get<sb::core::Close>(actions[i]).client);
        check(!closed_[id], "Close twice for one client");
        closed_[id] = true;
      }
      check(live_.count(id) != 0, "an action names a client that is not live");
    }
    seen_actions_ = actions.size();
  }

  std::string gathered(ClientId id) const {
    std::array<ConstBuffer, 64> bufs{};
    const std::size_t used = router_.gather(id, bufs);
    std::string s;
    for (std::size_t i = 0; i < used; ++i) s.append(bufs[i].data, bufs[i].size);
    return s;
  }

  void check_invariants() {
    const auto& stats = router_.stats();
    check(stats.live_clients == live_.size(), "live_clients differs from the live clients");
    std::size_t sum = 0;
    for (const auto& [id, m] : live_) {
      check(router_.contains(m.id), "a live client is unknown to the router");
      const std::size_t pending = router_.pending_bytes(m.id);
      sum += pending;
      const std::string out = gathered(m.id);
      check(out.size() <= pending, "gather returned more than is pending");
      if (out.size() < 16 * 1024 * 64) check(out.size() == pending, "gather left bytes out");
      for (const std::string& t : kTokens) check(out.find(t) == std::string::npos, "a token in queued output");
      // One frame over the limit into an empty queue, then replies (a hello
      // answer, an ERROR) that may follow it.
      check(pending <= config_.max_pending + kMaxFrame + 4096, "a queue grew past its bound");
      check(router_.is_paused(m.id) == m.paused, "is_paused() disagrees");
    }
    check(stats.pending_bytes == sum, "stats.pending_bytes is not the sum of the queues");
    check(stats.peak_pending_bytes >= sum, "peak below the current level");
    for (std::size_t i = 0; i < departed_.size() && i < 8; ++i) {
      const std::uint32_t id = departed_[departed_.size() - 1 - i];
      if (live_.count(id) == 0) check(!router_.contains(ClientId{id}), "a departed client is still known");
    }
  }

  Router router_;
  RouterConfig config_;
  sb::core::Time now_ = std::chrono::seconds{100};
  std::uint64_t next_tag_ = 1;
  std::map<std::uint32_t, Model> live_;
  std::vector<std::uint32_t> departed_;
  std::map<std::uint32_t, bool> closed_;  // a Close was issued (IDs are not reused in one run)
  std::size_t seen_actions_ = 0;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 4) return 0;
  RouterConfig c;
  c.max_pending = 64 + std::size_t{data[0]} * 16;
  c.policy = static_cast<SlowConsumerPolicy>(data[1] % 3);
  c.auth_required = (data[1] & 0x04) != 0;
  c.auth_timeout = 5s;
  c.stall_timeout = 10s;
  c.half_close_linger = 1s;
  c.max_frame = kMaxFrame;
  c.max_pending_total = (data[2] & 1) != 0 ? 1024 + std::size_t{data[2]} * 32 : 0;
  // Start near the end of the ID space now and then, so that allocation
  // runs into the reserved range and wraps.
  c.first_id = (data[3] & 1) != 0 ? p::kFirstReservedId - (data[3] >> 1) : 1;
  Harness h(c);
  Input in(data + 4, size - 4);
  h.run(in);
  return 0;
}
