#!/usr/bin/python3
"""Checks deploy/ against the lockd binary it deploys (issue 16): what can run here runs.

  check_deploy.py --lockd BUILD/src/daemon/lockd --source SRC

- Kubernetes: the manifests parse and carry the fields the runbook relies on; the StatefulSet's
  start script (deploy/kubernetes/lockd-start.sh, in the image), run with stub commands and no
  cluster answering, gives each pod the right flags (bootstrap or --join), and the real lockd
  parses those flags (k8s_replace_test.py runs it against a real cluster).
- systemd: `systemd-analyze verify` passes on the unit (when systemd-analyze exists), with the
  hardening settings in place, and the flags it passes exist.
- Docker: the build stage uses the project's install script and release preset; the runtime
  stage installs a Debian package for every shared library lockd links against.
- Prometheus and Grafana: the rules and the dashboard parse, and every lockd_ series they use is
  exported by a running lockd's /metrics.
Prints one line per check; exits 1 on the first failure with what is wrong."""
import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import yaml

FAILED = []


def check(ok, what):
    print(("ok    " if ok else "FAIL  ") + what)
    if not ok:
        FAILED.append(what)


def lockd_flags(lockd):
    out = subprocess.run([lockd, "--help"], capture_output=True, text=True, check=True).stdout
    return set(re.findall(r"(--[a-z][a-z0-9-]+)", out))


def uncommented(text):
    return "\n".join(l for l in text.splitlines() if not l.lstrip().startswith("#"))


def flags_in(text):
    return set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]+)", text))


