#!/usr/bin/python3
"""The README's walkthrough, run as written against a real 3-node cluster (issue 16: "a new user
following the README starts the cluster, holds a lock with `lockctl run`, sees it in `lockctl
locks list` and `locks watch`, clears it with `locks release`, and scrapes /metrics").

  readme_walkthrough_test.py --lockd LOCKD --lockctl LOCKCTL --source SRC

The cluster is started as the README says: deploy/local/cluster.sh (its line must be in the
README), in the background, with LOCKD_LOCAL_DATA in a temporary dir, LOCKD_LOCAL_PORT_BASE on free
ports (doc_runner.World maps the README's 7401-7403/7501-7503/7601-7603 to them) and this build's
LOCKD_BIN/LOCKCTL_BIN (so it builds nothing); it is stopped at the end by SIGINT to its pid, as
Ctrl-C does, and must say "stopped" (every node exited 0) and exit 0. Lines that hold something
until Ctrl-C (watch, acquire, run) run in the background, as "in another shell" says. Every step
the issue names must be in the walkthrough (export, health, status, watch, acquire, run, list,
get, release, /readyz, /metrics): a missing line fails. Checks: the run's command got its fence and
was stopped after the force-release with exit 6 (docs/cli.md), the watch printed seat/7's grant and
its release, locks list showed both holders, the acquire ended cleanly on Ctrl-C, /readyz said
READY, and lockd_grants_total moved."""
import argparse
import json
import os
import re
import random
import signal
import socket
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import doc_runner as dr  # noqa: E402
from doc_runner import check  # noqa: E402


STEPS = {"export", "health", "status", "locks watch", "acquire", "run", "locks list", "locks get",
         "locks release", "readyz", "metrics"}


def free_base():
    """A port base with base+1..3, base+101..103 and base+201..203 free (cluster.sh's layout)."""
    for _ in range(200):
        base = random.randrange(20000, 60000, 300)
        socks = []
        try:
            for k in (1, 2, 3):
                for off in (0, 100, 200):
                    s = socket.socket()
                    socks.append(s)
                    s.bind(("127.0.0.1", base + off + k))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise dr.Failure("no free port range")


def start_cluster(w, source, readme):
    """deploy/local/cluster.sh, the README's line, in the background on this run's ports."""
    check(re.search(r"^deploy/local/cluster\.sh(\s|$)", readme, re.M) is not None,
          "the README starts the cluster with deploy/local/cluster.sh")
    base = free_base()
    w.ports = {k: {"client": base + k, "peer": base + 100 + k, "http": base + 200 + k}
               for k in (1, 2, 3)}
    env = dict(w.env, LOCKD_LOCAL_DATA=os.path.join(w.tmp, "local-data"),
               LOCKD_LOCAL_PORT_BASE=str(base), LOCKD_BIN=w.lockd, LOCKCTL_BIN=w.lockctl)
    out = open(os.path.join(w.tmp, "cluster.sh.out"), "w")
    # Its own session: if this test dies, a killpg in close() still reaches the nodes.
    p = subprocess.Popen(["/bin/bash", os.path.join(source, "deploy/local/cluster.sh")], env=env,
                         stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                         start_new_session=True)
    out.close()
    w.wait_until("cluster.sh says the cluster is up",
                 lambda: "Ctrl-C stops the cluster." in cluster_output(w), timeout=40)
    w.wait_ready((1, 2, 3), timeout=40)
    return p


def cluster_output(w):
    return open(os.path.join(w.tmp, "cluster.sh.out")).read()


def stop_cluster(w, p):
    """Ctrl-C: SIGINT to cluster.sh's pid; it stops its nodes and says so."""
    p.send_signal(signal.SIGINT)
    try:
        rc = p.wait(timeout=40)
    except subprocess.TimeoutExpired:
        rc = None
    out = cluster_output(w)
    check(rc == 0 and "stopped" in out.splitlines()[-1:][0],
          f"cluster.sh stopped every node cleanly on SIGINT (exit {rc}; {out[-300:]!r})")
    check(not any(dr.accepts(w.ports[k]["client"]) for k in (1, 2, 3)), "no node listens any more")


