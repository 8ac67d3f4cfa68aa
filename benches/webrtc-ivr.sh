#!/usr/bin/env bash
# What a browser IVR call costs the server (issue 21): LEGS browser-like callers (full-ICE
# webrtc-rs peers from benches/webrtc-choice, one thread, each on its own loopback socket) call
# a release `careline serve` by WHIP into a flow that holds the line, then send and hear a
# 20 ms PCMU frame each way per tick for HOLD seconds. Reported per level: calls connected,
# frames missing, the server's CPU over the hold (from /proc) and its RSS growth per call.
#
# Usage: benches/webrtc-ivr.sh            (LEVELS="100 250 500" HOLD=20)
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/common.sh
. scripts/packages.sh
ensure_packages bc curl
LEVELS=${LEVELS:-"100 250 500"}
HOLD=${HOLD:-20}
cargo build --release -j2 -p careline --bin careline >&2
cargo build --release -j2 --manifest-path benches/webrtc-choice/Cargo.toml >&2
host_notes
bin=target/release/careline
callers=benches/webrtc-choice/target/release/webrtc-choice
work=$(mktemp -d)
server=
stop() {
  if [ -n "$server" ]; then kill -9 "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  server=
}
trap 'stop; rm -rf "$work"' EXIT
mkdir -p "$work/flows"
cat > "$work/flows/hold.json" <<'FLOW'
{"Version": "2019-10-30", "StartAction": "hold", "Actions": [
  {"Identifier": "hold", "Type": "GetParticipantInput",
   "Parameters": {"PromptId": "welcome", "InputTimeLimitSeconds": "3600", "StoreInput": "False"},
   "Transitions": {"NextAction": "hold", "Conditions": [], "Errors": [
     {"NextAction": "hold", "ErrorType": "InputTimeLimitExceeded"},
     {"NextAction": "hold", "ErrorType": "NoMatchingCondition"},
     {"NextAction": "hold", "ErrorType": "NoMatchingError"}]}}]}
FLOW
hz=$(getconf CLK_TCK)
echo "| browser calls | connected | frames missing | server CPU | per call | server RSS growth per call |"
echo "| ---: | ---: | ---: | ---: | ---: | ---: |"
for n in $LEVELS; do
  rm -rf "$work/data"
  cat > "$work/careline.toml" <<TOML
data_dir = "$work/data"
[sip]
listen = "127.0.0.1:25060"
tls_listen = "127.0.0.1:25061"
max_calls = 10000
[http]
listen = "127.0.0.1:28080"
[rtp]
ports = "30000-39999"
timeout_secs = 900
[flows]
dir = "$work/flows"
default = "hold"
[webrtc]
public_calls = true
max_connecting_per_source = 10000
[log]
level = "warn"
TOML
  "$bin" serve --config "$work/careline.toml" > "$work/server.log" 2>&1 &
  server=$!
  for _ in $(seq 100); do curl -sf http://127.0.0.1:28080/healthz >/dev/null 2>&1 && break; sleep 0.1; done
  idle=$(rss "$server")
  "$callers" whip http://127.0.0.1:28080/api/v1/calls/whip "$n" "$HOLD" > "$work/callers.out" 2>&1 &
  gen=$!
  until grep -q READY "$work/callers.out" 2>/dev/null; do sleep 0.2; done
  sleep 2
  t0=$(ticks "$server"); s0=$(date +%s.%N)
  sleep $((HOLD - 4))
  t1=$(ticks "$server"); s1=$(date +%s.%N)
  mem=$(rss "$server")
  wait "$gen"
  line=$(grep '^legs' "$work/callers.out")
  connected=$(echo "$line" | sed -E 's/.*connected ([0-9]+).*/\1/')
  missing=$(echo "$line" | sed -E 's/.*\(([0-9.]+) % missing\).*/\1/')
  cpu=$(echo "($t1 - $t0) / $hz / ($s1 - $s0) * 100" | bc -l)
  per=$(echo "$cpu / $connected" | bc -l)
  growth=$(echo "($mem - $idle) / $connected" | bc -l)
  printf "| %d | %d | %s %% | %.0f %% | %.3f %% | %.0f KiB |\n" "$n" "$connected" "$missing" "$cpu" "$per" "$growth"
  stop
done
