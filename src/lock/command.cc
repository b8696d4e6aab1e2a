#include "lock/command.h"

#include "base/check.h"
#include "base/codec.h"
#include "lock/wire.h"

namespace lockd::lock {
namespace {

// Kinds on the wire: the variant index plus one (0 is never a valid kind). Append only.
uint8_t KindOf(const Command& c) {
  return static_cast<uint8_t>(c.index() + 1);
}

void PutHeader(Writer& w, uint8_t format, const RequestHeader& h) {
  w.Fixed64(h.id.client.hi);
  w.Fixed64(h.id.client.lo);
  w.Varint(h.id.seq);
  w.Varint(h.attempt);
  w.Varint(h.watermark);
  if (format < 4) {
    LOCKD_CHECK_MSG(h.caller == Caller{}, "a command format before 4 carries no caller");
    return;
  }
  w.Bytes(h.caller.principal);
  w.Varint(h.caller.max_leases);
  w.Varint(h.caller.max_locks);
  w.U8(h.caller.admin ? 1 : 0);
}

bool GetHeader(Reader& r, uint8_t version, RequestHeader* h) {
  uint64_t attempt = 0;
  bool ok = r.Fixed64(&h->id.client.hi) && r.Fixed64(&h->id.client.lo) && r.Varint(&h->id.seq) &&
            r.Varint(&attempt) && r.Varint(&h->watermark);
  h->attempt = static_cast<uint32_t>(attempt);
  if (ok && version >= 4) {
    uint8_t admin = 0;
    ok = r.Bytes(&h->caller.principal) && r.Varint(&h->caller.max_leases) &&
         r.Varint(&h->caller.max_locks) && r.U8(&admin) && admin <= 1;
    h->caller.admin = admin == 1;
  }
  return ok;
}

bool GetLease(Reader& r, LeaseId* id) {
  uint64_t v = 0;
  if (!r.Varint(&v)) return false;
  *id = LeaseId(v);
  return true;
}

/// The arguments of a command, without its header: what the digest covers.
void PutArgs(Writer& w, const Command& command) {
  std::visit(
      [&](const auto& c) {
        using T = std::decay_t<decltype(c)>;
        if constexpr (std::is_same_v<T, GrantLease>) {
          w.Varint(c.ttl_ms);
          w.Bytes(c.label);
        } else if constexpr (std::is_same_v<T, RevokeLease> || std::is_same_v<T, ExpireLease>) {
          w.Varint(c.lease.value());
        } else if constexpr (std::is_same_v<T, Acquire>) {
          w.Bytes(c.name);
          w.Varint(c.lease.value());
          w.U8(static_cast<uint8_t>(c.mode));
          w.Varint(c.wait_ms);
          w.Varint(c.ttl_ms);
          w.Bytes(c.label);
        } else if constexpr (std::is_same_v<T, Cancel>) {
          w.Bytes(c.name);
          w.Varint(c.lease.value());
          PutRequestId(w, c.acquire);
        } else if constexpr (std::is_same_v<T, Release>) {
          w.Bytes(c.name);
          w.Varint(c.lease.value());
          w.Varint(c.token.value());
        } else if constexpr (std::is_same_v<T, ForceRelease>) {
          w.Bytes(c.name);
          w.Varint(c.lease.value());
          w.Bytes(c.reason);
        } else if constexpr (std::is_same_v<T, WaitTimeout>) {
          w.Bytes(c.name);
          PutRequestId(w, c.acquire);
        } else if constexpr (std::is_same_v<T, RetireOutcomes>) {
          w.Varint(c.recorded_at_or_before.value());
          w.Varint(c.expired_at_or_before.value());
          w.Varint(c.sampled_index.value());
          w.Varint(c.age_mark_ms);
        }
      },
      command);
}

template <typename T>
bool GetArgs(Reader& r, uint8_t version, T* c) {
  if constexpr (std::is_same_v<T, GrantLease>) {
    return r.Varint(&c->ttl_ms) && r.Bytes(&c->label);
  } else if constexpr (std::is_same_v<T, RevokeLease> || std::is_same_v<T, ExpireLease>) {
    return GetLease(r, &c->lease);
  } else if constexpr (std::is_same_v<T, Acquire>) {
    return r.Bytes(&c->name) && GetLease(r, &c->lease) && GetMode(r, &c->mode) &&
           r.Varint(&c->wait_ms) && r.Varint(&c->ttl_ms) && r.Bytes(&c->label);
  } else if constexpr (std::is_same_v<T, Cancel>) {
    return r.Bytes(&c->name) && GetLease(r, &c->lease) && GetRequestId(r, &c->acquire);
  } else if constexpr (std::is_same_v<T, Release>) {
    uint64_t token = 0;
    bool ok = r.Bytes(&c->name) && GetLease(r, &c->lease) && r.Varint(&token);
    c->token = FencingToken(token);
    return ok;
  } else if constexpr (std::is_same_v<T, ForceRelease>) {
    return r.Bytes(&c->name) && GetLease(r, &c->lease) && r.Bytes(&c->reason);
  } else if constexpr (std::is_same_v<T, WaitTimeout>) {
    return r.Bytes(&c->name) && GetRequestId(r, &c->acquire);
  } else if constexpr (std::is_same_v<T, RetireOutcomes>) {
    uint64_t v = 0, expired = 0, sampled = 0;
    bool ok = r.Varint(&v) && (version < 2 || r.Varint(&expired)) &&
              (version < 3 || (r.Varint(&sampled) && r.Varint(&c->age_mark_ms)));
    c->recorded_at_or_before = LogIndex(v);
    c->expired_at_or_before = LogIndex(expired);
    c->sampled_index = LogIndex(sampled);
    return ok;
  }
}

template <size_t I = 0>
bool DecodeKind(uint8_t kind, uint8_t version, Reader& r, Command* out) {
  if constexpr (I < std::variant_size_v<Command>) {
    if (kind != I + 1) return DecodeKind<I + 1>(kind, version, r, out);
    using T = std::variant_alternative_t<I, Command>;
    T c;
    if constexpr (requires { c.header; }) {
      if (!GetHeader(r, version, &c.header)) return false;
    }
    if (!GetArgs(r, version, &c)) return false;
    *out = std::move(c);
    return true;
  } else {
    return false;
  }
}

}  // namespace

std::string Encode(const Command& command, int64_t wall_seconds, uint8_t format) {
  LOCKD_CHECK_MSG(format >= 1 && format <= kCommandFormatVersion, "a known command format");
  Writer w;
  w.U8(format);
  w.Varint(static_cast<uint64_t>(wall_seconds));
  w.U8(KindOf(command));
  if (const RequestHeader* h = HeaderOf(command)) PutHeader(w, format, *h);
  PutArgs(w, command);
  return w.Take();
}

Result<Envelope> Decode(std::string_view bytes) {
  Reader r(bytes);
  uint8_t version = 0, kind = 0;
  uint64_t wall = 0;
  if (!r.U8(&version)) return InvalidArgument("empty command entry");
  if (version > kCommandFormatVersion) {
    return FailedPrecondition("command format version " + std::to_string(version) +
                              " is newer than this node's " +
                              std::to_string(kCommandFormatVersion) + "; upgrade the node");
  }
  if (version == 0) return InvalidArgument("command format version 0 is not valid");
  Envelope e;
  if (!r.Varint(&wall) || !r.U8(&kind) || !DecodeKind(kind, version, r, &e.command) || !r.done()) {
    return InvalidArgument("malformed command entry (kind " + std::to_string(kind) + ", " +
                           std::to_string(bytes.size()) + " bytes)");
  }
  e.version = version;
  e.wall_seconds = static_cast<int64_t>(wall);
  return e;
}

uint64_t Digest(const Command& command) {
  if (!HeaderOf(command)) return 0;
  Writer w;
  w.U8(KindOf(command));
  PutArgs(w, command);
  // Who called is part of the call: another identity reusing a request id is told it was used
  // for a different call, never shown the first caller's outcome. Without a principal the bytes
  // are those of format 3, so outcomes recorded before an upgrade still match their retries.
  if (const std::string& principal = HeaderOf(command)->caller.principal; !principal.empty()) {
    w.Bytes(principal);
  }
  return Fnv1a64(w.data());
}

const RequestHeader* HeaderOf(const Command& command) {
  return std::visit(
      [](const auto& c) -> const RequestHeader* {
        if constexpr (requires { c.header; }) {
          return &c.header;
        } else {
          return nullptr;
        }
      },
      command);
}

const char* KindName(const Command& command) {
  static constexpr const char* kNames[] = {"GrantLease",   "RevokeLease", "ExpireLease",
                                           "Acquire",      "Cancel",      "Release",
                                           "ForceRelease", "WaitTimeout", "RetireOutcomes"};
  return kNames[command.index()];
}

std::string ToString(const Limits& l) {
  std::string s;
  auto put = [&s](const char* flag, uint64_t v) {
    s += (s.empty() ? "" : " ") + std::string(flag) + "=" + std::to_string(v);
  };
  put("--max-name-bytes", l.max_name_bytes);
  put("--max-label-bytes", l.max_label_bytes);
  put("--min-ttl-ms", l.min_ttl_ms);
  put("--max-ttl-ms", l.max_ttl_ms);
  put("--max-wait-ms", l.max_wait_ms);
  put("--max-locks", l.max_locks);
  put("--max-leases", l.max_leases);
  put("--max-waiters-per-lock", l.max_waiters_per_lock);
  put("--max-leases-per-label", l.max_leases_per_label);
  put("--outcome-retention-ms", l.outcome_retention_ms);
  put("--max-outcomes-per-client", l.max_outcomes_per_client);
  put("--max-outcomes", l.max_outcomes);
  return s;
}

std::string ToString(const RequestId& id) {
  char buf[80];
  std::snprintf(
      buf, sizeof buf, "%016llx%016llx/%llu", static_cast<unsigned long long>(id.client.hi),
      static_cast<unsigned long long>(id.client.lo), static_cast<unsigned long long>(id.seq));
  return buf;
}

}  // namespace lockd::lock
