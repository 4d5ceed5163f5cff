// `serve --metrics`: the reactor's HTTP endpoint (/metrics, /healthz,
// /clients), its answers to bad requests, its bounds, and that a scraper
// that misbehaves never stalls routing. The other engines serve /metrics
// and /healthz from a thread of their own.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "harness.hpp"

namespace sb::itest {
namespace {

struct HttpReply {
  int status = 0;
  std::string head;
  std::string body;
};

UniqueFd connect_to(std::uint16_t port) {
  UniqueFd fd{::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)};
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    throw HarnessError("cannot connect to the metrics port " + std::to_string(port));
  }
  return fd;
}

// Reads until EOF or `deadline`; true on EOF.
bool read_to_eof(int fd, std::string& out, Deadline deadline) {
  char buf[8192];
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return false;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left)) <= 0) continue;
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n == 0) return true;
    if (n < 0) return errno == ECONNRESET;
    out.append(buf, static_cast<std::size_t>(n));
  }
}

HttpReply parse_reply(const std::string& raw) {
  HttpReply r;
  const auto end = raw.find("\r\n\r\n");
  if (raw.rfind("HTTP/1.1 ", 0) != 0 || end == std::string::npos) {
    throw HarnessError("not an HTTP/1.1 answer: '" + raw.substr(0, 200) + "'");
  }
  r.status = std::atoi(raw.c_str() + 9);
  r.head = raw.substr(0, end);
  r.body = raw.substr(end + 4);
  return r;
}

// Sends `request` as it is and reads the whole answer (the server closes).
HttpReply http_raw(std::uint16_t port, const std::string& request) {
  UniqueFd fd = connect_to(port);
  if (::send(fd.get(), request.data(), request.size(), MSG_NOSIGNAL) !=
      static_cast<ssize_t>(request.size())) {
    throw HarnessError("cannot send the request");
  }
  std::string raw;
  if (!read_to_eof(fd.get(), raw, after(kIoTimeout)))
    throw HarnessError("no whole answer in time: '" + raw + "'");
  return parse_reply(raw);
}

HttpReply http_get(std::uint16_t port, const std::string& path, const std::string& method = "GET") {
  return http_raw(port,
                  method + " " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: metrics_test\r\n\r\n");
}

// The metrics port, from the line the server logs at start.
std::uint16_t metrics_port(const ServerProcess& server) {
  const std::string err = server.stderr_text();
  const std::string marker = "metrics on http://127.0.0.1:";
  const auto at = err.find(marker);
  if (at == std::string::npos) throw HarnessError("no metrics line in the server's log:\n" + err);
  return static_cast<std::uint16_t>(std::atoi(err.c_str() + at + marker.size()));
}

// The value of the sample line `name` (with its labels, if any) in `text`.
std::optional<std::uint64_t> sample(const std::string& text, const std::string& name) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(name + " ", 0) == 0) return std::stoull(line.substr(name.size() + 1));
  }
  return std::nullopt;
}

std::string write_temp(const std::string& text) {
  char path[] = "/tmp/sb-metrics-XXXXXX";
  const int fd = ::mkstemp(path);
  if (fd < 0) throw HarnessError("mkstemp failed");
  const bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  ::close(fd);
  if (!ok) throw HarnessError("cannot write a temporary file");
  return path;
}

