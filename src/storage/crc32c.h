// CRC-32C (Castagnoli), the checksum of log entries, hard state and snapshot files.
#pragma once

#include <cstdint>
#include <string_view>

namespace lockd::storage {

uint32_t Crc32c(std::string_view data, uint32_t crc = 0);

}  // namespace lockd::storage
