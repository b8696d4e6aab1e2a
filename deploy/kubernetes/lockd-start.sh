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
#     every endpoint refuses the     -> bootstrap with --initial-cluster (a new cluster forming;
#     connection at once                  a peer with no cluster id decided refuses too)
#     none answers, and one timed    -> exit 1: a silent endpoint may be a live member (stale
#     out or failed otherwise             DNS, a loaded node); the pod restarts and asks again
#     this ordinal's member is at    -> bootstrap with --initial-cluster: its first start, later
#     this pod's address, the leader      than its peers' (it never ran, so it voted for and
#     answers, and every other member     acknowledged nothing); a member that timed out or
#     answers without recording an        refused the connection might have: exit 1, asked
#     incarnation for it (or has no       again after the restart
#     cluster id decided)
#     a member has this pod's peer   -> exit 1, naming it: this pod's identity ran and lost its
#     address and some member             data. The runbook's replacement: lockctl member remove
#     recorded it (or it is a             ID, delete the claim and the pod (the leader does not
#     replacement, 1003, ...)             answer: exit 1, asked again after the restart)
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
#   LOCKD_FLAGS         more lockd flags, split on spaces: TLS (--tls-cert ... --peer-ca ...)
#                       or --plaintext; lockd refuses to start with neither
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

# The cluster's answer to `lockctl status`, each endpoint asked on its own (one that times out
# must not hide the others): "cluster ID  term ... leader L ... (answered by node N)" then a table
# "ID ROLE CLIENT PEER MATCH LAG REACHABLE RECORDED", from the leader when it answers (lockctl asks
# it), else from the first member that answers. Empty when no member answers; $silent is then 1
# when some endpoint failed otherwise than by refusing at once (UNAVAILABLE: nothing listens, the
# name does not resolve, or the node has no cluster id decided): it timed out or erred, and may be
# a member of a running cluster (a stale DNS record, a loaded node), so its silence proves nothing.
# Sets $answer and $silent (not in a subshell: both are read by the caller).
cluster_status() {
  silent=0
  errors="$(mktemp)"
  for endpoint in $(echo "$clients" | tr , ' '); do
    if answer="$("$lockctl" --endpoints "$endpoint" --timeout-ms 3000 status 2>"$errors")"; then
      rm -f "$errors"
      return 0
    fi
    answer=""
    if ! grep -q "^lockctl: $endpoint: UNAVAILABLE: " "$errors"; then
      silent=1
      say "$endpoint did not answer: $(head -c 300 "$errors" | tr '\n' ' ')"
    fi
  done
  rm -f "$errors"
}
# The cluster id in an answer. Never empty in practice: a node with no cluster id decided answers
# Status UNAVAILABLE (cluster_status counts it as refusing), so an answer comes from a decided one.
decided_id() { echo "$1" | awk 'NR == 1 && $1 == "cluster" && $2 != "term" && $2 != "-" { print $2 }'; }
# "ID ROLE PEER" for each member in an answer.
member_rows() { echo "$1" | awk '$1 ~ /^[0-9]+$/ { print $1, $2, $4 }'; }
# The id of the member at this pod's peer address, or nothing.
member_at_self() { member_rows "$1" | awk -v p="$self_peer" '$3 == p { print $1; exit }'; }
# "yes" when the answer comes from the leader and it has recorded member $2's incarnation (it ran
# and talked to the leader), "no" when the leader has not (it never ran against it), empty when
# the answer is not the leader's.
recorded_by_leader() {
  echo "$1" | awk -v id="$2" '
    NR == 1 { for (i = 1; i < NF; i++) if ($i == "leader") leader = $(i + 1)
              node = $NF; sub(/\)$/, "", node) }
    $1 == id && leader == node && leader != "none" { print $8 }'
}
# Whether any member recorded member $1's incarnation, each asked for its own view (`status
# --local`): the leader may have been elected without ever hearing from it (it was down while
# member $1 ran), and a member that did may be a follower. Every member the answer $2 lists and
# every bootstrap endpoint is asked. "yes" when one recorded it; "no" when every other one
# answered without it or has no cluster id decided (it never took part: "cluster id not decided
# yet"); "unknown" otherwise (it may have): one timed out, failed, or refused the connection or
# did not resolve, which is also a listed voter restarting or crash-looping on a data dir that
# holds the record. This pod's own endpoint runs no lockd yet and is not counted.
recorded_by_any() {
  verdict=no
  errors="$(mktemp)"
  for endpoint in $( (echo "$clients" | tr , '\n'; echo "$2" | awk '$1 ~ /^[0-9]+$/ { print $3 }') |
    sort -u); do
    if own="$("$lockctl" --endpoints "$endpoint" --timeout-ms 3000 status --local 2>"$errors")"; then
      if [ "$(echo "$own" | awk -v id="$1" '$1 == id { print $8 }')" = yes ]; then
        say "$endpoint has recorded member $1's incarnation"
        verdict=yes
        break
      fi
    elif [ "$endpoint" != "$self_client" ] &&
      ! grep -q "^lockctl: $endpoint: UNAVAILABLE: cluster id not decided yet" "$errors"; then
      say "$endpoint did not answer: $(head -c 300 "$errors" | tr '\n' ' ')"
      verdict=unknown
    fi
  done
  rm -f "$errors"
  echo "$verdict"
}
# The runbook's procedure ("On Kubernetes", replace a member) for this pod's lost identity $1.
refuse_lost() {
  say "member $1 is this pod's identity (peer address $self_peer) in cluster $2 and this volume" \
    "is empty: it ran before and lost its data, and a member that forgot its log and votes must" \
    "not start again under its id. Replace it (docs/operations.md, \"On Kubernetes\"):" \
    "lockctl member remove $1, then kubectl delete pvc data-$POD_NAME (without waiting) and" \
    "kubectl delete pod $POD_NAME; the pod then comes back under a new id"
  exit 1
}

