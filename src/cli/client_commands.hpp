// `switchboard listen` and `switchboard send`: clients for trying the server
// by hand and from scripts, built on the protocol v2 client library
// (src/client). Each returns the process exit code and reports every failure
// as one line on stderr.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sb::cli {

struct ClientOptions {
  std::string server = "127.0.0.1:8080";    // HOST:PORT; an IPv6 host in brackets, [::1]:8080
  std::optional<std::string> token;         // for a server with --auth-token-file
  std::chrono::milliseconds timeout{5000};  // connect (through the welcome) and the final ping
};

// Connects, prints "id N", then prints each message as "from <ID>: <text>"
// ("from ?: " for one sent before the upgrade, whose sender v1 does not
// name), with non-printable bytes escaped. Each line of stdin of the form
// "ID text" is sent to ID. With `echo`, each message is also sent back to
// its sender. ERROR frames are printed on stderr. Runs until the server
// closes the connection (exit 0).
int run_listen(const ClientOptions& options, bool echo);

// Connects, prints "id N" on stderr, sends `words` joined by spaces as one
// message to `to`, or, with no words, every line of stdin as a message. Then
// pings the server as a barrier and reports every ERROR frame as one line
// ("no client 7 (no_route)"); exit 1 if there was any.
int run_send(const ClientOptions& options, std::uint32_t to, const std::vector<std::string>& words);

// Bytes as listen prints them: 0x20..0x7E as they are except the backslash
// (\\), everything else as \xNN.
std::string escape_bytes(std::string_view bytes);

}  // namespace sb::cli
