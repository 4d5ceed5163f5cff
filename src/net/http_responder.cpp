#include "net/http_responder.hpp"

#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace sb::net {

namespace {

constexpr int kAcceptBatch = 16;

std::string_view reason_phrase(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 431:
      return "Request Header Fields Too Large";
    case 503:
      return "Service Unavailable";
  }
  return "Error";
}

std::string head_of(int status, std::string_view content_type, std::size_t length) {
  std::string h = "HTTP/1.1 " + std::to_string(status) + " " + std::string(reason_phrase(status)) + "\r\n";
  h += "Content-Type: " + std::string(content_type) + "\r\n";
  h += "Content-Length: " + std::to_string(length) + "\r\n";
  if (status == 405) h += "Allow: GET, HEAD\r\n";
  h += "Connection: close\r\n\r\n";
  return h;
}

}  // namespace

struct HttpResponder::Conn final : Handler {
  Conn(HttpResponder& o, Fd f, std::chrono::steady_clock::time_point d)
      : owner{o}, fd{std::move(f)}, deadline{d} {}
  void on_event(std::uint32_t events) override { owner.on_conn_event(*this, events); }

  HttpResponder& owner;
  Fd fd;
  Token token = Token::none;
  std::chrono::steady_clock::time_point deadline;
  std::string in;
  std::string out;  // the answer, once the request is complete
  std::size_t written = 0;
  bool answering = false;
  bool lingering = false;  // answered and FIN sent: discarding what the client still sends
  bool closed = false;
};

HttpResponder::HttpResponder(Loop& loop, const Endpoint& where, Routes routes, Limits limits)
    : loop_{loop},
      routes_{std::move(routes)},
      limits_{limits},
      listener_{listen_tcp(where, 64)},
      port_{local_port(listener_.get())},
      listener_handler_{[this](std::uint32_t) { on_accept(); }} {
  listener_token_ = loop_.add(listener_.get(), EPOLLIN, &listener_handler_);
  if (listener_token_ == Token::none) {
    throw StartupError("cannot watch the metrics listener: " + std::string(std::strerror(errno)));
  }
}

HttpResponder::~HttpResponder() {
  for (auto& c : conns_) {
    if (!c->closed) loop_.remove(c->token);
  }
  loop_.remove(listener_token_);
}

void HttpResponder::on_accept() {
  for (int i = 0; i < kAcceptBatch; ++i) {
    Fd fd{::accept4(listener_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC)};
    if (!fd) {
      const int err = errno;
      if (err == EINTR || err == ECONNABORTED) continue;
      if (err == EMFILE || err == ENFILE) {
        // The pending connection would keep the listener readable (and the
        // loop spinning): stop watching it until the next tick.
        if (loop_.modify(listener_token_, 0)) listener_paused_ = true;
        std::uint64_t suppressed = 0;
        if (log_.allow(suppressed)) {
          spdlog::warn("metrics: out of file descriptors; not accepting for a moment ({} lines suppressed)",
                       suppressed);
        }
      } else if (err != EAGAIN && err != EWOULDBLOCK) {
        spdlog::warn("metrics: accept failed: {}", std::strerror(err));
      }
      return;
    }
    if (conns_.size() >= limits_.max_conns) {
      ++counts_.over_limit;
      // Best effort, one non-blocking write: a fresh socket's buffer is empty.
      const std::string busy = "busy: too many metrics connections\n";
      const std::string a = head_of(503, "text/plain; charset=utf-8", busy.size()) + busy;
      [[maybe_unused]] const ssize_t n = ::send(fd.get(), a.data(), a.size(), MSG_NOSIGNAL);
      std::uint64_t suppressed = 0;
      if (log_.allow(suppressed)) {
        spdlog::warn(
            "metrics: refused a connection from {}: {} already open ({} refused in all, {} lines "
            "suppressed)",
            peer_name(fd.get()), limits_.max_conns, counts_.over_limit, suppressed);
      }
      continue;
    }
    auto conn =
        std::make_unique<Conn>(*this, std::move(fd), std::chrono::steady_clock::now() + limits_.deadline);
    conn->token = loop_.add(conn->fd.get(), EPOLLIN, conn.get());
    if (conn->token == Token::none) {
      spdlog::warn("metrics: cannot watch a connection: {}", std::strerror(errno));
      continue;
    }
    conns_.push_back(std::move(conn));
  }
}

void HttpResponder::on_conn_event(Conn& c, std::uint32_t events) {
  if (c.lingering) {
    linger(c);
    return;
  }
  if (c.answering) {
    if ((events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) != 0) write_answer(c);
    return;
  }
  read_request(c);
}

