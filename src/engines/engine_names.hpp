// The engines `switchboard serve --engine` accepts, default first. The
// integration suite is instantiated once per name in this list.
#pragma once

#include <array>
#include <string_view>

namespace sb::engines {

inline constexpr std::array<std::string_view, 1> kEngineNames = {"reactor"};

}  // namespace sb::engines
