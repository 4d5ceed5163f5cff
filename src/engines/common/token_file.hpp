// --auth-token-file, read the same way by every engine that authenticates
// (docs/PROTOCOL.md, "Authentication").
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace sb::engines {

// At start a failure throws net::StartupError; on a reload (SIGHUP) it is
// logged and nullopt keeps the old list. A file without a valid token is a
// start-up error, and on a reload an empty list (every new hello refused).
std::optional<std::vector<std::string>> read_token_file(const std::string& path, bool at_start);

}  // namespace sb::engines
