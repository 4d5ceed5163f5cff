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

// Call on the main thread before starting threads that call
// give_memory_back. glibc sets up its allocator on first use and then makes
// the calling thread a user of the main arena without counting it; where
// malloc is replaced (AddressSanitizer, a preloaded jemalloc or tcmalloc),
// that first use is mallinfo2 in give_memory_back, and two shards doing it
// at once each take the one count, so glibc aborts when the second exits.
void prepare_memory_upkeep();

}  // namespace sb::engines
