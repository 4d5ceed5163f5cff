// The client-side parsers, fed every input whole and split at every byte.
#include "bench/peer_protocols.hpp"

#include <gtest/gtest.h>

#include <string>
#include <type_traits>
#include <vector>

namespace sb::bench {
namespace {

struct Recorder {
  std::vector<std::string> events;
  void on_greeting(std::uint32_t id) { events.push_back("id " + std::to_string(id)); }
  void on_message(std::string_view p) { events.push_back("msg " + std::string(p)); }
  void on_ready() { events.push_back("ready"); }
  void on_ping() { events.push_back("ping"); }
  void on_publish_reply(std::int64_t n) { events.push_back("published " + std::to_string(n)); }
  void on_server_error(std::string_view t) { events.push_back("err " + std::string(t)); }
  void on_protocol_error(std::string_view t) { events.push_back("protocol " + std::string(t)); }
  void on_delivery(std::uint32_t source, std::string_view p) {
    events.push_back("from " + std::to_string(source) + " " + std::string(p));
  }
};

// Feeds `input` in two reads split at `split`, keeping unconsumed bytes as
// the worker does, and returns the events plus whatever was left over.
template <class Parser>
Parser make_parser() {
  Parser p;
  if constexpr (std::is_same_v<Parser, SwitchboardV2Parser>) p.set_nonce("0123456789abcdef");
  return p;
}

template <class Parser>
std::vector<std::string> feed(const std::string& input, std::size_t split) {
  Parser parser = make_parser<Parser>();
  Recorder r;
  std::string buffer;
  for (const std::string& chunk : {input.substr(0, split), input.substr(split)}) {
    buffer += chunk;
    const std::size_t used = parser.parse(buffer, r);
    buffer.erase(0, used);
  }
  if (!buffer.empty()) r.events.push_back("left " + buffer);
  return r.events;
}

template <class Parser>
void expect_at_every_split(const std::string& input, const std::vector<std::string>& expected) {
  for (std::size_t split = 0; split <= input.size(); ++split) {
    ASSERT_EQ(feed<Parser>(input, split), expected) << "split at " << split;
  }
}

TEST(SwitchboardParser, GreetingThenFrames) {
  std::string in("\x00\x00\x01\x02", 4);
  in += std::string("hello\0\0world\0part", 17);
  expect_at_every_split<SwitchboardParser>(in, {"id 258", "msg hello", "msg ", "msg world", "left part"});
}

TEST(SwitchboardV2Parser, PreUpgradeDeliveriesThenWelcomeThenFrames) {
  std::string in("\x00\x00\x01\x02", 4);
  // A v1 message that looks like a welcome with another nonce, then the real one.
  in += std::string("switchboard/2 ok nonce=ffffffffffffffff id=1 max_frame=9\0", 57);
  in += std::string("switchboard/2 ok nonce=0123456789abcdef id=258 max_frame=1048576\0", 65);
  in += std::string("\x00\x00\x00\x07\x81\x00\x00\x00\x05hi", 11);                    // DELIVER from 5
  in += std::string("\x00\x00\x00\x05\x82ping", 9);                                      // PONG
  in += std::string("\x00\x00\x00\x08\x83\x01\x00\x00\x00\x07no", 12);                // ERROR 1 subject 7
  in += std::string("\x00\x00\x00\x06\x81\x00\x00\x00\x09", 9);                        // half a DELIVER
  expect_at_every_split<SwitchboardV2Parser>(
      in, {"id 258", "msg switchboard/2 ok nonce=ffffffffffffffff id=1 max_frame=9", "ready", "from 5 hi",
           "err ERROR 1 subject 7: no", "left " + in.substr(in.size() - 9)});
}

TEST(SwitchboardV2Parser, RefusedHelloIsAProtocolError) {
  std::string in("\x00\x00\x00\x01", 4);
  in += std::string("switchboard/2 error nonce=0123456789abcdef unsupported\0", 55);
  expect_at_every_split<SwitchboardV2Parser>(
      in, {"id 1", "protocol the server refused the v2 hello: switchboard/2 error nonce=0123456789abcdef unsupported"});
}

TEST(SwitchboardV2Envelope, IsSendHeader) {
  const Envelope e = switchboard_v2_envelope(0x01020304, 64);
  EXPECT_EQ(e.prefix, std::string("\x00\x00\x00\x45\x01\x01\x02\x03\x04", 9));
  EXPECT_EQ(e.suffix, "");
  EXPECT_EQ(switchboard_v2_hello("ab"), std::string("\xff\xff\xff\xffswitchboard/2 nonce=ab\0", 27));
}

TEST(SwitchboardEnvelope, IsBigEndianIdAndNul) {
  const Envelope e = switchboard_envelope(0x01020304);
  EXPECT_EQ(e.prefix, std::string("\x01\x02\x03\x04", 4));
  EXPECT_EQ(e.suffix, std::string(1, '\0'));
}

TEST(NatsParser, InfoMsgPingPong) {
  const std::string in =
      "INFO {\"server_id\":\"x\",\"max_payload\":1048576}\r\n"
      "PONG\r\n"
      "MSG bench.1 1 5\r\nhello\r\n"
      "PING\r\n"
      "MSG bench.1 1 reply.to 3\r\na\r\n\r\n"  // payload may hold CRLF: its length rules
      "+OK\r\n"
      "-ERR 'Slow Consumer'\r\n"
      "MSG bench.1 1 4\r\nab";
  expect_at_every_split<NatsParser>(in, {"ready", "msg hello", "ping", "msg a\r\n",
                                         "err -ERR 'Slow Consumer'", "left MSG bench.1 1 4\r\nab"});
}

TEST(NatsParser, MalformedLinesAreProtocolErrors) {
  Recorder r;
  NatsParser p;
  EXPECT_EQ(p.parse("MSG x 1 notanumber\r\n", r), 0u);
  ASSERT_EQ(r.events.size(), 1u);
  EXPECT_TRUE(r.events[0].starts_with("protocol"));
  Recorder r2;
  EXPECT_EQ(p.parse("MSG x 1 2\r\nabXY", r2), 0u);  // payload not followed by CRLF
  EXPECT_TRUE(r2.events.at(0).starts_with("protocol"));
}

TEST(NatsEnvelope, PubLine) {
  const Envelope e = nats_envelope("bench.7", 64);
  EXPECT_EQ(e.prefix, "PUB bench.7 64\r\n");
  EXPECT_EQ(e.suffix, "\r\n");
  EXPECT_EQ(nats_handshake("bench.7"),
            "CONNECT {\"verbose\":false,\"pedantic\":false}\r\nSUB bench.7 1\r\nPING\r\n");
}

TEST(RespParser, PubSubReplies) {
  const std::string in =
      "*3\r\n$9\r\nsubscribe\r\n$7\r\nbench.1\r\n:1\r\n"
      "*3\r\n$7\r\nmessage\r\n$7\r\nbench.1\r\n$5\r\nhello\r\n"
      ":1\r\n"
      ":0\r\n"
      "+PONG\r\n"
      "-ERR max number of clients reached\r\n"
      "*3\r\n$7\r\nmessage\r\n$7\r\nbench.1\r\n$4\r\na\r\nb\r\n"  // bulk strings may hold CRLF
      "*3\r\n$7\r\nmessage\r\n$7\r\nbench.1\r\n$10\r\nabc";
  expect_at_every_split<RespParser>(in, {"ready", "msg hello", "published 1", "published 0", "ready",
                                         "err ERR max number of clients reached", "msg a\r\nb",
                                         "left *3\r\n$7\r\nmessage\r\n$7\r\nbench.1\r\n$10\r\nabc"});
}

TEST(RespParser, MalformedRepliesAreProtocolErrors) {
  for (const std::string bad : {"?what\r\n", "*2\r\n*1\r\n", "$3\r\nabcXY", ":x\r\n", "*9\r\n"}) {
    Recorder r;
    RespParser p;
    EXPECT_EQ(p.parse(bad, r), 0u) << bad;
    ASSERT_EQ(r.events.size(), 1u) << bad;
    EXPECT_TRUE(r.events[0].starts_with("protocol")) << bad;
  }
}

TEST(RespEnvelope, PublishCommand) {
  const Envelope e = redis_envelope("bench.7", 64);
  EXPECT_EQ(e.prefix, "*3\r\n$7\r\nPUBLISH\r\n$7\r\nbench.7\r\n$64\r\n");
  EXPECT_EQ(e.suffix, "\r\n");
  EXPECT_EQ(redis_subscribe("bench.7"), "*2\r\n$9\r\nSUBSCRIBE\r\n$7\r\nbench.7\r\n");
}

}  // namespace
}  // namespace sb::bench
