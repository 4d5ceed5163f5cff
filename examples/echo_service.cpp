// An echo service: every message it gets goes back to its sender.
//   echo_service HOST PORT [TOKEN]
#include <cstdlib>
#include <iostream>
#include <string>

#include "client/client.hpp"

int main(int argc, char** argv) {
  if (argc < 3) {
    std::cerr << "usage: echo_service HOST PORT [TOKEN]\n";
    return 2;
  }
  using namespace sb::client;
  try {
    std::optional<std::string> token;
    if (argc > 3) token = argv[3];
    Client c = Client::connect(argv[1], static_cast<std::uint16_t>(std::atoi(argv[2])), token);
    std::cout << "echo service: id " << c.id() << std::endl;
    for (;;) {
      auto event = c.receive(std::chrono::hours{1});  // nullopt: an hour without messages
      if (!event) continue;
      if (auto* m = std::get_if<Message>(&*event)) {
        if (m->source) c.send(*m->source, m->payload);  // no source: sent before we upgraded, cannot answer
      } else {
        std::cerr << "echo service: " << describe(std::get<ErrorFrame>(*event))
                  << '\n';  // e.g. the sender left
      }
    }
  } catch (const ConnectionClosed& e) {
    std::cerr << "echo service: " << e.what() << '\n';
    return 0;
  } catch (const ClientError& e) {
    std::cerr << "echo service: " << e.what() << '\n';
    return 1;
  }
}
