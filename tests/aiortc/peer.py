"""A scripted WebRTC peer on aiortc (PyPI), for Careline's browser-leg tests.

aiortc is a second, independent WebRTC stack (Python; full ICE, DTLS, SRTP, Opus through
PyAV): a call that works with it and with Chromium is not shaped to one implementation.

    python3 peer.py URL --codec opus|pcmu [--token TOKEN] --heard FILE

It offers audio with only the given codec, POSTs the offer to URL (WHIP, RFC 9725: Careline's
`/api/v1/calls/whip` or an agent's answer endpoint), applies the answer, and then:
- writes everything it hears to FILE as raw 16-bit 8 kHz mono (appended as it arrives);
- prints one JSON line per event on stdout: {"event": "answered", ...}, {"event": "connected"},
  {"event": "closed"};
- takes one command per line on stdin: `tone HZ` (send a sine tone), `silence`,
  `dtmf DIGITS` (in-band DTMF, 100 ms each with 100 ms gaps: aiortc has no RFC 4733 sender),
  `hangup` (DELETE the session), or end of input (close and exit).

Tests never touch a non-loopback address: only a loopback host candidate is gathered and no
STUN server is asked (aiortc would otherwise ask Google's).
"""

import argparse
import asyncio
import fractions
import json
import math
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import aioice.ice
import av
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)

aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]

RATE = 48000
FRAME = 960  # 20 ms
DTMF = {
    "1": (697, 1209), "2": (697, 1336), "3": (697, 1477),
    "4": (770, 1209), "5": (770, 1336), "6": (770, 1477),
    "7": (852, 1209), "8": (852, 1336), "9": (852, 1477),
    "*": (941, 1209), "0": (941, 1336), "#": (941, 1477),
}


def say(**event):
    print(json.dumps(event), flush=True)


class Voice(MediaStreamTrack):
    """What the peer says: silence, a tone, or DTMF digits, paced at 20 ms frames."""

    kind = "audio"

    def __init__(self):
        super().__init__()
        self.sent = 0
        self.start = None
        self.plan = []  # (frequencies, frames) segments played before the steady sound
        self.steady = ()

    def tone(self, hz):
        self.plan, self.steady = [], (hz,)

    def silence(self):
        self.plan, self.steady = [], ()

    def dtmf(self, digits):
        for d in digits:
            self.plan.append((DTMF[d], 5))
            self.plan.append(((), 5))

    async def recv(self):
        if self.start is None:
            self.start = time.time()
        wait = self.start + self.sent * FRAME / RATE - time.time()
        if wait > 0:
            await asyncio.sleep(wait)
        if self.plan:
            freqs, left = self.plan[0]
            if left <= 1:
                self.plan.pop(0)
            else:
                self.plan[0] = (freqs, left - 1)
        else:
            freqs = self.steady
        n0 = self.sent * FRAME
        samples = bytearray()
        for i in range(FRAME):
            t = (n0 + i) / RATE
            v = sum(math.sin(2 * math.pi * f * t) for f in freqs) * 6000
            samples += int(v).to_bytes(2, "little", signed=True)
        frame = av.AudioFrame(format="s16", layout="mono", samples=FRAME)
        frame.planes[0].update(bytes(samples))
        frame.sample_rate = RATE
        frame.pts = n0
        frame.time_base = fractions.Fraction(1, RATE)
        self.sent += 1
        return frame


async def listen(track, path):
    """Appends what `track` carries to `path`, as 8 kHz mono 16-bit."""
    resampler = av.AudioResampler(format="s16", layout="mono", rate=8000)
    with open(path, "ab", buffering=0) as out:
        while True:
            try:
                frame = await track.recv()
            except Exception:
                return
            for f in resampler.resample(frame):
                out.write(bytes(f.planes[0])[: f.samples * 2])


def http(method, url, token, body=None):
    req = urllib.request.Request(url, data=body, method=method)
    if token:
        req.add_header("Authorization", "Bearer " + token)
    if body is not None:
        req.add_header("Content-Type", "application/sdp")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("--codec", choices=["opus", "pcmu"], required=True)
    p.add_argument("--token")
    p.add_argument("--heard", required=True)
    a = p.parse_args()

    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    voice = Voice()
    transceiver = pc.addTransceiver(voice, direction="sendrecv")
    wanted = "audio/opus" if a.codec == "opus" else "audio/PCMU"
    codecs = [c for c in RTCRtpSender.getCapabilities("audio").codecs if c.mimeType == wanted]
    transceiver.setCodecPreferences(codecs)
    tasks = []

    @pc.on("track")
    def on_track(track):
        tasks.append(asyncio.ensure_future(listen(track, a.heard)))

    @pc.on("connectionstatechange")
    def on_state():
        if pc.connectionState in ("connected", "failed", "closed"):
            say(event=pc.connectionState)

    await pc.setLocalDescription(await pc.createOffer())
    loop = asyncio.get_running_loop()
    status, headers, body = await loop.run_in_executor(
        None, http, "POST", a.url, a.token, pc.localDescription.sdp.encode()
    )
    location = headers.get("Location") or headers.get("location")
    say(
        event="answered",
        status=status,
        location=location,
        call_id=headers.get("Careline-Call-Id") or headers.get("careline-call-id"),
        body=body,
    )
    if status != 201:
        await pc.close()
        return
    await pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))
    session = urllib.parse.urljoin(a.url, location)

    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        cmd, _, arg = line.strip().partition(" ")
        if cmd == "tone":
            voice.tone(float(arg))
        elif cmd == "silence":
            voice.silence()
        elif cmd == "dtmf":
            voice.dtmf(arg)
        elif cmd == "hangup":
            status, _, body = await loop.run_in_executor(None, http, "DELETE", session, a.token)
            say(event="hung_up", status=status, body=body)
        say(event="done", command=cmd)
    await pc.close()
    for t in tasks:
        t.cancel()


asyncio.run(main())