# Stops lockd (this script's process: it exec'd lockd) so the kubelet restarts the pod, which then
# decides again: for add_self, which runs in the background while lockd runs.
stop_lockd() {
  say "stopping lockd: the pod restarts and asks the cluster again"
  kill -TERM $$ 2>/dev/null || true
}

# Adds this node (started with --join) until it is a voter: AddMember waits for it to catch up,
# and resumes a learner that did not in time. Not before lockd answers on its client address: a
# joiner asks the cluster first and refuses to start if its id is a member already (up to 60 s:
# lockd waits up to 30 s for the cluster's answer). Asks again without a bound while the cluster
# does not answer or answers "another membership change is in progress" (two replacements at
# once: the other's add waits up to a minute for its learner); after 10 other refusals, or when
# lockd does not answer, it stops lockd so the pod restarts (a joiner never added would otherwise
# run on, live and never ready).
add_self() {
  n=0
  # Answered at all (SERVING or NOT_SERVING; a joiner not added yet is NOT_SERVING), not
  # UNREACHABLE. An add that came first would make lockd refuse to start: never add before.
  until "$lockctl" --endpoints "$self_client" --timeout-ms 1000 --json health 2>/dev/null |
      grep -q '"status":"\(NOT_\)\{0,1\}SERVING"'; do
    n=$((n + 1))
    if [ "$n" -ge 240 ]; then
      say "lockd did not answer on $self_client within 2 minutes: not adding node $1"
      stop_lockd
      return 1
    fi
    sleep 0.5
  done
  n=0
  add_errors="$(mktemp)"
  # Before each attempt the cluster is asked again: add only a learner (AddMember resumes it), or
  # a member missing while its data dir still says it is joining (never added). Missing otherwise
  # means an operator removed it since the pod started: never add it back.
  while :; do
    # lockd gone (it refused to start, or was stopped): nothing to add.
    if ! kill -0 $$ 2>/dev/null; then
      rm -f "$add_errors"
      return 1
    fi
    cluster_status
    role="$(member_rows "$answer" | awk -v id="$1" '$1 == id { print $2 }')"
    case "$role" in
      leader | follower)
        rm -f "$add_errors"
        return 0
        ;;
      learner) ;;
      *)
        if [ -n "$answer" ] && ! grep -qx "joining 1" "$data/cluster" 2>/dev/null; then
          say "member $1 is not a member of the cluster and its data dir is not joining" \
            "(removed meanwhile): not adding it back"
          rm -f "$add_errors"
          stop_lockd
          return 1
        fi
        ;;
    esac
    if [ -n "$answer" ]; then
      if "$lockctl" --endpoints "$clients" member add "$1" --peer "$self_peer" \
        --client "$self_client" >&2 2>"$add_errors"; then
        continue # the next round sees it a voter
      fi
      cat "$add_errors" >&2
      # 4: no answer (retry later); 3 with this message: the other change will finish.
      if ! grep -q "UNAVAILABLE\|DEADLINE_EXCEEDED\|another membership change is in progress" \
        "$add_errors"; then
        n=$((n + 1))
      fi
    fi
    if [ "$n" -ge 10 ]; then
      say "node $1 could not be added (refused 10 times); add it by hand:" \
        "lockctl member add $1 --peer $self_peer --client $self_client"
      rm -f "$add_errors"
      stop_lockd
      return 1
    fi
    sleep 3
  done
}

