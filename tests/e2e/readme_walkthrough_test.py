#!/usr/bin/python3
"""The README's walkthrough, run as written against a real 3-node cluster (issue 16: "a new user
following the README starts the cluster, holds a lock with `lockctl run`, sees it in `lockctl
locks list` and `locks watch`, clears it with `locks release`, and scrapes /metrics").

  readme_walkthrough_test.py --lockd LOCKD --lockctl LOCKCTL --source SRC

The cluster is the one deploy/local/cluster.sh starts (the same flags), on free ports that
doc_runner.World maps the README's 7401-7403/7501-7503/7601-7603 to. Lines that hold something
until Ctrl-C (watch, acquire, run) run in the background, as "in another shell" says. Checks: the
run's command got its fence and was stopped after the force-release with exit 6 (docs/cli.md),
the watch printed seat/7's grant and its release, locks list showed both holders, the acquire
ended cleanly on Ctrl-C, /readyz said READY, and lockd_grants_total moved."""
import argparse
import json
import os
import re
import signal
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import doc_runner as dr  # noqa: E402
from doc_runner import check  # noqa: E402


def start_cluster(w):
    """deploy/local/cluster.sh's three nodes, on this run's ports."""
    members = ",".join(f"{k}={w.addr(k, 'peer')}/{w.addr(k, 'client')}" for k in (1, 2, 3))
    for k in (1, 2, 3):
        line = (f"lockd --id {k} --client-addr {w.addr(k, 'client')} --peer-addr "
                f"{w.addr(k, 'peer')} --http-addr {w.addr(k, 'http')} --initial-cluster "
                f"{members} --cluster-token readme-{os.getpid()} --data-dir "
                f"{os.path.join(w.tmp, f'node{k}')}")
        cmd = dr.Command(dr.Block("cluster.sh", None, 0), k, line, 0)
        w.start(cmd)
    w.wait_ready((1, 2, 3), timeout=40)


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
    started = time.time()
    blocks = dr.parse_blocks(os.path.join(a.source, "README.md"))
    w = dr.World(a.lockd, a.lockctl, slots=3)
    try:
        start_cluster(w)
        grants_before = grants(w)
        held = {}
        for c in dr.commands(blocks, "readme-walkthrough"):
            if c.text.startswith("export "):
                name, value = c.text[len("export "):].split("=", 1)
                w.env[name] = w.localize(value)
                continue
            if w.is_held(c):
                p = w.start(c)
                kind = re.search(r"lockctl (locks watch|acquire|run)", c.text).group(1)
                held[kind] = p
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
        check(set(held) == {"locks watch", "acquire", "run"},
              "the walkthrough watches, acquires and runs")
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
    except dr.Failure as e:
        print(f"FAILED: {e}", file=sys.stderr)
        for f in sorted(os.listdir(w.tmp)):
            if f.endswith((".log", ".out")):
                print(f"--- {f} (last lines)", file=sys.stderr)
                print("".join(open(os.path.join(w.tmp, f)).readlines()[-15:]), file=sys.stderr)
        return 1
    finally:
        w.close()
    print(f"README walkthrough ran whole in {time.time() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
