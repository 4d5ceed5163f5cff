#include "engines/metrics_thread.hpp"

#include <signal.h>
#include <spdlog/spdlog.h>

#include <exception>
#include <future>
#include <string>
#include <utility>

#include "core/metrics.hpp"
#include "engines/responder_metrics.hpp"
#include "net/http_responder.hpp"
#include "net/loop.hpp"

namespace sb::engines {

MetricsThread::MetricsThread(const net::Endpoint& where, std::function<core::Stats()> stats) {
  std::promise<void> started;
  auto ready = started.get_future();
  thread_ = std::thread([this, where, stats = std::move(stats), started = std::move(started)]() mutable {
    // Signals are the engine's business: none may land on this thread.
    sigset_t all;
    sigfillset(&all);
    ::pthread_sigmask(SIG_BLOCK, &all, nullptr);
    bool told = false;
    try {
      loop_ = std::make_unique<net::Loop>();  // owned by this thread from here on
      net::HttpResponder* responder = nullptr;
      net::HttpResponder::Routes routes;
      routes["/metrics"] = [&stats, &responder] {
        return net::HttpResponder::Response{
            "text/plain; version=0.0.4; charset=utf-8",
            core::prometheus_text(stats(), responder_metrics(responder->counts()))};
      };
      routes["/healthz"] = [] { return net::HttpResponder::Response{"text/plain; charset=utf-8", "ok\n"}; };
      net::HttpResponder served(*loop_, where, std::move(routes), net::HttpResponder::Limits{});
      responder = &served;
      loop_->set_turn_start([&served] { served.on_tick(); });
      spdlog::info("metrics on http://{}:{}/metrics (also /healthz), served by a thread of their own",
                   where.host, served.port());
      told = true;
      started.set_value();
      if (!loop_->run()) spdlog::error("metrics: epoll_wait failed; no more metrics");
    } catch (...) {
      if (!told) {
        started.set_exception(std::current_exception());
      } else {
        spdlog::error("metrics: an unexpected error stopped the metrics thread; routing goes on");
      }
    }
  });
  try {
    ready.get();
  } catch (...) {
    thread_.join();
    throw;
  }
}

MetricsThread::~MetricsThread() {
  loop_->request_stop();  // any thread may
  thread_.join();
}

}  // namespace sb::engines
