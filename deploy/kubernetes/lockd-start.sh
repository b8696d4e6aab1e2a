#!/bin/sh
# The StatefulSet's entry script (deploy/docker/Dockerfile installs it as /usr/local/bin/lockd-start)
# decides, from the pod's ordinal, its volume and what the running cluster says, how lockd starts.
#
#   volume holds a data dir          -> start on it (as it was started before: bootstrap flags, or
#                                       --join for a member that joined); a replacement the
#                                       operator removed meanwhile is not added back: exit 1
#   empty volume, ordinal >= LOCKD_BOOTSTRAP_MEMBERS
#                                    -> --join; an operator adds it (lockctl member add ID ...)
#   empty volume, bootstrap ordinal, and
#     no member answers, or the      -> bootstrap with --initial-cluster (a new cluster forming)
#     cluster has no id decided yet
#     a member has this pod's peer   -> exit 1, naming it: this pod's identity lost its data (or
#     address or this ordinal's id      never started before its peers formed the cluster; lockd
#                                       cannot tell which). The runbook's replacement: lockctl
#                                       member remove ID, delete the claim and the pod
#     otherwise (it was removed)     -> replace it under a fresh id
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

# The cluster's answer to `lockctl status` (from the leader when there is one, else from the first
# member that answers): "cluster ID  term ..." then a table "ID ROLE CLIENT PEER ...". Empty when no
# member answers.
cluster_status() {
  "$lockctl" --endpoints "$clients" --timeout-ms 3000 status 2>/dev/null || true
}
# The cluster id in an answer, or nothing while the cluster has not decided one.
decided_id() { echo "$1" | awk 'NR == 1 && $1 == "cluster" && $2 != "term" && $2 != "-" { print $2 }'; }
# "ID ROLE PEER" for each member in an answer.
member_rows() { echo "$1" | awk '$1 ~ /^[0-9]+$/ { print $1, $2, $4 }'; }
# The id of the member at this pod's peer address, or nothing.
member_at_self() { member_rows "$1" | awk -v p="$self_peer" '$3 == p { print $1; exit }'; }
# The runbook's procedure ("On Kubernetes", replace a member) for this pod's lost identity $1.
refuse_lost() {
  say "member $1 is this pod's identity (peer address $self_peer) in cluster $2 and this volume" \
    "is empty: it ran before and lost its data, and a member that forgot its log and votes must" \
    "not start again under its id. Replace it (docs/operations.md, \"On Kubernetes\"):" \
    "lockctl member remove $1, then kubectl delete pvc data-$POD_NAME (without waiting) and" \
    "kubectl delete pod $POD_NAME; the pod then comes back under a new id"
  exit 1
}

# Adds this node (started with --join) until it is a voter: AddMember waits for it to catch up,
# and resumes a learner that did not in time. Bounded: 10 attempts. Not before lockd answers on
# its client address: a joiner asks the cluster first and refuses to start if its id is a member
# already (up to 60 s: lockd waits up to 30 s for the cluster's answer).
add_self() {
  n=0
  # Answered at all (SERVING or NOT_SERVING; a joiner not added yet is NOT_SERVING), not
  # UNREACHABLE. An add that came first would make lockd refuse to start: never add before.
  until "$lockctl" --endpoints "$self_client" --timeout-ms 1000 --json health 2>/dev/null |
      grep -q '"status":"\(NOT_\)\{0,1\}SERVING"'; do
    n=$((n + 1))
    if [ "$n" -ge 240 ]; then
      say "lockd did not answer on $self_client within 2 minutes: not adding node $1"
      return 1
    fi
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
  # A replacement this script added: the same id and --join, always. It is added (again) only when
  # it never became a member: the cluster lists it as a learner (AddMember resumes it), or it is
  # missing and its data dir still says it is joining (stopped before the first add finished).
  # Missing otherwise means an operator removed it: never add it back (docs/operations.md).
  id="$(cat "$volume/member-id")"
  answer="$(cluster_status)"
  role="$(member_rows "$answer" | awk -v id="$id" '$1 == id { print $2 }')"
  if [ -n "$(ls -A "$data" 2>/dev/null)" ] && ! grep -qx "joining 1" "$data/cluster" 2>/dev/null &&
    [ -n "$answer" ] && [ -z "$role" ]; then
    say "member $id is not a member of the cluster any more (removed): not adding it back." \
      "To replace it: kubectl delete pvc data-$POD_NAME (without waiting) and kubectl delete pod" \
      "$POD_NAME; the pod then comes back under a new id"
    exit 1
  fi
  if [ -z "$(ls -A "$data" 2>/dev/null)" ] && [ -n "$(decided_id "$answer")" ] &&
    [ "$(member_at_self "$answer")" = "$id" ] && [ "$role" != learner ]; then
    refuse_lost "$id" "$(decided_id "$answer")"
  fi
  if [ "$role" != leader ] && [ "$role" != follower ]; then
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

# An empty volume on a bootstrap ordinal. Bootstrap flags only while the cluster has not decided its
# id (it is still forming): once it has, a member at this pod's address may have acknowledged
# entries and votes, and the peers that remember it cannot all be counted on to refuse a wiped copy
# (two wiped members accept each other and would form a second, empty cluster at the same
# addresses). lockd does not say whether a member ever ran, so this script refuses in every such
# case, a first start later than its peers' included: the operator replaces it.
answer="$(cluster_status)"
if [ -z "$answer" ]; then
  # Also when the survivors of a majority loss cannot be reached for 3 s: the runbook's "Losing
  # quorum" is a restore into new volumes, not a restart of the old pods on empty ones.
  say "no member answers: bootstrapping member $((ord + 1)) of a new cluster"
  start "$((ord + 1))" --initial-cluster "$members" --cluster-token "$LOCKD_CLUSTER_TOKEN"
fi
cluster="$(decided_id "$answer")"
if [ -z "$cluster" ]; then
  say "the cluster is forming (no cluster id decided): bootstrapping member $((ord + 1))"
  start "$((ord + 1))" --initial-cluster "$members" --cluster-token "$LOCKD_CLUSTER_TOKEN"
fi
lost="$(member_at_self "$answer")"
[ -z "$lost" ] || refuse_lost "$lost" "$cluster"
ids="$(member_rows "$answer" | awk '{ print $1 }')"
if echo "$ids" | grep -qx "$((ord + 1))"; then
  refuse_lost "$((ord + 1))" "$cluster"
fi
k=1
while echo "$ids" | grep -qx "$((ord + 1 + 1000 * k))"; do k=$((k + 1)); done
id=$((ord + 1 + 1000 * k))
say "no member of cluster $cluster is at this pod's peer address $self_peer and this volume is" \
  "empty: member $((ord + 1)) was removed; replacing it as member $id (--join, then lockctl" \
  "member add $id)"
mkdir -p "$volume"
echo "$id" >"$volume/member-id.tmp" && mv "$volume/member-id.tmp" "$volume/member-id"
add_self "$id" &
start "$id" --join "$clients"
