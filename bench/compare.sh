#!/usr/bin/env bash
# lockd and etcd 3.4 side by side on this machine, in one run (issue 18; docs/benchmarks.md).
#
#   bench/compare.sh [--rounds N] [--seconds S] [--out FILE] [--only WORKLOAD]
#
# Installs what it needs (the project's dependencies; Debian's etcd-server, etcd-client, golang-go,
# golang-etcd-server-dev for the etcd side only), builds lockd and lockbench (release) and the Go
# load generator of bench/etcd/, measures the floor (a gRPC round trip to the leader, an append +
# fdatasync on the data disk), then runs the same workloads against a fresh 3-node lockd cluster and
# a fresh 3-member etcd cluster, alternating, N rounds (default 2), S seconds each (default 10).
# Every result is a JSON line in FILE (default bench/results/compare-<time>.jsonl); the table of
# medians and lockd/etcd ratios is printed at the end. Loopback only; every process it starts it
# stops (by pid), also on Ctrl-C. --only runs one workload pair (lock-1c, lock-16c, lock-64c,
# handoff-16c, keepalive-16s, keepalive-64s, failover-8c).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
rounds=2
seconds=10
out=""
only=""
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds="$2"; shift 2 ;;
    --seconds) seconds="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --only) only="$2"; shift 2 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "compare.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
mkdir -p bench/results
[ -n "$out" ] || out="bench/results/compare-$(date -u +%Y%m%d-%H%M%S).jsonl"
: >"$out"

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
scripts/install-deps.sh
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=300 \
  etcd-server etcd-client golang-go golang-etcd-server-dev jq >/dev/null
cmake --preset release >/dev/null
cmake --build --preset release --target lockd lockctl lockbench
export BENCH_DIR="${BENCH_DIR:-/tmp/lockd-compare-etcd}"
bench/etcd/build.sh >/dev/null
LB="$root/build/release/bench/lockbench/lockbench"
LOCKD="$root/build/release/src/daemon/lockd"
ETCD_LB="$BENCH_DIR/bin/lockbench"

work="$(mktemp -d /var/tmp/lockd-compare.XXXXXX)"
lockd_pids=()
stop_lockd() {
  for pid in "${lockd_pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${lockd_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  lockd_pids=()
}
cleanup() {
  stop_lockd
  bench/etcd/stop-cluster.sh --wipe >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

kill_after=""  # set: the runs kill -9 the leader this many seconds after their load starts
killer=""      # the pid of that background kill
LOCKD_EPS=127.0.0.1:7941,127.0.0.1:7942,127.0.0.1:7943
ETCD_EPS=http://127.0.0.1:23791,http://127.0.0.1:23792,http://127.0.0.1:23793

start_lockd() {
  stop_lockd
  rm -rf "$work/lockd"
  local init="1=127.0.0.1:7951/127.0.0.1:7941,2=127.0.0.1:7952/127.0.0.1:7942,3=127.0.0.1:7953/127.0.0.1:7943"
  for i in 1 2 3; do
    mkdir -p "$work/lockd"
    # Defaults: T_tick 100 ms and E_min 1 s, as etcd's heartbeat and election timeout.
    "$LOCKD" --id "$i" --client-addr "127.0.0.1:794$i" --peer-addr "127.0.0.1:795$i" \
      --http-addr "127.0.0.1:796$i" --initial-cluster "$init" --cluster-token "compare-$$" \
      --data-dir "$work/lockd/n$i" --plaintext >"$work/lockd/n$i.log" 2>&1 &
    lockd_pids+=($!)
  done
  for _ in $(seq 1 150); do
    "$root/build/release/src/cli/lockctl" --endpoints "$LOCKD_EPS" health >/dev/null 2>&1 && return
    sleep 0.2
  done
  echo "compare.sh: the lockd cluster did not become healthy in 30 s (logs in $work/lockd)" >&2
  exit 1
}
lockd_pid_list() { local IFS=,; echo "${lockd_pids[*]}"; }

etcd_cpu_ticks() {
  local t=0 f
  for i in 1 2 3; do  # a member killed by the failover run counts until its death (not at all)
    f="/proc/$(cat "$BENCH_DIR/pids/m$i.pid")/stat"
    [ -r "$f" ] && t=$((t + $(awk '{print $14+$15}' "$f")))
  done
  echo "$t"
}

# run_etcd NAME ARGS...: one Go lockbench run on a fresh etcd cluster, its JSON line tagged.
run_etcd() {
  local name=$1; shift
  bench/etcd/stop-cluster.sh --wipe >/dev/null 2>&1 || true
  bench/etcd/start-cluster.sh --fresh >/dev/null
  sleep 1
  local c0 c1 line
  [ -z "$kill_after" ] || kill_etcd_leader_after "$kill_after"
  c0=$(etcd_cpu_ticks)
  line=$(timeout $((seconds * 3 + 60)) "$ETCD_LB" -endpoints "$ETCD_EPS" -label "$name" "$@" \
    2>>"$work/etcd-lockbench.stderr" | tail -1)
  c1=$(etcd_cpu_ticks)
  echo "$line" | jq -c --arg w "$name" --argjson cpu "$(awk -v a="$c0" -v b="$c1" -v hz="$(getconf CLK_TCK)" 'BEGIN{d = (b - a) / hz; print (d < 0 ? 0 : d)}')" \
    '{system:"etcd", workload:$w, ops:.ops, ops_per_s:.ops_per_s,
      p50_ms:(if .shared then .lock_wait_ms.p50 else .op_ms.p50 end),
      p99_ms:(if .shared then .lock_wait_ms.p99 else .op_ms.p99 end),
      errors:.errors, server_cpu_s:$cpu, server_cpu_per_op_us:(if .ops > 0 then $cpu / .ops * 1e6 else 0 end)}
     + (if .max_gap_ms then {max_gap_ms:.max_gap_ms} else {} end)' |
    tee -a "$out"
  if [ -n "$killer" ]; then wait "$killer" || true; killer=""; fi
  bench/etcd/stop-cluster.sh --wipe >/dev/null 2>&1 || true
}

