#include "engines/common/token_file.hpp"

#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "core/router.hpp"
#include "net/socket.hpp"

namespace sb::engines {

// Reads --auth-token-file. At start an unreadable file or one without a
// valid token is a start-up error; on SIGHUP an unreadable file keeps the
// old list (logged: nullopt), and a file without tokens refuses every new
// hello. Tokens are secrets: no line here ever shows one.
std::optional<std::vector<std::string>> read_token_file(const std::string& path, bool at_start) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  if (in) text << in.rdbuf();
  if (!in || in.bad()) {
    const std::string why = "cannot read --auth-token-file " + path + ": " + std::strerror(errno);
    if (at_start) throw net::StartupError(why);
    spdlog::error("SIGHUP: {}; keeping the tokens loaded before", why);
    return std::nullopt;
  }
  core::TokenList list = core::parse_token_file(text.str());
  if (list.tokens.empty()) {
    const std::string why = "--auth-token-file " + path + " lists no valid token";
    if (at_start) throw net::StartupError(why);
    // Removing the last token is how an operator locks everyone new out:
    // apply it (sessions already authenticated stay).
    spdlog::warn("SIGHUP: {}: every new hello will be refused", why);
  }
  if (list.rejected > 0) {
    spdlog::warn(
        "--auth-token-file {}: {} line(s) are not valid tokens (1 to 256 bytes of 0x21..0x7E) and were "
        "ignored",
        path, list.rejected);
  }
  if (!at_start) spdlog::info("SIGHUP: reloaded --auth-token-file {}: {} token(s)", path, list.tokens.size());
  return std::move(list.tokens);
}

}  // namespace sb::engines
