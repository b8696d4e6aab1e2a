"""Runs the shell blocks of the docs against real lockd processes on free loopback ports.

A doc marks each shell block it wants run with an HTML comment on the line before the fence:

    <!-- runbook: NAME -->
    ```sh
    lockctl member add 4 --peer 127.0.0.1:7504 --client 127.0.0.1:7404
    ```

The docs are written for the local cluster's addresses (client 74NN, peer 75NN, HTTP 76NN on
127.0.0.1, or 10.0.0.N:7401/7501/7601 for "machine N") and for /var/lib/lockd; `World.localize`
maps every such address to the free ports of "slot" N of this run, /var/lib/lockd to a data dir
the test chose, and /backups to a temporary folder, so the commands run as written, unchanged,
side by side with other tests. `lockd` and `lockctl` are the build's (first on PATH).

Used by runbook_test.py, readme_walkthrough_test.py and tests/deploy/k8s_replace_test.py.
Python's standard library only (Debian's /usr/bin/python3)."""
import json
import os
import pty
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request

MARKER = re.compile(r"^<!-- runbook: ([a-z0-9-]+) -->\s*$")
FENCE_SH = re.compile(r"^\s*```sh\s*$")
FENCE_END = re.compile(r"^\s*```\s*$")
ADDR = re.compile(r"\b(127\.0\.0\.1|10\.0\.0\.(\d)):(7[456])(\d\d)\b")
KIND = {"74": "client", "75": "peer", "76": "http"}


class Failure(Exception):
    pass


STARTED = time.time()


def check(ok, what):
    print(("ok    " if ok else "FAIL  ") + f"[{time.time() - STARTED:5.1f} s] " + what, flush=True)
    if not ok:
        raise Failure(what)


class Command:
    """One command of a block: its text with backslash continuations joined."""

    def __init__(self, block, index, text, lineno):
        self.block, self.index, self.text, self.lineno = block, index, text, lineno

    def program(self):
        """lockd, lockctl, curl, ...: the first word that is not an assignment or a keyword."""
        words = shlex.split(self.text, comments=True) if self.text.strip() else []
        for w in words:
            if re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", w) or w in ("export", "until", "do", "!"):
                continue
            return os.path.basename(w)
        return ""

    def __repr__(self):
        return f"{self.block.path}:{self.lineno}: {self.text}"


class Block:
    def __init__(self, path, name, lineno):
        self.path, self.name, self.lineno, self.commands = path, name, lineno, []


