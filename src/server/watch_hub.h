// WatchHub: fans the state machine's events out to Watch streams, in log order, and keeps a
// bounded history so a watcher can resume from the position after the last one it saw.
//
// The apply loop calls Publish() once per applied entry that produced events (all events of one
// entry travel together, so a release and the handoff it causes arrive in one message). A watcher
// subscribes with a filter (a name, or a prefix) and an optional resume position. A subscriber
// without one is live at once. One with a position replays the retained history after it by
// pulling chunks (Replay) at its own pace, each copied under the hub's mutex and bounded in
// entries scanned and delivered, so a replay of the whole history never holds up Publish (the
// apply loop) for longer than one chunk; the Replay that reaches the end of the history makes the
// subscriber live under the same lock, so it sees every entry exactly once. A position from
// another cluster, or one below the retained history (history is bounded, and a snapshot install
// cuts it), is OUT_OF_RANGE: the watcher must re-read the state and watch from now. So is a
// replay overtaken by the history's trimming (the watcher pulled too slowly).
//
// Delivery is by callback, on the publishing thread for live entries and on the Replay caller's
// thread for replayed ones, always with the hub's mutex held; a subscriber must only enqueue (the
// gRPC reactor does). A subscriber whose callback returns false is dropped (its stream is gone or
// too far behind). Thread-safe: every method may be called from any thread.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "base/status.h"

namespace lockd::server {

struct WatchEvent {
  enum class Type { kAcquired, kReleased, kExpired, kWaiting, kCancelled };
  Type type = Type::kAcquired;
  uint32_t number = 0;  ///< event number within its entry
  std::string name;
  uint64_t lease_id = 0;
  bool shared = false;
  uint64_t token = 0;
  uint64_t fence = 0;
};

/// The events of one applied log entry.
struct WatchEntry {
  uint64_t index = 0;
  std::vector<WatchEvent> events;
};

struct WatchFilter {
  std::string key;
  bool prefix = false;
  bool Matches(const std::string& name) const;
};

/// (index, event number): the last event a watcher saw. {0, 0} with resume=false means "from now".
struct WatchPosition {
  std::string cluster_id;
  uint64_t index = 0;
  uint32_t event = 0;
};

class WatchHub {
 public:
  /// Receives the matching events of one entry (never an empty list). False: drop me.
  using Sink = std::function<bool(const WatchEntry&)>;

  WatchHub(std::string cluster_id, size_t max_entries)
      : max_entries_(max_entries), cluster_id_(std::move(cluster_id)) {}

  /// The cluster id positions carry, once decided (it is decided after start: IdentityStore).
  void SetClusterId(std::string cluster_id);

  /// Events of the entry at `index` (indices increase). Entries without events need no call.
  void Publish(WatchEntry entry);
  /// History before `index` is gone (a snapshot was installed): resuming below it is OUT_OF_RANGE.
  void CutHistory(uint64_t index);
  /// Everything up to `applied` is known to this hub (entries with no events included).
  void Applied(uint64_t applied);

  /// Starts a watch. Without `after` the subscriber is live at once; with it, it receives nothing
  /// until it calls Replay. Returns the subscription id, or OUT_OF_RANGE.
  Result<uint64_t> Subscribe(WatchFilter filter, const WatchPosition* after, Sink sink);
  /// Delivers (through the sink, on this thread) the next retained entries after the
  /// subscriber's position: at most `max_entries` matching ones, scanning at most `max_scan`
  /// entries. True once the replay reached the end of the history and the subscriber is live;
  /// false: call again for more. OUT_OF_RANGE when the history it still needed was trimmed;
  /// UNAVAILABLE when the sink refused or the subscription is gone.
  Result<bool> Replay(uint64_t id, size_t max_entries, size_t max_scan = 4096);
  void Unsubscribe(uint64_t id);
  size_t subscribers() const;

 private:
  struct Subscriber {
    WatchFilter filter;
    Sink sink;
    bool live = true;
    /// While replaying: the last position delivered or skipped (events after it are due).
    uint64_t after_index = 0;
    uint32_t after_event = 0;
  };
  /// OUT_OF_RANGE if events after (index, event) are no longer all retained (mu_ held).
  Status CheckRetained(uint64_t index, uint32_t event) const;
  /// The events of `e` that `f` wants, after position (index, event) when given.
  static WatchEntry Select(const WatchEntry& e, const WatchFilter& f, uint64_t after_index,
                           uint32_t after_event);

  const size_t max_entries_;

  mutable std::mutex mu_;  ///< guards everything below; sinks are called with it held, in order
  std::string cluster_id_;
  std::deque<WatchEntry> history_;
  uint64_t history_floor_ = 0;  ///< every entry with index > floor and <= applied_ is retained
  static constexpr uint32_t kUnknownEvents = UINT32_MAX;
  /// The last event number of the entry at the floor (kUnknownEvents after a snapshot cut).
  uint32_t floor_events_ = 0;
  uint64_t applied_ = 0;
  uint64_t next_id_ = 1;
  std::map<uint64_t, Subscriber> subscribers_;
};

}  // namespace lockd::server
