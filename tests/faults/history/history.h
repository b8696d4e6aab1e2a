// The recorded history of a fault run (issue 17): what every client process, the watcher and the
// resource saw, on CLOCK_BOOTTIME (shared by every process on the machine), as JSON lines.
//
// Writers: faults_worker (acquire, release, inspect, read, increment; the watcher's grant_seen and
// release_seen), faults_resource (ResourceRecord), the nemeses (FaultEvent). Readers: the checkers
// (checkers.h, linearizability.h) through faults_check. One record per line, one flat JSON object
// per record (strings, integers, booleans), so a crashed writer loses at most its last line, which
// the reader skips with a warning.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace lockd::faults {

/// Nanoseconds on CLOCK_BOOTTIME.
using BootNs = int64_t;
BootNs BootNow();

/// kRenew: a keeper's raw Renew of its lease (value = the lease's TTL in ms; the grant itself is
/// recorded as a renew with event "grant").
enum class OpKind {
  kAcquire,
  kRelease,
  kInspect,
  kRead,
  kIncrement,
  kGrantSeen,
  kReleaseSeen,
  kRenew
};
enum class LockMode { kExclusive, kShared };
/// kInfo: indeterminate (a timeout, UNAVAILABLE after the retries): it may or may not have taken
/// effect. kFail: a definite answer that it did not (not acquired, FAILED_PRECONDITION, rejected).
enum class Outcome { kOk, kFail, kInfo };

const char* Name(OpKind k);
const char* Name(LockMode m);
const char* Name(Outcome o);

/// One holder of a lock as an Acquire refusal or an inspection reported it.
struct Holder {
  uint64_t lease = 0;
  LockMode mode = LockMode::kExclusive;
  uint64_t token = 0;  ///< 0 when the answer did not say (an Acquire refusal lists leases only)
  bool operator==(const Holder&) const = default;
};

/// One operation of one process, from invocation to completion.
struct Op {
  std::string process;  ///< "w3", "watch", "cleanup"
  uint64_t id = 0;      ///< unique within the process
  OpKind kind = OpKind::kAcquire;
  std::string lock;
  LockMode mode = LockMode::kExclusive;
  BootNs invoke_ns = 0;
  BootNs complete_ns = 0;
  Outcome outcome = Outcome::kOk;
  uint64_t token = 0;
  uint64_t fence = 0;
  uint64_t lease = 0;
  /// The lease's valid_until (CLOCK_BOOTTIME) when the op completed (acquire) or was invoked
  /// (release): the end of the interval the client believed it held the lock.
  BootNs valid_until_ns = 0;
  int64_t value = 0;  ///< read: the value read; increment: the value written; renew: TTL ms
  std::vector<Holder> holders;  ///< inspect: the holders seen; refused acquire: who holds it
  std::string event;            ///< release_seen: "released" | "expired" | "gap" | "watch_start" |
                                ///< "watch_end"; renew: "grant" for the lease's grant
  uint64_t index = 0;           ///< grant_seen / release_seen: the log index of the event
  uint32_t event_no = 0;        ///< … and its number within the entry
  std::string error;            ///< what went wrong (fail / info)

  /// "w3#17 acquire EXCLUSIVE hot/1 ok token=9 fence=9 lease=4 [t1 .. t2]"
  std::string Describe() const;
};

/// One request the resource answered (faults_resource's log).
struct ResourceRecord {
  BootNs t_ns = 0;
  std::string lock;
  bool write = false;
  uint64_t fence = 0;
  int64_t value = 0;  ///< read: the value answered; write: the value written
  bool accepted = false;
  uint64_t largest = 0;  ///< the largest fence seen for the lock after this request
  std::string process;
  uint64_t op = 0;
  std::string Describe() const;
};

/// One fault a nemesis injected (the shared fault-event file).
struct FaultEvent {
  BootNs t_ns = 0;
  /// kill|stop|cont|partition|heal|loss|delay|slow_disk|disk_full|wipe|member|transfer (nodes),
  /// client_stop|client_cont (client processes)
  std::string kind;
  std::string target;
  std::string detail;
};

// --- flat JSON objects ---
/// One value of a flat JSON object: its text (unescaped for strings) and whether it was a string.
struct JsonValue {
  std::string text;
  bool is_string = false;
};
using JsonObject = std::map<std::string, JsonValue>;
/// Parses one line holding one flat object; nullopt (and `error`) on anything else.
std::optional<JsonObject> ParseJsonObject(const std::string& line, std::string* error);
std::string JsonQuote(const std::string& s);

// --- records as JSON lines ---
std::string ToJson(const Op& op);
std::string ToJson(const ResourceRecord& r);
std::string ToJson(const FaultEvent& e);
std::optional<Op> OpFromJson(const JsonObject& o, std::string* error);
std::optional<ResourceRecord> ResourceRecordFromJson(const JsonObject& o, std::string* error);
std::optional<FaultEvent> FaultEventFromJson(const JsonObject& o, std::string* error);

/// Reads every record of a JSON-lines file. A line that does not parse is skipped and described
/// in `warnings` (a process killed mid-write leaves a torn last line). A missing file is an error.
template <typename Record>
struct Loaded {
  std::vector<Record> records;
  std::vector<std::string> warnings;
  std::string error;  ///< non-empty: the file could not be read
};
Loaded<Op> ReadOps(const std::string& path);
Loaded<ResourceRecord> ReadResourceLog(const std::string& path);
Loaded<FaultEvent> ReadFaultEvents(const std::string& path);

/// Appends JSON lines to a file, flushing each line (a kill -9 loses at most the line in write).
class JsonLinesWriter {
 public:
  explicit JsonLinesWriter(const std::string& path);
  ~JsonLinesWriter();
  JsonLinesWriter(const JsonLinesWriter&) = delete;
  JsonLinesWriter& operator=(const JsonLinesWriter&) = delete;
  bool ok() const { return fd_ >= 0; }
  void Write(const std::string& line);

 private:
  int fd_ = -1;
};

}  // namespace lockd::faults
