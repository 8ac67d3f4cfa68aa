#!/usr/bin/env bash
# What recording costs in steady state (issue "Call recording streamed to encrypted storage",
# README "What recording costs"): careline-loadtest keeps CONCURRENCY calls up for HOLD
# seconds (demo-menu and demo-menu-inband: every caller streams audio all call long) against a
# fresh release server, without recording, then with `record_all` in each FORMAT, RUNS times
# each, interleaved. Prints the server's CPU over the hold (percent of one core, as
# careline-loadtest measures it), its peak RSS, the run time of its media, recording-writer
# and other threads since it started, and the same threads' CPU over the middle half of the
# hold (percent of one core; scheduler-exact, from /proc/PID/task/*/schedstat: no ramp in it,
# and with LONG=1 no call set up or torn down either).
#
#   benches/recording-cost-hold.sh [RUNS] [FORMAT...]      e.g. benches/recording-cost-hold.sh 5 wav
#   CONCURRENCY=1000 HOLD=30 THREADS=2 (generator threads; the defaults)
#   LONG=1: calls of about 100 s (demo-menu-long, demo-menu-inband-long) instead of 27 s, so no
#   call starts or ends during the hold (keep HOLD under 80): the steady state without churn.
#
# The generator runs on the same machine: on 2 cores runs spread by about ±4 points of a core,
# so take five or more runs per figure; on a larger machine give it more THREADS.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}; shift || true
formats=("${@:-wav}")
concurrency=${CONCURRENCY:-1000}
hold=${HOLD:-30}
threads=${THREADS:-2}
suffix=""; [ "${LONG:-0}" = 1 ] && suffix="-long"
cargo build -j2 --release -p careline --bin careline -p careline-loadtest --bin careline-loadtest
bin=$PWD/target/release/careline
loadtest=$PWD/target/release/careline-loadtest
. benches/common.sh
host_notes
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

one() { # label, format or "none"
  local label=$1 format=$2
  # As in recording-cost.sh: the last run's files are deleted, then left alone for 31 s (ext4
  # without a journal skips inodes freed less than 30 s ago when it creates a file).
  if [ -e "$work/data" ]; then rm -rf "$work/data"; sync; sleep 31; fi
  mkdir -p "$work/data"
  local recording=""
  [ "$format" != none ] && recording=$(printf '[recording]\nrecord_all = true\nformat = "%s"\n' "$format")
  cat >"$work/careline.toml" <<EOF
[sip]
listen = "127.0.0.1:5090"
max_calls = 20000
rate_limit_per_source = 0
[http]
listen = "127.0.0.1:8090"
[rtp]
ports = "20000-59999"
[prompts]
dir = "$PWD/prompts"
[flows]
dir = "$PWD/flows"
$recording
EOF
  "$bin" --config "$work/careline.toml" --data-dir "$work/data" serve --no-tls >"$work/$label.log" 2>&1 &
  local pid=$!
  for _ in $(seq 100); do curl -sf http://127.0.0.1:8090/healthz >/dev/null && break; sleep 0.2; done
  "$loadtest" run --scenario "loadtest/scenarios/demo-menu$suffix.toml" \
    --scenario "loadtest/scenarios/demo-menu-inband$suffix.toml" --rate 100 --threads "$threads" \
    --target 127.0.0.1:5090 --concurrency "$concurrency" --hold "$hold" --no-progress \
    --server-pid "$pid" --json >"$work/$label.json" 2>"$work/$label.err" &
  local lt=$!
  # The middle half of the hold: the ramp at 100 calls a second, then a quarter of the hold.
  sleep $((concurrency / 100 + hold / 4))
  local t0 a t1 b window
  t0=$(date +%s.%N); a=$(thread_times "$pid")
  sleep $((hold / 2))
  t1=$(date +%s.%N); b=$(thread_times "$pid")
  wait "$lt" || true
  window=$(awk -v t0="$t0" -v t1="$t1" -v a="$a" -v b="$b" 'BEGIN {
    split(a, x, " "); split(b, y, " "); t = (t1 - t0) * 1e7
    m = (y[1] - x[1]) / t; w = (y[2] - x[2]) / t; o = (y[3] - x[3]) / t
    printf "mid-hold: server %.1f %% of a core: media %.1f, writers %.1f, other %.1f", m + w + o, m, w, o }')
  local split
  split=$(split_since_start "$pid")
  kill -INT "$pid"; wait "$pid" || true
  python3 - "$work/$label.json" "$label" "$split" "$window" <<'EOF'
import json, sys
path, label, split, window = sys.argv[1:]
try:
    d = json.load(open(path))
except ValueError:
    print(f"{label:8} no result (see the loadtest's stderr)")
    sys.exit()
s, c = d["server"], d.get("calls", {})
print(f"{label:8} server CPU {s['cpu_percent']:5.1f} %   peak RSS {s['rss_max_bytes'] / 2**20:4.0f} MiB   "
      f"calls passed {c.get('passed')} failed {c.get('failed')}   ({split})\n         {window}")
EOF
}

for _ in $(seq "$runs"); do
  one none none
  for f in "${formats[@]}"; do
    one "$f" "$f"
  done
done