void HttpResponder::read_request(Conn& c) {
  char buf[4096];
  for (;;) {
    const std::size_t room = limits_.max_request + 1 - c.in.size();
    const ssize_t n = ::read(c.fd.get(), buf, std::min(sizeof buf, room));
    if (n > 0) {
      c.in.append(buf, static_cast<std::size_t>(n));
      if (c.in.size() > limits_.max_request) break;
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    if (n < 0 && errno == EINTR) continue;
    // EOF or an error before a whole request: nobody to answer.
    ++counts_.closed_early;
    close(c);
    return;
  }
  std::size_t end = c.in.find("\r\n\r\n");
  if (end == std::string::npos) end = c.in.find("\n\n");  // bare LF, as RFC 9112 section 2.2 tolerates
  if (end == std::string::npos) {
    if (c.in.size() > limits_.max_request) {
      ++counts_.too_large;
      answer(c, 431, "text/plain; charset=utf-8", "request headers over 8 KiB\n", false);
    }
    return;  // need more, until the deadline
  }
  // Request line: METHOD SP TARGET SP HTTP/1.x. Headers are not needed.
  const std::string_view req{c.in.data(), end};
  const std::string_view line = req.substr(0, std::min(req.find_first_of("\r\n"), req.size()));
  const auto sp1 = line.find(' ');
  const auto sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || line.substr(sp2 + 1).rfind("HTTP/1.", 0) != 0) {
    ++counts_.bad_request;
    answer(c, 400, "text/plain; charset=utf-8", "not an HTTP/1.x request\n", false);
    return;
  }
  const std::string_view method = line.substr(0, sp1);
  std::string_view path = line.substr(sp1 + 1, sp2 - sp1 - 1);
  path = path.substr(0, path.find('?'));
  const bool head = method == "HEAD";
  if (method != "GET" && !head) {
    ++counts_.bad_method;
    answer(c, 405, "text/plain; charset=utf-8", "only GET and HEAD\n", head);
    return;
  }
  const auto route = routes_.find(path);
  if (route == routes_.end()) {
    ++counts_.not_found;
    std::string paths;
    for (const auto& [p, fn] : routes_) paths += p + "\n";
    answer(c, 404, "text/plain; charset=utf-8", "not found; try:\n" + paths, head);
    return;
  }
  ++counts_.ok;
  const Response r = route->second();
  answer(c, 200, r.content_type, r.body, head);
}

void HttpResponder::answer(Conn& c, int status, std::string_view content_type, std::string_view body,
                           bool head) {
  c.answering = true;
  c.in.clear();
  c.in.shrink_to_fit();
  c.out = head_of(status, content_type, body.size());
  if (!head) c.out.append(body);
  write_answer(c);
}

void HttpResponder::write_answer(Conn& c) {
  while (c.written < c.out.size()) {
    const ssize_t n = ::send(c.fd.get(), c.out.data() + c.written, c.out.size() - c.written, MSG_NOSIGNAL);
    if (n > 0) {
      c.written += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      // Wait for room; reading is over.
      if (!loop_.modify(c.token, EPOLLOUT)) {
        ++counts_.closed_early;
        close(c);
      }
      return;
    }
    ++counts_.closed_early;  // reset by the client
    close(c);
    return;
  }
  // All written: FIN after the answer (Connection: close). Closing at once
  // with unread request bytes in the socket would send a RST, which can
  // destroy the answer before the client reads it; so read and discard until
  // the client closes too (or the deadline), as web servers' lingering close.
  ::shutdown(c.fd.get(), SHUT_WR);
  c.lingering = true;
  if (!loop_.modify(c.token, EPOLLIN)) {
    close(c);
    return;
  }
  linger(c);
}

void HttpResponder::linger(Conn& c) {
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(c.fd.get(), buf, sizeof buf);
    if (n > 0) continue;
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    close(c);  // EOF or error: the client is done
    return;
  }
}

void HttpResponder::close(Conn& c) {
  if (c.closed) return;
  c.closed = true;
  loop_.remove(c.token);
  c.fd.reset();
  // The Conn is freed after this turn's handlers, never inside its own call.
  if (!reap_posted_) {
    reap_posted_ = true;
    loop_.post([this] { reap(); });
  }
}

void HttpResponder::reap() {
  reap_posted_ = false;
  std::erase_if(conns_, [](const std::unique_ptr<Conn>& c) { return c->closed; });
}

void HttpResponder::on_tick() {
  if (listener_paused_ && loop_.modify(listener_token_, EPOLLIN)) listener_paused_ = false;
  if (conns_.empty()) return;
  const auto now = std::chrono::steady_clock::now();
  for (auto& c : conns_) {
    if (c->closed || now < c->deadline) continue;
    if (c->lingering) {  // answered in full: nothing went wrong
      close(*c);
      continue;
    }
    ++counts_.timed_out;
    std::uint64_t suppressed = 0;
    if (log_.allow(suppressed)) {
      spdlog::warn("metrics: closed a connection from {} that did not {} within {} ms ({} lines suppressed)",
                   peer_name(c->fd.get()), c->answering ? "read its answer" : "send a whole request",
                   limits_.deadline.count(), suppressed);
    }
    close(*c);
  }
}

}  // namespace sb::net
