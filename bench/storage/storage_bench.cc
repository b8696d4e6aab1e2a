// Storage benchmark: synced batches/s and entries/s through RaftStore::Append at batch sizes 1, 16
// and 256 with 64 B and 1 KiB entries, next to the raw cost of appending the same bytes to a file
// and fdatasync-ing it, measured by this program on the same disk, interleaved run by run so drift
// hits both alike. Prints the ratio of the p50s (goal: <= 1.5) and of the mean rates.
//   storage_bench [DIR] [--repeat N] [--quick]
// DIR (default /var/tmp/lockd-storage-bench) must be on the disk being measured, not a tmpfs.
#include <fcntl.h>
#include <sys/statfs.h>
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

double Percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v[static_cast<size_t>(p * (v.size() - 1))];
}

double Mean(const std::vector<double>& v) {
  double t = 0;
  for (double x : v) t += x;
  return t / v.size();
}

/// Per-batch latencies (µs) of appending `bytes` to a fresh file and fdatasync, `count` times.
std::vector<double> RawFdatasync(const std::string& dir, size_t bytes, int count) {
  const std::string path = dir + "/raw.bin";
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) {
    std::perror("open");
    std::exit(1);
  }
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

/// Per-batch latencies (µs) of RaftStore::Append on a fresh store, each batch with a hard state.
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
    if (Status s = (*store)->Append(b); !s.ok()) {
      std::fprintf(stderr, "%s\n", s.ToString().c_str());
      std::exit(1);
    }
    lat.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
  }
  return lat;
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir = "/var/tmp/lockd-storage-bench";
  int repeat = 5;
  bool quick = false;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--repeat") && i + 1 < argc) {
      repeat = std::atoi(argv[++i]);
    } else if (!std::strcmp(argv[i], "--quick")) {
      quick = true;
      repeat = 1;
    } else {
      dir = argv[i];
    }
  }
  std::filesystem::create_directories(dir);
  struct statfs sfs {};
  ::statfs(dir.c_str(), &sfs);
  std::printf("dir %s (fs magic 0x%lx%s), %d runs per figure, medians shown\n", dir.c_str(),
              static_cast<unsigned long>(sfs.f_type),
              sfs.f_type == 0x01021994 ? ": tmpfs, fdatasync is free, figures meaningless" : "",
              repeat);
  std::printf("%-6s %-6s %10s %10s %10s %10s %10s %11s %11s %8s %8s\n", "entry", "batch",
              "store p50", "store p99", "cpu p50", "raw p50", "raw p99", "batches/s", "entries/s",
              "p50 x", "rate x");
  for (size_t entry : {size_t{64}, size_t{1024}}) {
    for (size_t batch : {size_t{1}, size_t{16}, size_t{256}}) {
      int count = batch == 256 ? 300 : 1000;
      if (quick) count /= 5;
      std::vector<double> sp50, sp99, cpu, rp50, rp99, rate, rate_ratio;
      for (int r = 0; r < repeat; ++r) {
        const auto s = StoreBatches(dir, entry, batch, count);
        const auto w = RawFdatasync(dir, entry * batch, count);
        sp50.push_back(Median(s));
        sp99.push_back(Percentile(s, 0.99));
        rp50.push_back(Median(w));
        rp99.push_back(Percentile(w, 0.99));
        cpu.push_back(Median(StoreBatches(dir, entry, batch, count, /*sync=*/false)));
        rate.push_back(1e6 / Mean(s));
        rate_ratio.push_back(Mean(s) / Mean(w));
      }
      const double br = Median(rate);
      std::printf("%-6zu %-6zu %10.0f %10.0f %10.0f %10.0f %10.0f %11.0f %11.0f %8.2f %8.2f\n",
                  entry, batch, Median(sp50), Median(sp99), Median(cpu), Median(rp50), Median(rp99),
                  br, br * batch, Median(sp50) / Median(rp50), Median(rate_ratio));
    }
  }
  std::filesystem::remove_all(dir);
}
