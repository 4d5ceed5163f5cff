#include "client/client.hpp"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <memory>
#include <vector>

#include "protocol/wire.hpp"

namespace sb::client {

namespace {

using Clock = std::chrono::steady_clock;

// A v1 delivery before the welcome is at most the server's max_frame, which
// the client does not know yet; this only stops a broken peer from making
// the buffer grow without end.
constexpr std::size_t kMaxHandshakeBuffer = std::size_t{64} << 20;
// While send() waits for the kernel, it reads what arrives (so two clients
// sending to each other cannot deadlock), up to this much unreturned input.
constexpr std::size_t kMaxBufferedWhileSending = std::size_t{64} << 20;
constexpr std::size_t kReadChunk = 64 * 1024;

std::string errno_text(int err) {
  return std::strerror(err);
}

std::string ms_text(Timeout t) {
  return std::to_string(t.count()) + " ms";
}

int remaining_ms(Clock::time_point deadline) {
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return static_cast<int>(std::clamp<long long>(left, 0, 24 * 3600 * 1000));
}

// poll() one descriptor until `deadline`; the revents, 0 on timeout.
short wait_for(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    pollfd p{fd, events, 0};
    const int n = ::poll(&p, 1, remaining_ms(deadline));
    if (n > 0) return p.revents;
    if (n == 0) return 0;
    if (errno != EINTR) throw ClientError("poll: " + errno_text(errno));
  }
}

bool valid_token(std::string_view t) {
  return !t.empty() && t.size() <= 256 && std::all_of(t.begin(), t.end(), [](char ch) {
    const auto u = static_cast<unsigned char>(ch);
    return u >= 0x21 && u <= 0x7E;
  });
}

// 32 hex digits from the kernel's random source (getrandom(2)): the nonce
// only has to be unguessable by other clients of the same server.
std::string random_nonce() {
  unsigned char bytes[16];
  std::size_t got = 0;
  while (got < sizeof bytes) {
    const ssize_t n = ::getrandom(bytes + got, sizeof bytes - got, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw ClientError("getrandom: " + errno_text(errno));
    got += static_cast<std::size_t>(n);
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char b : bytes) {
    out.push_back(kHex[b >> 4]);
    out.push_back(kHex[b & 15]);
  }
  return out;
}

std::vector<std::string_view> split_words(std::string_view s) {
  std::vector<std::string_view> words;
  std::size_t start = 0;
  while (start <= s.size()) {
    const std::size_t end = std::min(s.find(' ', start), s.size());
    words.push_back(s.substr(start, end - start));
    start = end + 1;
  }
  return words;
}

std::optional<std::uint64_t> parse_decimal(std::string_view s) {
  std::uint64_t v = 0;
  if (s.empty()) return std::nullopt;
  const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || p != s.data() + s.size()) return std::nullopt;
  return v;
}

std::string host_port(const std::string& host, std::uint16_t port) {
  return (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

// A non-blocking TCP socket connected to one of `host`'s addresses.
net::Fd connect_socket(const std::string& host, std::uint16_t port, Clock::time_point deadline,
                       Timeout timeout) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_ADDRCONFIG;
  addrinfo* found = nullptr;
  const std::string service = std::to_string(port);
  const int rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &found);
  if (rc != 0) throw ClientError("cannot resolve '" + host + "': " + ::gai_strerror(rc));
  std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> list(found, &::freeaddrinfo);

  std::string last_error = "no address";
  for (addrinfo* ai = found; ai != nullptr; ai = ai->ai_next) {
    net::Fd fd(::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol));
    if (!fd) {
      last_error = errno_text(errno);
      continue;
    }
    if (::connect(fd.get(), ai->ai_addr, ai->ai_addrlen) != 0) {
      if (errno != EINPROGRESS) {
        last_error = errno_text(errno);
        continue;
      }
      if (wait_for(fd.get(), POLLOUT, deadline) == 0) {
        throw TimeoutError("cannot connect to " + host_port(host, port) + ": no answer within " +
                           ms_text(timeout));
      }
      int err = 0;
      socklen_t len = sizeof err;
      ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
      if (err != 0) {
        last_error = errno_text(err);
        continue;
      }
    }
    const int one = 1;
    ::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);  // small frames, latency first
    return fd;
  }
  throw ClientError("cannot connect to " + host_port(host, port) + ": " + last_error);
}

}  // namespace

