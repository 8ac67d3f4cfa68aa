#!/usr/bin/env bash
# What recording costs (issue "Call recording streamed to encrypted storage", README "What
# recording costs"): 1,000 SIPp IVR calls (100/s, ~17 s each) against a fresh release server,
# without recording, then with `--record-all` in each FORMAT, RUNS times each, interleaved.
# Prints the server's CPU-seconds (utime + stime) and peak RSS per run, and the run time of
# its media, recording-writer and other threads since it started (scheduler-exact).
#
#   benches/recording-cost.sh [RUNS] [FORMAT...]     e.g. benches/recording-cost.sh 3 wav opus
#
# Needs sipp and the SIPp conformance scenario ($CARELINE_CONFORMANCE_DIR/sipp, else
# ../shared/conformance/sipp). Run on a quiet machine: on a 2-core VM the
# run-to-run spread is about ±1.5 s of ~12 s.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}; shift || true
formats=("${@:-wav}")
scenario_dir=${SIPP_SCENARIOS:-${CARELINE_CONFORMANCE_DIR:-../shared/conformance}/sipp}
cargo build -j2 --release --bin careline
bin=$PWD/target/release/careline
. benches/common.sh
host_notes
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# SIPp writes its logs next to the scenario: run a copy.
cp "$scenario_dir/ivr-rfc2833-digit.xml" "$scenario_dir/caller-8k.ulaw" "$work/"

one() { # label, serve args...
  local label=$1; shift
  # The last run's 2,000 files are deleted, then left alone for 31 s: on ext4 without a
  # journal (this VM's disk) new inodes skip any freed less than dirty_expire_centisecs
  # (30 s) ago, and that scan (recently_deleted) showed in the writers' profile right after
  # a delete. A recording server does not delete recordings as fast as it makes them.
  if [ -e "$work/data" ]; then rm -rf "$work/data"; sync; sleep 31; fi
  mkdir -p "$work/data"
  "$bin" serve --data-dir "$work/data" --no-tls --sip-listen 127.0.0.1:5090 \
    --http-listen 127.0.0.1:8090 --rtp-ports 30000-39999 "$@" >"$work/$label.log" 2>&1 &
  local pid=$!
  for _ in $(seq 100); do curl -sf http://127.0.0.1:8090/healthz >/dev/null && break; sleep 0.2; done
  local before after
  before=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  (cd "$work" && timeout 120 sipp 127.0.0.1:5090 -sf ivr-rfc2833-digit.xml -s 100 -m 1000 \
    -l 1000 -r 100 -t u1 -i 127.0.0.1 -p 5300 -mp 16000 -nostdin >"$work/$label.sipp" 2>&1) || true
  sleep 3
  after=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  local hwm failed split
  hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
  # Where it went, per thread kind (benches/common.sh): media clocks, recording writers, the
  # rest (tokio, SQLite, ..., threads that have exited included).
  split=$(split_since_start "$pid")
  failed=$(awk -F'|' '/Failed call/ {gsub(/ /, "", $3); v=$3} END {print v}' "$work/$label.sipp")
  kill -INT "$pid"; wait "$pid" || true
  awk -v l="$label" -v t="$(( after - before ))" -v hz="$(getconf CLK_TCK)" -v m="$hwm" -v f="${failed:-?}" -v sp="$split" \
    'BEGIN { printf "%-8s server CPU %6.2f s   peak RSS %4d MiB   failed calls %s   (%s)\n", l, t / hz, m / 1024, f, sp }'
}

for _ in $(seq "$runs"); do
  one none
  for f in "${formats[@]}"; do
    printf '[recording]\nformat = "%s"\n' "$f" >"$work/$f.toml"
    one "$f" --record-all --config "$work/$f.toml"
  done
done
