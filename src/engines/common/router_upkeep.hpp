// What every engine that drives core::Router does besides routing, once a
// turn or once a second: the summed drop and pause line, and giving idle
// memory back. The reactor (and its shards) and race share these.
#pragma once

#include "core/config.hpp"
#include "core/router.hpp"
#include "core/stats.hpp"
#include "net/log.hpp"
#include "protocol/block_pool.hpp"

namespace sb::engines {

// Drops and pauses are too frequent to log one by one: the counters are
// compared with `logged` (the last line written), and at most one line a
// second (`limit`) says what happened since; `logged` is then brought up to
// date.
void log_policy_counts(const core::Stats& now, core::Stats& logged, net::RateLimit& limit,
                       const core::RouterConfig& config);

// A burst must not become the server's permanent size: idle pool blocks
// nobody needed since the last call go back, and free heap the allocator
// keeps (glibc returns only the top of its heap by itself) is handed back
// with malloc_trim when it exceeds 16 MiB. Call about once a second.
void give_memory_back(protocol::BlockPool& read_pool, core::Router& router);

}  // namespace sb::engines
