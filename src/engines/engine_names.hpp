// The engines `switchboard serve --engine` accepts, default first. The
// integration suite is instantiated once per name in this list.
#pragma once

#include <array>
#include <string_view>

namespace sb::engines {

inline constexpr std::array<std::string_view, 6> kEngineNames = {"reactor", "sharded", "mutex", "channels",
                                                                  "channel-per-writer", "race"};

// The engines that keep a slow consumer from holding up anyone else: they
// queue per destination and pause only that destination's senders. The
// article's mutex and channel designs do not, by design: their head-of-line
// blocking is what they exist to show (docs/ENGINES.md), so the suite checks
// isolation on these and the blocking behaviour on the others.
inline constexpr std::array<std::string_view, 3> kIsolatingEngines = {"reactor", "sharded", "race"};

}  // namespace sb::engines
