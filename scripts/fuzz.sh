#!/usr/bin/env bash
# The fuzzing soak (docs/security.md, "## Fuzzing"): builds the `fuzz` preset (clang, libFuzzer,
# ASan + UBSan) and runs each target in turn for a bounded time from its checked-in corpus.
#   scripts/fuzz.sh --hours 1                    # every target, one hour each
#   scripts/fuzz.sh --minutes 10 lock_snapshot   # one target
#   scripts/fuzz.sh --seed                       # rewrite the seed-* files (release build)
#   scripts/fuzz.sh --replay FILE TARGET         # run one input (a crash-* file) under the fuzz build
#   --no-build: use the fuzz build as it is
# New interesting inputs go to build/fuzz/tests/fuzz/new-inputs/<target> (not checked in). A crash, leak,
# timeout or failed property is written to tests/fuzz/corpus/<target>/crash-<sha1> (or leak-,
# timeout-, oom-): commit it with the fix, and it becomes a regression case
# that every unit run replays. The run prints execs/s, coverage and corpus size per target and
# exits non-zero if any target found something (a target that dies at start-up, e.g. on a corpus
# file, gets its row and the others still run); `wall_s` is the time each target really ran
# (libFuzzer stops at its first finding). Runs at nice 19, one target at a time.
# Needs clang and libclang-rt-14-dev (libFuzzer): installed here with apt-get when missing (not by
# scripts/install-deps.sh, since CI never builds the fuzz preset).
set -euo pipefail
cd "$(dirname "$0")/.."

TARGETS=(peer_message lock_command lock_snapshot storage_records snapshot_assembler config access_policy)
seconds=600
mode=run
replay_file=""
build=1
picked=()
while [ $# -gt 0 ]; do
  case "$1" in
    --hours) seconds=$(( $2 * 3600 )); shift 2 ;;
    --minutes) seconds=$(( $2 * 60 )); shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --seed) mode=seed; shift ;;
    --no-build) build=0; shift ;;
    --replay) mode=replay; replay_file=$2; shift 2 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    -*) echo "fuzz.sh: unknown option $1" >&2; exit 2 ;;
    *) picked+=("$1"); shift ;;
  esac
done
[ ${#picked[@]} -eq 0 ] && picked=("${TARGETS[@]}")
for t in "${picked[@]}"; do
  [[ " ${TARGETS[*]} " == *" $t "* ]] || { echo "fuzz.sh: no target '$t' (${TARGETS[*]})" >&2; exit 2; }
done

if [ "$mode" = seed ]; then
  cmake --preset release >/dev/null
  cmake --build --preset release --target fuzz_make_corpus
  build/release/tests/fuzz/fuzz_make_corpus tests/fuzz/corpus
  exit 0
fi

# clang and its runtime (libFuzzer), installed the way scripts/install-deps.sh installs the rest.
ensure_clang() {
  local missing=()
  command -v clang++ >/dev/null || missing+=(clang)
  dpkg-query -W -f='${Status}' libclang-rt-14-dev 2>/dev/null | grep -q "install ok installed" ||
    missing+=(libclang-rt-14-dev)
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "fuzz.sh: not root and no sudo; install: ${missing[*]}" >&2; exit 1; }
    sudo="sudo"
  fi
  echo "fuzz.sh: installing ${missing[*]}"
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=300 \
    --no-install-recommends "${missing[@]}" >/dev/null
}

if [ $build -eq 1 ]; then
  ensure_clang
  cmake --preset fuzz >/dev/null
  cmake --build --preset fuzz --target fuzz_targets
fi
bin=build/fuzz/tests/fuzz

if [ "$mode" = replay ]; then
  [ ${#picked[@]} -eq 1 ] || { echo "fuzz.sh: --replay FILE needs exactly one TARGET" >&2; exit 2; }
  exec "$bin/${picked[0]}_fuzz" "$replay_file"
fi

mkdir -p build/fuzz/soak
found=0
echo "fuzz.sh: up to ${seconds} s per target"
printf '%-20s %8s %8s %10s %10s %10s %7s %7s %12s %8s\n' target wall_s cpu_s execs execs/s per_cpu_s \
  cov ft corpus findings
for t in "${picked[@]}"; do
  corpus=tests/fuzz/corpus/$t
  work=$bin/new-inputs/$t
  log=build/fuzz/soak/$t.log
  mkdir -p "$work" "$corpus"
  before=$(ls "$corpus" | grep -cE '^(crash|leak|timeout|oom)-' || true)
  # -malloc_limit_mb: one allocation above it is a finding (a decoder must not trust a length).
  # -timeout: one input taking longer is a finding (decoding is linear in the input).
  set +e
  # CPU seconds too: on a shared machine a nice 19 run gets little CPU, and execs per CPU second
  # is the figure that compares between runs.
  TIMEFORMAT='%U %S'
  start=$(date +%s)
  cpu=$( { time nice -n 19 "$bin/${t}_fuzz" -max_total_time="$seconds" -rss_limit_mb=2048 \
    -malloc_limit_mb=256 -timeout=10 -print_final_stats=1 -artifact_prefix="$corpus/" \
    "$work" "$corpus" >"$log" 2>&1; } 2>&1 )
  rc=$?
  wall=$(( $(date +%s) - start ))
  set -e
  # The last "user sys" line only: the shell may report a target killed by a signal first.
  cpu=$(awk '/^[0-9.]+ [0-9.]+$/ { c = $1 + $2; ok = 1 } END { if (ok) printf "%.1f", c }' <<<"$cpu")
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  after=$(ls "$corpus" | grep -cE '^(crash|leak|timeout|oom)-' || true)
  # None when the target stopped before its first status line (a corpus file that crashes it).
  stat=$(grep -E '^#[0-9]+.*(DONE|pulse|NEW|REDUCE)' "$log" | tail -1 || true)
  cov=$(sed -n 's/.*cov: \([0-9]*\).*/\1/p' <<<"$stat")
  ft=$(sed -n 's/.*ft: \([0-9]*\).*/\1/p' <<<"$stat")
  corp=$(sed -n 's/.*corp: \([0-9]*\/[0-9a-zA-Z]*\).*/\1/p' <<<"$stat")
  eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
  per_cpu=$(awk -v r="${runs:-0}" -v c="${cpu:-0}" 'BEGIN { print (c > 0 ? int(r / c) : "?") }')
  printf '%-20s %8s %8s %10s %10s %10s %7s %7s %12s %8s\n' "$t" "$wall" "${cpu:-?}" "${runs:-?}" \
    "${eps:-?}" "$per_cpu" "${cov:-?}" "${ft:-?}" "${corp:-?}" $(( after - before ))
  if [ $rc -ne 0 ] || [ "$after" -gt "$before" ]; then
    found=1
    echo "  $t: exit $rc; see $log; new files: $(ls -t "$corpus" | grep -E '^(crash|leak|timeout|oom)-' | head -$(( after - before )) | tr '\n' ' ')"
  fi
done
exit $found
