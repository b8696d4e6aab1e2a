#include "lock/exactly_once_retirement.h"

#include <algorithm>
#include <utility>

namespace lockd::lock {

void RetirementPlanner::Start(uint64_t now_ms, uint64_t replicated_mark_ms) {
  active_ = true;
  base_mark_ms_ = replicated_mark_ms;
  base_ms_ = now_ms;
  last_proposal_ms_ = now_ms;
  proposed_ = false;
  local_.clear();
}

void RetirementPlanner::Stop() {
  active_ = false;
  local_.clear();
}

uint64_t RetirementPlanner::period_ms() const {
  const uint64_t p =
      std::max<uint64_t>(std::min<uint64_t>(timing_.window_ms / 32, timing_.forward_ms),
                         std::min<uint64_t>(1'000, timing_.forward_ms));
  // At most 512 proposals a window, so the replicated samples a window needs fit in
  // ExactlyOnce::kMaxAgeSamples with room for a leader change's extra ones.
  return std::max<uint64_t>(p, timing_.window_ms / kSamplesPerWindow);
}

uint64_t RetirementPlanner::local_spacing_ms() const {
  return std::max<uint64_t>(kLocalSampleMs, timing_.window_ms / kSamplesPerWindow);
}

uint64_t RetirementPlanner::MarkAt(uint64_t now_ms) const {
  const uint64_t elapsed = now_ms > base_ms_ ? now_ms - base_ms_ : 0;
  // Rounded down, and slowed by ρ: a clock running fast by up to ρ still never counts more
  // than the real time that passed.
  return base_mark_ms_ + static_cast<uint64_t>(static_cast<double>(elapsed) * (1 - timing_.drift));
}

std::optional<RetireOutcomes> RetirementPlanner::Due(uint64_t now_ms, LogIndex applied,
                                                     const std::deque<AgeSample>& replicated) {
  if (!active_) return std::nullopt;
  const uint64_t mark = MarkAt(now_ms);
  if (local_.empty() || mark - local_.back().mark_ms >= local_spacing_ms()) {
    local_.push_back(AgeSample{applied, mark});
  }
  const uint64_t wait_ms = proposed_ ? period_ms() : std::min(period_ms(), kFirstProposalMs);
  if (now_ms - last_proposal_ms_ < wait_ms || mark == 0) return std::nullopt;
  // A sample (i, m) says every record made at or before index i is at least mark − m old.
  const auto newest_at_least = [&](uint64_t age) {
    LogIndex found;
    if (mark < age) return found;
    for (const std::deque<AgeSample>* samples : {&replicated, &std::as_const(local_)}) {
      for (const AgeSample& s : *samples) {
        if (s.mark_ms + age > mark) break;
        found = std::max(found, s.applied);
      }
    }
    return found;
  };
  const LogIndex expired = newest_at_least(timing_.window_ms);
  const LogIndex answered = std::max(expired, newest_at_least(timing_.forward_ms));
  // Own samples older than the window served this round; later rounds find newer ones.
  while (local_.size() > 1 && local_[1].mark_ms + timing_.window_ms <= mark) local_.pop_front();
  last_proposal_ms_ = now_ms;
  proposed_ = true;
  return RetireOutcomes{answered, expired, applied, mark};
}

}  // namespace lockd::lock
