// Writes the seed corpus of every fuzz target from real encodings (the encoders the product
// uses), so the fuzzer starts from inputs that pass the framing and version checks:
//   fuzz_make_corpus tests/fuzz/corpus        (scripts/fuzz.sh --seed runs it)
// Seeds are named seed-*; crash-* files beside them are regression cases the soak found and are
// never overwritten here.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "lock/command.h"
#include "lock/state_machine.h"
#include "lockd/peer/v1/peer.pb.h"
#include "raft/conf_change.h"
#include "raft/wire.h"
#include "server/cluster_identity.h"
#include "server/member_table.h"
#include "storage/backup_file.h"
#include "storage/crc32c.h"
#include "storage/records.h"

namespace {

namespace fs = std::filesystem;
using namespace lockd;

fs::path g_root;

void Write(const std::string& target, const std::string& name, const std::string& bytes) {
  fs::create_directories(g_root / target);
  std::ofstream out(g_root / target / ("seed-" + name), std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string Tagged(uint8_t tag, const std::string& body) {
  return std::string(1, static_cast<char>(tag)) + body;
}

raft::ConfState ThreeVoters() {
  raft::ConfState cs;
  cs.voters = {raft::NodeId(1), raft::NodeId(2), raft::NodeId(3)};
  return cs;
}

std::vector<server::MemberSpec> Members() {
  return {{1, "127.0.0.1:7501", "127.0.0.1:7401"},
          {2, "127.0.0.1:7502", "127.0.0.1:7402"},
          {3, "node-3.example:7503", "[::1]:7403"}};
}

/// `h` as identity "billing" sends it (quotas of 2 leases and 3 names, cluster admin).
lock::RequestHeader Owned(lock::RequestHeader h) {
  h.caller = lock::Caller{"billing", 2, 3, true};
  return h;
}

std::vector<lock::Command> Commands() {
  using namespace lock;
  RequestHeader h;
  h.id.client = {0x1122334455667788, 0x99aabbccddeeff00};
  h.id.seq = 42;
  h.attempt = 2;
  h.watermark = 40;
  return {GrantLease{h, 10'000, "billing-worker"}, RevokeLease{h, LeaseId(1)},
          ExpireLease{LeaseId(1)},
          Acquire{h, "billing/invoice-7", LeaseId(1), Mode::kExclusive, 5'000, 0, ""},
          Acquire{h, "reports/q3", LeaseId(0), Mode::kShared, 0, 30'000, "cron"},
          Cancel{h, "a", LeaseId(2), RequestId{{7, 7}, 4}},
          Release{h, "a", LeaseId(1), FencingToken(1)},
          ForceRelease{h, "a", LeaseId(0), "operator: stuck holder"},
          WaitTimeout{"a", RequestId{{7, 7}, 4}},
          RetireOutcomes{LogIndex(3), LogIndex(2), LogIndex(4), 1'500},
          // Format 4: commands stamped with the caller access control authenticated.
          GrantLease{Owned(h), 10'000, "billing-worker"},
          Acquire{Owned(h), "billing/invoice-7", LeaseId(2), Mode::kExclusive, 5'000, 0, ""},
          RevokeLease{Owned(h), LeaseId(1)}};
}

lock::LockStateMachine Busy() {
  using namespace lock;
  LockStateMachine sm;
  RequestHeader h;
  h.id.client = {7, 7};
  uint64_t i = 0;
  auto apply = [&](const Command& c) { sm.ApplyCommand(LogIndex(++i), c, 1'700'000'000); };
  h.id.seq = 1;
  apply(GrantLease{h, 10'000, "seed"});
  h.id.seq = 2;
  apply(GrantLease{h, 10'000, "other"});
  h.id.seq = 3;
  apply(Acquire{h, "a", LeaseId(1), Mode::kExclusive, 0, 0, ""});
  h.id.seq = 4;
  apply(Acquire{h, "a", LeaseId(2), Mode::kExclusive, 60'000, 0, ""});
  h.id.seq = 5;
  apply(Acquire{h, "b", LeaseId(1), Mode::kShared, 0, 0, ""});
  h.id.seq = 6;
  apply(Acquire{h, "b", LeaseId(2), Mode::kShared, 0, 0, ""});
  // Lease 3 belongs to identity "billing" (its own client id), which holds "c".
  RequestHeader owned = Owned(h);
  owned.id.client = {8, 8};
  owned.id.seq = 1;
  apply(GrantLease{owned, 10'000, "owned"});
  owned.id.seq = 2;
  apply(Acquire{owned, "c", LeaseId(3), Mode::kExclusive, 0, 0, ""});
  apply(RetireOutcomes{LogIndex(2), LogIndex(1), LogIndex(i), 2'000});
  return sm;
}

void PeerMessages() {
  raft::Message app;
  app.type = raft::MessageType::kApp;
  app.from = raft::NodeId(1);
  app.to = raft::NodeId(2);
  app.term = raft::Term(3);
  app.log_term = raft::Term(2);
  app.index = raft::LogIndex(10);
  app.commit = raft::LogIndex(9);
  app.entries = {{raft::Term(3), raft::LogIndex(11), raft::EntryType::kNormal,
                  lock::Encode(Commands()[0], 1'700'000'000)},
                 {raft::Term(3), raft::LogIndex(12), raft::EntryType::kConfChange,
                  raft::EncodeConfChangeEntry({ThreeVoters(), "ctx"})}};
  raft::Message resp;
  resp.type = raft::MessageType::kAppResp;
  resp.from = raft::NodeId(2);
  resp.to = raft::NodeId(1);
  resp.term = raft::Term(3);
  resp.index = raft::LogIndex(8);
  resp.reject = true;
  resp.reject_hint = raft::LogIndex(7);
  resp.hint_term = raft::Term(2);
  raft::Message hb;
  hb.type = raft::MessageType::kHeartbeat;
  hb.from = raft::NodeId(1);
  hb.to = raft::NodeId(3);
  hb.term = raft::Term(3);
  hb.round = 77;
  raft::Message vote;
  vote.type = raft::MessageType::kVote;
  vote.from = raft::NodeId(2);
  vote.to = raft::NodeId(1);
  vote.term = raft::Term(4);
  vote.transfer = true;
  raft::Message snap;
  snap.type = raft::MessageType::kSnapshot;
  snap.from = raft::NodeId(1);
  snap.to = raft::NodeId(2);
  snap.term = raft::Term(3);
  snap.snapshot = {raft::LogIndex(100), raft::Term(3), ThreeVoters()};

  Write("peer_message", "raft-app", Tagged(2, raft::EncodeMessage(app)));
  Write("peer_message", "raft-appresp", Tagged(2, raft::EncodeMessage(resp)));
  Write("peer_message", "raft-heartbeat", Tagged(2, raft::EncodeMessage(hb)));
  Write("peer_message", "raft-vote", Tagged(2, raft::EncodeMessage(vote)));
  Write("peer_message", "raft-snapshot", Tagged(2, raft::EncodeMessage(snap)));

  lockd::peer::v1::Frame batch;
  for (const auto* m : {&app, &resp, &hb})
    batch.mutable_batch()->add_messages(raft::EncodeMessage(*m));
  Write("peer_message", "frame-batch", Tagged(0, batch.SerializeAsString()));
  lockd::peer::v1::Frame hello;
  hello.mutable_hello()->set_from(1);
  hello.mutable_hello()->set_peer_addr("127.0.0.1:7501");
  Write("peer_message", "frame-hello", Tagged(0, hello.SerializeAsString()));

  lockd::peer::v1::SnapshotChunk chunk;
  chunk.mutable_hello()->set_from(1);
  chunk.set_message(raft::EncodeMessage(snap));
  chunk.set_total_bytes(5);
  chunk.set_crc32c(storage::Crc32c("hello"));
  chunk.set_members(server::EncodeMemberTable(Members()));
  Write("peer_message", "snapshot-chunk", Tagged(1, chunk.SerializeAsString()));
  chunk.set_members(server::EncodeMemberTable(Members(), "0123456789abcdef0123456789abcdef"));
  Write("peer_message", "snapshot-chunk-removal", Tagged(1, chunk.SerializeAsString()));
}

void LockCommands() {
  int i = 0;
  for (const auto& c : Commands()) {
    Write("lock_command", std::to_string(i++) + "-" + lock::KindName(c),
          lock::Encode(c, 1'700'000'000));
  }
  // A version-2 RetireOutcomes (no age sample), as older logs hold: version, wall, kind, 2 indices.
  Write("lock_command", "v2-retire", std::string("\x02\x01\x09\x03\x02", 5));
}

void LockSnapshots() {
  Write("lock_snapshot", "empty", lock::LockStateMachine().Snapshot());
  Write("lock_snapshot", "busy", Busy().Snapshot());
}

void StorageRecords() {
  raft::Entry e{raft::Term(3), raft::LogIndex(1), raft::EntryType::kNormal,
                lock::Encode(Commands()[3], 1'700'000'000)};
  Write("storage_records", "entry", Tagged(0, storage::EncodeEntry(e)));
  raft::Entry cc{
      raft::Term(2), raft::LogIndex(300), raft::EntryType::kConfChange,
      raft::EncodeConfChangeEntry({ThreeVoters(), server::EncodeMemberTable(Members())})};
  Write("storage_records", "entry-confchange", Tagged(0, storage::EncodeEntry(cc)));
  Write("storage_records", "hardstate",
        Tagged(1, storage::EncodeHardState({raft::Term(5), raft::NodeId(2), raft::LogIndex(40)})));
  raft::ConfState joint = ThreeVoters();
  joint.voters_outgoing = {raft::NodeId(1), raft::NodeId(2), raft::NodeId(4)};
  joint.learners_next = {raft::NodeId(4)};
  Write("storage_records", "snapmeta",
        Tagged(2, storage::EncodeSnapshotMeta({raft::LogIndex(100), raft::Term(3), joint})));
  Write("storage_records", "confchange", Tagged(3, raft::EncodeConfChangeEntry({joint, "add 4"})));
  storage::Backup b;
  b.header = {7, 2, "0123456789abcdef0123456789abcdef", 1, 9, 3, 1'700'000'000};
  b.state = Busy().Snapshot();
  const std::string file = storage::EncodeBackup(b);
  Write("storage_records", "backup", Tagged(4, file));
  Write("storage_records", "restore-seed",
        Tagged(5, storage::EncodeRestoreSeed({1000, 1'700'000'100, file})));
  server::ClusterIdentity id;
  id.cluster_id = "0123456789abcdef0123456789abcdef";
  id.bootstrap_id = "00112233aabbccdd";
  id.incarnation = "fedcba9876543210fedcba9876543210";
  id.members = Members();
  id.known_peers = {{2, "aa"}, {3, "bb"}};
  id.membership_index = 12;
  id.removed = {{4, "cc"}, {5, server::kUnknownIncarnation}};
  Write("storage_records", "cluster-identity", Tagged(6, server::EncodeClusterIdentity(id)));
}

void AssemblerScripts() {
  // See snapshot_assembler_fuzz.cc: op = (sender << 4) | kind; Begin: index, term, total,
  // crc-is-right flag; Add: how (0: the next bytes in order), length; Take.
  std::string whole = {0x00, 1, 1,  40, 1,  // sender 1 begins 40 bytes, right CRC
                       0x01, 0, 16,         // 16 bytes
                       0x01, 0, 24,         // the other 24: whole
                       0x02};               // take
  Write("snapshot_assembler", "whole", whole);
  std::string resume = {0x10, 2, 1,  30,  1, 0x11, 0, 10,  // sender 2: 10 of 30
                        0x10, 2, 1,  30,  1,               // begins the same transfer: resumes
                        0x11, 0, 20, 0x12};
  Write("snapshot_assembler", "resume", resume);
  std::string bad = {0x20, 1, 1, 8,   0, 0, 0, 0, 0,  // wrong CRC (zero)
                     0x21, 0, 8,                      // whole: refused
                     0x21, 1, 3, 0x22};               // out of order
  Write("snapshot_assembler", "bad-crc", bad);
}

void Configs() {
  Write("config", "toml",
        Tagged(0,
               "id = 1\nclient-addr = \"127.0.0.1:7401\"\npeer-addr = \"127.0.0.1:7501\"\n"
               "http-addr = \"127.0.0.1:7601\"\ndata-dir = \"/var/lib/lockd\"\n"
               "initial-cluster = \"1=127.0.0.1:7501/127.0.0.1:7401,2=127.0.0.1:7502/"
               "127.0.0.1:7402\"\ntick-ms = 100\nelection-min-ms = 1000\ndrift = 0.01\n"
               "max-ttl-ms = 60000\nlog-format = \"json\"\n"));
  Write("config", "toml-join",
        Tagged(0, "[lockd]\nid = 4\njoin = \"10.0.0.1:7401,10.0.0.2:7401\"\n# comment\n"));
  const std::string args[] = {"--id",
                              "2",
                              "--client-addr",
                              "[::1]:7402",
                              "--peer-addr",
                              "[::1]:7502",
                              "--max-locks=10",
                              "--cluster-token",
                              "t"};
  std::string line;
  for (const auto& a : args) line += a + '\n';
  Write("config", "flags", Tagged(1, line));
}

void AccessPolicies() {
  // The two-teams example of src/server/access_policy.h, every key used.
  Write("access_policy", "two-teams",
        "[defaults]\nmax_leases = 1000\nmax_locks = 10000\nrate = 500\nburst = 1000\n\n"
        "[roles.billing-writer]\nlock = [\"billing/\"]\nread = [\"billing/\"]\nadmin = []\n\n"
        "[roles.reports-reader]\nread = [\"reports/\", \"billing/summary/\"]\n\n"
        "[roles.operator]\nlock = [\"\"]\nread = [\"\"]\nadmin = [\"\"]\n\n"
        "[identities.billing]\n"
        "certs = [\"spiffe://example.org/billing\", \"billing-svc\"]\n"
        "token_sha256 = [\"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\"]\n"
        "roles = [\"billing-writer\"]\nmax_leases = 50\n\n"
        "[identities.reports]\ncerts = [\"spiffe://example.org/reports\"]\n"
        "roles = [\"reports-reader\", \"billing-writer\"]\nrate = 20.5\nburst = 40\n\n"
        "[identities.\"ops@example.org\"]\n"
        "token_sha256 = [\"D9310C002AF91822BEB0B3487D8B04F85BF6BF1F8A5496BFF7D35FC7C5A29DEF\"]\n"
        "roles = [\"operator\"]\n");
  // Inline tables, dotted keys and quoted names: the same tree written other ways.
  Write("access_policy", "inline",
        "defaults = { rate = 0.5 }\nroles.r = { lock = [\"a/\", \"\\u00fc/\"], read = [\"\"] }\n"
        "identities.\"svc:a/b\" = { certs = ['CN with spaces'], roles = ['r'], max_locks = 3 }\n");
  // Refused: a misspelt table, a role nobody defines, one certificate claimed twice, a burst
  // without a rate, a syntax error.
  Write("access_policy", "bad-unknown-table", "[identites.a]\ncerts = [\"a\"]\n");
  Write("access_policy", "bad-missing-role", "[identities.a]\ncerts = [\"a\"]\nroles = [\"r\"]\n");
  Write("access_policy", "bad-cert-twice",
        "[identities.a]\ncerts = [\"x\"]\n[identities.b]\ncerts = [\"x\"]\n");
  Write("access_policy", "bad-burst", "[defaults]\nburst = 10\n");
  Write("access_policy", "bad-syntax", "[roles.r]\nlock = [\"a/\"\n[identities.a]\n");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
    return 2;
  }
  g_root = argv[1];
  PeerMessages();
  LockCommands();
  LockSnapshots();
  StorageRecords();
  AssemblerScripts();
  Configs();
  AccessPolicies();
  std::printf("seeds written under %s\n", argv[1]);
  return 0;
}
