#include "cli/client_commands.hpp"

#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <iostream>

#include "client/client.hpp"

namespace sb::cli {

namespace {

using client::Client;
using client::ClientError;
using client::ConnectionClosed;
using client::ErrorFrame;
using client::Event;
using client::Message;

std::optional<std::uint32_t> parse_id(std::string_view text) {
  std::uint32_t v = 0;
  const auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || ec != std::errc{} || p != text.data() + text.size()) return std::nullopt;
  return v;
}

// "HOST:PORT", "[V6]:PORT"; the host may be a name (resolved by the client).
struct HostPort {
  std::string host;
  std::uint16_t port;
};
HostPort split_server(const std::string& text) {
  const auto colon = text.rfind(':');
  std::string host = colon == std::string::npos ? "" : text.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  std::uint16_t port = 0;
  const std::string_view p =
      colon == std::string::npos ? std::string_view{} : std::string_view(text).substr(colon + 1);
  const auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), port);
  if (host.empty() || p.empty() || ec != std::errc{} || end != p.data() + p.size() || port == 0) {
    throw ClientError("--server: '" + text + "' is not HOST:PORT (an IPv6 host in brackets: [::1]:8080)");
  }
  return {host, port};
}

Client connect(const ClientOptions& o) {
  const auto hp = split_server(o.server);
  return Client::connect(hp.host, hp.port, o.token, o.timeout);
}

void print_message(const Message& m) {
  std::cout << "from " << (m.source ? std::to_string(*m.source) : "?") << ": " << escape_bytes(m.payload)
            << '\n'
            << std::flush;
}

void print_error(const ErrorFrame& e) {
  std::cerr << "switchboard: " << client::describe(e) << '\n';
}

// Lines of stdin for listen, read with read(2) so that poll() tells the truth
// about what is buffered (std::cin would read ahead of it).
class LineReader {
 public:
  bool open() const { return open_; }
  // Reads what stdin has; calls on_line for each complete line (and for an
  // unterminated last line at end of input).
  template <typename F>
  void read(F&& on_line) {
    char buf[4096];
    ssize_t n;
    do {
      n = ::read(STDIN_FILENO, buf, sizeof buf);
    } while (n < 0 && errno == EINTR);
    if (n <= 0) {
      open_ = false;
      if (!partial_.empty()) on_line(std::exchange(partial_, {}));
      return;
    }
    partial_.append(buf, static_cast<std::size_t>(n));
    std::size_t start = 0;
    for (std::size_t nl; (nl = partial_.find('\n', start)) != std::string::npos; start = nl + 1) {
      on_line(partial_.substr(start, nl - start));
    }
    partial_.erase(0, start);
  }

 private:
  bool open_ = true;
  std::string partial_;
};

// "ID text" typed into listen.
void send_typed_line(Client& c, const std::string& line) {
  if (line.empty()) return;
  const auto space = line.find(' ');
  const auto to = parse_id(std::string_view(line).substr(0, space));
  if (!to) {
    std::cerr << "switchboard: a line to send is 'ID text', e.g. '3 hello'; not sent: " << escape_bytes(line)
              << '\n';
    return;
  }
  c.send(*to, space == std::string::npos ? std::string_view{} : std::string_view(line).substr(space + 1));
}

}  // namespace

std::string escape_bytes(std::string_view bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size());
  for (char ch : bytes) {
    const auto u = static_cast<unsigned char>(ch);
    if (ch == '\\') {
      out += "\\\\";
    } else if (u >= 0x20 && u <= 0x7E) {
      out.push_back(ch);
    } else {
      out += "\\x";
      out.push_back(kHex[u >> 4]);
      out.push_back(kHex[u & 15]);
    }
  }
  return out;
}

int run_listen(const ClientOptions& options, bool echo) {
  try {
    Client c = connect(options);
    std::cout << "id " << c.id() << std::endl;
    LineReader in;
    for (;;) {
      while (auto ev = c.receive(std::chrono::milliseconds{0})) {
        if (const auto* m = std::get_if<Message>(&*ev)) {
          print_message(*m);
          // Not to itself: a message from itself echoed back would come round for ever.
          if (echo && m->source && *m->source != c.id()) c.send(*m->source, m->payload);
          if (echo && !m->source) std::cerr << "switchboard: not echoed: v1 does not say who sent it\n";
        } else {
          print_error(std::get<ErrorFrame>(*ev));
        }
      }
      pollfd fds[2] = {{c.fd(), POLLIN, 0}, {STDIN_FILENO, POLLIN, 0}};
      const int n = ::poll(fds, in.open() ? 2 : 1, -1);
      if (n < 0 && errno != EINTR) throw ClientError(std::string("poll: ") + std::strerror(errno));
      if (n > 0 && in.open() && (fds[1].revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
        in.read([&](const std::string& line) { send_typed_line(c, line); });
      }
    }
  } catch (const ConnectionClosed& e) {
    std::cerr << "switchboard: " << e.what() << '\n';
    return 0;
  } catch (const ClientError& e) {
    std::cerr << "switchboard: " << e.what() << '\n';
    return 1;
  }
}

int run_send(const ClientOptions& options, std::uint32_t to, const std::vector<std::string>& words) {
  try {
    Client c = connect(options);
    std::cerr << "id " << c.id() << std::endl;
    int errors = 0;
    auto drain = [&] {
      while (auto ev = c.receive(std::chrono::milliseconds{0})) {
        if (const auto* m = std::get_if<Message>(&*ev)) {
          print_message(*m);
        } else {
          print_error(std::get<ErrorFrame>(*ev));
          ++errors;
        }
      }
    };
    if (!words.empty()) {
      std::string text;
      for (const auto& w : words) text += (text.empty() ? "" : " ") + w;
      c.send(to, text);
    } else {
      for (std::string line; std::getline(std::cin, line);) {
        c.send(to, line);
        drain();  // report errors as they come, not only at the end
      }
    }
    // The barrier: once the PONG is here, every ERROR about what we sent is too.
    c.ping(options.timeout);
    drain();
    return errors == 0 ? 0 : 1;
  } catch (const ClientError& e) {
    std::cerr << "switchboard: " << e.what() << '\n';
    return 1;
  }
}

}  // namespace sb::cli
