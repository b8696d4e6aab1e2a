#!/bin/sh
# The StatefulSet's entry script (deploy/docker/Dockerfile installs it as /usr/local/bin/lockd-start)
# decides, from the pod's ordinal, its volume and what the running cluster says, how lockd starts.
#
#   volume holds a data dir          -> start on it (as it was started before: bootstrap flags, or
#                                       --join for a member that joined)
#   empty volume, ordinal >= LOCKD_BOOTSTRAP_MEMBERS
#                                    -> --join; an operator adds it (lockctl member add ID ...)
#   empty volume, bootstrap ordinal, and
#     the cluster does not answer    -> bootstrap with --initial-cluster (a new cluster forming)
#     its id is a member             -> bootstrap flags as well: a member starting for the first
#                                       time after its peers did. A member that ran before and lost
#                                       its volume is refused by its peers as wiped, as it must be:
#                                       remove it (lockctl member remove ID) and delete this pod's
#                                       volume claim; the pod then comes back on the next line
#     its id is not a member         -> it was removed: replace it under a fresh id
#                                       ORDINAL+1 + 1000*k (the smallest k >= 1 no member has),
#                                       recorded in $LOCKD_VOLUME/member-id, started with --join
#                                       and added by this script (lockctl member add, retried
#                                       while it runs) -- docs/operations.md, "On Kubernetes"
#
# Environment (the manifest sets the first four; the rest have Kubernetes defaults and are set
# otherwise only by tests/deploy/k8s_replace_test.py, which runs this script outside Kubernetes):
#   POD_NAME, POD_NAMESPACE, LOCKD_BOOTSTRAP_MEMBERS, LOCKD_CLUSTER_TOKEN
#   LOCKD_MEMBER_HOST   every member's host
#                       (default: lockd-ORD.lockd-peer.NAMESPACE.svc.cluster.local)
#   LOCKD_CLIENT_PORT, LOCKD_PEER_PORT, LOCKD_HTTP_PORT (7401, 7501, 7601), LOCKD_PORT_STRIDE
#                       (0: ordinal N listens on port + N * stride), LOCKD_HTTP_HOST (0.0.0.0)
#   LOCKD_VOLUME (/var/lib/lockd; the data dir is $LOCKD_VOLUME/data), LOCKD_BIN, LOCKCTL_BIN
set -eu

ord="${POD_NAME##*-}"
domain="lockd-peer.${POD_NAMESPACE}.svc.cluster.local"
volume="${LOCKD_VOLUME:-/var/lib/lockd}"
data="$volume/data"
lockd="${LOCKD_BIN:-/usr/local/bin/lockd}"
lockctl="${LOCKCTL_BIN:-/usr/local/bin/lockctl}"
stride="${LOCKD_PORT_STRIDE:-0}"

host_of() { echo "${LOCKD_MEMBER_HOST:-lockd-$1.$domain}"; }
client_of() { echo "$(host_of "$1"):$((${LOCKD_CLIENT_PORT:-7401} + $1 * stride))"; }
peer_of() { echo "$(host_of "$1"):$((${LOCKD_PEER_PORT:-7501} + $1 * stride))"; }
say() { echo "lockd-start: $*" >&2; }

self_client="$(client_of "$ord")"
self_peer="$(peer_of "$ord")"
http="${LOCKD_HTTP_HOST:-0.0.0.0}:$((${LOCKD_HTTP_PORT:-7601} + ord * stride))"

# lockd listens on the member's own name: wait until it resolves (kubelet writes it into
# /etc/hosts; peers' names come from DNS and are retried by lockd itself).
until getent hosts "$(host_of "$ord")" >/dev/null; do sleep 1; done

members=""
clients=""
i=0
while [ "$i" -lt "$LOCKD_BOOTSTRAP_MEMBERS" ]; do
  members="${members:+$members,}$((i + 1))=$(peer_of "$i")/$(client_of "$i")"
  clients="${clients:+$clients,}$(client_of "$i")"
  i=$((i + 1))
done

# The member ids and roles the cluster answers with ("ID ROLE" lines), or nothing.
cluster_members() {
  "$lockctl" --endpoints "$clients" --timeout-ms 3000 member list 2>/dev/null |
    awk '$1 ~ /^[0-9]+$/ { print $1, $2 }'
}

# Adds this node (started with --join) until it is a voter: AddMember waits for it to catch up,
# and resumes a learner that did not in time. Bounded: 10 attempts. Not before lockd answers on
# its client address: a joiner asks the cluster first and refuses to start if its id is a member
# already (up to 60 s: lockd waits up to 30 s for the cluster's answer).
add_self() {
  n=0
  until "$lockctl" --endpoints "$self_client" --timeout-ms 1000 health 2>/dev/null |
      grep -q "SERVING"; do
    n=$((n + 1))
    [ "$n" -lt 120 ] || break
    sleep 0.5
  done
  n=0
  until "$lockctl" --endpoints "$clients" member add "$1" --peer "$self_peer" \
      --client "$self_client" >&2; do
    n=$((n + 1))
    if [ "$n" -ge 10 ]; then
      say "node $1 could not be added; add it by hand:" \
        "lockctl member add $1 --peer $self_peer --client $self_client"
      return 1
    fi
    sleep 3
  done
}

start() {
  exec "$lockd" --id "$1" --client-addr "$self_client" --peer-addr "$self_peer" \
    --http-addr "$http" --data-dir "$data" "$2" "$3" ${4:+"$4"} ${5:+"$5"}
}

if [ -f "$volume/member-id" ]; then
  # A replacement this script added: the same id and --join, always. A restart before it became a
  # voter adds it again (AddMember resumes a learner).
  id="$(cat "$volume/member-id")"
  if ! cluster_members | grep -q "^$id \(leader\|follower\)"; then
    add_self "$id" &
  fi
  start "$id" --join "$clients"
fi

if [ -n "$(ls -A "$data" 2>/dev/null)" ] || [ "$ord" -ge "$LOCKD_BOOTSTRAP_MEMBERS" ]; then
  if [ "$ord" -ge "$LOCKD_BOOTSTRAP_MEMBERS" ]; then
    start "$((ord + 1))" --join "$clients"
  fi
  start "$((ord + 1))" --initial-cluster "$members" --cluster-token "$LOCKD_CLUSTER_TOKEN"
fi

# An empty volume on a bootstrap ordinal.
answer="$(cluster_members)"
if [ -z "$answer" ]; then
  say "no member answers: bootstrapping member $((ord + 1)) of a new cluster"
  start "$((ord + 1))" --initial-cluster "$members" --cluster-token "$LOCKD_CLUSTER_TOKEN"
fi
ids="$(echo "$answer" | awk '{ print $1 }')"
if echo "$ids" | grep -qx "$((ord + 1))"; then
  say "member $((ord + 1)) starts with bootstrap flags (if it ran before and lost its volume, its" \
    "peers refuse it: lockctl member remove $((ord + 1)), then delete this pod's volume claim)"
  start "$((ord + 1))" --initial-cluster "$members" --cluster-token "$LOCKD_CLUSTER_TOKEN"
fi
k=1
while echo "$ids" | grep -qx "$((ord + 1 + 1000 * k))"; do k=$((k + 1)); done
id=$((ord + 1 + 1000 * k))
say "member $((ord + 1)) is not a member any more (removed) and this volume is empty:" \
  "replacing it as member $id (--join, then lockctl member add $id)"
mkdir -p "$volume"
echo "$id" >"$volume/member-id.tmp" && mv "$volume/member-id.tmp" "$volume/member-id"
add_self "$id" &
start "$id" --join "$clients"
