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
   nothing.
3. The operator removes 3 and deletes the claim: the script records id 1003 on the volume, starts
   with --join and adds itself; it becomes a voter, READY, serving locks through its own endpoint;
   it restarts on its volume as 1003.
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
                        LOCKD_HTTP_HOST="127.0.0.1", LOCKD_BIN=os.path.abspath(a.lockd),
                        LOCKCTL_BIN=os.path.abspath(a.lockctl))
        self.procs = {}

    def client(self, ord):
        return f"127.0.0.1:{self.base + ord}"

    def http(self, ord):
        return f"127.0.0.1:{self.base + 20 + ord}"

    def volume(self, ord):
        return os.path.join(self.tmp, f"vol-{ord}")

    def start(self, ord):
        log = open(os.path.join(self.tmp, f"pod{ord}.log"), "a")
        env = dict(self.env, POD_NAME=f"lockd-{ord}", LOCKD_VOLUME=self.volume(ord))
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

    def log(self, ord):
        return open(os.path.join(self.tmp, f"pod{ord}.log")).read()

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
        pods.kill(2)
        shutil.rmtree(pods.volume(2))
        pods.start(2)
        refused(pods, "3")
        check(sorted(members(pods)) == [1, 2, 3], "members 1, 2, 3")

        rc, out, err = pods.lockctl("member", "remove", "3")
        check(rc == 0, f"lockctl member remove 3 ({out.strip()[:100]} {err.strip()[:200]})")
        join_as_1003(pods, "member 3 was removed")
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
