#!/usr/bin/env bash
# Regenerates the synthetic callers' speech with espeak-ng and sox (Debian packages
# `espeak-ng`, `sox`): 8 kHz 16-bit mono, what a phone line carries.
set -euo pipefail
cd "$(dirname "$0")"
tmp=$(mktemp --suffix .wav)
espeak-ng -v en-gb -s 140 -w "$tmp" \
  "Hello, I am calling about my appointment next Tuesday. I would like to speak with a nurse \
about my prescription, and I have a question about the results of my blood test."
sox "$tmp" -r 8000 -b 16 -c 1 caller.wav norm -3
rm -f "$tmp"
