// Encoding helpers shared by the command codec, the snapshot and the exactly-once table.
#pragma once

#include "base/codec.h"
#include "lock/types.h"

namespace lockd::lock {

inline void PutRequestId(Writer& w, const RequestId& id) {
  w.Fixed64(id.client.hi);
  w.Fixed64(id.client.lo);
  w.Varint(id.seq);
}

inline bool GetRequestId(Reader& r, RequestId* id) {
  return r.Fixed64(&id->client.hi) && r.Fixed64(&id->client.lo) && r.Varint(&id->seq);
}

inline bool GetMode(Reader& r, Mode* m) {
  uint8_t v = 0;
  if (!r.U8(&v) || (v != 1 && v != 2)) return false;
  *m = static_cast<Mode>(v);
  return true;
}

}  // namespace lockd::lock
