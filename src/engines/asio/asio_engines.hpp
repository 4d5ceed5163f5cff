// The article's comparison designs, on Boost.Asio C++20 coroutines:
// `mutex`, `channels`, `channel-per-writer` and `race`. See docs/ENGINES.md.
//
// This header is all the registry needs; it pulls in no Boost header.
#pragma once

#include <array>
#include <memory>
#include <string_view>

#include "engines/engine.hpp"

namespace sb::engines::asio_engines {

inline constexpr std::array<std::string_view, 4> kNames = {"mutex", "channels", "channel-per-writer", "race"};

// The engine called `name`, or nullptr if it is not one of kNames.
std::unique_ptr<Engine> make(std::string_view name, const ServerOptions& options);

}  // namespace sb::engines::asio_engines
