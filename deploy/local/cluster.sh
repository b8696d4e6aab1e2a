#!/usr/bin/env bash
# Starts a local lockd cluster on 127.0.0.1 in the foreground; Ctrl-C stops every node cleanly.
#   deploy/local/cluster.sh            # 3 nodes: client 7401-7403, peer 7501-7503, HTTP 7601-7603
#   deploy/local/cluster.sh --nodes 5  # 5 nodes: 7401-7405, ...
#   deploy/local/cluster.sh --wipe     # start from empty data dirs
# Data lives under deploy/local/data/node<N> (or $LOCKD_LOCAL_DATA); logs beside it.
# LOCKD_LOCAL_PORT_BASE (7400): node N listens on BASE+N (client), BASE+100+N (peer), BASE+200+N
# (HTTP). LOCKD_BIN and LOCKCTL_BIN (both set): run these binaries, building nothing
# (tests/e2e/readme_walkthrough_test.py runs this script so).
set -euo pipefail
cd "$(dirname "$0")/../.."

nodes=3
wipe=0
while [ $# -gt 0 ]; do
  case "$1" in
    --nodes) nodes="$2"; shift 2 ;;
    --wipe) wipe=1; shift ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "cluster.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
case "$nodes" in 1|3|5) ;; *) echo "cluster.sh: --nodes must be 1, 3 or 5" >&2; exit 2 ;; esac

base="${LOCKD_LOCAL_PORT_BASE:-7400}"
if [ -z "${LOCKD_BIN:-}" ] || [ -z "${LOCKCTL_BIN:-}" ]; then
  scripts/install-deps.sh
  cmake --preset release >/dev/null
  cmake --build --preset release --target lockd lockctl
fi

data="${LOCKD_LOCAL_DATA:-$PWD/deploy/local/data}"
[ "$wipe" -eq 1 ] && rm -rf "$data"
mkdir -p "$data"
# A data dir remembers the cluster it was bootstrapped into; another size needs fresh ones.
if [ -f "$data/NODES" ] && [ "$(cat "$data/NODES")" != "$nodes" ]; then
  echo "cluster.sh: $data holds a $(cat "$data/NODES")-node cluster; add --wipe to start a" \
    "$nodes-node one from empty data dirs" >&2
  exit 2
fi
echo "$nodes" >"$data/NODES"
# A new cluster gets a token of its own, so a cluster bootstrapped again after --wipe has another
# cluster id, and clients see that its leases and tokens started over.
[ -f "$data/TOKEN" ] || echo "local-$(date +%s)-$$-$RANDOM" >"$data/TOKEN"
token="$(cat "$data/TOKEN")"
bin="${LOCKD_BIN:-$PWD/build/release/src/daemon/lockd}"

pids=()
stop() {
  trap - INT TERM EXIT
  trap "" PIPE
  # Signal the nodes before printing anything: stdout may be a pipe that Ctrl-C already closed.
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  echo "stopping ${#pids[@]} nodes..." 2>/dev/null || true
  failed=0
  for i in "${!pids[@]}"; do
    rc=0
    wait "${pids[$i]}" 2>/dev/null || rc=$?
    if [ "$rc" -ne 0 ]; then
      echo "node $((i + 1)) exited with status $rc; see $data/node$((i + 1)).log" 2>/dev/null || true
      failed=1
    fi
  done
  [ "$failed" -eq 0 ] && echo "stopped" 2>/dev/null
  exit "$failed"
}
trap stop INT TERM EXIT PIPE

endpoints=""
initial=""
for i in $(seq 1 "$nodes"); do
  initial="${initial:+$initial,}$i=127.0.0.1:$((base + 100 + i))/127.0.0.1:$((base + i))"
done
for i in $(seq 1 "$nodes"); do
  "$bin" --id "$i" \
    --client-addr "127.0.0.1:$((base + i))" \
    --peer-addr "127.0.0.1:$((base + 100 + i))" \
    --http-addr "127.0.0.1:$((base + 200 + i))" \
    --initial-cluster "$initial" --cluster-token "$token" \
    --data-dir "$data/node$i" >>"$data/node$i.log" 2>&1 &
  pids+=($!)
  endpoints="${endpoints:+$endpoints,}127.0.0.1:$((base + i))"
done

echo "lockd: $nodes nodes starting; logs in $data/node*.log"
ctl="${LOCKCTL_BIN:-$PWD/build/release/src/cli/lockctl}"
for _ in $(seq 1 100); do
  "$ctl" --endpoints "$endpoints" health >/dev/null 2>&1 && break
  sleep 0.2
done
"$ctl" --endpoints "$endpoints" health || true
echo
"$ctl" --endpoints "$endpoints" status || true
echo
echo "Try:  export LOCKD_ENDPOINTS=$endpoints"
echo "      $ctl health"
echo "      $ctl acquire seat/42 --ttl 10000     # holds it until Ctrl-C"
echo "      $ctl locks list"
echo "Ctrl-C stops the cluster."
# Wait until a node exits or we are interrupted.
wait -n "${pids[@]}" || true
echo "a node exited unexpectedly; see its log in $data"
exit 1
