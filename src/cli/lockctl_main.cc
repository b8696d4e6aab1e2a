// lockctl: the operator's command line for a lockd cluster.
#include <signal.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>

#include "cli/backup.h"
#include "cli/commands.h"
#include "cli/endpoints.h"
#include "cli/health.h"
#include "cli/member.h"

int main(int argc, char** argv) {
  CLI::App app{"lockctl: inspect and manage a lockd cluster"};
  app.require_subcommand(1);
  std::string endpoints_flag;
  bool json = false;
  int timeout_ms = 5000;
  app.add_option("--endpoints", endpoints_flag,
                 "Comma-separated host:port list (default: $LOCKD_ENDPOINTS, else 127.0.0.1:7401)");
  app.add_flag("--json", json, "Print JSON instead of a table");
  app.add_option("--timeout-ms", timeout_ms, "Deadline of each call")
      ->check(CLI::Range(1, 600'000))
      ->capture_default_str();

  int exit_code = 0;
  // Resolves the endpoints and runs `f` with a context, or sets exit code 2.
  auto with_context = [&](auto f) {
    return [&, f] {
      auto endpoints = lockd::cli::ResolveEndpoints(endpoints_flag);
      if (!endpoints.ok()) {
        std::fprintf(stderr, "lockctl: %s\n", endpoints.status().message().c_str());
        exit_code = 2;
        return;
      }
      lockd::cli::CommandContext c{*endpoints, json, std::chrono::milliseconds(timeout_ms),
                                   std::cout, std::cerr};
      exit_code = f(c);
    };
  };

  auto* health = app.add_subcommand(
      "health", "Ask every endpoint whether it is serving; exits 1 unless all are SERVING");
  health->callback(with_context([&](const lockd::cli::CommandContext& c) {
    auto results = lockd::cli::CheckHealth(c.endpoints, c.timeout);
    c.out << lockd::cli::FormatHealth(results, c.json);
    for (const auto& r : results) {
      if (!r.serving()) return 1;
    }
    return 0;
  }));

  auto* status = app.add_subcommand("status", "Members, roles, term, leader, commit and lag");
  status->callback(with_context([](const auto& c) { return lockd::cli::RunStatus(c); }));

  bool stale = false;
  std::string page_token;
  auto* locks = app.add_subcommand("locks", "Inspect locks")->require_subcommand(1);
  std::string prefix;
  auto* locks_list = locks->add_subcommand("list", "Locks whose name starts with PREFIX");
  locks_list->add_option("prefix", prefix, "Name prefix (default: all)");
  locks_list->add_option("--page-token", page_token, "Continue a listing");
  locks_list->add_flag("--stale", stale, "Answer from the node asked, without a quorum read");
  locks_list->callback(with_context(
      [&](const auto& c) { return lockd::cli::RunLocksList(c, prefix, page_token, stale); }));
  std::string name;
  auto* locks_get = locks->add_subcommand("get",
                                          "Holders (lease, label, token, fence, held for, "
                                          "lease time left) and waiters in order");
  locks_get->add_option("name", name, "Lock name")->required();
  locks_get->add_flag("--stale", stale, "Answer from the node asked, without a quorum read");
  locks_get->callback(
      with_context([&](const auto& c) { return lockd::cli::RunLocksGet(c, name, stale); }));

  auto* leases = app.add_subcommand("leases", "Inspect leases")->require_subcommand(1);
  auto* leases_list = leases->add_subcommand("list", "Every lease");
  leases_list->add_option("--page-token", page_token, "Continue a listing");
  leases_list->add_flag("--stale", stale, "Answer from the node asked, without a quorum read");
  leases_list->callback(
      with_context([&](const auto& c) { return lockd::cli::RunLeasesList(c, page_token, stale); }));
  uint64_t lease_id = 0;
  auto* leases_get = leases->add_subcommand("get", "One lease: TTL, time left, what it holds");
  leases_get->add_option("id", lease_id, "Lease id")->required();
  leases_get->add_flag("--stale", stale, "Answer from the node asked, without a quorum read");
  leases_get->callback(
      with_context([&](const auto& c) { return lockd::cli::RunLeasesGet(c, lease_id, stale); }));

  lockd::cli::AcquireArgs acquire_args;
  int ttl_ms = 10'000, wait_ms = 0;
  auto* acquire = app.add_subcommand(
      "acquire", "Acquire NAME and hold it, renewing its lease, until Ctrl-C; then release it");
  acquire->add_option("name", acquire_args.name, "Lock name")->required();
  acquire->add_option("--ttl", ttl_ms, "Lease TTL in ms")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  acquire->add_option("--wait", wait_ms, "Wait up to this many ms in the queue (0: try once)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  acquire->add_flag("--shared", acquire_args.shared, "Acquire in SHARED mode");
  acquire->add_option("--label", acquire_args.label, "Lease label (default: lockctl@host:pid)");
  acquire->callback(with_context([&](const auto& c) {
    // Block the stop signals before the client library starts its thread, so RunAcquire can wait
    // for them.
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, nullptr);
    acquire_args.ttl = std::chrono::milliseconds(ttl_ms);
    acquire_args.wait = std::chrono::milliseconds(wait_ms);
    return lockd::cli::RunAcquire(c, acquire_args);
  }));

  std::string release_name;
  uint64_t release_lease = 0, release_token = 0;
  auto* release = app.add_subcommand("release", "Release NAME held by a lease with a token");
  release->add_option("name", release_name, "Lock name")->required();
  release->add_option("--lease", release_lease, "Holding lease id")->required();
  release->add_option("--token", release_token, "The grant's token")->required();
  release->callback(with_context([&](const auto& c) {
    return lockd::cli::RunRelease(c, release_name, release_lease, release_token);
  }));

  // Membership (docs/operations.md).
  auto* member =
      app.add_subcommand("member", "Add, remove and list members")->require_subcommand(1);
  uint64_t member_id = 0;
  std::string member_peer, member_client;
  auto* member_add = member->add_subcommand(
      "add", "Add node ID (started with lockd --join) and wait until it is a voter");
  member_add->add_option("id", member_id, "The new node's --id")->required();
  member_add->add_option("--peer", member_peer, "Its --peer-addr (host:port)")->required();
  member_add->add_option("--client", member_client, "Its --client-addr (host:port)")->required();
  member_add->callback(with_context([&](const auto& c) {
    return lockd::cli::RunMemberAdd(c, member_id, member_peer, member_client);
  }));
  auto* member_remove =
      member->add_subcommand("remove", "Remove node ID (a leader hands leadership over first)");
  member_remove->add_option("id", member_id, "The node's id")->required();
  member_remove->callback(
      with_context([&](const auto& c) { return lockd::cli::RunMemberRemove(c, member_id); }));
  auto* member_list = member->add_subcommand("list", "Every member, its role and addresses");
  member_list->callback(with_context([](const auto& c) { return lockd::cli::RunMemberList(c); }));

  auto* snapshot = app.add_subcommand(
      "snapshot", "Compact the log of the node asked now (the first endpoint that answers)");
  snapshot->callback(with_context([](const auto& c) { return lockd::cli::RunSnapshot(c); }));

  std::string backup_to;
  bool backup_overwrite = false;
  auto* backup = app.add_subcommand(
      "backup",
      "Stream a consistent backup from the first endpoint that answers into FILE (verified, then "
      "renamed into place); restore it with `lockd restore`");
  backup->add_option("--to", backup_to, "The backup file to write")->required();
  backup->add_flag("--overwrite", backup_overwrite, "Replace FILE if it exists");
  backup->callback(with_context(
      [&](const auto& c) { return lockd::cli::RunBackup(c, backup_to, backup_overwrite); }));

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help prints and exits 0; every other parse error is bad arguments: exit 2, as the
    // commands document (CLI11's own codes, 100 and up, would mean nothing to a script).
    return app.exit(e) == 0 ? 0 : 2;
  }
  return exit_code;
}
