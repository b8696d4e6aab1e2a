#!/usr/bin/python3
"""docs/operations.md, run (issue 16: "every command in the runbook is exercised by a test").

  runbook_test.py --lockd LOCKD --lockctl LOCKCTL --source SRC

On one local cluster, in order, each procedure's marked shell block runs as written (addresses,
data dirs and /backups mapped by doc_runner.World): bootstrap, inspect, a stuck lock found and
cleared, add and remove a member, grow 3 -> 5 and shrink back, replace a killed member, a rolling
restart, a snapshot, a backup and its restore into a new cluster. Then:
- every lockctl/lockd line of the runbook ran (the doc cannot drift from what is tested);
- systemctl/kubectl/docker/install lines, which cannot run here, name units, manifests and files
  that exist in deploy/ (and the lockctl inside `kubectl exec` parses);
- every lockctl line of README.md and docs/cli.md parses (its subcommand and flags exist).
Exits 1 at the first failure, saying what."""
import argparse
import functools
import os
import re
import signal
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import doc_runner as dr  # noqa: E402
from doc_runner import check  # noqa: E402

RUN = ["endpoints", "bootstrap", "inspect", "stuck-lock", "add-member", "remove-member", "grow",
       "shrink", "replace-member", "rolling-restart", "snapshot", "backup", "restore",
       "restore-start", "restore-check"]
STATIC = ["systemd-install", "k8s-scale", "k8s-replace", "docker-build"]


STARTED = time.time()


def section(name):
    print(f"== {name} (at {time.time() - STARTED:.1f} s)", flush=True)


def status(w, slots=(1, 2, 3)):
    return w.lockctl_json("status", endpoints=w.endpoints(slots))


def voters(st):
    return sorted(int(m["id"]) for m in st.get("members", []) if m.get("role") != "LEARNER")


