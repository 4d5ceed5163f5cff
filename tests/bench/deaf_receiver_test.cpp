// The stall scenario's deaf receiver connects with options that keep what
// the kernel buffers for it small, so that a server's write to it blocks
// soon, whatever the machine's speed. Checked over loopback: how much a
// non-blocking sender can write to a socket that never reads.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>

#include <string>

#include "bench/worker.hpp"
#include "net/socket.hpp"

namespace sb::bench {
namespace {

struct Fill {
  std::size_t written = 0;     // bytes the server's socket took before it stayed full
  int receiver_rcvbuf = 0;     // SO_RCVBUF of the receiver, as the kernel reports it
  int server_max_segment = 0;  // TCP_MAXSEG of the server's socket: the MSS it sends with
};

// Connects a receiver that never reads with `options`, then writes 65-byte
// messages (a 64-byte payload and its NUL, as a v1 server delivers it) from
// the accepted socket until it has taken nothing for 200 ms.
Fill fill(const net::ConnectOptions& options) {
  const net::Fd listener = net::listen_tcp({"127.0.0.1", 0});
  const net::Fd receiver = net::connect_tcp({"127.0.0.1", net::local_port(listener.get())}, options);
  net::Fd server{::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK)};
  EXPECT_TRUE(server);
  net::set_nodelay(server.get());
  Fill f;
  socklen_t len = sizeof f.receiver_rcvbuf;
  ::getsockopt(receiver.get(), SOL_SOCKET, SO_RCVBUF, &f.receiver_rcvbuf, &len);
  len = sizeof f.server_max_segment;
  ::getsockopt(server.get(), IPPROTO_TCP, TCP_MAXSEG, &f.server_max_segment, &len);

  const std::string message(65, 'm');
  constexpr std::size_t kEnough = std::size_t{64} << 20;  // no kernel buffers this much for one socket
  // Write until the socket stays unwritable for 200 ms: the kernel buffers
  // on both ends are full (poll waits for room, no fixed sleeps).
  while (f.written < kEnough) {
    const ssize_t n = ::send(server.get(), message.data(), message.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      f.written += static_cast<std::size_t>(n);
      continue;
    }
    pollfd p{server.get(), POLLOUT, 0};
    if (::poll(&p, 1, 200) <= 0) break;
  }
  return f;
}

TEST(DeafReceiver, TheServerCanWriteLittleBeforeItBlocks) {
  const Fill deaf = fill(kDeafReceiverConnect);
  // Linux doubles SO_RCVBUF for its bookkeeping; the default is 128 KiB.
  EXPECT_LE(deaf.receiver_rcvbuf, 2 * kDeafReceiverConnect.receive_buffer);
  // Loopback's own MSS is about 64 KiB.
  EXPECT_LE(deaf.server_max_segment, kDeafReceiverConnect.max_segment);
  // About 0.2 MiB on Linux 6.18 with BBR; the bound leaves room for other
  // kernels and congestion controls.
  EXPECT_LT(deaf.written, std::size_t{1} << 20) << "bytes written before the write blocked";

  // The same receiver without the options: several MiB (the sender's
  // buffer is sized from loopback's MSS), so the options are what count.
  const Fill plain = fill({});
  EXPECT_GT(plain.written, 2 * deaf.written) << "deaf " << deaf.written << " bytes, plain " << plain.written;
}

}  // namespace
}  // namespace sb::bench
