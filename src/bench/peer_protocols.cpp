#include "bench/peer_protocols.hpp"

#include <fmt/format.h>

namespace sb::bench {

Envelope switchboard_envelope(std::uint32_t destination_id) {
  const auto id = protocol::encode_be32(destination_id);
  return {std::string(id.data(), id.size()), std::string(1, '\0')};
}

Envelope switchboard_v2_envelope(std::uint32_t destination_id, std::size_t payload_size) {
  const auto length = protocol::encode_be32(static_cast<std::uint32_t>(payload_size + 5));
  const auto id = protocol::encode_be32(destination_id);
  std::string prefix(length.data(), length.size());
  prefix.push_back('\x01');  // SEND
  prefix.append(id.data(), id.size());
  return {std::move(prefix), ""};
}

std::string switchboard_v2_hello(std::string_view nonce) {
  const auto server = protocol::encode_be32(0xFFFFFFFFu);
  std::string out(server.data(), server.size());
  out.append("switchboard/2 nonce=");
  out.append(nonce);
  out.push_back('\0');
  return out;
}

Envelope nats_envelope(std::string_view subject, std::size_t payload_size) {
  return {fmt::format("PUB {} {}\r\n", subject, payload_size), "\r\n"};
}

Envelope redis_envelope(std::string_view channel, std::size_t payload_size) {
  return {fmt::format("*3\r\n$7\r\nPUBLISH\r\n${}\r\n{}\r\n${}\r\n", channel.size(), channel, payload_size),
          "\r\n"};
}

std::string nats_handshake(std::string_view subject) {
  // verbose off: no +OK per PUB; pedantic off: no subject checks per PUB.
  return fmt::format("CONNECT {{\"verbose\":false,\"pedantic\":false}}\r\nSUB {} 1\r\nPING\r\n", subject);
}

std::string redis_subscribe(std::string_view channel) {
  return fmt::format("*2\r\n$9\r\nSUBSCRIBE\r\n${}\r\n{}\r\n", channel.size(), channel);
}

std::string redis_ping() {
  return "*1\r\n$4\r\nPING\r\n";
}

}  // namespace sb::bench
