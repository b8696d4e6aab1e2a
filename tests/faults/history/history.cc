#include "faults/history/history.h"

#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <charconv>
#include <cstdio>
#include <fstream>
#include <sstream>

namespace lockd::faults {

BootNs BootNow() {
  struct timespec ts {};
  clock_gettime(CLOCK_BOOTTIME, &ts);
  return static_cast<BootNs>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

const char* Name(OpKind k) {
  switch (k) {
    case OpKind::kAcquire:
      return "acquire";
    case OpKind::kRelease:
      return "release";
    case OpKind::kInspect:
      return "inspect";
    case OpKind::kRead:
      return "read";
    case OpKind::kIncrement:
      return "increment";
    case OpKind::kGrantSeen:
      return "grant_seen";
    case OpKind::kReleaseSeen:
      return "release_seen";
    case OpKind::kRenew:
      return "renew";
  }
  return "?";
}
const char* Name(LockMode m) {
  return m == LockMode::kShared ? "SHARED" : "EXCLUSIVE";
}
const char* Name(Outcome o) {
  switch (o) {
    case Outcome::kOk:
      return "ok";
    case Outcome::kFail:
      return "fail";
    case Outcome::kInfo:
      return "info";
  }
  return "?";
}

namespace {

template <typename E, size_t N>
std::optional<E> Lookup(const std::string& s, const E (&all)[N]) {
  for (E e : all) {
    if (s == Name(e)) return e;
  }
  return std::nullopt;
}
constexpr OpKind kKinds[] = {OpKind::kAcquire,     OpKind::kRelease,   OpKind::kInspect,
                             OpKind::kRead,        OpKind::kIncrement, OpKind::kGrantSeen,
                             OpKind::kReleaseSeen, OpKind::kRenew};
constexpr LockMode kModes[] = {LockMode::kExclusive, LockMode::kShared};
constexpr Outcome kOutcomes[] = {Outcome::kOk, Outcome::kFail, Outcome::kInfo};

/// Holders as "lease:MODE:token,…" (the flat JSON has no arrays).
std::string EncodeHolders(const std::vector<Holder>& hs) {
  std::string out;
  for (const Holder& h : hs) {
    if (!out.empty()) out += ',';
    out += std::to_string(h.lease) + ':' + (h.mode == LockMode::kShared ? 'S' : 'X') + ':' +
           std::to_string(h.token);
  }
  return out;
}

std::optional<std::vector<Holder>> DecodeHolders(const std::string& s) {
  std::vector<Holder> out;
  std::istringstream in(s);
  std::string item;
  while (std::getline(in, item, ',')) {
    Holder h;
    char mode = 0;
    unsigned long long lease = 0, token = 0;
    if (std::sscanf(item.c_str(), "%llu:%c:%llu", &lease, &mode, &token) != 3 ||
        (mode != 'S' && mode != 'X')) {
      return std::nullopt;
    }
    h.lease = lease;
    h.token = token;
    h.mode = mode == 'S' ? LockMode::kShared : LockMode::kExclusive;
    out.push_back(h);
  }
  return out;
}

void SkipSpace(const std::string& s, size_t& i) {
  while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n')) ++i;
}

bool ParseString(const std::string& s, size_t& i, std::string* out) {
  if (i >= s.size() || s[i] != '"') return false;
  ++i;
  out->clear();
  while (i < s.size()) {
    char c = s[i++];
    if (c == '"') return true;
    if (c != '\\') {
      *out += c;
      continue;
    }
    if (i >= s.size()) return false;
    char e = s[i++];
    switch (e) {
      case '"':
        *out += '"';
        break;
      case '\\':
        *out += '\\';
        break;
      case '/':
        *out += '/';
        break;
      case 'n':
        *out += '\n';
        break;
      case 't':
        *out += '\t';
        break;
      case 'r':
        *out += '\r';
        break;
      case 'b':
        *out += '\b';
        break;
      case 'f':
        *out += '\f';
        break;
      case 'u': {
        // Only what JsonQuote writes: control characters below 0x20.
        if (i + 4 > s.size()) return false;
        unsigned code = 0;
        if (std::from_chars(s.data() + i, s.data() + i + 4, code, 16).ec != std::errc()) {
          return false;
        }
        if (code >= 0x80) return false;
        *out += static_cast<char>(code);
        i += 4;
        break;
      }
      default:
        return false;
    }
  }
  return false;
}

template <typename T>
bool Number(const JsonObject& o, const char* key, T* out, std::string* error) {
  auto it = o.find(key);
  if (it == o.end()) return true;  // absent: the default
  const std::string& t = it->second.text;
  if (it->second.is_string ||
      std::from_chars(t.data(), t.data() + t.size(), *out).ec != std::errc()) {
    *error = std::string("field ") + key + " is not an integer: " + t;
    return false;
  }
  return true;
}

std::string Text(const JsonObject& o, const char* key) {
  auto it = o.find(key);
  return it == o.end() ? std::string() : it->second.text;
}

template <typename Record>
Loaded<Record> ReadLines(const std::string& path,
                         std::optional<Record> (*from)(const JsonObject&, std::string*)) {
  Loaded<Record> out;
  std::ifstream in(path);
  if (!in) {
    out.error = "cannot open " + path;
    return out;
  }
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (line.empty()) continue;
    std::string error;
    auto obj = ParseJsonObject(line, &error);
    std::optional<Record> r;
    if (obj) r = from(*obj, &error);
    if (r) {
      out.records.push_back(std::move(*r));
    } else {
      out.warnings.push_back(path + ":" + std::to_string(n) + ": skipped (" + error + ")");
    }
  }
  return out;
}

std::string Seconds(BootNs ns) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3fs", static_cast<double>(ns) / 1e9);
  return buf;
}

}  // namespace