def parse_blocks(path):
    """Every ```sh block of the file, with its marker's name (None when unmarked)."""
    lines = open(path).read().splitlines()
    blocks = []
    i = 0
    while i < len(lines):
        if FENCE_SH.match(lines[i]):
            m = MARKER.match(lines[i - 1].strip()) if i > 0 else None
            b = Block(os.path.basename(path), m.group(1) if m else None, i + 1)
            i += 1
            text, start = "", None
            while i < len(lines) and not FENCE_END.match(lines[i]):
                line = lines[i].strip()
                if start is None:
                    start = i + 1
                text += line
                if line.endswith("\\"):
                    text = text[:-1] + " "
                else:
                    if text.strip() and not text.lstrip().startswith("#"):
                        b.commands.append(Command(b, len(b.commands), text, start))
                    text, start = "", None
                i += 1
            blocks.append(b)
        i += 1
    return blocks


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def accepts(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def http_get(url, timeout=2):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError as e:
        return 0, str(e)


class World:
    """The slots' ports, the processes started, what ran, and the shell environment."""

    def __init__(self, lockd, lockctl, slots=6):
        self.tmp = tempfile.mkdtemp(prefix="lockd-docs-")
        self.bin = os.path.join(self.tmp, "bin")
        os.mkdir(self.bin)
        os.symlink(os.path.abspath(lockd), os.path.join(self.bin, "lockd"))
        os.symlink(os.path.abspath(lockctl), os.path.join(self.bin, "lockctl"))
        self.lockd, self.lockctl = os.path.abspath(lockd), os.path.abspath(lockctl)
        self.ports = {n: {k: free_port() for k in ("client", "peer", "http")}
                      for n in range(1, slots + 1)}
        self.env = {"PATH": self.bin + ":/usr/bin:/bin", "HOME": self.tmp, "LANG": "C.UTF-8"}
        self.data_dirs = {}   # node id -> data dir of its next `lockd` line
        self.block_data_dir = os.path.join(self.tmp, "unused")
        self.servers = {}     # node id -> Popen of its lockd
        self.background = []  # (command, Popen, output path) of long-running lockctl lines
        self.ran = set()      # (block path, line) of every command run

    # --- addresses ---
    def addr(self, slot, kind):
        return f"127.0.0.1:{self.ports[slot][kind]}"

    def endpoints(self, slots):
        return ",".join(self.addr(s, "client") for s in slots)

    def localize(self, text, node_id=None):
        def sub(m):
            slot = int(m.group(2)) if m.group(2) else int(m.group(4))
            if m.group(2) and m.group(4) != "01":
                raise Failure(f"an address of machine {slot} off its usual ports: {m.group(0)}")
            return self.addr(slot, KIND[m.group(3)])

        text = ADDR.sub(sub, text)
        text = text.replace("build/release/src/cli/lockctl", self.lockctl)
        text = text.replace("build/release/src/daemon/lockd", self.lockd)
        text = text.replace("/backups/", os.path.join(self.tmp, "backups") + "/")
        data = self.data_dirs.get(node_id) if node_id is not None else None
        return text.replace("/var/lib/lockd", data or self.block_data_dir)

    # --- running commands ---
    def is_server(self, cmd):
        words = cmd.text.split()
        not_servers = {"restore", "--help", "--inspect-data-dir"}
        return cmd.program() == "lockd" and not not_servers & set(words)

    def is_held(self, cmd):
        """lockctl lines that run until stopped: acquire, run, locks watch (without --count)."""
        t = cmd.text
        return cmd.program() == "lockctl" and (
            re.search(r"\blockctl( --\S+)* (acquire|run)\b", t) is not None or
            (" locks watch " in t and "--count" not in t))

    def run(self, cmd, subst=(), expect_rc=0, timeout=60, answer=None):
        """Runs one command to its end with bash; returns (rc, stdout, stderr)."""
        text = self.apply(cmd, subst)
        self.ran.add((cmd.block.path, cmd.lineno))
        stdin = subprocess.DEVNULL
        master = None
        if answer is not None:
            # A terminal on stdin, with the answer typed ahead: lockctl asks only on a terminal.
            master, slave = pty.openpty()
            os.write(master, answer.encode())
            stdin = slave
        try:
            # A session of its own: on a timeout the whole group goes (a pipeline's other
            # commands, a process bash forked), not only bash.
            p = subprocess.Popen(["/bin/bash", "-c", "set -o pipefail; " + text], env=self.env,
                                 stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True, cwd=self.tmp, start_new_session=True)
            try:
                out, err = p.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                out, err = p.communicate()
                said = (out or "") + (err or "")
                print(f"  $ {self.substituted(cmd, subst)}\n    -> still running after {timeout} s"
                      " (its process group killed)" +
                      "".join(f"\n    | {l}" for l in said.splitlines()[-20:]), flush=True)
                check(False, f"{cmd!r} ends within {timeout} s")
            r = subprocess.CompletedProcess(p.args, p.returncode, out, err)
        finally:
            if master is not None:
                os.close(master)
                os.close(slave)
        print(f"  $ {self.substituted(cmd, subst)}\n    -> exit {r.returncode}" +
              "".join(f"\n    | {l}" for l in (r.stdout + r.stderr).splitlines()[:12]), flush=True)
        if expect_rc is not None:
            check(r.returncode == expect_rc,
                  f"{cmd!r} exits {expect_rc} (got {r.returncode}: {r.stderr.strip()[:300]})")
        return r.returncode, r.stdout, r.stderr

    @staticmethod
    def substituted(cmd, subst):
        """The doc's line as member k's (per_member), before localize."""
        text = cmd.text
        for a, b in subst:
            text = re.sub(a, b, text)
        return text

    def apply(self, cmd, subst):
        text = self.substituted(cmd, subst)
        m = re.search(r"--id (\d+)", text)
        return self.localize(text, int(m.group(1)) if m else None)

    def start(self, cmd, subst=()):
        """Starts a long-running line in the background; a lockd line becomes its node's server."""
        text = self.apply(cmd, subst)
        self.ran.add((cmd.block.path, cmd.lineno))
        print(f"  $ {self.substituted(cmd, subst)} &", flush=True)
        if self.is_server(cmd):
            node = int(re.search(r"--id (\d+)", text).group(1))
            log = open(os.path.join(self.tmp, f"node{node}.log"), "a")
            # exec: the Popen is lockd itself, so signals reach it.
            p = subprocess.Popen(["/bin/bash", "-c", "exec " + text], env=self.env,
                                 stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 cwd=self.tmp)
            log.close()
            self.servers[node] = (p, text)
            # As an operator would, go on once it listens: a joiner asks the cluster before it
            # listens, and refuses to start if `member add` got there first.
            client = re.search(r"--client-addr 127\.0\.0\.1:(\d+)", text)
            if client:
                self.wait_until(f"node {node} listens (or exits)",
                                lambda: p.poll() is not None or accepts(int(client.group(1))))
            return p
        out = os.path.join(self.tmp, f"bg{len(self.background)}.out")
        f = open(out, "w")
        p = subprocess.Popen(["/bin/bash", "-c", "exec " + text], env=self.env, stdout=f,
                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.tmp)
        f.close()
        self.background.append((cmd, p, out))
        return p

    def output_of(self, proc):
        for _, p, out in self.background:
            if p is proc:
                return open(out).read()
        raise KeyError(proc)

    def restart(self, node):
        """SIGTERM, then start the same command line again (what systemctl restart does)."""
        p, text = self.servers[node]
        self.stop(node)
        log = open(os.path.join(self.tmp, f"node{node}.log"), "a")
        q = subprocess.Popen(["/bin/bash", "-c", "exec " + text], env=self.env, stdout=log,
                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.tmp)
        log.close()
        self.servers[node] = (q, text)

    def stop(self, node, sig=signal.SIGTERM):
        p, _ = self.servers[node]
        if p.poll() is None:
            p.send_signal(sig)
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        return p.returncode

    def stop_all(self):
        """SIGTERM to every node at once, then waits for each (a cluster shut down)."""
        for p, _ in self.servers.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for node in self.servers:
            self.stop(node)

    def wait_until(self, what, pred, timeout=30, step=0.1):
        deadline = time.time() + timeout
        while True:
            v = pred()
            if v:
                return v
            if time.time() > deadline:
                check(False, f"{what} within {timeout} s")
            time.sleep(step)

    def wait_ready(self, slots, timeout=30):
        for s in slots:
            self.wait_until(f"/readyz of slot {s} answers READY",
                            lambda: http_get(f"http://{self.addr(s, 'http')}/readyz")[0] == 200,
                            timeout)
            # READY can come a moment before the member applied the entry that decides the
            # cluster id, and until then it answers UNAVAILABLE ("retry", as the runbook says).
            self.wait_until(f"slot {s} answers lockctl status", lambda: self.lockctl_json(
                "status", endpoints=self.addr(s, "client")) is not None, timeout)

    def lockctl_json(self, *args, endpoints=None):
        env = dict(self.env)
        if endpoints:
            env["LOCKD_ENDPOINTS"] = endpoints
        r = subprocess.run([self.lockctl, "--json", *args], env=env, capture_output=True,
                           text=True, timeout=60, stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            return None
        return json.loads(r.stdout)

    def close(self):
        # lockctl run forwards SIGTERM to its command's own process group, so that goes too;
        # SIGKILL only after a grace period.
        for _, p, _ in self.background:
            if p.poll() is None:
                p.terminate()
        for _, p, _ in self.background:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for node in list(self.servers):
            p, _ = self.servers[node]
            if p.poll() is None:
                p.kill()
            p.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)


def exit_on_termination():
    """SIGTERM or SIGINT (a CTest timeout, Ctrl-C) ends the test through its `finally`, which
    stops every process it started."""
    def handler(signum, _frame):
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def blocks_named(blocks, name):
    found = [b for b in blocks if b.name == name]
    check(bool(found), f"{name}: the doc has a block marked <!-- runbook: {name} -->")
    return found


def commands(blocks, name):
    return [c for b in blocks_named(blocks, name) for c in b.commands]


def per_member(k):
    """The substitutions that turn member 1's line into member k's ("likewise --id 2 ...")."""
    return ((r"--id 1\b", f"--id {k}"),
            (r"(--(?:client|peer|http)-addr 127\.0\.0\.1:7[456])01\b", rf"\g<1>0{k}"),
            (r"(--(?:client|peer|http)-addr )10\.0\.0\.1:", rf"\g<1>10.0.0.{k}:"),
            (r"(http://)10\.0\.0\.1:", rf"\g<1>10.0.0.{k}:"))
