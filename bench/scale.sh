#!/usr/bin/env bash
# The scale workload of issue 18 (docs/benchmarks.md): a fresh 3-node lockd cluster on loopback
# holding many locks under many live leases; resident memory per node; the time a restarted node
# needs to catch up from the leader's snapshot of that state.
#
#   bench/scale.sh [--locks N] [--leases M] [--out FILE]     (defaults 1000000 and 100000)
#
# Steps: lockbench --workload fill (M leases with a 1 h TTL, then N locks held under them, round
# robin); each node's VmRSS; node 3 stopped; 10,000 more locks and a snapshot on nodes 1 and 2,
# which compacts their logs past node 3's; node 3 started again, timed until it has applied the
# commit index the leader had before the restart (it must take the leader's snapshot to get there).
# A JSON line per result goes to FILE (default bench/results/scale-<time>.jsonl). Loopback only;
# every process it starts it stops, also on Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
locks=1000000
leases=100000
out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --locks) locks="$2"; shift 2 ;;
    --leases) leases="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "scale.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
mkdir -p bench/results
[ -n "$out" ] || out="bench/results/scale-$(date -u +%Y%m%d-%H%M%S).jsonl"

scripts/install-deps.sh
cmake --preset release >/dev/null
cmake --build --preset release --target lockd lockctl lockbench
LB="$root/build/release/bench/lockbench/lockbench"
LOCKD="$root/build/release/src/daemon/lockd"
LOCKCTL="$root/build/release/src/cli/lockctl"

work="$(mktemp -d /var/tmp/lockd-scale.XXXXXX)"
declare -A pid
cleanup() {
  local status=$?
  for p in "${pid[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pid[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ "$status" -ne 0 ]; then  # keep the nodes' logs of a failed run next to its results
    mkdir -p "${out%.jsonl}-logs" && cp "$work"/n*.log "${out%.jsonl}-logs/" 2>/dev/null || true
    echo "scale.sh: failed; the nodes' logs are in ${out%.jsonl}-logs" >&2
  fi
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

EPS=127.0.0.1:7971,127.0.0.1:7972,127.0.0.1:7973
INIT="1=127.0.0.1:7981/127.0.0.1:7971,2=127.0.0.1:7982/127.0.0.1:7972,3=127.0.0.1:7983/127.0.0.1:7973"
start_node() {
  local i=$1
  mkdir -p "$work/n$i"
  "$LOCKD" --id "$i" --client-addr "127.0.0.1:797$i" --peer-addr "127.0.0.1:798$i" \
    --http-addr "127.0.0.1:799$i" --initial-cluster "$INIT" --cluster-token "scale-$$" \
    --data-dir "$work/n$i/data" --plaintext --max-leases $((leases + 1000)) --max-leases-per-label $((leases + 1000)) \
    --max-locks $((locks + 100000)) \
    >>"$work/n$i.log" 2>&1 &
  pid[$i]=$!
}
status_of() { "$LOCKCTL" --endpoints "$1" --timeout-ms 2000 --json status 2>/dev/null; }
field() {  # a field of a --json status answer; 0 when there was no answer
  /usr/bin/python3 -c "import json, sys
try: print(json.load(sys.stdin).get('$1', 0))
except ValueError: print(0)"
}
rss_mib() { awk '/^VmRSS:/ {printf "%.0f", $2 / 1024}' "/proc/$1/status"; }

for i in 1 2 3; do start_node "$i"; done
for _ in $(seq 1 150); do "$LOCKCTL" --endpoints "$EPS" health >/dev/null 2>&1 && break; sleep 0.2; done

echo "=== fill: $leases leases, $locks locks ==="
"$LB" --endpoints "$EPS" --server-pids "${pid[1]},${pid[2]},${pid[3]}" --workload fill \
  --leases "$leases" --locks "$locks" --ttl-ms 3600000 --connections 8 --json "$out" | grep --line-buffered -v '^{'

echo "=== node 3 stopped; 10000 more locks; nodes 1 and 2 compact their logs ==="
kill -TERM "${pid[3]}"
wait "${pid[3]}" || true
unset 'pid[3]'
"$LB" --endpoints "127.0.0.1:7971,127.0.0.1:7972" --workload fill --leases 100 --locks 10000 \
  --ttl-ms 3600000 --connections 4 | grep --line-buffered -v '^{'
for i in 1 2; do "$LOCKCTL" --endpoints "127.0.0.1:797$i" snapshot --yes; done
target=$(status_of "127.0.0.1:7971,127.0.0.1:7972" | field commit_index)
snapshot_bytes=$(du -sb "$work/n1/data" | cut -f1)

echo "=== node 3 restarted: catching up to commit index $target ==="
t0=$(date +%s.%N)
start_node 3
caught_up=""
for _ in $(seq 1 1200); do
  applied=$({ status_of 127.0.0.1:7973 || true; } | field applied_index)
  if [ "${applied:-0}" -ge "$target" ]; then caught_up=$(date +%s.%N); break; fi
  sleep 0.1
done
if [ -z "$caught_up" ]; then
  echo "scale.sh: node 3 did not catch up in 120 s (log: $work/n3.log)" >&2
  exit 1
fi
catch_up_s=$(awk -v a="$t0" -v b="$caught_up" 'BEGIN{printf "%.2f", b - a}')
grep -E "snapshot" "$work/n3.log" | tail -n 3 || true
rss="$(rss_mib "${pid[1]}"),$(rss_mib "${pid[2]}"),$(rss_mib "${pid[3]}")"
echo "node 3 caught up in $catch_up_s s (restart included); resident MiB per node now: $rss;" \
  "node 1's data dir $((snapshot_bytes / 1048576)) MiB"
echo "{\"system\":\"lockd\",\"workload\":\"scale-catch-up\",\"locks\":$locks,\"leases\":$leases,\"catch_up_s\":$catch_up_s,\"rss_mib\":[$rss],\"data_dir_bytes\":$snapshot_bytes,\"commit_index\":$target}" |
  tee -a "$out"
