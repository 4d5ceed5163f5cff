// How much memory this process may use, for --max-pending-total's default.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace sb::cli {

struct MemoryLimit {
  std::uint64_t bytes = 0;
  std::string source;  // "physical memory" or "cgroup limit (PATH)"
};

// The machine's physical memory, or the cgroup memory limit of this process
// when that is lower: cgroup v2's memory.max of its own cgroup and of every
// ancestor (/proc/self/cgroup names it), and cgroup v1's
// memory.limit_in_bytes. nullopt if neither can be read.
std::optional<MemoryLimit> memory_limit();

// The same with the files given: for tests.
std::optional<MemoryLimit> memory_limit(std::optional<std::uint64_t> physical, const std::string& cgroup_root,
                                        const std::string& proc_self_cgroup);

}  // namespace sb::cli
