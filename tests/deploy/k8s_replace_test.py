#!/usr/bin/python3
"""The StatefulSet's start script (deploy/kubernetes/lockd-start.sh) against a real cluster,
outside Kubernetes: an empty volume never starts under an identity the cluster may remember.

  k8s_replace_test.py --lockd LOCKD --lockctl LOCKCTL --source SRC

Pods are processes: POD_NAME lockd-N, a folder per volume, every member on 127.0.0.1 with ports
base + N (LOCKD_MEMBER_HOST, LOCKD_*_PORT, LOCKD_PORT_STRIDE), the build's lockd and lockctl.
0. lockd-0 and lockd-1 start with empty volumes while lockd-2's endpoint accepts connections and
   never answers (a stale DNS record, a loaded survivor): neither bootstraps; both exit 1 and
   start no lockd (the kubelet restarts them and they ask again).
1. lockd-0 and lockd-1 start with empty volumes: every endpoint refuses the connection, they
   bootstrap members 1 and 2 of 3.
2. lockd-2 starts late (its first start): the cluster has decided its id and member 3 has this
   pod's address, but the leader has recorded no incarnation for it (it never ran): it bootstraps
   as member 3 without an operator and becomes a READY voter. Its volume is then lost: now the
   leader has recorded member 3, the script exits 1 naming `lockctl member remove 3` and starts
   nothing. Before that: lockd-0's and lockd-1's volumes are wiped while lockd-2 runs, each
   started with the other's endpoint silent (a stale DNS record): both exit 1 naming members 1
   and 2 (the volumes are then put back); and lockd-2's wiped volume is refused with a leader that
   (simulated by a lockctl wrapper) never recorded member 3, since a follower did; with
   such a leader it also exits 1 (asks again) when that follower refuses the connection.
3. The operator removes 3 and deletes the claim; 1003 is left a learner (added by hand while
   nothing runs there) with the pod's member-id and an empty volume: the script removes the
   learner, starts with --join and adds itself again; it becomes a voter, READY, serving locks
   through its own endpoint; it restarts on its volume as 1003.
4. Its volume is lost again: the script exits 1 naming member 1003 (the member at its address).
5. The operator removes 1003 and deletes the claim: it joins as 1003 again. It is stopped, removed
   while down, and started on its volume: the script exits 1 and does not add it back.
Exits 1 at the first failure, saying what."""
import argparse
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
import doc_runner as dr  # noqa: E402
from doc_runner import check  # noqa: E402


def free_range(n):
    """A base port with base .. base+n-1 free (client, peer and HTTP ports at +0, +10, +20)."""
    for _ in range(200):
        base = random.randrange(20000, 60000, 100)
        socks = []
        try:
            for p in range(base, base + n):
                s = socket.socket()
                s.bind(("127.0.0.1", p))
                socks.append(s)
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise dr.Failure("no free port range")


