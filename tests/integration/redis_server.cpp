#include "redis_server.hpp"

#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <memory>

namespace sb::itest {

namespace {

// A port the kernel had free a moment ago (the server binds it right away;
// start() tries again if another process took it meanwhile).
std::uint16_t free_port() {
  UniqueFd fd{::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)};
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (!fd || ::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    throw HarnessError(std::string("cannot find a free port: ") + std::strerror(errno));
  }
  return ntohs(a.sin_port);
}

struct ContextFree {
  void operator()(redisContext* c) const noexcept { redisFree(c); }
};
struct ReplyFree {
  void operator()(redisReply* r) const noexcept { freeReplyObject(r); }
};

std::string text_of(const redisReply* r) {
  switch (r->type) {
    case REDIS_REPLY_INTEGER:
      return std::to_string(r->integer);
    case REDIS_REPLY_NIL:
      return "";
    case REDIS_REPLY_ARRAY: {
      std::string out;
      for (std::size_t i = 0; i < r->elements; ++i) {
        if (i > 0) out += '\n';
        out += text_of(r->element[i]);
      }
      return out;
    }
    default:
      return std::string(r->str, r->len);
  }
}

}  // namespace

RedisServer RedisServer::start(std::uint16_t port, const std::vector<std::string>& extra) {
  RedisServer r;
  r.extra_ = extra;
  for (int attempt = 0;; ++attempt) {
    r.port_ = port != 0 ? port : free_port();
    try {
      r.launch();
      return r;
    } catch (const HarnessError&) {
      if (port != 0 || attempt == 2) throw;
    }
  }
}

void RedisServer::launch() {
  std::vector<std::string> args = {
      "--port", std::to_string(port_), "--bind", "127.0.0.1",  "--save", "", "--appendonly",
      "no",     "--daemonize",         "no",     "--loglevel", "warning"};
  args.insert(args.end(), extra_.begin(), extra_.end());
  process_.emplace(ServerProcess::launch(kRedisServer, args));
  const Deadline deadline = after(kStartTimeout);
  for (;;) {
    try {
      if (command({"PING"}) == "PONG") return;
    } catch (const HarnessError&) {
      // not listening yet
    }
    // Wait a little, or less if it exits.
    if (auto exit = process_->wait_exit(after(std::chrono::milliseconds{20}))) {
      throw HarnessError("redis-server on port " + std::to_string(port_) + " exited (" + exit->describe() +
                         "): " + tail(exit->stderr_text + exit->stdout_text));
    }
    if (Clock::now() >= deadline) {
      throw HarnessError("redis-server on port " + std::to_string(port_) + " did not answer PING in time");
    }
  }
}

void wait_for_joins(const std::vector<ServerProcess*>& nodes) {
  // Each node's number, from its "cluster: node N of 'NAME'" line.
  std::vector<std::string> numbers;
  for (const ServerProcess* n : nodes) {
    const std::string err = n->stderr_text();
    const auto at = err.find("cluster: node ");
    const auto end = at == std::string::npos ? at : err.find(' ', at + 14);
    if (end == std::string::npos)
      throw HarnessError("a node logged no \"cluster: node N of\" line:\n" + tail(err));
    numbers.push_back(err.substr(at + 14, end - at - 14));
  }
  const Deadline deadline = after(kStartTimeout);
  for (std::size_t i = 0; i < nodes.size(); ++i) {
    for (std::size_t j = 0; j < nodes.size(); ++j) {
      if (i == j) continue;
      const std::string line = "node " + numbers[j] + " joined";
      while (nodes[i]->stderr_text().find(line) == std::string::npos) {
        if (Clock::now() >= deadline) {
          throw HarnessError("node " + numbers[i] + " never saw node " + numbers[j] + " join:\n" +
                             tail(nodes[i]->stderr_text()));
        }
        // The log is a file, with no event of its own: wait on the node's
        // exit (the event that would end the wait) for a moment, then look again.
        if (auto exit = nodes[i]->wait_exit(after(std::chrono::milliseconds{10}))) {
          throw HarnessError("node " + numbers[i] + " exited (" + exit->describe() + ") before it saw node " +
                             numbers[j] + " join:\n" + tail(exit->stderr_text));
        }
      }
    }
  }
}

std::string RedisServer::url(std::string_view name) const {
  return "redis://127.0.0.1:" + std::to_string(port_) + "/" + std::string(name);
}

void RedisServer::kill() {
  if (running()) process_->send_signal(SIGKILL);
  if (process_) (void)process_->wait_exit(after(kStopTimeout));
  process_.reset();
}

void RedisServer::restart() {
  kill();
  launch();
}

std::string RedisServer::command(const std::vector<std::string>& args) const {
  const timeval timeout{2, 0};
  std::unique_ptr<redisContext, ContextFree> c{redisConnectWithTimeout("127.0.0.1", port_, timeout)};
  if (!c || c->err != 0)
    throw HarnessError("cannot connect to redis-server on port " + std::to_string(port_));
  redisSetTimeout(c.get(), timeout);
  std::vector<const char*> argv;
  std::vector<std::size_t> lens;
  for (const auto& a : args) {
    argv.push_back(a.data());
    lens.push_back(a.size());
  }
  std::unique_ptr<redisReply, ReplyFree> reply{static_cast<redisReply*>(
      redisCommandArgv(c.get(), static_cast<int>(argv.size()), argv.data(), lens.data()))};
  if (!reply) throw HarnessError("redis-server on port " + std::to_string(port_) + " did not answer");
  return text_of(reply.get());
}

}  // namespace sb::itest