start() {
  # $LOCKD_FLAGS: split on spaces (TLS, or --plaintext; see the manifest).
  # shellcheck disable=SC2086
  exec "$lockd" --id "$1" --client-addr "$self_client" --peer-addr "$self_peer" \
    --http-addr "$http" --data-dir "$data" "$2" "$3" ${4:+"$4"} ${5:+"$5"} ${LOCKD_FLAGS:-}
}

if [ -f "$volume/member-id" ]; then
  # A replacement this script added: the same id and --join, always. It is added (again) only when
  # it never became a member: the cluster lists it as a learner (AddMember resumes it), or it is
  # missing and its data dir still says it is joining (stopped before the first add finished).
  # Missing otherwise means an operator removed it: never add it back (docs/operations.md).
  id="$(cat "$volume/member-id")"
  cluster_status
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
  if [ -z "$(ls -A "$data" 2>/dev/null)" ] && [ "$role" = learner ]; then
    # A learner whose volume was lost: --join would refuse (its id is listed). A learner holds no
    # vote and acknowledges nothing that counts, so it is removed and added again as a new data
    # dir. Refused (another change in progress, no quorum): exit, asked again after the restart.
    say "member $id is a learner and this volume is empty: removing it, then joining again"
    if ! "$lockctl" --endpoints "$clients" member remove "$id" >&2; then
      say "could not remove learner $id: asking again after a restart"
      exit 1
    fi
    role=""
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

# An empty volume on a bootstrap ordinal. Bootstrap flags when every endpoint refuses at once
# (nothing listens, or the cluster is forming: an undecided node refuses), or when this pod's
# member never ran: the leader answers and no member that answers has recorded an incarnation for
# it (a first start later than its peers'; it has voted and acknowledged nothing). Once it ran, a
# member at this pod's address may have acknowledged entries and votes, and the peers that
# remember it cannot all be counted on to refuse a wiped copy (two wiped members accept each
# other and would form a second, empty cluster at the same addresses): the operator replaces it.
cluster_status
if [ -z "$answer" ]; then
  if [ "$silent" = 1 ]; then
    # A member that cannot be reached is not a member that does not exist: never bootstrap on a
    # silence. Exit: the kubelet restarts the pod, and it asks again.
    say "not every endpoint refused the connection and none answered: not bootstrapping a new" \
      "cluster on an empty volume; asking again after a restart"
    exit 1
  fi
  # Every endpoint refused at once: nothing listens at any member's address, or no member has a
  # cluster id decided (it is forming). Also when the survivors of a majority loss are all down:
  # the runbook's "Losing quorum" is a restore into new volumes, not a restart on empty ones.
  say "no member answers: bootstrapping member $((ord + 1)) of a new cluster"
  start "$((ord + 1))" --initial-cluster "$members" --cluster-token "$LOCKD_CLUSTER_TOKEN"
fi
cluster="$(decided_id "$answer")"
lost="$(member_at_self "$answer")"
if [ -z "$lost" ] && member_rows "$answer" | awk '{ print $1 }' | grep -qx "$((ord + 1))"; then
  lost="$((ord + 1))"
fi
if [ "$lost" = "$((ord + 1))" ]; then
  case "$(recorded_by_leader "$answer" "$lost")" in
    no)
      case "$(recorded_by_any "$lost" "$answer")" in
        no)
          say "member $lost of cluster $cluster never ran (no member that answers, its leader" \
            "included, has recorded an incarnation for it): first start, bootstrapping member $lost"
          start "$lost" --initial-cluster "$members" --cluster-token "$LOCKD_CLUSTER_TOKEN"
          ;;
        yes) refuse_lost "$lost" "$cluster" ;;
        *)
          say "member $lost of cluster $cluster: its leader has recorded no incarnation for it," \
            "but another member did not answer (or refused) and may have: asking again after" \
            "a restart"
          exit 1
          ;;
      esac
      ;;
    yes) refuse_lost "$lost" "$cluster" ;;
    *)
      say "member $lost is in cluster $cluster but its leader did not answer: asking again" \
        "after a restart"
      exit 1
      ;;
  esac
fi
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