std::string describe(const ErrorFrame& e) {
  const std::string subject = std::to_string(e.subject);
  switch (e.code) {
    case ErrorCode::no_route:
      return "no client " + subject + " (no_route)";
    case ErrorCode::slow_consumer:
      return "client " + subject + " is not keeping up; the message was dropped (slow_consumer)";
    case ErrorCode::not_representable:
      return "client " + subject + " speaks protocol v1 and cannot receive a 0x00 byte (not_representable)";
    case ErrorCode::too_large:
      return "the message was over the server's max_frame; it closes the connection (too_large)";
    case ErrorCode::bad_frame:
      return "the server rejected a malformed frame" + (e.reason.empty() ? "" : ": " + e.reason) +
             "; it closes the connection (bad_frame)";
  }
  return "error code " + std::to_string(static_cast<unsigned>(e.code)) + " about client " + subject +
         (e.reason.empty() ? "" : ": " + e.reason);
}

Client Client::connect(const std::string& host, std::uint16_t port, const std::optional<std::string>& token,
                       Timeout timeout) {
  if (token && !valid_token(*token)) {
    throw ClientError("a token must be 1 to 256 characters between '!' and '~' (no spaces)");
  }
  const auto deadline = Clock::now() + timeout;
  Client c;
  c.peer_ = host_port(host, port);
  c.fd_ = connect_socket(host, port, deadline, timeout);
  c.handshake(token, deadline, timeout);
  return c;
}

void Client::handshake(const std::optional<std::string>& token, Clock::time_point deadline, Timeout timeout) {
  // The 4-byte ID every connection gets first.
  while (in_.size() < protocol::kIdSize) {
    if (closed_)
      throw ConnectionClosed(peer_ + " closed the connection before sending an ID (" + close_reason_ + ")");
    if (!read_some(deadline)) {
      throw ClientError(peer_ + " sent no ID within " + ms_text(timeout) + ": is it a switchboard server?");
    }
  }
  id_ = protocol::load_be32(in_.data());
  in_head_ = protocol::kIdSize;

  nonce_ = random_nonce();
  std::string hello = "switchboard/2 nonce=" + nonce_;
  if (token) hello += " token=" + *token;
  had_token_ = token.has_value();
  const auto to_server = protocol::encode_be32(protocol::kServerId);
  std::string frame(to_server.data(), to_server.size());
  frame += hello;
  frame.push_back('\0');
  write_all(frame, deadline);

  // v1 deliveries until the welcome with our nonce.
  std::size_t scan = in_head_;
  for (;;) {
    const std::size_t nul = in_.find('\0', scan);
    if (nul != std::string::npos) {
      const std::string_view payload(in_.data() + in_head_, nul - in_head_);
      const bool welcomed = take_hello_reply(payload);
      in_head_ = scan = nul + 1;
      if (welcomed) break;
      continue;
    }
    scan = in_.size();
    if (in_.size() - in_head_ > kMaxHandshakeBuffer) {
      throw ClientError(peer_ + " sent over 64 MiB without a frame end before the welcome");
    }
    if (closed_) {
      throw NotV2Error("server does not speak protocol v2: " + peer_ +
                       " closed the connection after the hello (" + close_reason_ + ")");
    }
    if (!read_some(deadline)) {
      throw NotV2Error("server does not speak protocol v2: " + peer_ + " sent no welcome within " +
                       ms_text(timeout));
    }
  }
  in_.erase(0, in_head_);
  in_head_ = 0;
  decode();  // v2 frames that came right behind the welcome
}

