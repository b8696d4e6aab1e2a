// Fuzz target: what storage reads back from disk (storage/records.h: log entries, hard state,
// snapshot metadata; the membership entries in the log; backup files and the restore seed;
// the data dir's identity file). The first byte picks the decoder. Properties: a record is
// refused with an error or decodes to a value whose encoding decodes to that same value, and
// whose encoding is stable.
#include <cstdint>
#include <string>

#include "fuzz_check.h"
#include "raft/conf_change.h"
#include "server/cluster_identity.h"
#include "storage/backup_file.h"
#include "storage/records.h"

namespace {

using namespace lockd;

template <typename T, typename Enc, typename Dec>
void RoundTrip(const Result<T>& v, Enc encode, Dec decode) {
  if (!v.ok()) {
    FUZZ_CHECK(!v.status().message().empty(), "a refusal says why");
    return;
  }
  const std::string again = encode(*v);
  auto v2 = decode(again);
  FUZZ_CHECK(v2.ok(), "a decoded record re-encodes to bytes that decode");
  FUZZ_CHECK(*v2 == *v, "decode(encode(x)) == x");
  FUZZ_CHECK(encode(*v2) == again, "the encoding is stable");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view body = fuzz::AsView(data + 1, size - 1);
  switch (data[0] % 7) {
    case 0: {
      // The key gives the index; take it from the record's own index when it has one, so the
      // fuzzer reaches past the index check, and from a fixed one otherwise.
      for (raft::LogIndex index : {raft::LogIndex(1), raft::LogIndex(300)}) {
        auto e = storage::DecodeEntry(index, body);
        if (e.ok()) FUZZ_CHECK(e->index == index, "the record agrees with its key");
        RoundTrip(
            e, [](const raft::Entry& x) { return storage::EncodeEntry(x); },
            [&](std::string_view b) { return storage::DecodeEntry(index, b); });
        if (e.ok()) {
          FUZZ_CHECK(storage::EncodeEntryHeader(*e) + e->data == storage::EncodeEntry(*e),
                     "header + data == entry");
        }
      }
      break;
    }
    case 1:
      RoundTrip(storage::DecodeHardState(body), storage::EncodeHardState, storage::DecodeHardState);
      break;
    case 2: {
      auto m = storage::DecodeSnapshotMeta(body);
      RoundTrip(m, storage::EncodeSnapshotMeta, storage::DecodeSnapshotMeta);
      break;
    }
    case 3: {
      auto c = raft::DecodeConfChangeEntry(body);
      RoundTrip(c, raft::EncodeConfChangeEntry, raft::DecodeConfChangeEntry);
      break;
    }
    case 4: {
      auto b = storage::DecodeBackup(body);
      if (!b.ok()) break;
      const std::string again = storage::EncodeBackup(*b);
      auto b2 = storage::DecodeBackup(again);
      FUZZ_CHECK(b2.ok(), "a decoded backup re-encodes to a file that decodes");
      FUZZ_CHECK(b2->header == b->header && b2->state == b->state, "the backup round trips");
      break;
    }
    case 5: {
      auto s = storage::DecodeRestoreSeed(body);
      if (!s.ok()) break;
      auto s2 = storage::DecodeRestoreSeed(storage::EncodeRestoreSeed(*s));
      FUZZ_CHECK(s2.ok(), "a decoded seed re-encodes to bytes that decode");
      FUZZ_CHECK(s2->token_floor == s->token_floor &&
                     s2->restored_unix_seconds == s->restored_unix_seconds &&
                     s2->backup == s->backup,
                 "the restore seed round trips");
      break;
    }
    default: {
      const std::string text(body);
      auto id = server::DecodeClusterIdentity(text);
      RoundTrip(id, server::EncodeClusterIdentity,
                [](std::string_view b) { return server::DecodeClusterIdentity(std::string(b)); });
      break;
    }
  }
  return 0;
}
