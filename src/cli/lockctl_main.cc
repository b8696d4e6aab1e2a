// lockctl: the operator's command line for a lockd cluster.
#include <CLI/CLI.hpp>
#include <cstdio>

#include "cli/endpoints.h"
#include "cli/health.h"

int main(int argc, char** argv) {
  CLI::App app{"lockctl: inspect and manage a lockd cluster"};
  app.require_subcommand(1);
  std::string endpoints_flag;
  bool json = false;
  int timeout_ms = 2000;
  app.add_option("--endpoints", endpoints_flag,
                 "Comma-separated host:port list (default: $LOCKD_ENDPOINTS, else 127.0.0.1:7401)");
  app.add_flag("--json", json, "Print JSON instead of a table");
  app.add_option("--timeout-ms", timeout_ms, "Deadline of each call")
      ->check(CLI::Range(1, 600'000))
      ->capture_default_str();

  int exit_code = 0;
  auto* health = app.add_subcommand("health",
                                    "Ask every endpoint whether it is serving; exits 1 "
                                    "unless all are SERVING");
  health->callback([&] {
    auto endpoints = lockd::cli::ResolveEndpoints(endpoints_flag);
    if (!endpoints.ok()) {
      std::fprintf(stderr, "lockctl: %s\n", endpoints.status().message().c_str());
      exit_code = 2;
      return;
    }
    auto results = lockd::cli::CheckHealth(*endpoints, std::chrono::milliseconds(timeout_ms));
    std::fputs(lockd::cli::FormatHealth(results, json).c_str(), stdout);
    for (const auto& r : results) {
      if (!r.serving()) exit_code = 1;
    }
  });

  CLI11_PARSE(app, argc, argv);
  return exit_code;
}