def run_procedures(w, blocks):
    b = lambda name: dr.commands(blocks, name)  # noqa: E731
    os.makedirs(os.path.join(w.tmp, "backups"))

    section("endpoints")
    (export,) = b("endpoints")
    m = re.match(r"export (\w+)=(\S+)$", export.text)
    check(m is not None, f"{export!r} is an export")
    w.env[m.group(1)] = w.localize(m.group(2))
    w.ran.add((export.block.path, export.lineno))

    section("bootstrap")
    (boot,) = b("bootstrap")
    for k in (1, 2, 3):
        w.data_dirs[k] = os.path.join(w.tmp, f"m{k}")
        w.start(boot, dr.per_member(k))
    w.wait_ready((1, 2, 3), timeout=40)

    section("inspect")
    for c in b("inspect"):
        if c.program() == "curl":
            for k in (1, 2, 3):
                _, out, _ = w.run(c, dr.per_member(k))
                check(out.strip() == "READY", f"member {k} is READY")
        else:
            _, out, _ = w.run(c)
            if re.search(r"lockctl (status|member list)\s*(#|$)", c.text):
                check(all(re.search(rf"^{i}\s+(leader|follower)", out, re.M) for i in (1, 2, 3)),
                      f"{c.text.split('#')[0].strip()}: members 1-3, a leader and followers")
    old_cluster = status(w)["cluster_id"]

    section("stuck-lock")
    # A wedged worker: lockctl acquire, stopped (SIGSTOP) while its 12 s lease still runs (the
    # steps below take about a second; once woken it renews within TTL/3 and learns of the loss).
    holder = subprocess.Popen([w.lockctl, "acquire", "seat/42", "--ttl", "12000"], env=w.env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              stdin=subprocess.DEVNULL)
    try:
        def held():
            lock = w.lockctl_json("locks", "get", "seat/42")
            return lock if lock and lock.get("holders") else None

        lock = w.wait_until("the worker holds seat/42", held)
        lease = lock["holders"][0]["lease_id"]
        holder.send_signal(signal.SIGSTOP)
        w.env["LEASE"] = lease
        watch = None
        for c in b("stuck-lock"):
            if c.text.startswith("LEASE="):
                continue  # the lease id is the holder's, set above from `locks get`
            if w.is_held(c):
                watch = w.start(c)
                w.wait_until("the watch is subscribed", lambda: "watching" in w.output_of(watch))
                continue
            confirm = re.search(r"locks release|leases revoke", c.text) is not None
            _, out, err = w.run(c, answer="y\n" if confirm else None)
            named = re.search(rf"\b{lease}\b", out) is not None  # ids are small numbers
            if "locks get" in c.text:
                check(re.search(rf"^\s+{lease}\s", out, re.M) is not None,
                      f"{c.text.split('#')[0].strip()}: lease {lease} is the holder")
            if "leases get" in c.text:
                check(re.search(rf"^lease {lease}\b", out, re.M) is not None or named,
                      f"{c.text.split('#')[0].strip()} names lease {lease}")
            if "locks release" in c.text:
                check(named and "Go ahead?" in err,
                      f"locks release asked on the terminal and released lease {lease}'s grant")
            if "leases revoke" in c.text:
                gone = w.lockctl_json("leases", "get", lease)
                rc = subprocess.run([w.lockctl, "leases", "get", lease], env=w.env,
                                    capture_output=True, timeout=30).returncode
                check(gone is None and rc == 1,
                      f"after leases revoke, leases get {lease} exits 1 (not found; got {rc})")
        check(watch is not None, "the stuck-lock procedure watches the lock")
        w.wait_until("the watch shows the force-release",
                     lambda: re.search(r"RELEASED\s+seat/42\s+" + lease, w.output_of(watch)))
        watch.send_signal(signal.SIGINT)
        watch.wait(timeout=10)
        holder.send_signal(signal.SIGCONT)
        rc = holder.wait(timeout=30)
        check(rc == 6, f"the woken worker learns it lost the lock (exit 6, got {rc})")
    finally:
        if holder.poll() is None:
            holder.send_signal(signal.SIGCONT)
            holder.kill()
            holder.wait()

    section("add-member")
    start4, add4 = b("add-member")
    w.data_dirs[4] = os.path.join(w.tmp, "n4-first")
    w.start(start4)
    _, out, _ = w.run(add4, timeout=120)
    check("node 4 is a voter" in out, "member add 4 says it is a voter")

    section("remove-member")
    (remove4,) = b("remove-member")
    _, out, _ = w.run(remove4, timeout=60)
    check("node 4 removed" in out, "member remove 4 says so")
    w.stop(4)
    # "A restart on that data dir fails (exit code 1) with a message naming this document" --
    # once it wrote its mark. Stopped before it applied its removal, it learns of it "from the
    # first peer that refuses it" on this restart (and writes the mark); the next one fails.
    log4 = os.path.join(w.tmp, "node4.log")
    seen = len(open(log4).read())
    p4 = w.start(start4)
    try:
        rc = p4.wait(timeout=5)
    except subprocess.TimeoutExpired:
        rc = None
    if rc is None:
        said = open(log4).read()[seen:]
        check("node 4 was removed from the cluster" in said,
              "node 4 missed its removal entry; the peers refuse it as removed")
        w.wait_until("node 4 writes its removed mark",
                     lambda: os.path.exists(os.path.join(w.data_dirs[4], "removed")), timeout=20)
        w.stop(4)
        seen = len(open(log4).read())
        rc, out, err = w.run(start4, expect_rc=1, timeout=20)
        said = out + err
    else:
        said = open(log4).read()[seen:]
    check(rc == 1 and "operations.md" in said,
          f"the removed data dir refuses to start (exit {rc}), naming the runbook")

    section("grow")
    grow = b("grow")
    w.data_dirs[4] = os.path.join(w.tmp, "n4-grow")
    w.data_dirs[5] = os.path.join(w.tmp, "n5")
    for c in grow:
        if w.is_server(c):
            w.start(c)
        else:
            _, out, _ = w.run(c, timeout=120)
            if "member list" in c.text:
                check(all(re.search(rf"^{i}\s+(leader|follower)\s", out, re.M)
                          for i in (1, 2, 3, 4, 5)), "member list: members 1-5, voters")
    check(voters(status(w)) == [1, 2, 3, 4, 5], "five voters")

    section("shrink")
    for c in b("shrink"):
        w.run(c, timeout=60)
    check(voters(status(w)) == [1, 2, 3], "three voters again")
    w.stop(4)
    w.stop(5)

    section("replace-member")
    w.stop(3, signal.SIGKILL)  # the dead machine
    # It may have led: the operator acts once the others elected a leader.
    w.wait_until("member 1 or 2 leads", lambda: (status(w, (1, 2)) or {}).get("leader_id") in
                 ("1", "2"))
    w.data_dirs[6] = w.block_data_dir = os.path.join(w.tmp, "n6")
    os.makedirs(w.block_data_dir)
    open(os.path.join(w.block_data_dir, "what-the-lost-disk-left"), "w").close()
    for c in b("replace-member"):
        if w.is_server(c):
            w.start(c)
        else:
            w.run(c, timeout=120)
    w.wait_ready((1, 2, 3))
    check(voters(status(w)) == [1, 2, 6], "members 1, 2 and 6 (on node 3's addresses)")
    check(not os.path.exists(os.path.join(w.block_data_dir, "what-the-lost-disk-left")),
          "the rm -rf emptied the replacement's data dir (the lost disk's file is gone)")

    section("rolling-restart")
    # A client holds a lock through every restart: "no lease is lost".
    roller = subprocess.Popen([w.lockctl, "acquire", "roll/1", "--ttl", "10000"], env=w.env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              stdin=subprocess.DEVNULL)
    try:
        def holder_lease():
            lock = w.lockctl_json("locks", "get", "roll/1")
            return lock["holders"][0]["lease_id"] if lock and lock.get("holders") else None

        roll_lease = w.wait_until("a client holds roll/1", holder_lease)
        st = status(w)
        leader = int(st["leader_id"])
        slot_of = {1: 1, 2: 2, 6: 3}
        for node in sorted(slot_of, key=lambda n: n == leader):  # the leader last
            log = os.path.join(w.tmp, f"node{node}.log")
            handed = open(log).read().count("handing leadership to node")
            for c in b("rolling-restart"):
                if c.program() == "systemctl":
                    w.restart(node)  # what `systemctl restart lockd` does on that machine
                    if node == leader:
                        check(open(log).read().count("handing leadership to node") > handed,
                              f"the stopping leader {node} handed leadership over")
                else:
                    _, out, _ = w.run(c, dr.per_member(slot_of[node]), timeout=60)
                    if " status" in c.text:
                        check(all(re.search(rf"^{i}\s+(leader|follower)\s", out, re.M)
                                  for i in (1, 2, 6)) and re.search(r"leader [126]\b", out),
                              f"after restarting {node}: members 1, 2, 6 voters, a leader")
        check(roller.poll() is None and holder_lease() == roll_lease,
              f"the client's lease {roll_lease} held roll/1 through the restarts")
        roller.send_signal(signal.SIGINT)
        rc = roller.wait(timeout=30)
        check(rc == 0, f"and released it cleanly at the end (exit {rc})")
    finally:
        if roller.poll() is None:
            roller.kill()
            roller.wait()
    st = status(w)
    check(voters(st) == [1, 2, 6] and st.get("leader_id"), "after the restarts: 3 voters, a leader")

    section("snapshot")
    (snap,) = b("snapshot")
    _, out, _ = w.run(snap)
    check(out.startswith("snapshot on "), "lockctl snapshot says where")

    section("backup")
    old_tokens = int(status(w).get("token_counter", 0))
    (backup,) = b("backup")
    _, out, _ = w.run(backup)
    files = [f for f in os.listdir(os.path.join(w.tmp, "backups")) if f.endswith(".lockdbak")]
    check(len(files) == 1 and "wrote" in out, f"one backup file written ({files})")

    section("restore")
    (restore,) = b("restore")
    # The restore names the file the backup made (its name has the time of day in it).
    named = re.search(r"--from /backups/(\S+)", restore.text).group(1)
    if files[0] != named:
        os.rename(os.path.join(w.tmp, "backups", files[0]),
                  os.path.join(w.tmp, "backups", named))
    w.stop_all()  # "make sure the old cluster is gone"
    about = []
    for k in (1, 2, 3):
        w.data_dirs[k] = os.path.join(w.tmp, f"restored{k}")
        _, out, _ = w.run(restore, dr.per_member(k))
        check(f"restored data dir {w.data_dirs[k]} for node {k}" in out, f"member {k} restored")
        m = re.search(r"token counter:\s+(\d+) in the backup, about (\d+) in the new", out)
        check(m is not None and int(m.group(1)) >= old_tokens and int(m.group(2)) > old_tokens,
              f"restore prints the backup's token counter and a higher new one ({out[-200:]!r})")
        about.append(int(m.group(2)))
    (start,) = b("restore-start")
    for k in (1, 2, 3):
        w.start(start, dr.per_member(k))
    w.wait_ready((1, 2, 3), timeout=40)

    section("restore-check")
    for c in b("restore-check"):
        _, out, _ = w.run(c)
        if " status" in c.text:
            m = re.match(r"cluster (\S+) ", out)
            check(m is not None and m.group(1) != old_cluster,
                  f"a new cluster id ({m.group(1) if m else out[:80]} after {old_cluster})")
            t = re.search(r"\btokens (\d+)", out)
            check(t is not None and int(t.group(1)) > old_tokens and
                  int(t.group(1)) >= min(about),
                  f"the token counter ({t.group(1) if t else None}) is above the old cluster's "
                  f"({old_tokens}) and about what lockd restore printed ({about})")
        elif " list" in c.text:
            check("seat/" not in out and "roll/" not in out and len(out.strip().splitlines()) <= 1,
                  f"{c.text.strip()}: empty")
        elif c.program() == "curl":
            check(out.strip() == "READY", "the restored member is READY")


