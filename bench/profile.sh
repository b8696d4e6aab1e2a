#!/usr/bin/env bash
# Where a lockd workload's server CPU goes, thread by thread (issue 18; docs/benchmarks.md).
#
#   bench/profile.sh [--seconds S] [--perf] [--lockd PATH] [--no-build] -- LOCKBENCH-ARGS...
#   e.g. bench/profile.sh -- --workload uncontended --clients 1 --connections 1
#
# Builds lockd and lockbench (release; the dependencies as scripts/install-deps.sh installs them,
# plus jq) unless --no-build, starts a fresh 3-node cluster on loopback
# (ports 7971-7973 / 7981-7983 / 7991-7993), runs one lockbench workload against it, and prints for
# each member (leader first) the CPU time and the context switches (voluntary + involuntary, from
# /proc/<pid>/task/*/{stat,status}) of each thread name over the run, also per operation: on this
# kind of VM a switch is expensive, and the count of switches per operation is what fewer
# hand-offs between threads lower (lockd names its threads: replica-loop, peer-send-N,
# peer-read-N, ...; nexting_thread and grpcpp_sync_ser are gRPC's). With --perf, `perf record -g`
# samples the leader for the middle of the run and the top of `perf report` (by thread and
# library) is printed; the data is kept. --lockd runs another lockd binary (an A/B comparison).
# One workload per run (not `--workload all`: the per-op figures divide by its operations).
# Every process it starts it stops, also on Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
seconds=5
perf=0
build=1
LOCKD="$root/build/release/src/daemon/lockd"
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds="$2"; shift 2 ;;
    --perf) perf=1; shift ;;
    --lockd) LOCKD="$(realpath "$2")"; shift 2 ;;
    --no-build) build=0; shift ;;
    --) shift; break ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "profile.sh: unknown argument $1 (lockbench's arguments go after --)" >&2; exit 2 ;;
  esac
done
[ $# -gt 0 ] || { echo "profile.sh: give lockbench's arguments after --" >&2; exit 2; }
if [ "$build" = 1 ]; then
  scripts/install-deps.sh
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  command -v jq >/dev/null ||
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq jq >/dev/null
  cmake --preset release >/dev/null
  cmake --build --preset release --target lockd lockctl lockbench >/dev/null
fi
LB="$root/build/release/bench/lockbench/lockbench"
LOCKCTL="$root/build/release/src/cli/lockctl"
if [ "$perf" = 1 ] && ! command -v perf >/dev/null; then
  echo "profile.sh: --perf needs perf (Debian's linux-perf)" >&2
  exit 2
fi

command -v jq >/dev/null || { echo "profile.sh: needs jq" >&2; exit 2; }
case " $* " in *" all "*) echo "profile.sh: one workload per run, not all" >&2; exit 2 ;; esac

work="$(mktemp -d /var/tmp/lockd-profile.XXXXXX)"
pids=()
lb=""
cleanup() {
  trap - EXIT INT TERM
  [ -z "$lb" ] || kill -TERM "$lb" 2>/dev/null || true
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  [ "$perf" = 1 ] || rm -rf "$work"  # with --perf the data (and the nodes' logs) stay
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT TERM

EPS=127.0.0.1:7971,127.0.0.1:7972,127.0.0.1:7973
init="1=127.0.0.1:7981/127.0.0.1:7971,2=127.0.0.1:7982/127.0.0.1:7972,3=127.0.0.1:7983/127.0.0.1:7973"
for i in 1 2 3; do
  "$LOCKD" --id "$i" --client-addr "127.0.0.1:797$i" --peer-addr "127.0.0.1:798$i" \
    --http-addr "127.0.0.1:799$i" --initial-cluster "$init" --cluster-token "profile-$$" \
    --data-dir "$work/n$i" --plaintext >"$work/n$i.log" 2>&1 &
  pids+=($!)
done
healthy=0
for _ in $(seq 1 150); do
  if "$LOCKCTL" --endpoints "$EPS" health >/dev/null 2>&1; then healthy=1; break; fi
  sleep 0.2
done
if [ "$healthy" != 1 ]; then
  echo "profile.sh: the cluster did not become healthy; node 1's log:" >&2
  tail -20 "$work/n1.log" >&2
  exit 1
fi
leader=$("$LOCKCTL" --endpoints "$EPS" --json status | jq -r '.leader_id // .leaderId // empty' | head -1)
case "$leader" in
  1|2|3) ;;
  *) echo "profile.sh: no leader reported (status said '$leader')" >&2; exit 1 ;;
