// lockctl: the operator's command line for a lockd cluster.
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>

#include "cli/admin.h"
#include "cli/backup.h"
#include "cli/commands.h"
#include "cli/completion.h"
#include "cli/endpoints.h"
#include "cli/exit_codes.h"
#include "cli/health.h"
#include "cli/member.h"
#include "cli/run.h"
#include "cli/watch.h"
#include "client/credentials.h"

namespace {

/// Blocks `signals` in this thread before the client library starts its threads, so they all
/// inherit the mask and the command can await the signals with sigtimedwait.
void BlockSignals(std::initializer_list<int> signals) {
  sigset_t set;
  sigemptyset(&set);
  for (int s : signals) sigaddset(&set, s);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"lockctl: inspect and manage a lockd cluster"};
  app.require_subcommand(1);
  app.footer(lockd::cli::ExitCodeTable());
  std::string endpoints_flag;
  bool json = false;
  int timeout_ms = 5000;
  app.add_option("--endpoints", endpoints_flag,
                 "Comma-separated host:port list (default: $LOCKD_ENDPOINTS, else 127.0.0.1:7401)");
  app.add_flag("--json", json, "Print JSON instead of a table");
  lockd::client::TlsFiles tls;
  app.add_option("--cacert", tls.ca,
                 "TLS: the CA that signed the nodes' certificates (default: $LOCKD_CACERT; none: "
                 "plaintext)");
  app.add_option("--cert", tls.cert,
                 "TLS: this client's certificate, when the cluster asks for one (default: "
                 "$LOCKD_CERT)");
  app.add_option("--key", tls.key, "TLS: the certificate's private key (default: $LOCKD_KEY)");
  lockd::client::BearerTokenSource auth;
  app.add_option("--auth-token", auth.token,
                 "Access control: the bearer token every call carries (default: "
                 "$LOCKD_AUTH_TOKEN; visible in ps: prefer --auth-token-file)");
  app.add_option("--auth-token-file", auth.file,
                 "Access control: a file holding the bearer token, trailing whitespace dropped "
                 "(default: $LOCKD_AUTH_TOKEN_FILE)");
  auto* timeout_opt = app.add_option("--timeout-ms", timeout_ms,
                                     "Deadline of each call; for `locks watch`, how long to watch")
                          ->check(CLI::Range(1, 600'000))
                          ->capture_default_str();

  int exit_code = 0;
  // Resolves the endpoints and runs `f` with a context, or sets exit code 2.
  auto with_context = [&](auto f) {
    return [&, f] {
      auto endpoints = lockd::cli::ResolveEndpoints(endpoints_flag);
      if (!endpoints.ok()) {
        std::fprintf(stderr, "lockctl: %s\n", endpoints.status().message().c_str());
        exit_code = lockd::cli::kExitUsage;
        return;
      }
      const lockd::client::TlsFiles files = lockd::client::TlsFilesOrEnv(tls);
      // Files only: gRPC must not start its threads before a command blocks its signals.
      auto read = lockd::client::ReadTlsFiles(files);
      if (!read.ok()) {
        std::fprintf(stderr, "lockctl: %s\n", read.status().message().c_str());
        exit_code = lockd::cli::kExitUsage;
        return;
      }
      auto token = lockd::client::ReadBearerToken(lockd::client::BearerTokenSourceOrEnv(auth));
      if (!token.ok()) {
        std::fprintf(stderr, "lockctl: %s\n", token.status().message().c_str());
        exit_code = lockd::cli::kExitUsage;
        return;
      }
      lockd::cli::CommandContext c{*endpoints, json,       std::chrono::milliseconds(timeout_ms),
                                   std::cout,  std::cerr,  *read,
                                   files.ca,   files.cert, files.key,
                                   *token};
      // Before any call: every endpoint the token may go to, including those the client
      // library dials for `acquire` and `run`.
      for (const auto& e : c.endpoints) c.WarnIfTokenInClear(e);
      exit_code = f(c);
    };
  };

  auto* health = app.add_subcommand(
      "health", "Ask every endpoint whether it is serving; exits 1 unless all are SERVING");
  health->callback(with_context([&](const lockd::cli::CommandContext& c) {
    auto results = lockd::cli::CheckHealth(c.endpoints, c.timeout,
                                           [&c](const std::string& e) { return c.Channel(e); });
    c.out << lockd::cli::FormatHealth(results, c.json);
    for (const auto& r : results) {
      if (!r.serving()) return 1;
    }
    return 0;
  }));

  auto* status = app.add_subcommand(
      "status",
      "Members, roles, term, leader, commit, and each member's match and lag (asked of "
      "the leader)");
  bool status_local = false;
  status->add_flag("--local", status_local,
                   "The answering node's own view, without asking the leader (match and lag "
                   "only if it leads)");
  status->callback(with_context(
      [&](const auto& c) { return lockd::cli::RunStatus(c, /*ask_leader=*/!status_local); }));

  bool stale = false;
  std::string page_token;
  auto* locks =
      app.add_subcommand("locks", "Inspect, watch and force-release locks")->require_subcommand(1);
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

  lockd::cli::WatchArgs watch_args;
  std::string watch_name, watch_prefix;
  auto* locks_watch = locks->add_subcommand(
      "watch",
      "Print each event on NAME (or under --prefix) as it happens, following failovers; "
      "until Ctrl-C, --count events, or --timeout-ms if given");
  auto* watch_name_opt = locks_watch->add_option("name", watch_name, "Lock name");
  locks_watch->add_option("--prefix", watch_prefix, "Every lock whose name starts with P ('' all)")
      ->excludes(watch_name_opt);
  locks_watch->add_option("--count", watch_args.count, "Stop after this many events");
  locks_watch->callback(with_context([&](const auto& c) {
    if (watch_name_opt->count() == 0 && locks_watch->get_option("--prefix")->count() == 0) {
      c.err << "lockctl: locks watch needs NAME or --prefix P\n";
      return int{lockd::cli::kExitUsage};
    }
    BlockSignals({SIGINT, SIGTERM});
    watch_args.prefix = watch_name_opt->count() == 0;
    watch_args.target = watch_args.prefix ? watch_prefix : watch_name;
    // A stream has no per-call deadline: --timeout-ms bounds the watch only when given.
    if (timeout_opt->count() > 0) watch_args.duration = std::chrono::milliseconds(timeout_ms);
    return lockd::cli::RunLocksWatch(c, watch_args);
  }));

  auto* leases = app.add_subcommand("leases", "Inspect and revoke leases")->require_subcommand(1);
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
    BlockSignals({SIGINT, SIGTERM});
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

  lockd::cli::RunArgs run_args;
  int grace_ms = 5000;
  auto* run = app.add_subcommand(
      "run",
      "Acquire NAME, run COMMAND holding it (renewing), release when it exits, and exit with "
      "its status. COMMAND sees LOCKD_LOCK, LOCKD_LEASE, LOCKD_TOKEN and LOCKD_FENCE; if the lock "
      "is lost it gets SIGTERM (its process group), SIGKILL after --grace, and lockctl exits 6");
  run->add_option("name", run_args.lock.name, "Lock name")->required();
  run->add_option("command", run_args.command, "The command and its arguments, after --")
      ->required();
  run->add_option("--ttl", ttl_ms, "Lease TTL in ms")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  run->add_option("--wait", wait_ms, "Wait up to this many ms in the queue (0: try once)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  run->add_flag("--shared", run_args.lock.shared, "Acquire in SHARED mode");
  run->add_option("--label", run_args.lock.label, "Lease label (default: lockctl@host:pid)");
  run->add_option("--grace", grace_ms, "ms between SIGTERM and SIGKILL once the lock is lost")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  run->callback(with_context([&](const auto& c) {
    BlockSignals({SIGINT, SIGTERM, SIGHUP, SIGCHLD, SIGUSR1});
    run_args.lock.ttl = std::chrono::milliseconds(ttl_ms);
    run_args.lock.wait = std::chrono::milliseconds(wait_ms);
    run_args.grace = std::chrono::milliseconds(grace_ms);
    return lockd::cli::RunUnderLock(c, run_args);
  }));

  // Changing what others hold: confirmed on a terminal, --yes otherwise.
  lockd::cli::Confirmation confirm{false, isatty(STDIN_FILENO) == 1, &std::cin};
  std::string force_name, force_reason;
  uint64_t force_lease = 0;
  auto* locks_release = locks->add_subcommand(
      "release", "Force-release NAME (an operator's release: every holder, or --lease's grant)");
  locks_release->add_option("name", force_name, "Lock name")->required();
  locks_release->add_option("--lease", force_lease, "Release only this lease's grant");
  locks_release->add_option("--reason", force_reason,
                            "Recorded in the log (default: lockctl locks release by user@host)");
  locks_release->add_flag("--yes,-y", confirm.yes, "Do not ask for confirmation");
  locks_release->callback(with_context([&](const auto& c) {
    return lockd::cli::RunLocksRelease(c, force_name, force_lease, force_reason, confirm);
  }));
  uint64_t revoke_id = 0;
  auto* leases_revoke =
      leases->add_subcommand("revoke", "Revoke lease ID: its locks are released at once");
  leases_revoke->add_option("id", revoke_id, "Lease id")->required();
  leases_revoke->add_flag("--yes,-y", confirm.yes, "Do not ask for confirmation");
  leases_revoke->callback(with_context(
      [&](const auto& c) { return lockd::cli::RunLeasesRevoke(c, revoke_id, confirm); }));

  auto* leader = app.add_subcommand("leader", "Leadership")->require_subcommand(1);
  uint64_t transfer_to = 0;
  auto* transfer = leader->add_subcommand(
      "transfer", "Hand leadership to voter ID (default: the most caught-up other voter)");
  transfer->add_option("id", transfer_to, "The new leader's node id");
  // Changing the cluster: asked on a terminal unless --yes; scripts (stdin not a terminal) go
  // ahead, as the start scripts and runbook procedures rely on.
  lockd::cli::Confirmation confirm_cluster{false, isatty(STDIN_FILENO) == 1, &std::cin};
  transfer->add_flag("--yes,-y", confirm_cluster.yes, "Do not ask for confirmation");
  transfer->callback(with_context([&](const auto& c) {
    const std::string to = transfer_to ? "node " + std::to_string(transfer_to)
                                       : std::string("the most caught-up other voter");
    if (int code = lockd::cli::ConfirmOnTerminal(c, confirm_cluster, "hand leadership to " + to))
      return code;
    return lockd::cli::RunLeaderTransfer(c, transfer_to);
  }));

  // Membership (docs/operations.md).
  auto* member = app.add_subcommand("member", "Add, remove and list members")
                     ->require_subcommand(1)
                     ->alias("members");
  uint64_t member_id = 0;
  std::string member_peer, member_client;
  auto* member_add = member->add_subcommand(
      "add", "Add node ID (started with lockd --join) and wait until it is a voter");
  member_add->add_option("id", member_id, "The new node's --id")->required();
  member_add->add_option("--peer", member_peer, "Its --peer-addr (host:port)")->required();
  member_add->add_option("--client", member_client, "Its --client-addr (host:port)")->required();
  member_add->add_flag("--yes,-y", confirm_cluster.yes, "Do not ask for confirmation");
  member_add->callback(with_context([&](const auto& c) {
    if (int code = lockd::cli::ConfirmOnTerminal(c, confirm_cluster,
                                                 "add node " + std::to_string(member_id) +
                                                     " (peer " + member_peer + ", client " +
                                                     member_client + ") to the cluster"))
      return code;
    return lockd::cli::RunMemberAdd(c, member_id, member_peer, member_client);
  }));
  auto* member_remove =
      member->add_subcommand("remove", "Remove node ID (a leader hands leadership over first)");
  member_remove->add_option("id", member_id, "The node's id")->required();
  member_remove->add_flag("--yes,-y", confirm_cluster.yes, "Do not ask for confirmation");
  member_remove->callback(with_context([&](const auto& c) {
    if (int code = lockd::cli::ConfirmOnTerminal(
            c, confirm_cluster, "remove node " + std::to_string(member_id) + " from the cluster"))
      return code;
    return lockd::cli::RunMemberRemove(c, member_id);
  }));
  auto* member_list = member->add_subcommand("list", "Every member, its role and addresses");
  member_list->callback(with_context([](const auto& c) { return lockd::cli::RunMemberList(c); }));

  auto* snapshot = app.add_subcommand(
      "snapshot", "Compact the log of the node asked now (the first endpoint that answers)");
  snapshot->add_flag("--yes,-y", confirm_cluster.yes, "Do not ask for confirmation");
  snapshot->callback(with_context([&](const auto& c) {
    if (int code = lockd::cli::ConfirmOnTerminal(
            c, confirm_cluster, "compact the log of the first endpoint that answers now"))
      return code;
    return lockd::cli::RunSnapshot(c);
  }));

  std::string backup_file, backup_to;
  bool backup_overwrite = false;
  auto* backup = app.add_subcommand(
      "backup",
      "Stream a consistent backup from the first endpoint that answers into FILE (verified, then "
      "renamed into place); restore it with `lockd restore`");
  auto* backup_file_opt = backup->add_option("file", backup_file, "The backup file to write");
  backup->add_option("--to", backup_to, "FILE, as an option (the older spelling)")
      ->excludes(backup_file_opt);
  backup->add_flag("--overwrite", backup_overwrite, "Replace FILE if it exists");
  backup->callback(with_context([&](const auto& c) {
    const std::string& path = backup_file.empty() ? backup_to : backup_file;
    // A progress line only for a person watching: stderr a terminal, and not --json.
    const bool progress = !c.json && isatty(STDERR_FILENO) == 1;
    return lockd::cli::RunBackup(c, path, backup_overwrite, progress);
  }));

  auto* completion =
      app.add_subcommand("completion", "Print a shell completion script")->require_subcommand(1);
  completion->add_subcommand("bash", "source <(lockctl completion bash)")->callback([&] {
    std::cout << lockd::cli::BashCompletion(app);
  });

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help prints and exits 0; every other parse error is bad arguments: exit 2, as the
    // commands document (CLI11's own codes, 100 and up, would mean nothing to a script).
    return app.exit(e) == 0 ? lockd::cli::kExitOk : lockd::cli::kExitUsage;
  }
  return exit_code;
}
