#include "engines/asio/asio_engines.hpp"

#include "engines/asio/channel_per_writer_engine.hpp"
#include "engines/asio/channels_engine.hpp"
#include "engines/asio/mutex_engine.hpp"
#include "engines/asio/race_engine.hpp"

namespace sb::engines::asio_engines {

std::unique_ptr<Engine> make(std::string_view name, const ServerOptions& options) {
  if (name == "mutex") return std::make_unique<MutexEngine>(options);
  if (name == "channels") return std::make_unique<ChannelsEngine>(options);
  if (name == "channel-per-writer") return std::make_unique<ChannelPerWriterEngine>(options);
  if (name == "race") return std::make_unique<RaceEngine>(options);
  return nullptr;
}

}  // namespace sb::engines::asio_engines
