// Fuzz target: what a peer sends, as the peer transport decodes it (server/peer_transport.cc).
// The first byte picks the frame: a Frame of the Stream RPC (a Hello, or a batch of encoded Raft
// messages), a SnapshotChunk of InstallSnapshot (its kSnapshot message and member table), or one
// encoded Raft message alone. Properties: the protobuf parse and every decoder either refuse or
// give a value whose encoding decodes to that same value (and encodes to the same bytes again).
#include <google/protobuf/stubs/logging.h>

#include <cstdint>

#include "fuzz_check.h"
#include "lockd/peer/v1/peer.pb.h"
#include "raft/wire.h"
#include "server/member_table.h"

namespace {

using lockd::fuzz::AsView;

void CheckRaftMessage(std::string_view bytes) {
  auto m = lockd::raft::DecodeMessage(bytes);
  if (!m.ok()) {
    FUZZ_CHECK(!m.status().message().empty(), "a refusal says why");
    return;
  }
  const std::string again = lockd::raft::EncodeMessage(*m);
  auto m2 = lockd::raft::DecodeMessage(again);
  FUZZ_CHECK(m2.ok(), "a decoded Raft message re-encodes to bytes that decode");
  FUZZ_CHECK(*m2 == *m, "decode(encode(m)) == m");
  FUZZ_CHECK(lockd::raft::EncodeMessage(*m2) == again, "the encoding is stable");
  // Entries the decoder accepts are contiguous from index + 1 (raft/wire.h).
  for (size_t i = 0; i < m->entries.size(); ++i) {
    FUZZ_CHECK(m->entries[i].index.value() == m->index.value() + 1 + i, "entries contiguous");
  }
}

void CheckMemberTable(std::string_view bytes) {
  auto t = lockd::server::DecodeMemberTable(bytes);
  if (!t.ok()) return;
  auto incarnation = lockd::server::DecodeRemovedIncarnation(bytes);
  FUZZ_CHECK(incarnation.ok(), "a table that decodes has a readable incarnation");
  for (const auto& m : *t) {
    FUZZ_CHECK(m.id != 0, "no member id 0");
    FUZZ_CHECK(lockd::server::ValidMemberAddr(m.peer_addr).ok(), "peer address valid");
    FUZZ_CHECK(lockd::server::ValidMemberAddr(m.client_addr).ok(), "client address valid");
  }
  const std::string again = lockd::server::EncodeMemberTable(*t, *incarnation);
  auto t2 = lockd::server::DecodeMemberTable(again);
  FUZZ_CHECK(t2.ok() && *t2 == *t, "decode(encode(table)) == table");
  auto i2 = lockd::server::DecodeRemovedIncarnation(again);
  FUZZ_CHECK(i2.ok() && *i2 == *incarnation, "the removed incarnation round trips");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // A string field with invalid UTF-8 is a refused parse; protobuf's log line about it is noise.
  static const bool quiet = (google::protobuf::SetLogHandler(nullptr), true);
  (void)quiet;
  if (size == 0) return 0;
  const std::string_view body = AsView(data + 1, size - 1);
  switch (data[0] % 3) {
    case 0: {
      lockd::peer::v1::Frame frame;
      if (!frame.ParseFromArray(body.data(), static_cast<int>(body.size()))) return 0;
      if (frame.has_batch()) {
        for (const auto& m : frame.batch().messages()) CheckRaftMessage(m);
      }
      break;
    }
    case 1: {
      lockd::peer::v1::SnapshotChunk chunk;
      if (!chunk.ParseFromArray(body.data(), static_cast<int>(body.size()))) return 0;
      CheckRaftMessage(chunk.message());
      CheckMemberTable(chunk.members());
      break;
    }
    default:
      CheckRaftMessage(body);
      break;
  }
  return 0;
}
