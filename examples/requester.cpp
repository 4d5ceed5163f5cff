// A requester: sends TEXT to the service with ID SERVICE and prints its answer.
//   requester HOST PORT SERVICE TEXT [TOKEN]
#include <cstdlib>
#include <iostream>
#include <string>

#include "client/client.hpp"

int main(int argc, char** argv) {
  if (argc < 5) {
    std::cerr << "usage: requester HOST PORT SERVICE TEXT [TOKEN]\n";
    return 2;
  }
  using namespace sb::client;
  try {
    std::optional<std::string> token;
    if (argc > 5) token = argv[5];
    Client c = Client::connect(argv[1], static_cast<std::uint16_t>(std::atoi(argv[2])), token);
    const auto service = static_cast<std::uint32_t>(std::strtoul(argv[3], nullptr, 10));
    c.send(service, argv[4]);
    for (;;) {
      auto event = c.receive(std::chrono::seconds{5});
      if (!event) {
        std::cerr << "requester: no answer within 5 s\n";
        return 1;
      }
      if (auto* e = std::get_if<ErrorFrame>(&*event)) {
        std::cerr << "requester: " << describe(*e) << '\n';  // "no client 7 (no_route)"
        return 1;
      }
      const auto& m = std::get<Message>(*event);
      if (m.source == service) {
        std::cout << "answer from " << service << ": " << m.payload << std::endl;
        return 0;
      }
    }
  } catch (const ClientError& e) {
    std::cerr << "requester: " << e.what() << '\n';
    return 1;
  }
}
