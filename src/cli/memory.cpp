#include "cli/memory.hpp"

#include <unistd.h>

#include <charconv>
#include <fstream>
#include <string_view>

namespace sb::cli {

namespace {

// The number a cgroup file holds; nullopt for "max", a missing file, or
// cgroup v1's "no limit" (a value near 2^63).
std::optional<std::uint64_t> read_limit(const std::string& path) {
  std::ifstream in(path);
  std::string text;
  if (!(in >> text)) return std::nullopt;
  std::uint64_t v = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc{} || ptr != text.data() + text.size()) return std::nullopt;
  if (v >= (std::uint64_t{1} << 62)) return std::nullopt;
  return v;
}

// The cgroup v2 path of this process ("0::/system.slice/x.service"), or "".
std::string own_cgroup(const std::string& proc_self_cgroup) {
  std::ifstream in(proc_self_cgroup);
  std::string line;
  while (std::getline(in, line)) {
    if (line.starts_with("0::")) return line.substr(3);
  }
  return {};
}

}  // namespace

std::optional<MemoryLimit> memory_limit(std::optional<std::uint64_t> physical, const std::string& cgroup_root,
                                        const std::string& proc_self_cgroup) {
  std::optional<MemoryLimit> best;
  if (physical) best = MemoryLimit{*physical, "physical memory"};
  auto consider = [&best](const std::string& path) {
    const auto v = read_limit(path);
    if (v && (!best || *v < best->bytes)) best = MemoryLimit{*v, "cgroup limit (" + path + ")"};
  };
  // v2: a limit anywhere up the tree applies. In a cgroup namespace (a
  // container) the own path is "/" and the root's file is the own one.
  std::string dir = own_cgroup(proc_self_cgroup);
  while (!dir.empty() && dir != "/") {
    consider(cgroup_root + dir + "/memory.max");
    dir = dir.substr(0, dir.rfind('/'));
  }
  consider(cgroup_root + "/memory.max");
  consider(cgroup_root + "/memory/memory.limit_in_bytes");  // v1
  return best;
}

std::optional<MemoryLimit> memory_limit() {
  std::optional<std::uint64_t> physical;
  const long pages = ::sysconf(_SC_PHYS_PAGES);
  const long page_size = ::sysconf(_SC_PAGESIZE);
  if (pages > 0 && page_size > 0)
    physical = static_cast<std::uint64_t>(pages) * static_cast<std::uint64_t>(page_size);
  return memory_limit(physical, "/sys/fs/cgroup", "/proc/self/cgroup");
}

}  // namespace sb::cli