def grants(w):
    code, text = dr.http_get(f"http://{w.addr(1, 'http')}/metrics")
    m = re.search(r"^lockd_grants_total (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lockd", required=True)
    ap.add_argument("--lockctl", required=True)
    ap.add_argument("--source", required=True)
    a = ap.parse_args()
    dr.exit_on_termination()
    started = time.time()
    readme_path = os.path.join(a.source, "README.md")
    blocks = dr.parse_blocks(readme_path)
    w = dr.World(a.lockd, a.lockctl, slots=3)
    cluster = None
    steps = set()
    try:
        cluster = start_cluster(w, a.source, open(readme_path).read())
        grants_before = grants(w)
        held = {}
        for c in dr.commands(blocks, "readme-walkthrough"):
            if c.text.startswith("export "):
                name, value = c.text[len("export "):].split("=", 1)
                w.env[name] = w.localize(value)
                steps.add("export")
                continue
            if w.is_held(c):
                p = w.start(c)
                kind = re.search(r"lockctl (locks watch|acquire|run)", c.text).group(1)
                held[kind] = p
                steps.add(kind)
                if kind == "locks watch":
                    w.wait_until("the watch is subscribed", lambda: "watching" in w.output_of(p))
                elif kind == "acquire":
                    w.wait_until("acquire holds seat/42", lambda: "fence" in w.output_of(p))
                else:
                    w.wait_until("run's command started with its fence",
                                 lambda: re.search(r"^fence \d+$", w.output_of(p), re.M))
                continue
            confirm = "locks release" in c.text
            _, out, err = w.run(c, answer="y\n" if confirm else None)
            step = next((k for k in ("health", "status", "locks list", "locks get",
                                     "locks release", "readyz", "metrics") if k in c.text), None)
            steps.add(step)
            if " health" in c.text:
                check(out.count("SERVING") == 3, "health: three endpoints SERVING")
            elif " status" in c.text:
                check(re.search(r"leader [123]", out) is not None, "status names a leader")
            elif "locks list" in c.text:
                check(re.search(r"^seat/42\s", out, re.M) and re.search(r"^seat/7\s", out, re.M),
                      "locks list shows seat/42 and seat/7 held")
            elif "locks get" in c.text:
                lock = json.loads(out)
                check(lock["name"] == "seat/42" and len(lock["holders"]) == 1,
                      "--json locks get seat/42: one holder")
            elif confirm:
                check("Go ahead?" in err, "locks release asked on the terminal")
                check("run" in held, "the walkthrough runs a command under seat/7 before releasing")
                run = held["run"]
                rc = run.wait(timeout=30)
                check(rc == 6, f"run stopped its command and exited 6 after the release (got {rc})")
            elif "readyz" in c.text:
                check(out.strip() == "READY", "/readyz: READY")
            elif "metrics" in c.text:
                m = re.search(r"^lockd_grants_total (\S+)$", out, re.M)
                check(m is not None and float(m.group(1)) >= grants_before + 2,
                      f"lockd_grants_total moved by the two grants ({grants_before} -> "
                      f"{m.group(1) if m else None})")
        check(STEPS <= steps, f"the walkthrough has every step (missing: {sorted(STEPS - steps)})")
        watch = w.output_of(held["locks watch"])
        check(re.search(r"ACQUIRED\s+seat/7\s", watch) and re.search(r"RELEASED\s+seat/7\s", watch),
              "locks watch showed seat/7 granted and released")
        held["acquire"].send_signal(signal.SIGINT)
        rc = held["acquire"].wait(timeout=30)
        check(rc == 0, f"acquire released seat/42 and ended on Ctrl-C (exit {rc})")
        w.wait_until("locks watch shows seat/42 released on Ctrl-C", lambda: re.search(
            r"RELEASED\s+seat/42\s", w.output_of(held["locks watch"])))
        held["locks watch"].send_signal(signal.SIGINT)
        held["locks watch"].wait(timeout=30)
        stop_cluster(w, cluster)
        cluster = None
    except dr.Failure as e:
        print(f"FAILED: {e}", file=sys.stderr)
        for f in sorted(os.listdir(w.tmp)):
            if f.endswith((".log", ".out")):
                print(f"--- {f} (last lines)", file=sys.stderr)
                print("".join(open(os.path.join(w.tmp, f)).readlines()[-15:]), file=sys.stderr)
        return 1
    finally:
        if cluster is not None and cluster.poll() is None:
            cluster.send_signal(signal.SIGINT)
            try:
                cluster.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        if cluster is not None:
            try:
                os.killpg(cluster.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        w.close()
    print(f"README walkthrough ran whole in {time.time() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