esac

# snapshot FILE: one line per thread: pid, tid, name, CPU ticks, context switches.
snapshot() {
  local p t
  : >"$1"
  for p in "${pids[@]}"; do
    for t in /proc/"$p"/task/*; do
      printf '%s %s %s\t%s\t%s\n' "$p" "${t##*/}" "$(cat "$t/comm" 2>/dev/null)" \
        "$(awk '{print $14 + $15}' "$t/stat" 2>/dev/null)" \
        "$(awk '/ctxt_switches/ {s += $2} END {print s}' "$t/status" 2>/dev/null)" >>"$1"
    done
  done
}

snapshot "$work/before"
"$LB" --endpoints "$EPS" --server-pids "$(IFS=,; echo "${pids[*]}")" --seconds "$seconds" \
  --json "$work/run.json" "$@" >"$work/lockbench.out" 2>&1 &
lb=$!
if [ "$perf" = 1 ]; then
  sleep 1
  perf record -F 1999 -g -p "${pids[$((leader - 1))]}" -o "$work/perf.data" \
    -- sleep "$((seconds > 3 ? seconds - 2 : 1))" >/dev/null 2>&1 || true
fi
lb_status=0
wait "$lb" || lb_status=$?
lb=""
snapshot "$work/after"
grep -v '^{' "$work/lockbench.out" || true
if [ "$lb_status" != 0 ] || [ ! -s "$work/run.json" ]; then
  echo "profile.sh: lockbench failed (exit $lb_status)" >&2
  exit 1
fi

python3 - "$work/before" "$work/after" "$work/run.json" "$leader" "${pids[@]}" <<'PY'
import collections, json, os, sys
before, after, run, leader, pids = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5:]
def load(path):
    out = {}
    for line in open(path):
        head, ticks, switches = line.rstrip("\n").split("\t")
        pid, tid, name = head.split(" ", 2)
        out[(pid, tid)] = (name, int(ticks or 0), int(switches or 0))
    return out
b, a = load(before), load(after)
ops = max(json.loads(open(run).readlines()[-1]).get("ops", 0), 1)
hz = os.sysconf("SC_CLK_TCK")
order = [leader] + [i for i in (1, 2, 3) if i != leader]
print(f"{ops} operations; per member, per thread name: CPU ms, context switches, switches per op")
for node in order:
    pid = pids[node - 1]
    groups = collections.defaultdict(lambda: [0, 0, 0])
    for key, (name, ticks, switches) in a.items():
        if key[0] != pid:
            continue
        _, t0, s0 = b.get(key, (name, 0, 0))
        g = groups[name]
        g[0] += 1
        g[1] += ticks - t0
        g[2] += switches - s0
    cpu = sum(g[1] for g in groups.values()) * 1000 / hz
    sw = sum(g[2] for g in groups.values())
    role = "leader" if node == leader else "follower"
    print(f"node {node} ({role}): CPU {cpu:.0f} ms ({cpu * 1000 / ops:.0f} us/op), "
          f"{sw} switches ({sw / ops:.1f}/op)")
    for name, (n, ticks, switches) in sorted(groups.items(), key=lambda kv: -kv[1][2]):
        if ticks or switches:
            print(f"  {name:18s} x{n:<3d} {ticks * 1000 / hz:7.0f} ms {switches:9d} {switches / ops:7.2f}/op")
PY
if [ "$perf" = 1 ]; then
  echo "perf on the leader (node $leader), by thread and library; data: $work/perf.data"
  perf report -i "$work/perf.data" --no-children -g none --sort comm,dso --stdio 2>/dev/null |
    grep -v '^#' | grep -v '^$' | head -25
fi