def check_kubernetes(src, lockd, known):
    docs = list(yaml.safe_load_all(open(os.path.join(src, "deploy/kubernetes/lockd.yaml"))))
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    sts = by_kind["StatefulSet"][0]
    spec = sts["spec"]
    check(spec["replicas"] == 3, "k8s: StatefulSet of 3")
    check(spec["podManagementPolicy"] == "Parallel", "k8s: podManagementPolicy Parallel")
    headless = [s for s in by_kind["Service"] if s["metadata"]["name"] == spec["serviceName"]]
    check(len(headless) == 1, "k8s: the StatefulSet's serviceName is a Service here")
    h = headless[0]["spec"]
    check(h.get("clusterIP") == "None", "k8s: that Service is headless")
    check(h.get("publishNotReadyAddresses") is True, "k8s: it publishes not-ready addresses")
    labels = spec["template"]["metadata"]["labels"]
    check(spec["selector"]["matchLabels"].items() <= labels.items(), "k8s: selector matches pods")
    pdb = by_kind["PodDisruptionBudget"][0]["spec"]
    check(pdb["selector"]["matchLabels"].items() <= labels.items() and pdb.get("maxUnavailable") == 1,
          "k8s: PodDisruptionBudget allows one member down")
    c = spec["template"]["spec"]["containers"][0]
    check(c["readinessProbe"]["httpGet"]["path"] == "/readyz", "k8s: readiness on /readyz")
    check(c["livenessProbe"]["httpGet"]["path"] == "/healthz", "k8s: liveness on /healthz")
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    claims = [t["metadata"]["name"] for t in spec["volumeClaimTemplates"]]
    check("data" in claims and mounts.get("data") == "/var/lib/lockd",
          "k8s: a persistent volume per member at /var/lib/lockd")
    check(c.get("command") == ["/usr/local/bin/lockd-start"] and "args" not in c,
          "k8s: the container runs the start script")
    dockerfile = open(os.path.join(src, "deploy/docker/Dockerfile")).read()
    check("deploy/kubernetes/lockd-start.sh /out/usr/local/bin/lockd-start" in dockerfile,
          "k8s: the image installs deploy/kubernetes/lockd-start.sh as /usr/local/bin/lockd-start")
    script_path = os.path.join(src, "deploy/kubernetes/lockd-start.sh")
    script = open(script_path).read()
    # lockd's flags: the script's lines that do not run lockctl (its own flags are lockctl's).
    joined = uncommented(script.replace("\\\n", " "))
    lockd_lines = "\n".join(l for l in joined.splitlines() if "lockctl" not in l)
    unknown = flags_in(lockd_lines) - known
    check(not unknown, f"k8s: the start script uses only lockd's flags (unknown: {sorted(unknown)})")

    # The start script with stubs: getent resolves, lockd prints its arguments, no cluster answers
    # (lockctl fails as when nothing runs yet; tests/deploy/k8s_replace_test.py runs it against a
    # real cluster).
    env_values = {e["name"]: e.get("value") for e in c["env"] if "value" in e}
    with tempfile.TemporaryDirectory() as tmp:
        stub_bin = os.path.join(tmp, "bin")
        os.mkdir(stub_bin)
        with open(os.path.join(stub_bin, "getent"), "w") as f:
            f.write("#!/bin/sh\nexit 0\n")
        os.chmod(os.path.join(stub_bin, "getent"), 0o755)
        fake_lockd = os.path.join(tmp, "lockd")
        with open(fake_lockd, "w") as f:
            f.write('#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done\n')
        os.chmod(fake_lockd, 0o755)
        fake_lockctl = os.path.join(tmp, "lockctl")
        with open(fake_lockctl, "w") as f:
            # As lockctl says a refused connection: "lockctl: ENDPOINT: UNAVAILABLE: ..." (the
            # script bootstraps only when every endpoint refuses; it is asked one at a time).
            f.write('#!/bin/sh\necho "lockctl: $2: UNAVAILABLE: failed to connect" >&2\nexit 4\n')
        os.chmod(fake_lockctl, 0o755)

        def argv_of(pod):
            env = dict(os.environ, POD_NAME=pod, POD_NAMESPACE="ns",
                       PATH=stub_bin + ":" + os.environ["PATH"], LOCKD_BIN=fake_lockd,
                       LOCKCTL_BIN=fake_lockctl, LOCKD_VOLUME=os.path.join(tmp, "vol-" + pod),
                       **env_values)
            r = subprocess.run(["/bin/sh", script_path], env=env, capture_output=True,
                               text=True, timeout=20)
            check(r.returncode == 0, f"k8s: the start script runs for {pod} ({r.stderr.strip()})")
            return r.stdout.splitlines()

        dom = "lockd-peer.ns.svc.cluster.local"
        a0 = argv_of("lockd-0")
        members = ",".join(f"{i + 1}=lockd-{i}.{dom}:7501/lockd-{i}.{dom}:7401" for i in range(3))
        check(a0[:2] == ["--id", "1"], "k8s: pod 0 is member 1")
        check(f"lockd-0.{dom}:7401" in a0 and f"lockd-0.{dom}:7501" in a0,
              "k8s: pod 0 listens on its stable name")
        check("--initial-cluster" in a0 and a0[a0.index("--initial-cluster") + 1] == members,
              "k8s: pods 0-2 bootstrap the three members")
        a3 = argv_of("lockd-3")
        check(a3[:2] == ["--id", "4"] and "--join" in a3 and "--initial-cluster" not in a3,
              "k8s: pod 3 joins as member 4")
        check(a3[a3.index("--join") + 1] == ",".join(f"lockd-{i}.{dom}:7401" for i in range(3)),
              "k8s: it joins through the three first members")
        # The real lockd accepts those flags: it gets past parsing (here it then waits for the
        # cluster's names to answer, or fails to resolve them: neither is a usage error).
        for pod, argv in (("lockd-0", a0), ("lockd-3", a3)):
            argv = [a.replace(os.path.join(tmp, "vol-" + pod, "data"), os.path.join(tmp, pod))
                    for a in argv]
            argv = [a.replace("0.0.0.0:7601", f"127.0.0.1:{free_port()}") for a in argv]
            proc = subprocess.Popen([lockd] + argv, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE, text=True)
            try:
                _, err = proc.communicate(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                _, err = proc.communicate()
                err = ""  # still running after 5 s: well past parsing
            # A usage error is CLI11's message and exit code, or lockd's own flag check (exit 2).
            usage = ("not expected" in err or "is required" in err or "Run with --help" in err or
                     proc.returncode == 2)
            check(not usage, f"k8s: lockd parses {pod}'s flags ({err.strip()[:200]})")


def check_systemd(src, lockd, known):
    unit = open(os.path.join(src, "deploy/systemd/lockd.service")).read()
    env = open(os.path.join(src, "deploy/systemd/lockd.env")).read()
    for key in ("DynamicUser=yes", "StateDirectory=lockd", "ProtectSystem=strict",
                "NoNewPrivileges=yes", "ProtectHome=yes", "PrivateTmp=yes", "CapabilityBoundingSet=",
                "SystemCallFilter=@system-service", "Restart=on-failure"):
        check(re.search(r"^" + re.escape(key) + r"\s*$", unit, re.M) is not None,
              f"systemd: {key}")
    check("--data-dir /var/lib/lockd" in unit, "systemd: the data dir is the StateDirectory")
    unknown = (flags_in(uncommented(unit)) | flags_in(uncommented(env))) - known
    check(not unknown, f"systemd: only lockd's flags are used (unknown: {sorted(unknown)})")
    used = set(re.findall(r"\$\{?(LOCKD_[A-Z_]+)", unit))
    defined = set(re.findall(r"^(LOCKD_[A-Z_]+)=", env, re.M))
    check(used <= defined, f"systemd: the env file defines every variable ({sorted(used - defined)})")
    analyze = shutil.which("systemd-analyze")
    if not analyze:
        print("skip  systemd: systemd-analyze verify (systemd-analyze is not installed)")
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "lockd.service")
        with open(path, "w") as f:
            f.write(unit.replace("/usr/local/bin/lockd", os.path.abspath(lockd))
                    .replace("EnvironmentFile=/etc/lockd/lockd.env", "EnvironmentFile=" +
                             os.path.abspath(os.path.join(src, "deploy/systemd/lockd.env"))))
        r = subprocess.run([analyze, "verify", "--man=no", path], capture_output=True, text=True)
        problems = [l for l in (r.stdout + r.stderr).splitlines()
                    if "lockd.service" in l and "Failed to" not in l]
        check(r.returncode == 0 and not problems,
              "systemd: systemd-analyze verify passes (" + (r.stdout + r.stderr).strip()[:300] + ")")


