#include "cli/client_commands.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iostream>

#include "net/socket.hpp"
#include "protocol/wire.hpp"

namespace sb::cli {

namespace {

bool write_all(int fd, const char* data, std::size_t size) {
  while (size > 0) {
    const ssize_t n = ::send(fd, data, size, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data += n;
    size -= static_cast<std::size_t>(n);
  }
  return true;
}

bool read_exact(int fd, char* data, std::size_t size) {
  while (size > 0) {
    const ssize_t n = ::read(fd, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data += n;
    size -= static_cast<std::size_t>(n);
  }
  return true;
}

std::uint32_t read_id(int fd) {
  char id[protocol::kIdSize];
  if (!read_exact(fd, id, sizeof id)) throw net::StartupError("the server closed the connection before sending an ID");
  return protocol::load_be32(id);
}

bool send_message(int fd, std::uint32_t to, const std::string& text) {
  if (text.find('\0') != std::string::npos) {
    std::cerr << "switchboard: a message cannot contain a NUL byte; skipped\n";
    return true;
  }
  std::string frame;
  frame.reserve(protocol::kIdSize + text.size() + 1);
  const auto header = protocol::encode_be32(to);
  frame.append(header.data(), header.size());
  frame += text;
  frame.push_back('\0');
  return write_all(fd, frame.data(), frame.size());
}

}  // namespace

int run_listen(const std::string& server) {
  net::Fd fd = net::connect_tcp(net::parse_endpoint(server));
  std::cout << "id " << read_id(fd.get()) << std::endl;
  std::string line;
  char buf[64 * 1024];
  for (;;) {
    const ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    for (ssize_t i = 0; i < n; ++i) {
      if (buf[i] != '\0') {
        line.push_back(buf[i]);
        continue;
      }
      std::cout << line << '\n';
      line.clear();
    }
    std::cout.flush();
  }
  std::cerr << "switchboard: the server closed the connection\n";
  return 0;
}

int run_send(const std::string& server, std::uint32_t to, const std::vector<std::string>& words) {
  net::Fd fd = net::connect_tcp(net::parse_endpoint(server));
  std::cerr << "id " << read_id(fd.get()) << std::endl;
  bool ok = true;
  if (!words.empty()) {
    std::string text;
    for (const auto& w : words) text += (text.empty() ? "" : " ") + w;
    ok = send_message(fd.get(), to, text);
  } else {
    std::string line;
    while (ok && std::getline(std::cin, line)) ok = send_message(fd.get(), to, line);
  }
  if (!ok) {
    std::cerr << "switchboard: the server closed the connection while sending\n";
    return 1;
  }
  ::shutdown(fd.get(), SHUT_WR);  // the server routes what it read, then sees the end
  return 0;
}

}  // namespace sb::cli