// One v1 delivery before the welcome: the welcome (true), a refusal of our
// hello (throws), or a message someone sent us before the upgrade.
bool Client::take_hello_reply(std::string_view payload) {
  const auto words = split_words(payload);
  const std::string own_nonce = "nonce=" + nonce_;
  const bool ours = words.size() >= 3 && words[0] == "switchboard/2" &&
                    std::find(words.begin() + 2, words.end(), own_nonce) != words.end();
  if (ours && words[1] == "ok") {
    std::optional<std::uint64_t> id, max_frame;
    for (auto w : words) {
      if (w.starts_with("id=")) id = parse_decimal(w.substr(3));
      if (w.starts_with("max_frame=")) max_frame = parse_decimal(w.substr(10));
    }
    if (!id || *id > 0xFFFFFFFFu || !max_frame || *max_frame == 0) {
      throw ClientError(peer_ + " sent a malformed welcome: '" + std::string(payload) + "'");
    }
    id_ = static_cast<std::uint32_t>(*id);
    max_frame_ = static_cast<std::size_t>(*max_frame);
    return true;
  }
  if (ours && words[1] == "error") {
    std::string_view reason;
    for (auto w : words) {
      if (w.find('=') == std::string_view::npos) reason = w;  // the one word that is not a field
    }
    const std::string said = "'" + std::string(reason) + "'";
    if (reason == "unsupported" || reason == "unsupported_version") {
      throw NotV2Error("server does not speak protocol v2: " + peer_ + " answered the hello with " + said);
    }
    if (reason == "unauthorized") {
      throw AuthError(peer_ + (had_token_ ? " refused the token" : " requires a token") + " (unauthorized)");
    }
    throw ClientError(peer_ + " refused the hello: " + said);
  }
  events_.push_back(Message{std::nullopt, std::string(payload)});
  return false;
}

