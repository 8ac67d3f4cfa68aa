#!/usr/bin/env bash
# Which WebRTC library carries Careline's browser legs (issue 21)? Builds benches/webrtc-choice
# (its own workspace: neither candidate is built by the product or CI) and runs, interleaved
# RUNS times: a burst of BURST legs connecting at once, and LEGS legs connecting and then
# carrying AUDIO_SECS seconds of two-way 20 ms PCMU. Each run prints the server side's CPU and
# heap per leg (the client side, which a browser does, shares the thread but is not counted).
#
# Usage: benches/webrtc-choice.sh        (RUNS=3 BURST=200 LEGS=500 AUDIO_SECS=20
#                                         LIBS="str0m rtc")
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/common.sh
RUNS=${RUNS:-3}
BURST=${BURST:-200}
LEGS=${LEGS:-500}
AUDIO_SECS=${AUDIO_SECS:-20}
LIBS=${LIBS:-"str0m rtc"}
cargo build --release -j2 --manifest-path benches/webrtc-choice/Cargo.toml >&2
bin=benches/webrtc-choice/target/release/webrtc-choice
host_notes
for run in $(seq "$RUNS"); do
  for lib in $LIBS; do
    echo "== run $run: $lib, burst of $BURST"
    "$bin" "$lib" "$BURST" 0
    echo "== run $run: $lib, $LEGS legs with $AUDIO_SECS s of audio"
    "$bin" "$lib" "$LEGS" "$AUDIO_SECS"
  done
done