std::optional<JsonObject> ParseJsonObject(const std::string& s, std::string* error) {
  JsonObject out;
  size_t i = 0;
  SkipSpace(s, i);
  if (i >= s.size() || s[i] != '{') {
    *error = "not a JSON object";
    return std::nullopt;
  }
  ++i;
  SkipSpace(s, i);
  if (i < s.size() && s[i] == '}') return out;
  for (;;) {
    SkipSpace(s, i);
    std::string key;
    if (!ParseString(s, i, &key)) {
      *error = "bad key at byte " + std::to_string(i);
      return std::nullopt;
    }
    SkipSpace(s, i);
    if (i >= s.size() || s[i] != ':') {
      *error = "no ':' after key " + key;
      return std::nullopt;
    }
    ++i;
    SkipSpace(s, i);
    JsonValue v;
    if (i < s.size() && s[i] == '"') {
      v.is_string = true;
      if (!ParseString(s, i, &v.text)) {
        *error = "bad string value of " + key;
        return std::nullopt;
      }
    } else {
      size_t start = i;
      while (i < s.size() && s[i] != ',' && s[i] != '}' && s[i] != ' ') ++i;
      v.text = s.substr(start, i - start);
      if (v.text.empty()) {
        *error = "no value for " + key;
        return std::nullopt;
      }
    }
    out[key] = std::move(v);
    SkipSpace(s, i);
    if (i < s.size() && s[i] == ',') {
      ++i;
      continue;
    }
    if (i < s.size() && s[i] == '}') {
      ++i;
      SkipSpace(s, i);
      if (i != s.size()) {
        *error = "text after the object";
        return std::nullopt;
      }
      return out;
    }
    *error = "expected ',' or '}' at byte " + std::to_string(i);
    return std::nullopt;
  }
}

std::string JsonQuote(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\r':
        out += "\\r";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(c));
          out += buf;
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

std::string Op::Describe() const {
  std::string s = process + "#" + std::to_string(id) + " " + Name(kind);
  if (kind == OpKind::kAcquire || kind == OpKind::kGrantSeen) s += std::string(" ") + Name(mode);
  s += " " + lock + " " + Name(outcome);
  if (token) s += " token=" + std::to_string(token);
  if (fence) s += " fence=" + std::to_string(fence);
  if (lease) s += " lease=" + std::to_string(lease);
  if (kind == OpKind::kRead || kind == OpKind::kIncrement) s += " value=" + std::to_string(value);
  if (kind == OpKind::kRenew) s += " ttl=" + std::to_string(value) + "ms";
  if (!holders.empty()) s += " holders=" + EncodeHolders(holders);
  if (!event.empty()) s += " event=" + event;
  if (index) s += " index=" + std::to_string(index) + "." + std::to_string(event_no);
  s += " [" + Seconds(invoke_ns) + " .. " + Seconds(complete_ns) + "]";
  if (valid_until_ns) s += " valid_until=" + Seconds(valid_until_ns);
  if (!error.empty()) s += " (" + error + ")";
  return s;
}

std::string ResourceRecord::Describe() const {
  return std::string(write ? "write" : "read") + " " + lock + " fence=" + std::to_string(fence) +
         " value=" + std::to_string(value) + (accepted ? " accepted" : " rejected") +
         " largest=" + std::to_string(largest) + " by " + process + "#" + std::to_string(op) +
         " at " + Seconds(t_ns);
}

std::string ToJson(const Op& op) {
  std::ostringstream o;
  o << "{\"process\":" << JsonQuote(op.process) << ",\"op\":" << op.id << ",\"kind\":\""
    << Name(op.kind) << "\",\"lock\":" << JsonQuote(op.lock) << ",\"mode\":\"" << Name(op.mode)
    << "\",\"invoke_ns\":" << op.invoke_ns << ",\"complete_ns\":" << op.complete_ns
    << ",\"outcome\":\"" << Name(op.outcome) << "\",\"token\":" << op.token
    << ",\"fence\":" << op.fence << ",\"lease\":" << op.lease
    << ",\"valid_until_ns\":" << op.valid_until_ns << ",\"value\":" << op.value;
  if (!op.holders.empty()) o << ",\"holders\":" << JsonQuote(EncodeHolders(op.holders));
  if (!op.event.empty()) o << ",\"event\":" << JsonQuote(op.event);
  if (op.index) o << ",\"index\":" << op.index << ",\"event_no\":" << op.event_no;
  if (!op.error.empty()) o << ",\"error\":" << JsonQuote(op.error);
  o << "}";
  return o.str();
}