def check_static(w, blocks, src):
    section("lines that cannot run here")
    manifest = open(os.path.join(src, "deploy/kubernetes/lockd.yaml")).read()
    sts_names = re.findall(r"kind: StatefulSet\nmetadata:\n  name: (\S+)", manifest)
    for name in STATIC:
        for block in dr.blocks_named(blocks, name):
            # Pasted into a shell it must at least parse (a <placeholder> would be a redirection).
            text = "\n".join(c.text for c in block.commands)
            r = subprocess.run(["/bin/bash", "-n"], input=text, capture_output=True, text=True,
                               timeout=10)
            bad = re.search(r"(?<![<])<[a-z]+>", text)
            check(r.returncode == 0 and bad is None,
                  f"{name}: the block parses in bash, with no <placeholder> ({r.stderr.strip()} "
                  f"{bad.group(0) if bad else ''})")
        for c in dr.commands(blocks, name):
            prog = c.program()
            words = c.text.split("#")[0].split()
            for word in words:
                if re.match(r"^(deploy|scripts)/", word):
                    check(os.path.exists(os.path.join(src, word)), f"{c!r}: {word} exists")
                if word.startswith("build/release/"):
                    check(word.endswith(("/lockd", "/lockctl")), f"{c!r}: {word} is built")
            if prog == "systemctl":
                units = [x for x in words if x in ("lockd", "lockd.service")]
                unit = os.path.join(src, "deploy/systemd/lockd.service")
                check(bool(units) and os.path.exists(unit),
                      f"{c!r}: the unit is deploy/systemd/lockd.service")
            elif prog == "kubectl":
                for pod in re.findall(r"\b(lockd-\d+)\b(?![.\w-])", c.text):
                    check(pod.rsplit("-", 1)[0] in sts_names,
                          f"{c!r}: {pod} is a pod of {sts_names}")
                for pvc in re.findall(r"pvc (\S+)", c.text):
                    check(re.match(r"^data-(\S+)-\d+$", pvc) and
                          pvc.split("-")[1] in sts_names and "name: data" in manifest,
                          f"{c!r}: {pvc} is a claim of the StatefulSet's 'data' template")
                if "-- lockctl " in c.text:
                    parses(w, c.text.split("-- ", 1)[1], repr(c))
            elif prog == "docker":
                check("-f deploy/docker/Dockerfile" in c.text,
                      f"{c!r}: builds deploy/docker/Dockerfile")


