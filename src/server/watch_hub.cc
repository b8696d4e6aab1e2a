#include "server/watch_hub.h"

namespace lockd::server {

bool WatchFilter::Matches(const std::string& name) const {
  return prefix ? name.compare(0, key.size(), key) == 0 : name == key;
}

WatchEntry WatchHub::Select(const WatchEntry& e, const WatchFilter& f, uint64_t after_index,
                            uint32_t after_event) {
  WatchEntry out;
  out.index = e.index;
  for (const auto& ev : e.events) {
    if (e.index == after_index && ev.number <= after_event) continue;
    if (f.Matches(ev.name)) out.events.push_back(ev);
  }
  return out;
}

void WatchHub::Publish(WatchEntry entry) {
  std::lock_guard lock(mu_);
  if (entry.index > applied_) applied_ = entry.index;
  for (auto it = subscribers_.begin(); it != subscribers_.end();) {
    WatchEntry mine = Select(entry, it->second.filter, 0, 0);
    if (!mine.events.empty() && !it->second.sink(mine)) {
      it = subscribers_.erase(it);
    } else {
      ++it;
    }
  }
  history_.push_back(std::move(entry));
  while (history_.size() > max_entries_) {
    history_floor_ = history_.front().index;
    floor_events_ = history_.front().events.empty() ? 0 : history_.front().events.back().number;
    history_.pop_front();
  }
}

void WatchHub::Applied(uint64_t applied) {
  std::lock_guard lock(mu_);
  if (applied > applied_) applied_ = applied;
}

void WatchHub::CutHistory(uint64_t index) {
  std::lock_guard lock(mu_);
  while (!history_.empty() && history_.front().index <= index) history_.pop_front();
  if (index > history_floor_) {
    history_floor_ = index;
    floor_events_ = kUnknownEvents;  // what entry `index` held is not known here
  }
  if (index > applied_) applied_ = index;
}

void WatchHub::SetClusterId(std::string cluster_id) {
  std::lock_guard lock(mu_);
  cluster_id_ = std::move(cluster_id);
}

Result<uint64_t> WatchHub::Subscribe(WatchFilter filter, const WatchPosition* after, Sink sink) {
  std::lock_guard lock(mu_);
  if (after) {
    if (after->cluster_id != cluster_id_) {
      return OutOfRange("position is from cluster '" + after->cluster_id + "', this is '" +
                        cluster_id_ + "': re-read the state and watch from now");
    }
    // The entry at the floor is gone too: a position there is good only if it saw all of it.
    if (after->index < history_floor_ ||
        (after->index == history_floor_ && history_floor_ > 0 && after->event < floor_events_)) {
      return OutOfRange("history up to index " + std::to_string(history_floor_) +
                        " is no longer kept (asked to resume after " +
                        std::to_string(after->index) + "): re-read the state and watch from now");
    }
    if (after->index > applied_) {
      return OutOfRange("position " + std::to_string(after->index) +
                        " is ahead of this node's applied index " + std::to_string(applied_));
    }
    for (const auto& e : history_) {
      if (e.index < after->index) continue;
      WatchEntry mine = Select(e, filter, after->index, after->event);
      if (!mine.events.empty() && !sink(mine))
        return Unavailable("watcher went away during replay");
    }
  }
  const uint64_t id = next_id_++;
  subscribers_.emplace(id, Subscriber{std::move(filter), std::move(sink)});
  return id;
}

void WatchHub::Unsubscribe(uint64_t id) {
  std::lock_guard lock(mu_);
  subscribers_.erase(id);
}

size_t WatchHub::subscribers() const {
  std::lock_guard lock(mu_);
  return subscribers_.size();
}

}  // namespace lockd::server