std::string ToJson(const ResourceRecord& r) {
  std::ostringstream o;
  o << "{\"t_ns\":" << r.t_ns << ",\"lock\":" << JsonQuote(r.lock) << ",\"req\":\""
    << (r.write ? "write" : "read") << "\",\"fence\":" << r.fence << ",\"value\":" << r.value
    << ",\"accepted\":" << (r.accepted ? "true" : "false") << ",\"largest\":" << r.largest
    << ",\"process\":" << JsonQuote(r.process) << ",\"op\":" << r.op << "}";
  return o.str();
}

std::string ToJson(const FaultEvent& e) {
  return "{\"t_ns\":" + std::to_string(e.t_ns) + ",\"kind\":" + JsonQuote(e.kind) +
         ",\"target\":" + JsonQuote(e.target) + ",\"detail\":" + JsonQuote(e.detail) + "}";
}

std::optional<Op> OpFromJson(const JsonObject& o, std::string* error) {
  Op op;
  op.process = Text(o, "process");
  op.lock = Text(o, "lock");
  auto kind = Lookup(Text(o, "kind"), kKinds);
  auto mode = Lookup(Text(o, "mode").empty() ? "EXCLUSIVE" : Text(o, "mode"), kModes);
  auto outcome = Lookup(Text(o, "outcome"), kOutcomes);
  if (!kind || !mode || !outcome) {
    *error = "bad kind, mode or outcome";
    return std::nullopt;
  }
  op.kind = *kind;
  op.mode = *mode;
  op.outcome = *outcome;
  if (!Number(o, "op", &op.id, error) || !Number(o, "invoke_ns", &op.invoke_ns, error) ||
      !Number(o, "complete_ns", &op.complete_ns, error) || !Number(o, "token", &op.token, error) ||
      !Number(o, "fence", &op.fence, error) || !Number(o, "lease", &op.lease, error) ||
      !Number(o, "valid_until_ns", &op.valid_until_ns, error) ||
      !Number(o, "value", &op.value, error) || !Number(o, "index", &op.index, error) ||
      !Number(o, "event_no", &op.event_no, error)) {
    return std::nullopt;
  }
  auto holders = DecodeHolders(Text(o, "holders"));
  if (!holders) {
    *error = "bad holders: " + Text(o, "holders");
    return std::nullopt;
  }
  op.holders = std::move(*holders);
  op.event = Text(o, "event");
  op.error = Text(o, "error");
  return op;
}

std::optional<ResourceRecord> ResourceRecordFromJson(const JsonObject& o, std::string* error) {
  ResourceRecord r;
  r.lock = Text(o, "lock");
  r.process = Text(o, "process");
  const std::string req = Text(o, "req");
  if (req != "read" && req != "write") {
    *error = "bad req: " + req;
    return std::nullopt;
  }
  r.write = req == "write";
  r.accepted = Text(o, "accepted") == "true";
  if (!Number(o, "t_ns", &r.t_ns, error) || !Number(o, "fence", &r.fence, error) ||
      !Number(o, "value", &r.value, error) || !Number(o, "largest", &r.largest, error) ||
      !Number(o, "op", &r.op, error)) {
    return std::nullopt;
  }
  return r;
}

std::optional<FaultEvent> FaultEventFromJson(const JsonObject& o, std::string* error) {
  FaultEvent e;
  e.kind = Text(o, "kind");
  e.target = Text(o, "target");
  e.detail = Text(o, "detail");
  if (e.kind.empty()) {
    *error = "no kind";
    return std::nullopt;
  }
  if (!Number(o, "t_ns", &e.t_ns, error)) return std::nullopt;
  return e;
}

Loaded<Op> ReadOps(const std::string& path) {
  return ReadLines<Op>(path, &OpFromJson);
}
Loaded<ResourceRecord> ReadResourceLog(const std::string& path) {
  return ReadLines<ResourceRecord>(path, &ResourceRecordFromJson);
}
Loaded<FaultEvent> ReadFaultEvents(const std::string& path) {
  return ReadLines<FaultEvent>(path, &FaultEventFromJson);
}

JsonLinesWriter::JsonLinesWriter(const std::string& path)
    : fd_(::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644)) {}

JsonLinesWriter::~JsonLinesWriter() {
  if (fd_ >= 0) ::close(fd_);
}

void JsonLinesWriter::Write(const std::string& line) {
  if (fd_ < 0) return;
  // One write per line on an O_APPEND file: lines of concurrent writers never interleave.
  std::string buf = line + "\n";
  size_t off = 0;
  while (off < buf.size()) {
    ssize_t n = ::write(fd_, buf.data() + off, buf.size() - off);
    if (n <= 0) return;
    off += static_cast<size_t>(n);
  }
}

}  // namespace lockd::faults