# kill_etcd_leader_after S: in the background, S seconds from now, kill -9 etcd's leader.
kill_etcd_leader_after() {
  (
    sleep "$1"
    local leader_id i
    leader_id=$(ETCDCTL_API=3 etcdctl --endpoints "$ETCD_EPS" endpoint status -w json 2>/dev/null |
      jq -r '.[0].Status.leader')
    for i in 1 2 3; do
      if [ "$(ETCDCTL_API=3 etcdctl --endpoints "http://127.0.0.1:2379$i" endpoint status -w json \
        2>/dev/null | jq -r '.[0].Status.header.member_id')" = "$leader_id" ]; then
        kill -9 "$(cat "$BENCH_DIR/pids/m$i.pid")"
        echo "killed etcd leader m$i" >&2
      fi
    done
  ) &
  killer=$!
}

# kill_lockd_leader_after S: in the background, S seconds from now, kill -9 lockd's leader.
kill_lockd_leader_after() {
  (
    sleep "$1"
    local leader
    leader=$("$root/build/release/src/cli/lockctl" --endpoints "$LOCKD_EPS" --json status |
      jq -r '.leader_id')
    kill -9 "${lockd_pids[$((leader - 1))]}" && echo "killed lockd leader $leader" >&2
  ) &
  killer=$!
}

# run_lockd NAME ARGS...: one lockbench run on a fresh lockd cluster, its JSON line tagged.
run_lockd() {
  local name=$1; shift
  start_lockd
  [ -z "$kill_after" ] || kill_lockd_leader_after "$kill_after"
  "$LB" --endpoints "$LOCKD_EPS" --server-pids "$(lockd_pid_list)" --seconds "$seconds" "$@" |
    grep '^{' | jq -c --arg w "$name" '. + {workload:$w}' | tee -a "$out"
  if [ -n "$killer" ]; then wait "$killer" || true; killer=""; fi
  stop_lockd
}

echo "=== floor (the same disk and loopback, measured by lockbench) ==="
start_lockd
"$LB" --endpoints "$LOCKD_EPS" --workload floor --sync-dir "$work" --json "$out" | grep -v '^{'
stop_lockd

