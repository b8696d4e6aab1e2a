// Fuzz target: the receiving half of snapshot transfers (server/snapshot_assembler.h), driven by a
// script of Begin / Add / Take calls from three senders, checked against a model of what the
// header promises: one partial payload per sender, chunks only in order and within the total,
// a payload above the limit refused, a whole payload accepted only when its CRC-32C holds (and
// then exactly the bytes sent), a failed checksum discarding the payload. Memory stays bounded
// by senders × max_bytes whatever the script does.
#include <cstdint>
#include <map>
#include <string>

#include "fuzz_check.h"
#include "server/snapshot_assembler.h"
#include "storage/crc32c.h"

namespace {

using lockd::server::SnapshotAssembler;
using lockd::server::SnapshotTransferId;

constexpr uint64_t kMaxBytes = 256;
constexpr uint64_t kSenders = 3;

/// The payload a well-behaved sender streams for a transfer of `index`.
std::string Payload(uint64_t index, uint64_t total) {
  std::string p(total, '\0');
  for (uint64_t i = 0; i < total; ++i) p[i] = static_cast<char>(index * 31 + i * 7);
  return p;
}

struct ModelPartial {
  SnapshotTransferId id;
  std::string data;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  lockd::fuzz::ScriptReader in(lockd::fuzz::AsView(data, size));
  SnapshotAssembler assembler(kMaxBytes);
  std::map<uint64_t, ModelPartial> model;
  for (int step = 0; step < 200 && !in.done(); ++step) {
    const uint8_t op = in.U8();
    const uint64_t from = 1 + (op >> 4) % kSenders;
    switch (op % 4) {
      case 0: {  // Begin
        SnapshotTransferId id;
        id.index = in.U8() % 4;
        id.term = 1 + in.U8() % 2;
        const uint8_t t = in.U8();
        // Mostly within the limit, sometimes just above it or far above.
        id.total_bytes = t < 240 ? t : t < 250 ? kMaxBytes + (t - 240) : (uint64_t{1} << 62);
        id.crc32c = (in.U8() & 1) ? lockd::storage::Crc32c(Payload(
                                        id.index, id.total_bytes <= kMaxBytes ? id.total_bytes : 0))
                                  : static_cast<uint32_t>(in.U64(4));
        auto r = assembler.Begin(from, id);
        if (id.total_bytes > kMaxBytes) {
          FUZZ_CHECK(!r.ok(), "a payload above the limit is refused");
          break;
        }
        FUZZ_CHECK(r.ok(), "a payload within the limit begins");
        ModelPartial& p = model[from];
        if (!(p.id == id)) p = ModelPartial{id, {}};
        FUZZ_CHECK(*r == p.data.size(), "Begin resumes at the bytes held for that transfer");
        break;
      }
      case 1: {  // Add
        const uint8_t how = in.U8();
        auto it = model.find(from);
        uint64_t offset = it == model.end() ? 0 : it->second.data.size();
        if (how & 1) offset = in.U8();  // possibly out of order
        std::string chunk;
        if (how & 2) {
          chunk = std::string(in.Bytes(64));  // arbitrary bytes
        } else if (it != model.end()) {
          const std::string p = Payload(it->second.id.index, it->second.id.total_bytes);
          const uint64_t n = in.U8() % 80;
          if (offset < p.size()) chunk = p.substr(offset, n);
        }
        auto r = assembler.Add(from, offset, chunk);
        if (it == model.end()) {
          FUZZ_CHECK(!r.ok(), "a chunk before Begin is refused");
          break;
        }
        ModelPartial& p = it->second;
        if (offset != p.data.size() || chunk.size() > p.id.total_bytes - p.data.size()) {
          FUZZ_CHECK(!r.ok(), "a chunk out of order or past the total is refused");
          break;
        }
        p.data += chunk;
        if (p.data.size() < p.id.total_bytes) {
          FUZZ_CHECK(r.ok() && !*r, "a partial payload is not whole");
        } else if (lockd::storage::Crc32c(p.data) == p.id.crc32c) {
          FUZZ_CHECK(r.ok() && *r, "a whole payload whose checksum holds is accepted");
        } else {
          FUZZ_CHECK(!r.ok(), "a payload that fails its checksum is refused");
          model.erase(it);
        }
        break;
      }
      case 2: {  // Take
        auto it = model.find(from);
        const std::string got = assembler.Take(from);
        FUZZ_CHECK(got == (it == model.end() ? std::string() : it->second.data),
                   "Take gives exactly the bytes sent");
        if (it != model.end()) model.erase(it);
        break;
      }
      default:
        break;
    }
    uint64_t held = 0;
    for (uint64_t s = 1; s <= kSenders; ++s) {
      auto it = model.find(s);
      const uint64_t want = it == model.end() ? 0 : it->second.data.size();
      FUZZ_CHECK(assembler.held(s) == want, "held() matches the bytes sent");
      held += assembler.held(s);
    }
    FUZZ_CHECK(held <= kSenders * kMaxBytes, "memory bounded by senders x max_bytes");
  }
  return 0;
}
