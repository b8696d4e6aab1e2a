#!/usr/bin/env bash
# The GC-pause demo with the wallet in PostgreSQL or Redis: worker A reads the balance under its
# lock and is SIGSTOPped past its 2 s TTL before writing; worker B takes the lock and withdraws;
# A resumes and writes with its old fence — and the database refuses it (docs/fencing.md).
#   examples/fencing/demo.sh [build dir, default build/release] [postgres|redis|both, default both]
# Starts a 1-node lockd, PostgreSQL 15 (initdb in a temporary directory, a unix socket there; as
# user nobody when run as root) and redis-server on free loopback ports; stops them all on exit.
# Every server runs in the foreground as a child of this script, in its process group: killing
# the group (Ctrl-C does) stops them all even where the EXIT trap cannot run.
set -euo pipefail
cd "$(dirname "$0")/../.."
build="${1:-build/release}"
which="${2:-both}"
for b in src/daemon/lockd examples/fencing/fenced_worker; do
  [ -x "$build/$b" ] || { echo "demo.sh: $build/$b is missing; build the project first" >&2; exit 2; }
done
pgbin="${LOCKD_PG_BINDIR:-/usr/lib/postgresql/15/bin}"
tmp="$(mktemp -d)"
pids=()
# postgres refuses root; setpriv execs in place (no extra process, same process group).
as_pg=()
[ "$(id -u)" -eq 0 ] && as_pg=(setpriv --reuid nobody --regid nogroup --clear-groups --)
cleanup() {
  # SIGTERM stops lockd and redis-server; for postgres it is a smart shutdown that waits for
  # its sessions, so SIGINT (fast) goes first.
  for p in "${pids[@]}"; do
    kill -CONT "$p" 2>/dev/null || true
    kill -INT "$p" 2>/dev/null || true
    kill "$p" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

client_port=$(free_port); peer_port=$(free_port); http_port=$(free_port)
"$build/src/daemon/lockd" --id 1 --client-addr "127.0.0.1:$client_port" \
  --peer-addr "127.0.0.1:$peer_port" --http-addr "127.0.0.1:$http_port" --data-dir "$tmp/node1" --plaintext \
  --initial-cluster "1=127.0.0.1:$peer_port/127.0.0.1:$client_port" --cluster-token "demo-$$" \
  --min-ttl-ms 2000 >"$tmp/lockd.log" 2>&1 &
pids+=($!)
export LOCKD_ENDPOINTS="127.0.0.1:$client_port"
for _ in $(seq 1 200); do grep -q "leader ready" "$tmp/lockd.log" 2>/dev/null && break; sleep 0.1; done
grep -q "leader ready" "$tmp/lockd.log" || { cat "$tmp/lockd.log" >&2; exit 1; }

# run_pause <label> <resource> <where> <error>: the scenario; checks that A's stale write was
# refused with the adapter's documented stale-fence error (any other failure — a connection error,
# NOSCRIPT, a builder error — is a failed demo, not a fence at work).
run_pause() {
  local label="$1" kind="$2" where="$3" error="$4"
  echo "=== $label ==="
  "$build/examples/fencing/fenced_worker" A "$kind" "$where" alice 70 3000 >"$tmp/a-$kind.log" 2>&1 &
  local a=$!
  pids+=($a)
  for _ in $(seq 1 300); do
    grep -q "withdrawing" "$tmp/a-$kind.log" 2>/dev/null && break
    kill -0 "$a" 2>/dev/null || break
    sleep 0.1
  done
  grep -q "withdrawing" "$tmp/a-$kind.log" || { cat "$tmp/a-$kind.log" "$tmp/lockd.log" >&2; exit 1; }
  cat "$tmp/a-$kind.log"
  echo "demo: SIGSTOP worker A (pid $a) past its 2 s TTL"
  kill -STOP "$a"
  sleep 3
  echo "demo: worker B takes the lock while A is stopped"
  "$build/examples/fencing/fenced_worker" B "$kind" "$where" alice 50 0
  echo "demo: SIGCONT worker A"
  kill -CONT "$a"
  wait "$a" || true
  echo "demo: worker A after SIGCONT:"; tail -n +4 "$tmp/a-$kind.log"
  if grep -q "withdraw 70 .* -> REJECTED $error[: ]" "$tmp/a-$kind.log"; then
    echo "demo: $label: A's stale write was refused by the fence; B's withdrawal stands"
  else
    echo "demo: $label: expected A's stale write to be refused with $error" >&2
    exit 1
  fi
}

if [ "$which" = postgres ] || [ "$which" = both ]; then
  [ -x "$pgbin/initdb" ] || { echo "demo.sh: $pgbin/initdb is absent (install postgresql-15)" >&2; exit 2; }
  mkdir -p "$tmp/pg"
  [ "$(id -u)" -eq 0 ] && chown nobody "$tmp" "$tmp/pg"
  (cd / && "${as_pg[@]}" "$pgbin/initdb" -D "$tmp/pg/data" -A trust -U postgres --no-sync >/dev/null)
  (cd / && exec "${as_pg[@]}" "$pgbin/postgres" -D "$tmp/pg/data" -k "$tmp/pg" -c listen_addresses= \
    -c fsync=off) >"$tmp/pg/log" 2>&1 &
  pids+=($!)
  conninfo="host=$tmp/pg user=postgres dbname=postgres"
  for _ in $(seq 1 300); do pg_isready -q -d "$conninfo" && break; sleep 0.1; done
  pg_isready -q -d "$conninfo" || { cat "$tmp/pg/log" >&2; exit 1; }
  psql -X -q -v ON_ERROR_STOP=1 "$conninfo" -f adapters/postgresql/lockd_fence.sql
  psql -X -q -v ON_ERROR_STOP=1 "$conninfo" \
    -c "CREATE TABLE wallet (account text PRIMARY KEY, balance bigint); INSERT INTO wallet VALUES ('alice', 100)"
  run_pause "PostgreSQL" postgres "$conninfo" LF001
  echo "demo: PostgreSQL: wallet and recorded fences:"
  psql -X "$conninfo" -c "SELECT * FROM wallet" -c "SELECT lock_name, fence, cluster_id FROM lockd.fences"
fi
if [ "$which" = redis ] || [ "$which" = both ]; then
  command -v redis-server >/dev/null || { echo "demo.sh: redis-server is absent" >&2; exit 2; }
  redis_port=$(free_port)
  redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --dir "$tmp" \
    >"$tmp/redis.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 100); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
  redis-cli -p "$redis_port" SET "{wallet/alice}:balance" 100 >/dev/null
  run_pause "Redis" redis "127.0.0.1:$redis_port" LOCKD_STALE
  echo "demo: Redis: balance $(redis-cli -p "$redis_port" GET "{wallet/alice}:balance"), recorded fence" \
    "$(redis-cli -p "$redis_port" HGET "{wallet/alice}:lockd-fence" fence)"
fi