class Pods:
    def __init__(self, a):
        self.tmp = tempfile.mkdtemp(prefix="lockd-k8s-")
        self.base = free_range(30)
        self.script = os.path.join(a.source, "deploy/kubernetes/lockd-start.sh")
        self.lockctl_bin = a.lockctl
        self.env = dict(PATH="/usr/bin:/bin", POD_NAMESPACE="ns", LOCKD_BOOTSTRAP_MEMBERS="3",
                        LOCKD_CLUSTER_TOKEN=f"k8s-{os.getpid()}", LOCKD_MEMBER_HOST="127.0.0.1",
                        LOCKD_CLIENT_PORT=str(self.base), LOCKD_PEER_PORT=str(self.base + 10),
                        LOCKD_HTTP_PORT=str(self.base + 20), LOCKD_PORT_STRIDE="1",
                        LOCKD_HTTP_HOST="127.0.0.1", LOCKD_BIN=self.wrap_lockd(a.lockd),
                        LOCKCTL_BIN=os.path.abspath(a.lockctl), LOCKD_FLAGS="--plaintext")
        self.procs = {}

    def wrap_lockd(self, lockd):
        """lockd with a member add that gives a learner 8 s to catch up (60 s by default), so a
        learner that never runs is left behind within the test's time."""
        path = os.path.join(self.tmp, "lockd")
        with open(path, "w") as f:
            f.write(f'#!/bin/sh\nexec {os.path.abspath(lockd)} "$@" --member-add-timeout-ms 8000\n')
        os.chmod(path, 0o755)
        return path

    def lagging_leader_lockctl(self):
        """lockctl as it would answer if the leader had never heard from member 3 (it was down
        while member 3 ran): every Status the leader answers says member 3 is not recorded."""
        path = os.path.join(self.tmp, "lockctl-lagging-leader")
        with open(path, "w") as f:
            f.write(f'''#!/bin/sh
out="$({os.path.abspath(self.lockctl_bin)} "$@")"
rc=$?
printf '%s\\n' "$out" | awk '
  NR == 1 {{ for (i = 1; i < NF; i++) if ($i == "leader") leader = $(i + 1)
            node = $NF; sub(/\\)$/, "", node) }}
  $1 == "3" && leader == node {{ $8 = "no" }}
  {{ print }}'
exit $rc
''')
        os.chmod(path, 0o755)
        return path

    def refusing_lockctl(self, endpoint):
        """lagging_leader_lockctl, and `endpoint` refusing the connection when asked for its own
        view (a member restarting, its data dir holding the record)."""
        path = os.path.join(self.tmp, "lockctl-refusing")
        with open(path, "w") as f:
            f.write(f'''#!/bin/sh
if [ "$2" = "{endpoint}" ] && [ "$6" = "--local" ]; then
  echo "lockctl: {endpoint}: UNAVAILABLE: failed to connect to all addresses" >&2
  exit 4
fi
exec {self.lagging_leader_lockctl()} "$@"
''')
        os.chmod(path, 0o755)
        return path

    def client(self, ord):
        return f"127.0.0.1:{self.base + ord}"

    def http(self, ord):
        return f"127.0.0.1:{self.base + 20 + ord}"

    def volume(self, ord):
        return os.path.join(self.tmp, f"vol-{ord}")

    def start(self, ord, **env_overrides):
        log = open(os.path.join(self.tmp, f"pod{ord}.log"), "a")
        env = dict(self.env, POD_NAME=f"lockd-{ord}", LOCKD_VOLUME=self.volume(ord),
                   **env_overrides)
        # A session of its own: the script's background `member add` is killed with the pod.
        self.procs[ord] = subprocess.Popen(["/bin/sh", self.script], env=env, stdout=log,
                                           stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                           start_new_session=True)
        log.close()

    def kill(self, ord, sig=signal.SIGKILL):
        p = self.procs[ord]
        if p.poll() is None:
            p.send_signal(sig)
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def ready(self, ord):
        return dr.http_get(f"http://{self.http(ord)}/readyz")[0] == 200

    def lockctl(self, *args, endpoints=None, timeout=120):
        r = subprocess.run([self.lockctl_bin, "--endpoints", endpoints or
                            ",".join(self.client(o) for o in (0, 1, 2)), *args],
                           capture_output=True, text=True, timeout=timeout,
                           stdin=subprocess.DEVNULL)
        return r.returncode, r.stdout, r.stderr

    def log(self, ord, since=0):
        path = os.path.join(self.tmp, f"pod{ord}.log")
        return open(path).read()[since:] if os.path.exists(path) else ""

    def log_size(self, ord):
        return len(self.log(ord))

    def close(self, keep=False):
        for ord in list(self.procs):
            self.kill(ord)
        if not keep:
            shutil.rmtree(self.tmp, ignore_errors=True)


def wait_until(what, pred, timeout=40):
    deadline = time.time() + timeout
    while not pred():
        if time.time() > deadline:
            check(False, f"{what} within {timeout} s")
        time.sleep(0.2)
    check(True, what)


def members(pods, endpoints=None):
    rc, out, _ = pods.lockctl("member", "list", endpoints=endpoints, timeout=30)
    return {int(m.group(1)): m.group(2) for m in re.finditer(r"^(\d+)\s+(\w+)", out, re.M)} \
        if rc == 0 else {}


def wait_exit(pods, ord, timeout=40):
    try:
        return pods.procs[ord].wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return None


