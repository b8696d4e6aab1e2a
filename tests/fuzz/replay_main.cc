// The main of a fuzz target in a build without libFuzzer (GCC, the asan and tsan presets): runs
// LLVMFuzzerTestOneInput on every file of the corpus directories (or files) named on the command
// line, and on a fixed number of deterministic mutations of each (truncations and byte flips), so
// the checked-in corpus and its near neighbours run under every sanitizer CI builds. Bounded:
// kMutations inputs per corpus file. Exits non-zero (the target aborts) on a failed property.
// Each corpus file's name is printed before it runs, so a failure that ends the process without
// SIGABRT (a sanitizer report exits through _exit) still names the file its input came from.
#include <algorithm>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#endif

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

constexpr int kMutations = 200;

// The input being run, so that a failed property (abort) leaves it in a file to replay.
const std::string* g_current = nullptr;
const char* g_source = "";
// Per target (replay-failed-input-<binary>): ctest -j runs the targets in one directory.
std::string g_failed_file = "replay-failed-input";

void SaveInput() {
  if (g_current == nullptr) return;
  std::FILE* f = std::fopen(g_failed_file.c_str(), "wb");
  if (f != nullptr) {
    std::fwrite(g_current->data(), 1, g_current->size(), f);
    std::fclose(f);
  }
  std::fprintf(stderr,
               "replay: failed on an input derived from %s; it is in ./%s (run this binary on "
               "that file to replay it)\n",
               g_source, g_failed_file.c_str());
}

extern "C" void SaveInputOnAbort(int) {
  SaveInput();
  std::signal(SIGABRT, SIG_DFL);
  std::abort();
}

#if defined(__SANITIZE_ADDRESS__)
// ASan's report ends the process through _exit, not SIGABRT.
extern "C" void SaveInputOnSanitizerDeath() {
  SaveInput();
}
#endif

void Run(const std::string& input) {
  g_current = &input;
  // A copy in its own allocation, so ASan sees a read past the end of the input.
  std::vector<uint8_t> bytes(input.begin(), input.end());
  LLVMFuzzerTestOneInput(bytes.data(), bytes.size());
}

void RunWithMutations(const std::string& input, uint64_t seed) {
  Run(input);
  std::mt19937_64 rng(seed);
  for (int i = 0; i < kMutations; ++i) {
    std::string m = input;
    switch (rng() % 4) {
      case 0:  // truncation
        m.resize(m.empty() ? 0 : rng() % m.size());
        break;
      case 1:  // one byte changed
        if (!m.empty()) m[rng() % m.size()] = static_cast<char>(rng());
        break;
      case 2:  // one bit flipped
        if (!m.empty()) m[rng() % m.size()] ^= static_cast<char>(1u << (rng() % 8));
        break;
      default:  // bytes inserted
        m.insert(m.empty() ? 0 : rng() % m.size(),
                 std::string(1 + rng() % 4, static_cast<char>(rng())));
        break;
    }
    Run(m);
  }
}

std::string ReadFile(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::filesystem::path> files;
  for (int i = 1; i < argc; ++i) {
    std::filesystem::path p(argv[i]);
    if (std::filesystem::is_directory(p)) {
      for (const auto& e : std::filesystem::directory_iterator(p)) {
        if (e.is_regular_file()) files.push_back(e.path());
      }
    } else if (std::filesystem::is_regular_file(p)) {
      files.push_back(p);
    } else {
      std::fprintf(stderr, "replay: %s is neither a file nor a directory\n", argv[i]);
      return 2;
    }
  }
  if (files.empty()) {
    std::fprintf(stderr, "replay: no corpus files given (usage: %s DIR_OR_FILE...)\n", argv[0]);
    return 2;
  }
  std::sort(files.begin(), files.end());
  g_failed_file += "-" + std::filesystem::path(argv[0]).filename().string();
  uint64_t seed = 1;
  std::signal(SIGABRT, SaveInputOnAbort);
#if defined(__SANITIZE_ADDRESS__)
  __sanitizer_set_death_callback(SaveInputOnSanitizerDeath);
#endif
  for (const auto& f : files) {
    const std::string path = f.string();
    g_source = path.c_str();
    std::fprintf(stderr, "replay: %s\n", g_source);
    RunWithMutations(ReadFile(f), seed++);
  }
  std::printf("replay: %zu corpus files, %d mutations each, every property held\n", files.size(),
              kMutations);
  return 0;
}