def check_docker(src, lockd):
    text = open(os.path.join(src, "deploy/docker/Dockerfile")).read()
    stages = re.split(r"^FROM ", text, flags=re.M)[1:]
    check(len(stages) == 2 and stages[0].startswith("debian:12 AS build") and
          stages[1].startswith("debian:12-slim"), "docker: multi-stage, Debian 12 build, slim runtime")
    check("scripts/install-deps.sh" in stages[0] and "--preset release" in stages[0],
          "docker: built with the project's install script and release preset (as CI)")
    runtime = stages[1]
    m = re.search(r"apt-get install[^\n]*\n((?:.*\\\n)*.*)", runtime)
    packages = set(re.findall(r"\b(lib[a-z0-9.+-]+|ca-certificates)\b", m.group(0) if m else ""))
    ldd = subprocess.run(["ldd", lockd], capture_output=True, text=True).stdout
    needed = set()
    for lib in re.findall(r"=> (\S+)", ldd):
        r = subprocess.run(["dpkg", "-S", os.path.realpath(lib)], capture_output=True, text=True)
        if r.returncode != 0:
            r = subprocess.run(["dpkg", "-S", lib], capture_output=True, text=True)
        if r.returncode == 0:
            needed.add(r.stdout.split(":")[0])
    # What the named packages pull in (apt installs their dependencies): everything else lockd
    # links against must be named.
    deps = subprocess.run(["apt-cache", "depends", "--recurse", "--no-recommends", "--no-suggests",
                           "--no-conflicts", "--no-breaks", "--no-replaces", "--no-enhances"] +
                          sorted(packages), capture_output=True, text=True)
    check(deps.returncode == 0, "docker: apt-cache resolves the runtime packages")
    pulled = set(packages) | set(re.findall(r"^\s*(?:Pre)?Depends: <?([a-z0-9.+-]+)>?", deps.stdout,
                                            re.M))
    missing = sorted(needed - pulled)
    check(not missing, f"docker: the runtime installs every library lockd links (missing: {missing})")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def exported_families(lockd):
    with tempfile.TemporaryDirectory() as tmp:
        # Member 1 of a 3-member cluster whose other members never start: it has peers (their
        # families exist) and no leader, which /metrics does not need.
        c, p, h = free_port(), free_port(), free_port()
        others = ",".join(f"{i}=127.0.0.1:{free_port()}/127.0.0.1:{free_port()}" for i in (2, 3))
        proc = subprocess.Popen([lockd, "--plaintext", "--data-dir", os.path.join(tmp, "d"),
                                 "--client-addr",
                                 f"127.0.0.1:{c}", "--peer-addr", f"127.0.0.1:{p}", "--http-addr",
                                 f"127.0.0.1:{h}", "--log-level", "warn", "--initial-cluster",
                                 f"1=127.0.0.1:{p}/127.0.0.1:{c},{others}"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.time() + 30
            # The peers' families appear with the node's first status pass.
            text = b""
            while True:
                try:
                    text = urllib.request.urlopen(f"http://127.0.0.1:{h}/metrics", timeout=2).read()
                    if b"lockd_peer_connected" in text:
                        break
                except OSError:
                    pass
                if time.time() > deadline:
                    break
                time.sleep(0.2)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    return set(re.findall(r"^# TYPE (\S+) ", text.decode(), re.M))


def series_in(expr):
    return set(re.findall(r"\b(lockd_[a-z0-9_]+)", expr))


def family_of(series, families):
    if series in families:
        return True
    for suffix in ("_bucket", "_count", "_sum"):
        if series.endswith(suffix) and series[: -len(suffix)] in families:
            return True
    return False


def check_monitoring(src, lockd):
    families = exported_families(lockd)
    check(len(families) > 20, f"monitoring: lockd exports {len(families)} families")
    rules = yaml.safe_load(open(os.path.join(src, "deploy/prometheus/lockd-alerts.yml")))
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    check(all(r.get("alert") and r.get("annotations", {}).get("summary")
              for g in rules["groups"] for r in g["rules"]), "monitoring: every rule is named and summarised")
    dash = json.load(open(os.path.join(src, "deploy/grafana/lockd-dashboard.json")))
    exprs += [t["expr"] for p in dash["panels"] for t in p["targets"]]
    missing = sorted({s for e in exprs for s in series_in(e) if not family_of(s, families)})
    check(not missing, f"monitoring: every lockd_ series used is exported (missing: {missing})")
    runbook = open(os.path.join(src, "docs/operations.md")).read()
    unexplained = [r["alert"] for g in rules["groups"] for r in g["rules"] if r["alert"] not in runbook]
    check(not unexplained, f"monitoring: the runbook explains every alert (missing: {unexplained})")
    # The paging alerts' expressions, as the runbook gives them, are the rule file's.
    m = re.search(r"<!-- alerts: paging -->\n```yaml\n(.*?)```", runbook, re.S)
    check(m is not None, "monitoring: the runbook has the paging alerts' block (<!-- alerts: paging -->)")
    shown = {r["alert"]: (r["expr"].strip(), str(r["for"])) for r in yaml.safe_load(m.group(1))}
    paging = {r["alert"]: (r["expr"].strip(), str(r.get("for")))
              for g in rules["groups"] for r in g["rules"] if r["labels"]["severity"] == "page"}
    differ = sorted(n for n in set(shown) | set(paging) if shown.get(n) != paging.get(n))
    check(not differ, "monitoring: the runbook's paging alerts and expressions are the rule "
          f"file's severity: page rules (differ: {[(n, shown.get(n), paging.get(n)) for n in differ]})")
    named = re.search(r"Worth a\s+page:(.*?)\. The", runbook, re.S)
    check(named is not None and set(re.findall(r"\*\*(\w+)\*\*", named.group(1))) == set(paging),
          "monitoring: the runbook's 'Worth a page' list names exactly those")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lockd", required=True)
    ap.add_argument("--source", required=True)
    a = ap.parse_args()
    known = lockd_flags(a.lockd)
    check_kubernetes(a.source, a.lockd, known)
    check_systemd(a.source, a.lockd, known)
    check_docker(a.source, a.lockd)
    check_monitoring(a.source, a.lockd)
    if FAILED:
        print(f"{len(FAILED)} check(s) failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