def refused(pods, member):
    """lockd-2's script exits 1 on its empty volume, naming the member to remove, and starts no
    lockd (no data dir)."""
    open(os.path.join(pods.tmp, "pod2.log"), "a").write("--- (refusal expected)\n")
    rc = wait_exit(pods, 2)
    check(rc == 1 and f"lockctl member remove {member}," in pods.log(2),
          f"lockd-2 on an empty volume is refused (rc {rc}), naming member {member}")
    check(not os.path.exists(os.path.join(pods.volume(2), "data")),
          "and started no lockd (no data dir on its volume)")


def join_as_1003(pods, why):
    open(os.path.join(pods.tmp, "pod2.log"), "w").close()
    pods.start(2)
    wait_until(f"{why}: lockd-2 on its empty volume joins as member 1003, a voter",
               lambda: members(pods).get(1003) in ("follower", "leader"), 60)
    check("replacing it as member 1003" in pods.log(2), "the script said why it replaced it")
    check(open(os.path.join(pods.volume(2), "member-id")).read().strip() == "1003",
          "the volume records member id 1003")
    wait_until("member 1003 is READY", lambda: pods.ready(2))
    check(sorted(members(pods)) == [1, 2, 1003], "members 1, 2, 1003")


def two_wiped_with_a_survivor(pods):
    """lockd-0's and lockd-1's volumes come back empty while lockd-2 runs on its data. Each wiped
    pod asks its own endpoint (nothing listens), the other wiped pod's (a stale DNS record: a
    socket that accepts connections and never answers) and lockd-2 (answers, without a leader):
    neither bootstraps a second cluster; both exit 1 naming their member. The volumes are then
    put back and the cluster runs on."""
    for o in (0, 1):
        pods.kill(o)
        os.rename(pods.volume(o), pods.volume(o) + ".kept")
    for o in (0, 1):
        hung = socket.socket()
        hung.bind(("127.0.0.1", pods.base + (1 - o)))
        hung.listen(16)
        at = pods.log_size(o)
        t0 = time.time()
        try:
            pods.start(o)
            rc = wait_exit(pods, o)
        finally:
            hung.close()
        log = pods.log(o, at)
        check(rc == 1 and f"member {o + 1} " in log and "bootstrapping" not in log,
              f"lockd-{o} wiped, lockd-{1 - o}'s endpoint silent, lockd-2 answering: exits 1 "
              f"naming member {o + 1} in {time.time() - t0:.1f} s (rc {rc}: {log.strip()[-300:]})")
        check(not os.path.exists(os.path.join(pods.volume(o), "data")),
              f"and lockd-{o} started no lockd (no data dir on its volume)")
    for o in (0, 1):
        shutil.rmtree(pods.volume(o), ignore_errors=True)
        os.rename(pods.volume(o) + ".kept", pods.volume(o))
        pods.start(o)
    wait_until("with their volumes back, members 1, 2, 3 run and lockd-0, lockd-1 are READY",
               lambda: sorted(members(pods)) == [1, 2, 3] and pods.ready(0) and pods.ready(1), 60)


def learner_with_an_empty_volume(pods):
    """A replacement (1003) that was added as a learner and lost its volume before it caught up
    (here: added by hand while nothing ran at its address, the add timed out): the script removes
    the learner and joins again as 1003, instead of starting --join under a listed id (lockd
    refuses that: a crash loop)."""
    os.makedirs(pods.volume(2), exist_ok=True)
    with open(os.path.join(pods.volume(2), "member-id"), "w") as f:
        f.write("1003\n")
    rc, out, err = pods.lockctl("member", "add", "1003", "--peer", f"127.0.0.1:{pods.base + 12}",
                                "--client", pods.client(2))
    check(rc != 0 and members(pods).get(1003) == "learner",
          f"member 1003 added while nothing runs at its address stays a learner (rc {rc}, "
          f"{err.strip()[:200]})")
    at = pods.log_size(2)
    pods.start(2)
    wait_until("lockd-2 on an empty volume, its member 1003 a learner: removed and joined again, "
               "a voter", lambda: members(pods).get(1003) in ("follower", "leader"), 60)
    check("is a learner and this volume is empty: removing it" in pods.log(2, at),
          "the script said why it removed the learner")
    wait_until("member 1003 is READY", lambda: pods.ready(2))
    check(sorted(members(pods)) == [1, 2, 1003], "members 1, 2, 1003")


