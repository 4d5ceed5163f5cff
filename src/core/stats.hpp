// Counters for everything the router does, drops or closes, and why.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace sb::core {

struct Stats {
  std::uint64_t connections_accepted = 0;
  std::uint64_t connections_rejected = 0;  // over --max-conns or out of fds: accepted and closed at once
  std::uint64_t connections_closed = 0;    // every close, whatever the reason (the closed_* below and peer_closed)
  std::uint64_t frames_routed = 0;         // queued for a live destination
  std::uint64_t bytes_routed = 0;          // payload + NUL bytes of those frames
  std::uint64_t dropped_no_route = 0;      // destination unknown or gone
  std::uint64_t dropped_slow_consumer = 0; // `drop` policy, or destination already being closed as slow
  std::uint64_t closed_peer = 0;           // the client closed or reset its connection
  std::uint64_t closed_oversized = 0;      // a frame above --max-frame
  std::uint64_t closed_slow_consumer = 0;  // `disconnect` policy, or a backpressure stall
  std::uint64_t closed_io_error = 0;       // an OS error on the socket other than a reset
  std::uint64_t closed_shutdown = 0;       // still connected when the server stopped
  std::uint64_t sender_pauses = 0;         // times a sender was paused by backpressure
  std::size_t live_clients = 0;
  std::size_t pending_bytes = 0;           // outbound bytes queued right now, all destinations
  std::size_t peak_pending_bytes = 0;

  // One line, `name=value` pairs, for logs and tests.
  std::string summary() const;
};

}  // namespace sb::core