# Inline code that starts with lockctl but is not a command line.
NOT_COMMANDS = {"lockctl --help", "lockctl locks release by user@host"}
GROUPS = {"locks", "leases", "member", "members", "leader"}
GLOBAL_WITH_VALUE = {"--endpoints", "--timeout-ms"}


@functools.lru_cache(maxsize=None)
def help_of(lockctl, sub):
    return subprocess.run([lockctl, *sub, "--help"], capture_output=True, text=True, timeout=10)


def parses(w, text, where):
    """The lockctl line's subcommand exists and its flags are that subcommand's (or global)."""
    words = text.split("#")[0].split()
    words = words[words.index(next(x for x in words if x.endswith("lockctl"))) + 1:]
    if "--" in words:
        words = words[:words.index("--")]
    i = 0
    while i < len(words) and words[i].startswith("--"):
        i += 2 if words[i] in GLOBAL_WITH_VALUE else 1
    sub = words[i:i + 2] if i < len(words) and words[i] in GROUPS else words[i:i + 1]
    r, g = help_of(w.lockctl, tuple(sub)), help_of(w.lockctl, ())
    usage = re.search(r"^Usage: \S*lockctl ((?:[a-z]+ )*)\[OPTIONS\]", r.stdout, re.M)
    check(r.returncode == 0 and sub and usage and usage.group(1).split() == sub,
          f"{where}: `lockctl {' '.join(sub)} --help` is that command's help")
    known = set(re.findall(r"--[a-z][a-z0-9-]*", r.stdout + g.stdout))
    flags = {x.split("=")[0] for x in words if x.startswith("--")}
    check(flags <= known, f"{where}: its flags exist (unknown: {sorted(flags - known)})")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lockd", required=True)
    ap.add_argument("--lockctl", required=True)
    ap.add_argument("--source", required=True)
    a = ap.parse_args()
    dr.exit_on_termination()
    started = time.time()
    runbook = os.path.join(a.source, "docs/operations.md")
    blocks = dr.parse_blocks(runbook)
    unmarked = [f"line {b.lineno}" for b in blocks if b.name is None]
    unknown = sorted({b.name for b in blocks if b.name and b.name not in RUN + STATIC})
    w = dr.World(a.lockd, a.lockctl)
    try:
        check(not unmarked, f"every shell block of the runbook is marked (unmarked: {unmarked})")
        check(not unknown, f"every marked procedure is one this test runs (unknown: {unknown})")
        run_procedures(w, blocks)
        check_static(w, blocks, a.source)
        section("drift")
        not_run = [repr(c) for bl in blocks for c in bl.commands
                   if c.program() in ("lockctl", "lockd") and (c.block.path, c.lineno) not in w.ran]
        check(not not_run, "every lockctl/lockd line of the runbook ran (not run: " +
              "; ".join(not_run) + ")")
        section("README.md and docs/cli.md parse (and the runbook's prose)")
        for doc in ("README.md", "docs/cli.md"):
            for bl in dr.parse_blocks(os.path.join(a.source, doc)):
                for c in bl.commands:
                    if c.program() == "lockctl":
                        parses(w, c.text, repr(c))
        for doc in ("README.md", "docs/cli.md", "docs/operations.md"):
            for span in sorted(set(re.findall(r"`(lockctl [^`]+)`",
                                              open(os.path.join(a.source, doc)).read()))):
                if span in NOT_COMMANDS:
                    continue
                # `member add|remove|list`: each alternative.
                m = re.search(r"\w+(\|\w+)+", span)
                alts = [span[:m.start()] + x + span[m.end():] for x in m.group(0).split("|")] \
                    if m else [span]
                for alt in alts:
                    parses(w, alt, f"{doc}: `{span}`")
    except dr.Failure as e:
        print(f"FAILED: {e}\n(data and logs kept in {w.tmp})", file=sys.stderr)
        for f in sorted(os.listdir(w.tmp)):
            if f.endswith(".log"):
                print(f"--- {f} (last lines)", file=sys.stderr)
                print("".join(open(os.path.join(w.tmp, f)).readlines()[-15:]), file=sys.stderr)
        w.tmp_keep = True
        return 1
    finally:
        if getattr(w, "tmp_keep", False):
            for node in list(w.servers):
                w.stop(node, signal.SIGKILL)
            for _, p, _ in w.background:
                if p.poll() is None:
                    p.kill()
        else:
            w.close()
    print(f"runbook ran whole in {time.time() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