want() { [ -z "$only" ] || [ "$only" = "$1" ]; }

for round in $(seq 1 "$rounds"); do
  echo "=== round $round of $rounds ==="
  want lock-1c && run_lockd lock-1c --workload uncontended --clients 1 --connections 1
  want lock-1c && run_etcd lock-1c -mode lock -clients 1 -total 0 -duration "${seconds}s"
  want lock-16c && run_lockd lock-16c --workload uncontended --clients 16 --connections 4
  want lock-16c && run_etcd lock-16c -mode lock -clients 16 -total 0 -duration "${seconds}s"
  want lock-64c && run_lockd lock-64c --workload uncontended --clients 64 --connections 8
  want lock-64c && run_etcd lock-64c -mode lock -clients 64 -total 0 -duration "${seconds}s"
  want handoff-16c && run_lockd handoff-16c --workload contended --clients 16 --names 1 --connections 4
  want handoff-16c && run_etcd handoff-16c -mode lock -clients 16 -shared -total 0 -duration "${seconds}s"
  want keepalive-16s && run_lockd keepalive-16s --workload keepalive --leases 16 --streams 16 --window 1 --connections 16
  want keepalive-16s && run_etcd keepalive-16s -mode keepalive -clients 16 -total 0 -duration "${seconds}s"
  want keepalive-64s && run_lockd keepalive-64s --workload keepalive --leases 64 --streams 64 --window 1 --connections 16
  want keepalive-64s && run_etcd keepalive-64s -mode keepalive -clients 64 -total 0 -duration "${seconds}s"
  # The leader kill -9'd a third of the way in; 8 clients each through its system's own client
  # (lockd's library; etcd's clientv3 with its v3lock calls), the longest gap between successes.
  kill_after=$((seconds / 3))
  want failover-8c && run_lockd failover-8c --workload failover --clients 8 --ttl-ms 10000
  want failover-8c && run_etcd failover-8c -mode lock -clients 8 -gaps -total 0 -duration "${seconds}s"
  kill_after=""
done

echo "=== medians of $rounds rounds, $seconds s each ($(nproc) cores, $(git rev-parse --short HEAD)) ==="
/usr/bin/python3 - "$out" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
floor = next((r for r in rows if r.get("workload") == "floor"), None)
if floor:
    print(f"floor: rtt p50 {floor['rtt_p50_ms']:.3f} ms, append+fdatasync p50 {floor['sync_p50_ms']:.3f} ms,"
          f" lock+unlock floor {floor['lock_unlock_floor_ms']:.3f} ms")
order = []
for r in rows:
    if r.get("workload") != "floor" and r["workload"] not in order:
        order.append(r["workload"])
def med(system, workload, key):
    v = [r[key] for r in rows if r["system"] == system and r["workload"] == workload and key in r]
    return statistics.median(v) if v else float("nan")
print(f"| workload | etcd ops/s | lockd ops/s | x | etcd p50 ms | lockd p50 ms | etcd/lockd | "
      f"etcd CPU us/op | lockd CPU us/op | etcd/lockd | lockd errors |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for w in order:
    eo, lo = med("etcd", w, "ops_per_s"), med("lockd", w, "ops_per_s")
    ep, lp = med("etcd", w, "p50_ms"), med("lockd", w, "p50_ms")
    ec, lc = med("etcd", w, "server_cpu_per_op_us"), med("lockd", w, "server_cpu_per_op_us")
    le = sum(r.get("errors", 0) for r in rows if r["system"] == "lockd" and r["workload"] == w)
    print(f"| {w} | {eo:,.0f} | {lo:,.0f} | {lo/eo:.2f} | {ep:.3f} | {lp:.3f} | {ep/lp:.2f} | "
          f"{ec:.0f} | {lc:.0f} | {ec/lc:.2f} | {le} |")
for w in order:
    eg, lg = med("etcd", w, "max_gap_ms"), med("lockd", w, "max_gap_ms")
    if eg == eg or lg == lg:  # not NaN: a failover workload
        print(f"{w}: longest gap between successes after the leader's kill -9, median: "
              f"etcd {eg:.0f} ms, lockd {lg:.0f} ms")
EOF
echo "results: $out"
