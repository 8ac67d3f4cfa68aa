#!/usr/bin/env bash
# Outbound dialer pacing (issue 22): a burst of CALLS placements through one trunk with
# `calls_per_second` set; SIPp's UAS stands in for the carrier and logs when each INVITE
# arrives. Prints, per rate: the rate achieved over the burst, the most INVITEs the carrier saw
# in any one second (must not exceed the limit), the smallest gap between two, and how long
# the API took to answer the placements (they queue for their turn).
#
# Usage: benches/dialer-pacing.sh            (CALLS=60 RATES="2 10 30" MAX_CALLS=0)
# SERVER_BIN=target/debug/careline skips the release build (not CARELINE_*: those are settings): pacing is timer-driven, so the
# build profile does not change these figures at such rates.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/common.sh
. scripts/packages.sh
ensure_packages sip-tester python3 curl
if [ -z "${SERVER_BIN:-}" ]; then
  cargo build --release -j2 -p careline --bin careline >&2
  SERVER_BIN=target/release/careline
fi
host_notes

CALLS=${CALLS:-60}
RATES=${RATES:-"2 10 30"}
MAX_CALLS=${MAX_CALLS:-0}

free_udp() { python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
free_tcp() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

work=$(mktemp -d)
server=
sipp_pid=
stop() {
  [ -n "$server" ] && { kill -9 "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; }
  [ -n "$sipp_pid" ] && { kill -9 "$sipp_pid" 2>/dev/null || true; wait "$sipp_pid" 2>/dev/null || true; }
  [ -n "${KEEP:-}" ] || rm -rf "$work"; [ -z "${KEEP:-}" ] || echo "kept $work" >&2
}
trap stop EXIT

printf '%-10s %6s %14s %16s %12s %18s\n' "limit/s" calls "achieved/s" "most in 1 s" "min gap ms" "placed in (s)"
for rate in $RATES; do
  run="$work/$rate"
  mkdir -p "$run/flows"
  # The flow hangs up at once: only the INVITEs' timing is measured.
  cat >"$run/flows/hang-up.json" <<'JSON'
{"Version": "2019-10-30", "StartAction": "bye", "Actions": [
  {"Identifier": "bye", "Type": "DisconnectParticipant", "Parameters": {}, "Transitions": {}}]}
JSON
  uas=$(free_udp)
  control=$(free_udp)
  (cd "$run" && exec sipp -sn uas -i 127.0.0.1 -p "$uas" -cp "$control" -mp "$(free_udp)" \
      -t u1 -nostdin -trace_msg -message_file "$run/uas.log" >/dev/null 2>&1) &
  sipp_pid=$!
  sip=$(free_udp)
  http=$(free_tcp)
  cat >"$run/careline.toml" <<TOML
[sip]
listen = "127.0.0.1:$sip"
[http]
listen = "127.0.0.1:$http"
[rtp]
timeout_secs = 0
[flows]
dir = "$run/flows"
default = "hang-up"
[log]
level = "warn"
[sip.trunks.carrier]
proxy = "sip:127.0.0.1:$uas"
calls_per_second = $rate
max_calls = $MAX_CALLS
TOML
  "$SERVER_BIN" --config "$run/careline.toml" --data-dir "$run/data" serve --no-tls \
    >"$run/server.log" 2>&1 &
  server=$!
  for _ in $(seq 150); do
    curl -sf "http://127.0.0.1:$http/healthz" >/dev/null 2>&1 && break
    sleep 0.2
  done
  token=$("$SERVER_BIN" --config "$run/careline.toml" --data-dir "$run/data" \
    user add bench --role supervisor 2>/dev/null | grep '^clt_')
  placed=$(python3 - "$http" "$token" "$CALLS" <<'PY'
import concurrent.futures, json, sys, time, urllib.request
http, token, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
def place(i):
    req = urllib.request.Request(f"http://127.0.0.1:{http}/api/v1/calls", method="POST",
        data=json.dumps({"to": f"+1555010{i:04d}"}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        return urllib.request.urlopen(req, timeout=600).status
    except urllib.error.HTTPError as e:
        return e.code
t0 = time.monotonic()
with concurrent.futures.ThreadPoolExecutor(n) as pool:
    codes = list(pool.map(place, range(n)))
bad = [c for c in codes if c != 201]
print(f"{time.monotonic() - t0:.1f}" + (f" ({len(bad)} refused: {sorted(set(bad))})" if bad else ""))
PY
)
  sleep 2
  python3 - "$run/uas.log" "$rate" "$CALLS" "$placed" <<'PY'
import datetime, re, sys
log, rate, calls, placed = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
text = open(log, errors="replace").read()
first = {}
# SIPp -trace_msg: a dashed line with the time, "UDP message received ...", then the message.
# A retransmission (same Call-ID) is the same call: its first arrival counts.
for m in re.finditer(r"-{10,} (\d{4}-\d\d-\d\d\s+\d\d:\d\d:\d\d\.\d+)\s*\n\s*\w+ message received[^\n]*\n\s*\n?(INVITE [^\n]*\n(?:[^\n]+\n)*)", text):
    at = datetime.datetime.fromisoformat(m.group(1).replace("  ", " ")).timestamp()
    cid = re.search(r"(?im)^(?:call-id|i):\s*(\S+)", m.group(2))
    key = cid.group(1) if cid else at
    first[key] = min(first.get(key, at), at)
times = sorted(first.values())
if len(times) < 2:
    print(f"{rate:<10g} {len(times):6d}   (too few INVITEs seen)"); sys.exit()
span = times[-1] - times[0]
achieved = (len(times) - 1) / span if span > 0 else float("inf")
most, j = 0, 0
for i, t in enumerate(times):
    while times[j] <= t - 1.0:
        j += 1
    most = max(most, i - j + 1)
gap = min(b - a for a, b in zip(times, times[1:])) * 1000
print(f"{rate:<10g} {len(times):6d} {achieved:14.2f} {most:16d} {gap:12.1f} {placed:>18}")
PY
  kill -9 "$server" "$sipp_pid" 2>/dev/null || true
  wait "$server" "$sipp_pid" 2>/dev/null || true
  server=
  sipp_pid=
done