def removed_while_the_cluster_is_silent(pods):
    """The removed 1003's pod restarts on its volume while the cluster does not answer (lockd-0
    and lockd-1 stopped with SIGSTOP: their endpoints accept and never answer), so the start-time
    check cannot see the removal: lockd starts and the background add asks the cluster again once
    it answers, finds 1003 neither a member nor joining, does not add it back, and stops lockd."""
    at = pods.log_size(2)
    for o in (0, 1):
        os.kill(pods.procs[o].pid, signal.SIGSTOP)
    try:
        pods.start(2)
        wait_until("lockd-2's script found the cluster silent",
                   lambda: f"{pods.client(1)} did not answer" in pods.log(2, at), 30)
    finally:
        for o in (0, 1):
            os.kill(pods.procs[o].pid, signal.SIGCONT)
    rc = wait_exit(pods, 2, 90)
    log = pods.log(2, at)
    check(rc is not None and "(removed meanwhile): not adding it back" in log and
          "stopping lockd" in log,
          f"once the cluster answers, 1003 is not added back and its lockd is stopped (rc {rc}: "
          f"{log.strip()[-400:]})")
    check(sorted(members(pods)) == [1, 2], "members 1, 2: 1003 was not added back")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lockd", required=True)
    ap.add_argument("--lockctl", required=True)
    ap.add_argument("--source", required=True)
    a = ap.parse_args()
    dr.exit_on_termination()
    started = time.time()
    pods = Pods(a)
    failed = False
    try:
        # A survivor that accepts connections and never answers: its silence proves nothing.
        hung = socket.socket()
        hung.bind(("127.0.0.1", pods.base + 2))
        hung.listen(16)
        t0 = time.time()
        for o in (0, 1):
            pods.start(o)
        for o in (0, 1):
            rc = wait_exit(pods, o)
            check(rc == 1 and "not bootstrapping" in pods.log(o),
                  f"lockd-{o}, with lockd-2's endpoint silent, does not bootstrap and exits 1 (rc {rc})")
            check(not os.path.exists(os.path.join(pods.volume(o), "data")),
                  f"and lockd-{o} started no lockd (no data dir on its volume)")
        print(f"silent endpoint: both pods exited in {time.time() - t0:.1f} s")
        hung.close()
        for o in (0, 1):
            pods.start(o)
        wait_until("lockd-0 and lockd-1 bootstrap a cluster (2 of 3 members) and are READY",
                   lambda: pods.ready(0) and pods.ready(1))
        check(all("no member answers: bootstrapping member" in pods.log(o) for o in (0, 1)),
              "they bootstrapped (every endpoint refused the connection)")
        wait_until("the cluster has decided its id", lambda: re.match(
            r"cluster [0-9a-f]+ ", pods.lockctl("status", timeout=30)[1]) is not None)
        pods.start(2)  # late: its image took longer to pull
        wait_until("lockd-2's late first start: it bootstraps as member 3, a voter, READY",
                   lambda: members(pods).get(3) in ("follower", "leader") and pods.ready(2), 60)
        check("first start, bootstrapping member 3" in pods.log(2),
              "the script said the leader recorded no incarnation for member 3")
        check(sorted(members(pods)) == [1, 2, 3], "members 1, 2, 3")
        rc, out, _ = pods.lockctl("status", timeout=30)
        check(rc == 0 and re.search(r"^3\s+\w+\s.*\syes\s*$", out, re.M),
              f"the leader has now recorded member 3's incarnation ({out.strip()[-300:]})")
        two_wiped_with_a_survivor(pods)
        pods.kill(2)
        shutil.rmtree(pods.volume(2))
        # A leader that never heard from member 3, and the follower (which recorded it) refusing
        # the connection, as while it restarts: unknown, not "never ran" (simulated by lockctl
        # wrappers).
        # Member 3 may have led: wait for the others to elect one of them.
        found = {}

        def leader_1_or_2():
            rc, out, _ = pods.lockctl("status", timeout=30)
            m = re.search(r" leader (\d+) ", out)
            found["leader"] = m.group(1) if rc == 0 and m else None
            return found["leader"] in ("1", "2")
        wait_until("members 1 and 2 elect a leader of the two", leader_1_or_2)
        follower = 2 - int(found["leader"])  # the other pod's ordinal
        at = pods.log_size(2)
        pods.start(2, LOCKCTL_BIN=pods.refusing_lockctl(pods.client(follower)))
        rc = wait_exit(pods, 2)
        check(rc == 1 and "refused) and may have: asking again" in pods.log(2, at),
              f"with a leader that did not record member 3 and a follower refusing, lockd-2 on an "
              f"empty volume exits 1 (rc {rc}) and asks again")
        check(not os.path.exists(os.path.join(pods.volume(2), "data")),
              "and started no lockd (no data dir on its volume)")
        # A leader that never heard from member 3 (simulated: lockctl blanks its record) is not
        # enough to call member 3 never run: a follower recorded it.
        at = pods.log_size(2)
        pods.start(2, LOCKCTL_BIN=pods.lagging_leader_lockctl())
        rc = wait_exit(pods, 2)
        check(rc == 1 and "lockctl member remove 3," in pods.log(2, at) and
              "has recorded member 3's incarnation" in pods.log(2, at),
              f"with a leader that did not record member 3 but a follower that did, lockd-2 on an "
              f"empty volume is refused (rc {rc}) naming member 3")
        check(not os.path.exists(os.path.join(pods.volume(2), "data")),
              "and started no lockd (no data dir on its volume)")
        pods.start(2)
        refused(pods, "3")
        check(sorted(members(pods)) == [1, 2, 3], "members 1, 2, 3")

        rc, out, err = pods.lockctl("member", "remove", "3")
        check(rc == 0, f"lockctl member remove 3 ({out.strip()[:100]} {err.strip()[:200]})")
        learner_with_an_empty_volume(pods)
        rc, out, err = pods.lockctl("run", "k8s/probe", "--wait", "5000", "--", "sh", "-c",
                                    'echo "fence $LOCKD_FENCE"', endpoints=pods.client(2))
        check(rc == 0 and re.search(r"fence \d+", out),
              f"a lock taken through member 1003's own endpoint ({err.strip()[:200]})")
        pods.kill(2, signal.SIGTERM)
        pods.start(2)
        wait_until("lockd-2 restarted on its volume is READY again as 1003",
                   lambda: pods.ready(2) and
                   re.search(r"^1003\s+(follower|leader)", pods.lockctl(
                       "member", "list", endpoints=pods.client(2), timeout=30)[1], re.M), 60)

        pods.kill(2)
        shutil.rmtree(pods.volume(2))
        pods.start(2)
        refused(pods, "1003")

        rc, out, err = pods.lockctl("member", "remove", "1003")
        check(rc == 0, f"lockctl member remove 1003 ({err.strip()[:200]})")
        shutil.rmtree(pods.volume(2), ignore_errors=True)
        join_as_1003(pods, "1003 was removed and its claim deleted")
        pods.kill(2, signal.SIGTERM)
        rc, out, err = pods.lockctl("member", "remove", "1003")
        check(rc == 0, f"lockctl member remove 1003 while its pod is down ({err.strip()[:200]})")
        pods.start(2)
        rc = wait_exit(pods, 2)
        check(rc == 1 and "not adding it back" in pods.log(2),
              f"restarted on its volume after its removal, the script exits 1 (rc {rc}) and says so")
        check(sorted(members(pods)) == [1, 2], "members 1, 2: the removed 1003 was not added back")
        removed_while_the_cluster_is_silent(pods)
    except dr.Failure as e:
        failed = True
        print(f"FAILED: {e} (pods' logs in {pods.tmp})", file=sys.stderr)
        for o in (0, 1, 2):
            print(f"--- pod {o}\n" + "".join(pods.log(o).splitlines(True)[-20:]), file=sys.stderr)
    finally:
        pods.close(keep=failed)
    print(f"took {time.time() - started:.1f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
