// Storage benchmark: synced batches/s and entries/s through RaftStore at batch sizes 1, 16 and
// 256 with 64 B and 1 KiB entries, next to the raw cost of appending the same bytes to a file and
// fdatasync-ing it, measured by this program on the same disk. Prints the ratio (goal: <= 1.5).
//   build/release/bench/storage/storage_bench [DIR] [--repeat N]
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "storage/raft_store.h"

using namespace lockd;
using Clock = std::chrono::steady_clock;

namespace {

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

/// Per-batch latencies (µs) of appending `bytes` and fdatasync, `count` times.
std::vector<double> RawFdatasync(const std::string& dir, size_t bytes, int count) {
  const std::string path = dir + "/raw.bin";
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  std::string buf(bytes, 'r');
  std::vector<double> lat;
  for (int i = 0; i < count; ++i) {
    const auto t0 = Clock::now();
    if (::write(fd, buf.data(), buf.size()) != static_cast<ssize_t>(buf.size()) ||
        ::fdatasync(fd) != 0) {
      std::perror("raw write");
      std::exit(1);
    }
    lat.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
  }
  ::close(fd);
  std::filesystem::remove(path);
  return lat;
}

std::vector<double> StoreBatches(const std::string& dir, size_t entry_bytes, size_t batch,
                                 int count, bool sync = true) {
  std::filesystem::remove_all(dir + "/store");
  storage::RaftStoreOptions options;
  options.skip_sync_for_testing = !sync;  // the CPU part of a batch, without the fsync
  auto store = storage::RaftStore::Open(dir + "/store", options);
  if (!store.ok()) {
    std::fprintf(stderr, "%s\n", store.status().ToString().c_str());
    std::exit(1);
  }
  uint64_t next = 1;
  std::vector<double> lat;
  for (int i = 0; i < count; ++i) {
    storage::PersistBatch b;
    for (size_t k = 0; k < batch; ++k, ++next) {
      b.entries.push_back(raft::Entry{raft::Term(1), raft::LogIndex(next), raft::EntryType::kNormal,
                                      std::string(entry_bytes, 'e')});
    }
    b.hard_state = raft::HardState{raft::Term(1), raft::NodeId(1), raft::LogIndex(next - 1)};
    const auto t0 = Clock::now();
    if (!(*store)->Append(b).ok()) std::exit(1);
    lat.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
  }
  return lat;
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir = "/tmp/lockd-storage-bench";
  int repeat = 3;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--repeat") && i + 1 < argc) {
      repeat = std::atoi(argv[++i]);
    } else {
      dir = argv[i];
    }
  }
  std::filesystem::create_directories(dir);
  std::printf("%-6s %-6s %14s %14s %14s %14s %14s %8s\n", "entry", "batch", "store p50 us",
              "unsynced p50", "raw p50 us", "batches/s", "entries/s", "ratio");
  for (size_t entry : {size_t{64}, size_t{1024}}) {
    for (size_t batch : {size_t{1}, size_t{16}, size_t{256}}) {
      const int count = batch == 256 ? 300 : 1000;
      std::vector<double> store_p50, raw_p50, rate, cpu_p50;
      for (int r = 0; r < repeat; ++r) {
        const auto s = StoreBatches(dir, entry, batch, count);
        const auto w = RawFdatasync(dir, entry * batch, count);
        store_p50.push_back(Median(s));
        cpu_p50.push_back(Median(StoreBatches(dir, entry, batch, count, /*sync=*/false)));
        raw_p50.push_back(Median(w));
        double total = 0;
        for (double x : s) total += x;
        rate.push_back(count / (total / 1e6));
      }
      const double sp = Median(store_p50), rp = Median(raw_p50), br = Median(rate);
      std::printf("%-6zu %-6zu %14.0f %14.0f %14.0f %14.0f %14.0f %8.2f\n", entry, batch, sp,
                  Median(cpu_p50), rp, br, br * batch, sp / rp);
    }
  }
  std::filesystem::remove_all(dir);
}
