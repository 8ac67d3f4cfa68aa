#!/usr/bin/env bash
# SIP flood resilience (issue 20): while other addresses flood Careline's SIP port with
# INVITEs or REGISTERs, does a caller from a trusted address still get its calls answered,
# and at what flood rate does that stop? For each flood (method, number of source addresses,
# rate) SIPp places CALLS calls from 127.0.0.1 (trusted) while benches/sip-flood.py floods
# from 127.0.0.2... (untrusted: their INVITEs and REGISTERs are challenged), and the bench
# prints the calls answered, the flood actually sent, what the server dropped by its
# per-source limit, and the server's CPU over the level.
#
# Usage: benches/sip-flood.sh            (CALLS=40 FLOOD_SECONDS=12 RATES="5000 20000 max"
#                                          SOURCES="1 200" METHODS="INVITE REGISTER")
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/common.sh
. scripts/packages.sh
ensure_packages sip-tester python3 bc curl
cargo build --release -j2 -p careline --bin careline >&2
host_notes

CALLS=${CALLS:-40}
SECONDS_PER_LEVEL=${FLOOD_SECONDS:-12}
RATES=${RATES:-"5000 20000 max"}
SOURCES=${SOURCES:-"1 200"}
METHODS=${METHODS:-"INVITE REGISTER"}

work=$(mktemp -d)
server=
stop() {
  if [ -n "$server" ]; then
    kill -9 "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
  fi
  pkill -f "benches/sip-flood.py" 2>/dev/null || true
  rm -rf "$work"
}
trap stop EXIT
port=$(python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
http=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$work/careline.toml" <<TOML
[sip]
listen = "127.0.0.1:$port"
trusted_networks = ["127.0.0.1/32"]
[http]
listen = "127.0.0.1:$http"
[log]
level = "warn"
TOML
target/release/careline --config "$work/careline.toml" --data-dir "$work/data" serve --no-tls \
  >"$work/server.log" 2>&1 &
server=$!
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$http/healthz" >/dev/null 2>&1 && break
  sleep 0.2
done
metric() { curl -s "http://127.0.0.1:$http/metrics" | awk -v m="$1" '$1 == m {print $2}' | head -1; }
hz=$(getconf CLK_TCK)

printf '%-8s %7s %8s %10s %10s %9s %12s %8s %9s\n' flood sources "rate/s" "sent/s" "limited/s" "shed/s" "calls ok" "srv CPU" "srv RSS"
for method in $METHODS; do
  for sources in $SOURCES; do
    for rate in $RATES; do
      r=$rate; [ "$rate" = max ] && r=0
      limited0=$(metric 'careline_sip_rejected_total{reason="rate_limited"}'); limited0=${limited0:-0}
      shed0=$(metric 'careline_sip_rejected_total{reason="untrusted_limit"}'); shed0=${shed0:-0}
      c0=$(ticks "$server"); t0=$(date +%s.%N)
      python3 benches/sip-flood.py "127.0.0.1:$port" "$method" "$r" "$SECONDS_PER_LEVEL" "$sources" \
        >"$work/sent" &
      flood=$!
      sleep 1
      # Calls from the trusted address while the flood runs: 5 per second, 10 at once.
      sipp -sn uac "127.0.0.1:$port" -i 127.0.0.1 -p "$(python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')" -s 100 -m "$CALLS" -r 5 -l 10 \
        -timeout "$((SECONDS_PER_LEVEL + 20))s" -recv_timeout 8000 -nostdin \
        -trace_stat -stf "$work/stat.csv" >/dev/null 2>&1 || true
      wait $flood
      t1=$(date +%s.%N); c1=$(ticks "$server")
      limited1=$(metric 'careline_sip_rejected_total{reason="rate_limited"}'); limited1=${limited1:-0}
      shed1=$(metric 'careline_sip_rejected_total{reason="untrusted_limit"}'); shed1=${shed1:-0}
      ok=$(awk -F';' 'NR == 1 {for (i = 1; i <= NF; i++) if ($i == "SuccessfulCall(C)") c = i} END {print $c}' "$work/stat.csv")
      secs=$(echo "$t1 - $t0" | bc -l)
      rss=$(awk '/VmRSS/ {printf "%.0f", $2 / 1024}' "/proc/$server/status")
      printf '%-8s %7s %8s %10.0f %10.0f %9.0f %12s %7.0f%% %5s MiB\n' "$method" "$sources" "$rate" \
        "$(echo "$(cat "$work/sent") / $SECONDS_PER_LEVEL" | bc -l)" \
        "$(echo "($limited1 - $limited0) / $secs" | bc -l)" \
        "$(echo "($shed1 - $shed0) / $secs" | bc -l)" "${ok:-0}/$CALLS" \
        "$(echo "($c1 - $c0) / $hz / $secs * 100" | bc -l)" "$rss"
      rm -f "$work/stat.csv"
    done
  done
done
kill -0 $server 2>/dev/null && echo "server alive after every flood" || echo "SERVER DIED: $work/server.log"
