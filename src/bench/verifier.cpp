#include "bench/verifier.hpp"

#include <stdexcept>

namespace sb::bench {

SequenceTracker::Arrival SequenceTracker::on_sequence(std::uint64_t seq) {
  if (seq == next_) {
    ++next_;
    ++unique_;
    return Arrival::in_order;
  }
  if (seq > next_) {
    gaps_.emplace(next_, seq);
    missing_ += seq - next_;
    next_ = seq + 1;
    ++unique_;
    return Arrival::ahead;
  }
  // Below the highest seen: either it fills a gap or it came before.
  auto it = gaps_.upper_bound(seq);
  if (it == gaps_.begin()) {
    ++duplicates_;
    return Arrival::duplicate;
  }
  --it;
  const std::uint64_t first = it->first;
  const std::uint64_t last = it->second;
  if (seq >= last) {
    ++duplicates_;
    return Arrival::duplicate;
  }
  gaps_.erase(it);
  if (first < seq) gaps_.emplace(first, seq);
  if (seq + 1 < last) gaps_.emplace(seq + 1, last);
  --missing_;
  ++unique_;
  ++reordered_;
  return Arrival::late;
}

IntegrityCounts& IntegrityCounts::operator+=(const IntegrityCounts& o) noexcept {
  delivered += o.delivered;
  lost += o.lost;
  duplicated += o.duplicated;
  corrupt += o.corrupt;
  reordered += o.reordered;
  misrouted += o.misrouted;
  return *this;
}

DeliveryVerifier::DeliveryVerifier(std::size_t payload_size, std::uint32_t first_stream,
                                   std::uint32_t stream_count)
    : payload_size_{payload_size},
      first_{first_stream},
      trackers_(stream_count),
      receiver_of_(stream_count, kAnyReceiver) {}

void DeliveryVerifier::expect(std::uint32_t stream, std::uint32_t receiver) {
  receiver_of_.at(stream - first_) = receiver;
}

DeliveryVerifier::Outcome DeliveryVerifier::on_payload(std::string_view payload, std::uint32_t receiver) {
  const auto header = decode_payload(payload, payload_size_);
  if (!header) {
    ++corrupt_;
    return {Verdict::corrupt, {}};
  }
  const std::uint32_t index = header->stream - first_;  // wraps to a large value below first_
  if (index >= trackers_.size() ||
      (receiver_of_[index] != kAnyReceiver && receiver != kAnyReceiver && receiver_of_[index] != receiver)) {
    ++misrouted_;
    return {Verdict::misrouted, *header};
  }
  switch (trackers_[index].on_sequence(header->sequence)) {
    case SequenceTracker::Arrival::in_order:
    case SequenceTracker::Arrival::ahead:
      return {Verdict::fresh, *header};
    case SequenceTracker::Arrival::late:
      return {Verdict::reordered, *header};
    case SequenceTracker::Arrival::duplicate:
      break;
  }
  return {Verdict::duplicate, *header};
}

IntegrityCounts DeliveryVerifier::counts(std::span<const std::uint64_t> sent) const {
  if (sent.size() != trackers_.size())
    throw std::invalid_argument("DeliveryVerifier::counts: one count per stream");
  IntegrityCounts c;
  for (std::size_t i = 0; i < trackers_.size(); ++i) {
    const auto& t = trackers_[i];
    c.delivered += t.unique();
    c.lost += t.lost(sent[i]);
    c.duplicated += t.duplicates();
    c.reordered += t.reordered();
  }
  c.corrupt = corrupt_;
  c.misrouted = misrouted_;
  return c;
}

}  // namespace sb::bench
