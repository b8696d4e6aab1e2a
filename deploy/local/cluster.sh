#!/usr/bin/env bash
# Starts a local lockd cluster on 127.0.0.1 in the foreground; Ctrl-C stops every node cleanly.
#   deploy/local/cluster.sh            # 3 nodes: client 7401-7403, peer 7501-7503, HTTP 7601-7603
#   deploy/local/cluster.sh --nodes 5  # 5 nodes: 7401-7405, ...
#   deploy/local/cluster.sh --wipe     # start from empty data dirs
#   deploy/local/cluster.sh --tls      # TLS on both ports, with a throwaway CA made by openssl
#                                      # (under the data dir's tls/; clients need a certificate)
# Data lives under deploy/local/data/node<N> (or $LOCKD_LOCAL_DATA); logs beside it.
# LOCKD_LOCAL_PORT_BASE (7400): node N listens on BASE+N (client), BASE+100+N (peer), BASE+200+N
# (HTTP). LOCKD_BIN and LOCKCTL_BIN (both set): run these binaries, building nothing
# (tests/e2e/readme_walkthrough_test.py runs this script so).
set -euo pipefail
cd "$(dirname "$0")/../.."

nodes=3
wipe=0
tls=0
while [ $# -gt 0 ]; do
  case "$1" in
    --nodes) nodes="$2"; shift 2 ;;
    --wipe) wipe=1; shift ;;
    --tls) tls=1; shift ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
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

# --tls: a throwaway cluster CA and client CA (kept across restarts under $data/tls), a
# certificate per node naming it (URI SAN urn:lockd:member:N) and its address (IP SAN 127.0.0.1),
# and one client certificate for lockctl. docs/security.md says how to make real ones.
ctl_tls=()
if [ "$tls" -eq 1 ]; then
  pki="$data/tls"
  mkdir -p "$pki"
  chmod 700 "$pki"
  # Made for 30 days: a CA that expires within a day is made again, with everything it signed.
  for ca in cluster-ca client-ca; do
    if [ -f "$pki/$ca.crt" ] && ! openssl x509 -checkend 86400 -noout -in "$pki/$ca.crt" \
      >/dev/null; then
      rm -f "$pki"/*.crt "$pki"/*.key "$pki"/*.srl
    fi
  done
  issue() {  # issue NAME CA CN SAN
    [ -f "$pki/$1.crt" ] && openssl x509 -checkend 86400 -noout -in "$pki/$1.crt" >/dev/null &&
      return 0
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$pki/$1.key" \
      -subj "/CN=$3" -out "$pki/$1.csr" 2>/dev/null
    printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\n' "$4" >"$pki/$1.ext"
    openssl x509 -req -in "$pki/$1.csr" -CA "$pki/$2.crt" -CAkey "$pki/$2.key" -CAcreateserial \
      -days 30 -out "$pki/$1.crt" -extfile "$pki/$1.ext" 2>/dev/null
    rm -f "$pki/$1.csr" "$pki/$1.ext"
  }
  for ca in cluster-ca client-ca; do
    [ -f "$pki/$ca.crt" ] || openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
      -keyout "$pki/$ca.key" -out "$pki/$ca.crt" -subj "/CN=lockd local $ca" -days 30 \
      -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
      2>/dev/null
  done
  for i in $(seq 1 "$nodes"); do
    issue "node$i" cluster-ca "lockd node $i" "URI:urn:lockd:member:$i,IP:127.0.0.1,DNS:localhost"
  done
  issue client client-ca "lockctl" "DNS:lockctl.local"
  ctl_tls=(--cacert "$pki/cluster-ca.crt" --cert "$pki/client.crt" --key "$pki/client.key")
fi

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
  node_tls=(--plaintext)  # loopback only, for development; --tls for TLS
  if [ "$tls" -eq 1 ]; then
    node_tls=(--tls-cert "$pki/node$i.crt" --tls-key "$pki/node$i.key"
      --peer-ca "$pki/cluster-ca.crt" --tls-client-ca "$pki/client-ca.crt")
  fi
  "$bin" --id "$i" \
    --client-addr "127.0.0.1:$((base + i))" \
    --peer-addr "127.0.0.1:$((base + 100 + i))" \
    --http-addr "127.0.0.1:$((base + 200 + i))" \
    --initial-cluster "$initial" --cluster-token "$token" \
    --data-dir "$data/node$i" "${node_tls[@]}" >>"$data/node$i.log" 2>&1 &
  pids+=($!)
  endpoints="${endpoints:+$endpoints,}127.0.0.1:$((base + i))"
done

echo "lockd: $nodes nodes starting; logs in $data/node*.log"
ctl="${LOCKCTL_BIN:-$PWD/build/release/src/cli/lockctl}"
for _ in $(seq 1 100); do
  "$ctl" "${ctl_tls[@]}" --endpoints "$endpoints" health >/dev/null 2>&1 && break
  sleep 0.2
done
"$ctl" "${ctl_tls[@]}" --endpoints "$endpoints" health || true
echo
"$ctl" "${ctl_tls[@]}" --endpoints "$endpoints" status || true
echo
echo "Try:  export LOCKD_ENDPOINTS=$endpoints"
if [ "$tls" -eq 1 ]; then
  echo "      export LOCKD_CACERT=$pki/cluster-ca.crt LOCKD_CERT=$pki/client.crt" \
    "LOCKD_KEY=$pki/client.key"
fi
echo "      $ctl health"
echo "      $ctl acquire seat/42 --ttl 10000     # holds it until Ctrl-C"
echo "      $ctl locks list"
echo "Ctrl-C stops the cluster."
# Wait until a node exits or we are interrupted.
wait -n "${pids[@]}" || true
echo "a node exited unexpectedly; see its log in $data"
exit 1
