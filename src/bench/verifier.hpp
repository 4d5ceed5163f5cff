// Delivery checks for the bench: every message a receiver gets is decoded
// and checked (marker, checksum, padding), routed to the right receiver,
// and placed in its sender's sequence, so that lost, duplicated, corrupt,
// reordered and misrouted messages are each counted, never guessed.
//
// Sans-IO and single-threaded: a worker owns one DeliveryVerifier for the
// streams whose receivers it holds, feeds it every payload it reads, and asks
// for the counts once the run has drained.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <span>
#include <string_view>
#include <vector>

#include "bench/payload.hpp"

namespace sb::bench {

// Order and exactly-once bookkeeping for one stream's sequence numbers
// (0, 1, 2, ... as sent). Memory is one map entry per open gap, so a burst
// of loss costs one entry, not one per message.
class SequenceTracker {
 public:
  enum class Arrival {
    in_order,   // the next one expected
    ahead,      // higher than expected: the ones skipped are missing for now
    late,       // fills a gap: it was overtaken by a later one (reordered)
    duplicate,  // seen before
  };

  Arrival on_sequence(std::uint64_t seq);

  std::uint64_t unique() const noexcept { return unique_; }
  std::uint64_t duplicates() const noexcept { return duplicates_; }
  std::uint64_t reordered() const noexcept { return reordered_; }
  // Below the highest seen and not (yet) arrived.
  std::uint64_t missing() const noexcept { return missing_; }
  // Once nothing more can arrive: everything sent and never seen.
  std::uint64_t lost(std::uint64_t sent) const noexcept { return sent > unique_ ? sent - unique_ : 0; }

 private:
  std::uint64_t next_ = 0;  // one past the highest seen
  std::uint64_t unique_ = 0;
  std::uint64_t duplicates_ = 0;
  std::uint64_t reordered_ = 0;
  std::uint64_t missing_ = 0;
  std::map<std::uint64_t, std::uint64_t> gaps_;  // first -> one past last, all below next_
};

struct IntegrityCounts {
  std::uint64_t delivered = 0;   // distinct messages that arrived intact
  std::uint64_t lost = 0;        // sent, never arrived
  std::uint64_t duplicated = 0;  // arrived more than once (extra copies)
  std::uint64_t corrupt = 0;     // failed marker, hex, length, checksum or padding
  std::uint64_t reordered = 0;   // arrived after a later message of the same sender
  std::uint64_t misrouted = 0;   // intact, but meant for another receiver

  bool clean() const noexcept {
    return lost == 0 && duplicated == 0 && corrupt == 0 && reordered == 0 && misrouted == 0;
  }
  IntegrityCounts& operator+=(const IntegrityCounts& o) noexcept;
};

// Checks every payload received for a contiguous range of stream IDs
// [first_stream, first_stream + stream_count).
class DeliveryVerifier {
 public:
  static constexpr std::uint32_t kAnyReceiver = 0xffffffffu;

  enum class Verdict {
    fresh,      // first arrival, in order (possibly after a gap)
    reordered,  // first arrival, but after a later message of its stream
    duplicate,  // arrived before
    corrupt,    // not a valid payload of this run's size
    misrouted,  // valid, but its stream is not one this receiver expects
  };
  struct Outcome {
    Verdict verdict = Verdict::corrupt;
    MessageHeader header;  // meaningful unless corrupt
    bool delivered() const noexcept { return verdict == Verdict::fresh || verdict == Verdict::reordered; }
  };

  DeliveryVerifier(std::size_t payload_size, std::uint32_t first_stream, std::uint32_t stream_count);

  // Messages of `stream` must reach `receiver` (an ID of the caller's
  // choosing); until set, any receiver is accepted.
  void expect(std::uint32_t stream, std::uint32_t receiver);

  Outcome on_payload(std::string_view payload, std::uint32_t receiver = kAnyReceiver);

  const SequenceTracker& tracker(std::uint32_t stream) const { return trackers_.at(stream - first_); }

  // sent[i] is how many messages stream first_stream + i sent in all. Call
  // once the run has drained: anything not arrived by then is lost.
  IntegrityCounts counts(std::span<const std::uint64_t> sent) const;

 private:
  std::size_t payload_size_;
  std::uint32_t first_;
  std::vector<SequenceTracker> trackers_;
  std::vector<std::uint32_t> receiver_of_;
  std::uint64_t corrupt_ = 0;
  std::uint64_t misrouted_ = 0;
};

}  // namespace sb::bench
