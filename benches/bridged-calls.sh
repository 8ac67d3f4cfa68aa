#!/usr/bin/env bash
# What a bridged call costs (issue 21): N phone callers (careline-loadtest, SIP and RTP, PCMU)
# go into a queue of a release `careline serve`; once all wait, N browser agents (full-ICE
# webrtc-rs peers from benches/webrtc-choice, one thread, DTLS-SRTP, PCMU) answer them through
# POST /api/v1/queues/bench/answer, so every phone is bridged to a browser, and each side sends
# a 20 ms frame per tick for HOLD seconds. Reported per level: browsers connected, frames the
# browsers missed, the server's CPU over the bridged stretch (from /proc) and per bridged call,
# RSS growth per call, and the phone side's verdict from careline-loadtest (failed calls, RTP
# loss, p99 deviation from the 20 ms schedule) for the whole call.
#
# CODECS="pcmu opus" runs each level once per browser codec, one after the other: with
# `opus` the browsers offer Opus alone and send real Opus frames, so the server transcodes
# every frame both ways (Opus 48 kHz <-> PCMU 8 kHz, resampled), as for a Chrome agent whose
# offer Careline's G.711 preference did not match.
#
# Usage: benches/bridged-calls.sh            (LEVELS="100 250 500" HOLD=20 CODECS=pcmu; each
#        level's generator outputs and server log are kept in target/bench/bridged-calls/)
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/common.sh
. scripts/packages.sh
ensure_packages bc curl
LEVELS=${LEVELS:-"100 250 500"}
HOLD=${HOLD:-20}
CODECS=${CODECS:-pcmu}
cargo build --release -j2 -p careline -p careline-loadtest --bin careline --bin careline-loadtest >&2
cargo build --release -j2 --manifest-path benches/webrtc-choice/Cargo.toml >&2
host_notes
bin=target/release/careline
phones=target/release/careline-loadtest
browsers=benches/webrtc-choice/target/release/webrtc-choice
work=$(mktemp -d)
server=
stop() {
  if [ -n "$server" ]; then kill -9 "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  server=
}
trap 'stop; rm -rf "$work"' EXIT
mkdir -p "$work/flows"
cat > "$work/flows/queue.json" <<'FLOW'
{"Version": "2019-10-30", "StartAction": "target", "Actions": [
  {"Identifier": "target", "Type": "UpdateContactTargetQueue", "Parameters": {"QueueId": "bench"},
   "Transitions": {"NextAction": "transfer", "Errors": [{"NextAction": "end", "ErrorType": "NoMatchingError"}]}},
  {"Identifier": "transfer", "Type": "TransferContactToQueue", "Parameters": {},
   "Transitions": {"NextAction": "end", "Errors": [
     {"NextAction": "end", "ErrorType": "QueueAtCapacity"},
     {"NextAction": "end", "ErrorType": "NoMatchingError"}]}},
  {"Identifier": "end", "Type": "DisconnectParticipant", "Parameters": {}, "Transitions": {}}]}
FLOW
waiting() { curl -sf http://127.0.0.1:28080/metrics | awk '/^careline_queue_contacts\{queue="bench"\}/ {print $2}'; }
hz=$(getconf CLK_TCK)
echo "| bridged calls | browser codec | browsers connected | browser frames missing | phone calls passed | phone RTP lost | phone p99 deviation | server CPU | per bridged call | RSS growth per call |"
echo "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
for n in $LEVELS; do
for codec in $CODECS; do
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
default = "queue"
[queues.bench]
[webrtc]
max_connecting_per_source = 10000
connect_timeout_secs = 60
[log]
level = "warn"
TOML
  token=$("$bin" --config "$work/careline.toml" user add bench-agent --role agent | grep '^clt_')
  "$bin" serve --config "$work/careline.toml" > "$work/server.log" 2>&1 &
  server=$!
  for _ in $(seq 100); do curl -sf http://127.0.0.1:28080/healthz >/dev/null 2>&1 && break; sleep 0.1; done
  idle=$(rss "$server")
  "$phones" run --scenario loadtest/scenarios/queued-bridged.toml --target 127.0.0.1:25060 \
    --calls "$n" --concurrency "$n" --rate 100 --threads 1 --no-progress \
    --max-duration 300 > "$work/phones.out" 2>&1 &
  gen=$!
  for _ in $(seq 600); do [ "$(waiting)" = "$n" ] && break; sleep 0.1; done
  CODEC=$codec CARELINE_TOKEN=$token "$browsers" whip http://127.0.0.1:28080/api/v1/queues/bench/answer "$n" "$HOLD" \
    > "$work/browsers.out" 2>&1 &
  agents=$!
  until grep -q READY "$work/browsers.out" 2>/dev/null; do sleep 0.2; done
  sleep 2
  t0=$(ticks "$server"); s0=$(date +%s.%N)
  sleep $((HOLD - 4))
  t1=$(ticks "$server"); s1=$(date +%s.%N)
  mem=$(rss "$server")
  wait "$agents"
  line=$(grep '^legs' "$work/browsers.out")
  connected=$(echo "$line" | sed -E 's/.*connected ([0-9]+).*/\1/')
  # Negative when the browsers' one thread fell behind its own 20 ms schedule and so heard
  # more frames than its ticks (nothing was lost); shown as 0.
  missing=$(echo "$line" | sed -E 's/.*\((-?[0-9.]+) % missing\).*/\1/' | sed -E 's/^-.*/0/')
  wait "$gen" || true
  passed=$(sed -nE 's/^calls: ([0-9]+) placed, ([0-9]+) passed.*/\2 of \1/p' "$work/phones.out")
  lost=$(sed -nE 's/.*RTP from server: .* \(([0-9.]+ %)\).*/\1/p' "$work/phones.out")
  dev=$(sed -nE 's/.*deviation from 20 ms schedule.*p99 +([0-9.]+ ms).*/\1/p' "$work/phones.out")
  cpu=$(echo "($t1 - $t0) / $hz / ($s1 - $s0) * 100" | bc -l)
  per=$(echo "$cpu / ($connected + 0.000001)" | bc -l)
  growth=$(echo "($mem - $idle) / ($connected + 0.000001)" | bc -l)
  mkdir -p target/bench/bridged-calls
  for f in phones.out browsers.out server.log; do cp "$work/$f" "target/bench/bridged-calls/$n-$codec-$f"; done
  printf "| %d | %s | %d | %s %% | %s | %s | %s | %.0f %% | %.3f %% | %.0f KiB |\n" "$n" "$codec" "$connected" "$missing" \
    "$passed" "$lost" "$dev" "$cpu" "$per" "$growth"
  stop
done
done
