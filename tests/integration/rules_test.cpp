// DESIGN.md section 1's rules for what the article assumes never happens:
// unknown or departed destinations, messages to self, disconnects in the
// middle of a frame, frames above --max-frame.
#include <algorithm>
#include <string>

#include "harness.hpp"

namespace sb::itest {
namespace {

class RulesTest : public EngineTest {};
SB_INSTANTIATE_FOR_EVERY_ENGINE(RulesTest);
SB_INSTANTIATE_FOR_CLUSTERS(RulesTest);

TEST_P(RulesTest, MessageToSelfIsDelivered) {
  start_server();
  Client a = connect();
  Client b = connect();

  a.send_frame(a.id(), "note to self", after(kIoTimeout));
  EXPECT_EQ(a.read_frame(after(kIoTimeout)), "note to self");

  // Pipelined, mixed with a frame for someone else: order kept per destination.
  a.send_raw(frame(a.id(), "self 1") + frame(b.id(), "to b") + frame(a.id(), "self 2"), after(kIoTimeout));
  EXPECT_EQ(a.read_frame(after(kIoTimeout)), "self 1");
  EXPECT_EQ(a.read_frame(after(kIoTimeout)), "self 2");
  EXPECT_EQ(b.read_frame(after(kIoTimeout)), "to b");

  const ExitInfo info = stop_server();
  EXPECT_EQ(info.stat("routed"), 4u);
  EXPECT_EQ(info.stat("dropped_no_route"), 0u);
  expect_only_eof(a);
  expect_only_eof(b);
}

TEST_P(RulesTest, UnknownDestinationIsDroppedAndCounted) {
  start_server();
  Client a = connect();
  Client b = connect();
  const std::uint32_t unknown[] = {0xFFFFFFFFu, std::max(a.id(), b.id()) + 1000};
  for (const auto id : unknown) ASSERT_TRUE(id != a.id() && id != b.id());

  a.send_frame(unknown[0], "to nobody 1", after(kIoTimeout));
  a.send_frame(unknown[1], "to nobody 2", after(kIoTimeout));
  // The sender is unaffected: it can still send and receive.
  a.send_frame(b.id(), "to b after the drops", after(kIoTimeout));
  EXPECT_EQ(b.read_frame(after(kIoTimeout)), "to b after the drops");
  b.send_frame(a.id(), "to a", after(kIoTimeout));
  EXPECT_EQ(a.read_frame(after(kIoTimeout)), "to a");

  const ExitInfo info = stop_server();
  EXPECT_EQ(info.stat("dropped_no_route"), 2u);
  EXPECT_EQ(info.stat("routed"), 2u);
  EXPECT_EQ(info.stat("closed_peer") + info.stat("closed_io_error") + info.stat("closed_oversized"), 0u)
      << "nobody should have been disconnected";
  expect_only_eof(a);
  expect_only_eof(b);
}

TEST_P(RulesTest, FramesToDepartedClientAreDroppedAndCounted) {
  start_server();
  Client a = connect();
  Client gone = connect();
  Client c = connect();
  const std::uint32_t gone_id = gone.id();

  // FIN, then wait for the server's own FIN: once it arrives the server has
  // processed the departure, so the frames below cannot race with it.
  gone.shutdown_write();
  const auto closing = gone.read_until_close(after(kIoTimeout));
  ASSERT_EQ(closing.how, Client::End::eof) << "the server should close a client that closed its side";
  EXPECT_EQ(closing.data, "");

  for (int i = 0; i < 3; ++i)
    a.send_frame(gone_id, "to the departed " + std::to_string(i), after(kIoTimeout));
  a.send_frame(c.id(), "still fine", after(kIoTimeout));
  EXPECT_EQ(c.read_frame(after(kIoTimeout)), "still fine");
  round_trip(a, c, "sender unaffected", after(kIoTimeout));

  const ExitInfo info = stop_server();
  EXPECT_EQ(info.stat("dropped_no_route"), 3u);
  EXPECT_EQ(info.stat("closed_peer"), 1u);
  EXPECT_EQ(info.stat("routed"), 3u);
  expect_only_eof(a);
  expect_only_eof(c);
}

TEST_P(RulesTest, DisconnectMidFrameDiscardsThePartialFrame) {
  start_server();
  Client receiver = connect();
  Client other = connect();

  // FIN in the middle of a frame; the server's FIN back tells us it is done
  // with the half-frame.
  Client quitter = connect();
  quitter.send_raw(be32(receiver.id()) + "this frame never ends", after(kIoTimeout));
  quitter.shutdown_write();
  const auto closing = quitter.read_until_close(after(kIoTimeout));
  ASSERT_EQ(closing.how, Client::End::eof) << "the server should close a client that closed its side";

  other.send_frame(receiver.id(), "whole frame 1", after(kIoTimeout));
  EXPECT_EQ(receiver.read_frame(after(kIoTimeout)), "whole frame 1");

  // RST in the middle of a frame, this time with the header itself cut short.
  Client aborter = connect();
  aborter.send_raw(be32(receiver.id()).substr(0, 2), after(kIoTimeout));
  aborter.abort();
  Client aborter2 = connect();
  aborter2.send_raw(be32(receiver.id()) + "reset mid-frame", after(kIoTimeout));
  aborter2.abort();

  other.send_frame(receiver.id(), "whole frame 2", after(kIoTimeout));
  EXPECT_EQ(receiver.read_frame(after(kIoTimeout)), "whole frame 2");
  round_trip(receiver, other, "others unaffected", after(kIoTimeout));

  // Everything still queued is flushed at the stop: a partial frame
  // delivered late would show up before the receiver's EOF.
  const ExitInfo info = stop_server();
  EXPECT_EQ(info.stat("routed"), 4u) << "only the four whole frames may be routed";
  EXPECT_GE(info.stat("closed_peer"), 1u);
  expect_only_eof(receiver);
  expect_only_eof(other);
}

TEST_P(RulesTest, OversizedFrameClosesOnlyItsSender) {
  start_server({"--max-frame", "1K"});
  Client a = connect();
  Client b = connect();
  Client big = connect();
  round_trip(a, b, "before", after(kIoTimeout));

  // At the limit is fine: 1024 payload bytes with --max-frame 1K.
  const std::string at_limit = pattern(1024, 5);
  a.send_frame(b.id(), at_limit, after(kIoTimeout));
  EXPECT_TRUE(same_bytes(at_limit, b.read_frame(after(kIoTimeout))));

  // 2 KiB and no NUL: the server must give up on this sender.
  big.send_raw(be32(b.id()) + std::string(2048, 'x'), after(kIoTimeout));
  const auto closing = big.read_until_close(after(kIoTimeout));
  EXPECT_EQ(closing.how, Client::End::eof) << "the oversized sender should see EOF";
  EXPECT_EQ(closing.data, "");

  round_trip(a, b, "after", after(kIoTimeout));
  round_trip(b, a, "after, the other way", after(kIoTimeout));

  const ExitInfo info = stop_server();
  EXPECT_EQ(info.stat("closed_oversized"), 1u);
  EXPECT_EQ(info.stat("routed"), 7u);
  expect_only_eof(a);
  expect_only_eof(b);  // none of the oversized frame's bytes reached b
}

}  // namespace
}  // namespace sb::itest
