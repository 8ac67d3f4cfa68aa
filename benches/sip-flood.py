#!/usr/bin/env python3
"""Floods a SIP port with INVITEs or REGISTERs at a paced rate, from one or many loopback
addresses, for benches/sip-flood.sh. Prints the number of datagrams sent.

Usage: sip-flood.py HOST:PORT METHOD RATE SECONDS SOURCES
  METHOD   INVITE or REGISTER
  RATE     datagrams per second over all sources (0: as fast as one thread can send)
  SOURCES  how many source addresses (127.0.0.2, 127.0.0.3, ...), each its own socket
"""

import socket
import sys
import time


def main() -> None:
    target, method, rate, seconds, sources = sys.argv[1:6]
    host, port = target.rsplit(":", 1)
    dest = (host, int(port))
    rate, seconds, sources = float(rate), float(seconds), int(sources)
    socks = []
    for i in range(sources):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((f"127.0.{2 + i // 250}.{2 + i % 250}", 0))
        s.setblocking(False)
        socks.append(s)
    froms = [f"{s.getsockname()[0]}:{s.getsockname()[1]}" for s in socks]
    sent = 0
    start = time.monotonic()
    end = start + seconds
    batch = 64
    while True:
        now = time.monotonic()
        if now >= end:
            break
        if rate > 0:
            due = int((now - start) * rate)
            if sent >= due:
                time.sleep(min(0.001, max(0.0, (sent + 1) / rate - (now - start))))
                continue
            n = min(batch, due - sent)
        else:
            n = batch
        for _ in range(n):
            k = sent % sources
            frm = froms[k]
            if method == "REGISTER":
                msg = (
                    f"REGISTER sip:{target} SIP/2.0\r\nVia: SIP/2.0/UDP {frm};branch=z9hG4bKfl{sent}\r\n"
                    f"From: <sip:user{sent % 1000}@{target}>;tag=f{sent}\r\nTo: <sip:user{sent % 1000}@{target}>\r\n"
                    f"Call-ID: flood-{sent}@bench\r\nCSeq: 1 REGISTER\r\nMax-Forwards: 70\r\n"
                    f"Contact: <sip:user@{frm}>\r\nContent-Length: 0\r\n\r\n"
                )
            else:
                msg = (
                    f"INVITE sip:100@{target} SIP/2.0\r\nVia: SIP/2.0/UDP {frm};branch=z9hG4bKfl{sent}\r\n"
                    f"From: <sip:flood@{frm}>;tag=f{sent}\r\nTo: <sip:100@{target}>\r\n"
                    f"Call-ID: flood-{sent}@bench\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n"
                    f"Contact: <sip:flood@{frm}>\r\nContent-Length: 0\r\n\r\n"
                )
            try:
                socks[k].sendto(msg.encode(), dest)
            except BlockingIOError:
                pass
            sent += 1
        # Drain what the server answered (401s, 403s), as a real flooder's kernel would.
        for s in socks:
            try:
                while True:
                    s.recv(65536)
            except BlockingIOError:
                pass
    print(sent)


if __name__ == "__main__":
    main()
