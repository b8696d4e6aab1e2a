// CRC-32C (Castagnoli), the checksum of log entries, hard state and snapshot files. Uses the
// SSE4.2 instruction when the CPU has it, a table otherwise; both give the same value.
#pragma once

#include <cstdint>
#include <string_view>

namespace lockd::storage {

/// CRC-32C of `data`, continuing from `crc` (0 to start).
uint32_t Crc32c(std::string_view data, uint32_t crc = 0);
/// The table-driven path alone, so a test can check the two agree.
uint32_t Crc32cPortableForTesting(std::string_view data);

}  // namespace lockd::storage
