#include "server/watch_hub.h"

#include <algorithm>

namespace lockd::server {

namespace {

/// A client's bytes quoted in an error message: printable ASCII as is, anything else as \xNN, and
/// at most 40 bytes of it. An unbounded echo made a status message too large for the client's
/// metadata limit, failing every other call on its connection (found by the fuzz run).
std::string Echo(const std::string& in) {
  constexpr size_t kMax = 40;
  std::string out;
  for (size_t i = 0; i < in.size() && i < kMax; ++i) {
    const auto c = static_cast<unsigned char>(in[i]);
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out += static_cast<char>(c);
    } else {
      static const char* hex = "0123456789abcdef";
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  if (in.size() > kMax) out += "... (" + std::to_string(in.size()) + " bytes)";
  return out;
}

}  // namespace

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
    if (!it->second.live) {  // it reads this entry from the history when its replay gets there
      ++it;
      continue;
    }
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

Status WatchHub::CheckRetained(uint64_t index, uint32_t event) const {
  // The entry at the floor is gone too: a position there is good only if it saw all of it.
  if (index < history_floor_ ||
      (index == history_floor_ && history_floor_ > 0 && event < floor_events_)) {
    return OutOfRange("history up to index " + std::to_string(history_floor_) +
                      " is no longer kept (asked to resume after " + std::to_string(index) +
                      "): re-read the state and watch from now");
  }
  return Status::Ok();
}

void WatchHub::SetClusterId(std::string cluster_id) {
  std::lock_guard lock(mu_);
  cluster_id_ = std::move(cluster_id);
}

Result<uint64_t> WatchHub::Subscribe(WatchFilter filter, const WatchPosition* after, Sink sink) {
  std::lock_guard lock(mu_);
  Subscriber s{std::move(filter), std::move(sink)};
  if (after) {
    if (after->cluster_id != cluster_id_) {
      return OutOfRange("position is from cluster '" + Echo(after->cluster_id) + "', this is '" +
                        cluster_id_ + "': re-read the state and watch from now");
    }
    if (Status st = CheckRetained(after->index, after->event); !st.ok()) return st;
    if (after->index > applied_) {
      return OutOfRange("position " + std::to_string(after->index) +
                        " is ahead of this node's applied index " + std::to_string(applied_));
    }
    s.live = false;
    s.after_index = after->index;
    s.after_event = after->event;
  }
  const uint64_t id = next_id_++;
  subscribers_.emplace(id, std::move(s));
  return id;
}

Result<bool> WatchHub::Replay(uint64_t id, size_t max_entries, size_t max_scan) {
  std::lock_guard lock(mu_);
  auto it = subscribers_.find(id);
  if (it == subscribers_.end()) return Unavailable("the watch ended during its replay");
  Subscriber& s = it->second;
  if (s.live) return true;
  if (Status st = CheckRetained(s.after_index, s.after_event); !st.ok()) {
    subscribers_.erase(it);
    return OutOfRange("the watch fell behind the kept history while replaying it: " + st.message());
  }
  // History indices increase, so the resume point is found by bisection, not a scan.
  auto e = std::lower_bound(history_.begin(), history_.end(), s.after_index,
                            [](const WatchEntry& h, uint64_t i) { return h.index < i; });
  size_t delivered = 0;
  for (size_t scanned = 0; e != history_.end() && delivered < max_entries && scanned < max_scan;
       ++e, ++scanned) {
    WatchEntry mine = Select(*e, s.filter, s.after_index, s.after_event);
    s.after_index = e->index;
    s.after_event = kUnknownEvents;  // every event of this entry is delivered or not wanted
    if (mine.events.empty()) continue;
    ++delivered;
    if (!s.sink(mine)) {
      subscribers_.erase(it);
      return Unavailable("the watcher went away during its replay");
    }
  }
  // Caught up: from here on Publish delivers, under this same lock, so nothing is seen twice
  // and nothing is missed.
  if (e == history_.end()) s.live = true;
  return s.live;
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