// Runs `command`; its exit status and what it printed (stdout and stderr).
std::pair<int, std::string> run(const std::string& command) {
  std::string out;
  FILE* p = ::popen((command + " 2>&1").c_str(), "r");
  if (p == nullptr) throw HarnessError("popen failed: " + command);
  char buf[4096];
  while (std::size_t n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  const int status = ::pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

bool have(const std::string& program) {
  return run("command -v " + program + " >/dev/null").first == 0;
}

class MetricsTest : public EngineTest {
 protected:
  std::uint16_t start_with_metrics() {
    start_server({"--metrics", "127.0.0.1:0"});
    return metrics_port(server());
  }
};
INSTANTIATE_TEST_SUITE_P(Engines, MetricsTest, ::testing::Values(std::string_view{"reactor"}),
                         engine_test_name);

TEST_P(MetricsTest, CountersHealthAndClientsMatchTheTraffic) {
  const std::uint16_t port = start_with_metrics();
  Client a = connect(), b = connect(), c = connect(), d = connect();
  constexpr int kRounds = 25;
  for (int i = 0; i < kRounds; ++i) {
    round_trip(a, b, "ab " + std::to_string(i), after(kIoTimeout));
    round_trip(c, d, "cd " + std::to_string(i), after(kIoTimeout));
  }
  const std::uint64_t received = 4 * kRounds;  // each round trip: two frames, each checked by its receiver

  const HttpReply metrics = http_get(port, "/metrics");
  ASSERT_EQ(metrics.status, 200) << metrics.head;
  EXPECT_NE(metrics.head.find("Content-Type: text/plain; version=0.0.4"), std::string::npos) << metrics.head;
  EXPECT_NE(metrics.head.find("Connection: close"), std::string::npos);
  const auto routed = sample(metrics.body, "switchboard_frames_routed_total");
  ASSERT_TRUE(routed.has_value()) << metrics.body;
  EXPECT_GE(*routed, received);
  EXPECT_EQ(sample(metrics.body, "switchboard_clients"), 4u) << metrics.body;
  EXPECT_EQ(sample(metrics.body, "switchboard_frames_dropped_total{reason=\"no_route\"}"), 0u)
      << metrics.body;
  EXPECT_NE(metrics.body.find("# TYPE switchboard_connections_closed_total counter"), std::string::npos);

  if (have("promtool")) {
    const std::string file = write_temp(metrics.body);
    const auto [code, said] = run("promtool check metrics < " + file);
    ::unlink(file.c_str());
    EXPECT_EQ(code, 0) << "promtool check metrics:\n" << said << "\non:\n" << metrics.body;
  } else {
    std::cout << "[ SKIPPED  ] promtool check: promtool is not installed (Debian package `prometheus`)\n";
  }

  const HttpReply health = http_get(port, "/healthz");
  EXPECT_EQ(health.status, 200);
  EXPECT_EQ(health.body, "ok\n");

  const HttpReply clients = http_get(port, "/clients");
  ASSERT_EQ(clients.status, 200) << clients.head;
  EXPECT_NE(clients.head.find("Content-Type: application/json"), std::string::npos) << clients.head;
  const std::string file = write_temp(clients.body);
  // An independent parser: one line per client, "id peer version frames_in
  // connected_since".
  const auto [code, listed] = run(
      "python3 -c 'import json,sys\n"
      "for c in json.load(open(sys.argv[1])):\n"
      "  print(c[\"id\"], c[\"peer\"], c[\"protocol_version\"], c[\"frames_in\"], c[\"connected_since\"], "
      "c[\"authenticated\"], c[\"queued_bytes\"], c[\"paused\"])' " +
      file);
  ::unlink(file.c_str());
  ASSERT_EQ(code, 0) << listed << "\non:\n" << clients.body;
  std::set<std::uint32_t> ids;
  std::istringstream in(listed);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::uint32_t id = 0;
    std::string peer, version, frames_in, since;
    fields >> id >> peer >> version >> frames_in >> since;
    ids.insert(id);
    EXPECT_EQ(peer.rfind("127.0.0.1:", 0), 0u) << line;
    EXPECT_EQ(version, "1") << line;
    EXPECT_EQ(frames_in, std::to_string(kRounds)) << line;  // each client sent one frame per round
    EXPECT_EQ(since.size(), std::string("2024-01-01T00:00:00.000Z").size()) << line;
    EXPECT_EQ(since.back(), 'Z') << line;
  }
  EXPECT_EQ(ids, (std::set<std::uint32_t>{a.id(), b.id(), c.id(), d.id()})) << listed;

  const ExitInfo info = stop_server();
  EXPECT_GE(info.stat("routed"), received);
}

TEST_P(MetricsTest, BadRequestsGetClearAnswers) {
  const std::uint16_t port = start_with_metrics();
  EXPECT_EQ(http_get(port, "/nothing-here").status, 404);
  EXPECT_EQ(http_get(port, "/metrics", "POST").status, 405);
  const HttpReply del = http_get(port, "/healthz", "DELETE");
  EXPECT_EQ(del.status, 405);
  EXPECT_NE(del.head.find("Allow: GET, HEAD"), std::string::npos) << del.head;
  EXPECT_EQ(http_raw(port, "hello there\r\n\r\n").status, 400);
  const HttpReply head = http_get(port, "/healthz", "HEAD");
  EXPECT_EQ(head.status, 200);
  EXPECT_TRUE(head.body.empty());
  EXPECT_EQ(http_get(port, "/healthz?verbose=1").status, 200);
  // Headers that never end within 8 KiB.
  EXPECT_EQ(http_raw(port, "GET /metrics HTTP/1.1\r\nX-Long: " + std::string(9000, 'x')).status, 431);

  // The endpoint counts its own answers.
  const HttpReply metrics = http_get(port, "/metrics");
  EXPECT_EQ(sample(metrics.body, "switchboard_metrics_responses_total{code=\"404\"}"), 1u) << metrics.body;
  EXPECT_EQ(sample(metrics.body, "switchboard_metrics_responses_total{code=\"405\"}"), 2u) << metrics.body;
  EXPECT_EQ(sample(metrics.body, "switchboard_metrics_responses_total{code=\"400\"}"), 1u) << metrics.body;
  EXPECT_EQ(sample(metrics.body, "switchboard_metrics_responses_total{code=\"431\"}"), 1u) << metrics.body;
  stop_server();
}

// Scrapers that connect and never send their request (up to the limit of
// concurrent metrics connections and beyond): routing goes on, the extra
// ones are refused at once, and the silent ones are closed at the deadline.
TEST_P(MetricsTest, SilentMetricsClientsDoNotStallRouting) {
  const std::uint16_t port = start_with_metrics();
  Client a = connect(), b = connect();
  constexpr std::size_t kLimit = 16;  // HttpResponder::Limits::max_conns
  std::vector<UniqueFd> silent;
  for (std::size_t i = 0; i < kLimit; ++i) silent.push_back(connect_to(port));
  for (int i = 0; i < 20; ++i) round_trip(a, b, "while scrapers sit " + std::to_string(i), after(kIoTimeout));

  // One more is over the limit: a 503 at once, without waiting for a request.
  const HttpReply busy = [&] {
    UniqueFd extra = connect_to(port);
    std::string raw;
    if (!read_to_eof(extra.get(), raw, after(kIoTimeout)))
      throw HarnessError("no 503 in time: '" + raw + "'");
    return parse_reply(raw);
  }();
  EXPECT_EQ(busy.status, 503);

  // Each silent one is closed by the server at its deadline (5 s).
  for (auto& fd : silent) {
    std::string raw;
    EXPECT_TRUE(read_to_eof(fd.get(), raw, after(kStopTimeout)))
        << "a silent metrics client was never closed";
    EXPECT_TRUE(raw.empty()) << raw;
  }
  round_trip(a, b, "after the deadline", after(kIoTimeout));
  const HttpReply metrics = http_get(port, "/metrics");
  EXPECT_EQ(metrics.status, 200);
  EXPECT_EQ(sample(metrics.body, "switchboard_metrics_connections_dropped_total{reason=\"timeout\"}"), kLimit)
      << metrics.body;
  EXPECT_EQ(sample(metrics.body, "switchboard_metrics_connections_dropped_total{reason=\"over_limit\"}"), 1u)
      << metrics.body;
  stop_server();
}

// The Asio engines serve /metrics and /healthz from a thread of their own
// (their counters are atomics); /clients is the reactor's alone.
class MetricsOtherEnginesTest : public MetricsTest {};
INSTANTIATE_TEST_SUITE_P(Engines, MetricsOtherEnginesTest, ::testing::ValuesIn([] {
                           std::vector<std::string_view> others;
                           for (auto name : engines::kEngineNames) {
                             if (name != "reactor") others.push_back(name);
                           }
                           return others;
                         }()),
                         engine_test_name);

TEST_P(MetricsOtherEnginesTest, ServeCountersFromAThreadOfTheirOwn) {
  const std::uint16_t port = start_with_metrics();
  Client a = connect(), b = connect();
  constexpr int kRounds = 20;
  for (int i = 0; i < kRounds; ++i) round_trip(a, b, "ab " + std::to_string(i), after(kIoTimeout));

  // These engines bump a counter on their own thread after the write that
  // delivered the frame, so the last round's may land just after the reply
  // was read: scrape again (bounded) until every frame is counted.
  HttpReply metrics;
  std::optional<std::uint64_t> routed;
  for (const Deadline deadline = after(kIoTimeout);;) {
    metrics = http_get(port, "/metrics");
    ASSERT_EQ(metrics.status, 200) << metrics.head;
    routed = sample(metrics.body, "switchboard_frames_routed_total");
    ASSERT_TRUE(routed.has_value()) << metrics.body;
    if (*routed >= 2u * kRounds || Clock::now() >= deadline) break;
  }
  EXPECT_GE(*routed, 2u * kRounds);
  if (have("promtool")) {
    const std::string file = write_temp(metrics.body);
    const auto [code, said] = run("promtool check metrics < " + file);
    ::unlink(file.c_str());
    EXPECT_EQ(code, 0) << "promtool check metrics:\n" << said << "\non:\n" << metrics.body;
  }
  EXPECT_EQ(http_get(port, "/healthz").status, 200);
  EXPECT_EQ(http_get(port, "/clients").status, 404);
  // The metrics thread must not take the engine's stop signal.
  const ExitInfo info = stop_server();
  EXPECT_GE(info.stat("routed"), 2u * kRounds);
}

}  // namespace
}  // namespace sb::itest
