#!/usr/bin/env bash
# Browser callers against phone callers (issue 21): careline-loadtest places N calls of the
# ~100 s demo menu (RFC 4733 keys; every prompt recognized) into a release `careline serve`,
# once as phones (SIP, RTP) and once as browsers (--whip: WHIP, ICE, DTLS-SRTP), interleaved
# per level, holding N calls for HOLD seconds. Reported per run: calls passed, setup p50/p99,
# the server's RTP schedule deviation p99, loss, and the server's CPU (over the hold) and peak
# RSS from the load tester's --server-pid sampling.
#
# Usage: benches/browser-callers.sh            (LEVELS="100 250 500" HOLD=20)
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/common.sh
. scripts/packages.sh
ensure_packages curl jq
LEVELS=${LEVELS:-"100 250 500"}
HOLD=${HOLD:-20}
cargo build --release -j2 -p careline -p careline-loadtest >&2
host_notes
bin=target/release/careline
gen=target/release/careline-loadtest
work=$(mktemp -d)
server=
stop() {
  if [ -n "$server" ]; then kill -9 "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  server=
}
trap 'stop; rm -rf "$work"' EXIT
echo "| callers | calls | passed | setup p50 | setup p99 | deviation p99 | RTP lost | server CPU | per call | server RSS peak |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
for n in $LEVELS; do
  for kind in phone browser; do
    rm -rf "$work/data"
    cat > "$work/careline.toml" <<TOML
data_dir = "$work/data"
[sip]
listen = "127.0.0.1:25060"
tls_listen = "127.0.0.1:25061"
max_calls = 10000
rate_limit_per_source = 0
[http]
listen = "127.0.0.1:28080"
[rtp]
ports = "30000-39999"
[prompts]
dir = "$PWD/prompts"
[flows]
dir = "$PWD/flows"
[webrtc]
public_calls = true
max_connecting_per_source = 10000
[log]
level = "warn"
TOML
    "$bin" serve --config "$work/careline.toml" > "$work/server.log" 2>&1 &
    server=$!
    for _ in $(seq 100); do curl -sf http://127.0.0.1:28080/healthz >/dev/null 2>&1 && break; sleep 0.1; done
    args=(run --json --no-progress --target 127.0.0.1:25060 --server-pid "$server"
      --scenario loadtest/scenarios/demo-menu-long.toml
      --concurrency "$n" --hold "$HOLD" --rate 50)
    [ "$kind" = browser ] && args+=(--whip 127.0.0.1:28080)
    "$gen" "${args[@]}" > "$work/report.json" 2> "$work/gen.err" || true
    jq -r --arg kind "$kind" --argjson n "$n" '
      "| \($kind) | \($n) | \(.calls.passed) | \(.setup.p50_ms | . * 10 | round / 10) ms | \(.setup.p99_ms | . * 10 | round / 10) ms | \(.rtp.schedule_deviation.p99_ms | . * 100 | round / 100) ms | \(.rtp.lost) | \(.server.cpu_percent | round) % | \(.server.cpu_percent / $n * 1000 | round / 1000) % | \(.server.rss_max_bytes / 1048576 | round) MiB |"' \
      "$work/report.json" || { echo "| $kind | $n | (no report) |"; tail -5 "$work/gen.err"; }
    stop
  done
done
