// `switchboard listen` and `switchboard send`: small clients for trying the
// server by hand. Blocking sockets; one connection each.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace sb::cli {

// Connects, prints "id N", then prints each message (without its NUL) on a
// line of its own as it arrives. Returns the exit code.
int run_listen(const std::string& server);

// Connects, prints "id N" to stderr, sends `words` joined by spaces as one
// message to `to`, or, with no words, every line of stdin as a message.
int run_send(const std::string& server, std::uint32_t to, const std::vector<std::string>& words);

}  // namespace sb::cli