bool Client::read_some(Clock::time_point deadline) {
  if (!fd_) throw ClientError("the client is closed");
  const short revents = wait_for(fd_.get(), POLLIN, deadline);
  if (revents == 0) return false;
  char buf[kReadChunk];
  ssize_t n;
  do {
    n = ::recv(fd_.get(), buf, sizeof buf, MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  if (n > 0) {
    in_.append(buf, static_cast<std::size_t>(n));
    return true;
  }
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;  // spurious wake-up
  closed_ = true;
  close_reason_ = n == 0 ? "end of stream" : errno_text(errno);
  return true;
}

void Client::decode() {
  // The largest frame a server sends: a DELIVER of max_frame bytes; ERROR
  // reasons and PONG bodies are far smaller than the 64 KiB floor.
  const std::size_t max_length = std::max<std::size_t>(max_frame_, 64 * 1024) + protocol::kSendOverhead;
  while (in_.size() - in_head_ >= protocol::kV2HeaderSize) {
    const char* p = in_.data() + in_head_;
    const std::uint32_t length = protocol::load_be32(p);
    if (length == 0 || length > max_length) {
      throw ClientError(peer_ + " broke protocol v2: a frame length of " + std::to_string(length));
    }
    if (in_.size() - in_head_ < protocol::kLengthSize + length) break;
    const auto type = static_cast<protocol::FrameType>(p[4]);
    const std::string_view body(p + protocol::kV2HeaderSize, length - 1);
    switch (type) {
      case protocol::FrameType::deliver:
        if (body.size() < 4) throw ClientError(peer_ + " broke protocol v2: a DELIVER without a source");
        events_.push_back(Message{protocol::load_be32(body.data()), std::string(body.substr(4))});
        break;
      case protocol::FrameType::pong:
        pongs_.emplace_back(body);
        break;
      case protocol::FrameType::error:
        if (body.size() < 5) throw ClientError(peer_ + " broke protocol v2: a short ERROR frame");
        events_.push_back(ErrorFrame{static_cast<ErrorCode>(body[0]), protocol::load_be32(body.data() + 1),
                                     std::string(body.substr(5))});
        break;
      default:
        break;  // a type a later server version may add: skipped, as the server skips unknown hello fields
    }
    in_head_ += protocol::kLengthSize + length;
  }
  if (in_head_ > 0 && in_head_ * 2 >= in_.size()) {  // keep the buffer from creeping
    in_.erase(0, in_head_);
    in_head_ = 0;
  }
}

void Client::write_all(std::string_view bytes, Clock::time_point deadline) {
  if (!fd_) throw ClientError("the client is closed");
  const std::size_t total = bytes.size();
  while (!bytes.empty()) {
    const ssize_t n = ::send(fd_.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      bytes.remove_prefix(static_cast<std::size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
      closed_ = true;
      close_reason_ = errno_text(errno);
      throw ConnectionClosed("cannot send to " + peer_ + ": " + close_reason_);
    }
    const bool can_read = !closed_ && in_.size() - in_head_ < kMaxBufferedWhileSending;
    const short revents =
        wait_for(fd_.get(), static_cast<short>(POLLOUT | (can_read ? POLLIN : 0)), deadline);
    if (revents == 0) {
      if (bytes.size() == total)
        throw TimeoutError(peer_ + " is not reading from this client: the frame was not sent");
      // Half a frame is on the wire: whatever came next would be misread.
      fd_.reset();
      throw TimeoutError(peer_ + " stopped reading in the middle of a frame; the connection is closed");
    }
    if ((revents & POLLIN) != 0) {
      read_some(Clock::now());
      if (max_frame_ != 0) decode();  // after the handshake only: before it, bytes are v1
    }
  }
}

void Client::send(std::uint32_t destination, std::string_view payload, Timeout timeout) {
  if (payload.size() > max_frame_) {
    throw ClientError("a message of " + std::to_string(payload.size()) +
                      " bytes is over the server's max_frame (" + std::to_string(max_frame_) + " bytes)");
  }
  const auto length =
      protocol::encode_be32(static_cast<std::uint32_t>(payload.size() + protocol::kSendOverhead));
  const auto dest = protocol::encode_be32(destination);
  std::string frame;
  frame.reserve(payload.size() + 9);
  frame.append(length.data(), length.size());
  frame.push_back(static_cast<char>(protocol::FrameType::send));
  frame.append(dest.data(), dest.size());
  frame.append(payload);
  write_all(frame, Clock::now() + timeout);
}

std::optional<Event> Client::receive(Timeout timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    if (!events_.empty()) {
      Event e = std::move(events_.front());
      events_.pop_front();
      return e;
    }
    if (closed_) throw ConnectionClosed(peer_ + " closed the connection (" + close_reason_ + ")");
    if (!read_some(deadline)) return std::nullopt;
    decode();
    if (events_.empty() && !closed_ && Clock::now() >= deadline) return std::nullopt;
  }
}

void Client::ping(Timeout timeout) {
  const auto deadline = Clock::now() + timeout;
  // Unique per connection (a counter) and distinct from other connections'
  // (the nonce's first half), so a late PONG of an earlier ping never matches.
  const std::string body = nonce_.substr(0, 16) + "-" + std::to_string(next_ping_++);
  const auto length = protocol::encode_be32(static_cast<std::uint32_t>(body.size() + 1));
  std::string frame(length.data(), length.size());
  frame.push_back(static_cast<char>(protocol::FrameType::ping));
  frame += body;
  write_all(frame, deadline);
  for (;;) {
    while (!pongs_.empty()) {
      const bool match = pongs_.front() == body;
      pongs_.pop_front();  // PONGs come in PING order: earlier ones are stale
      if (match) return;
    }
    if (closed_)
      throw ConnectionClosed(peer_ + " closed the connection before answering a PING (" + close_reason_ +
                             ")");
    if (!read_some(deadline)) throw TimeoutError("no PONG from " + peer_ + " within " + ms_text(timeout));
    decode();
  }
}

}  // namespace sb::client
