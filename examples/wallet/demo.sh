#!/usr/bin/env bash
# The GC-pause demo: a worker paused past its lease while another takes the lock, then resumed.
# Its withdrawal carries a stale fence and the wallet service rejects it.
#   examples/wallet/demo.sh [build dir, default build/release]
# Starts a 1-node lockd and the wallet service on free loopback ports; stops both on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."
build="${1:-build/release}"
for b in src/daemon/lockd examples/wallet/wallet_service examples/wallet/wallet_worker; do
  [ -x "$build/$b" ] || { echo "demo.sh: $build/$b is missing; build the project first" >&2; exit 2; }
done
tmp="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -CONT "$p" 2>/dev/null || true; kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
client_port=$(free_port); peer_port=$(free_port); http_port=$(free_port); wallet_port=$(free_port)

"$build/src/daemon/lockd" --id 1 --client-addr "127.0.0.1:$client_port" \
  --peer-addr "127.0.0.1:$peer_port" --http-addr "127.0.0.1:$http_port" --data-dir "$tmp/node1" --plaintext \
  --initial-cluster "1=127.0.0.1:$peer_port/127.0.0.1:$client_port" --cluster-token "demo-$$" \
  --min-ttl-ms 2000 >"$tmp/lockd.log" 2>&1 &
pids+=($!)
export LOCKD_ENDPOINTS="127.0.0.1:$client_port"
for _ in $(seq 1 200); do grep -q "leader ready" "$tmp/lockd.log" 2>/dev/null && break; sleep 0.1; done
grep -q "leader ready" "$tmp/lockd.log" || { cat "$tmp/lockd.log" >&2; exit 1; }
"$build/examples/wallet/wallet_service" "$wallet_port" 100 &
pids+=($!)

# Worker A takes the lock and, after its last check, "thinks" for 3 s: we SIGSTOP it right there.
"$build/examples/wallet/wallet_worker" A "$wallet_port" alice 70 3000 >"$tmp/a.log" 2>&1 &
a=$!
pids+=($a)
for _ in $(seq 1 300); do
  grep -q "withdrawing" "$tmp/a.log" 2>/dev/null && break
  kill -0 "$a" 2>/dev/null || break
  sleep 0.1
done
grep -q "withdrawing" "$tmp/a.log" || { cat "$tmp/a.log" "$tmp/lockd.log" >&2; exit 1; }
cat "$tmp/a.log"
echo "demo: SIGSTOP worker A (pid $a) past its 2 s TTL"
kill -STOP "$a"
sleep 3
echo "demo: worker B takes the lock while A is stopped"
"$build/examples/wallet/wallet_worker" B "$wallet_port" alice 50 0
echo "demo: SIGCONT worker A"
kill -CONT "$a"
wait "$a" || true
echo "demo: worker A after SIGCONT:"; tail -n +4 "$tmp/a.log"
if grep -q "withdraw 70 .* -> REJECTED stale fence" "$tmp/a.log"; then
  echo "demo: the stale withdrawal was rejected by the fence"
else
  echo "demo: expected A's stale withdrawal to be rejected" >&2
  exit 1
fi
