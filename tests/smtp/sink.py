"""A mail relay for tests: aiosmtpd's SMTP server on a loopback port of its own choosing.

Usage: sink.py MAILDIR [--tls CERT KEY]

Prints the port on stdout once it listens, then writes each message it takes to
MAILDIR/NNN.eml (the raw message as received, envelope recipients in X-Rcpt-To). With --tls it
offers STARTTLS with that certificate and refuses mail before it (RFC 3207's "required").
Runs until stdin closes (the test dropping its handle), so no sink outlives its test.
"""

import asyncio
import os
import ssl
import sys

from aiosmtpd.smtp import SMTP


class Save:
    def __init__(self, folder):
        self.folder = folder
        self.n = 0

    async def handle_DATA(self, server, session, envelope):
        self.n += 1
        path = os.path.join(self.folder, "%03d.eml" % self.n)
        head = "X-Rcpt-To: %s\r\n" % ", ".join(envelope.rcpt_tos)
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(head.encode() + envelope.original_content)
        os.rename(tmp, path)
        return "250 OK"


async def main():
    folder = sys.argv[1]
    tls = None
    if len(sys.argv) == 5 and sys.argv[2] == "--tls":
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(sys.argv[3], sys.argv[4])
    handler = Save(folder)
    loop = asyncio.get_running_loop()

    def factory():
        return SMTP(handler, hostname="sink.test", tls_context=tls,
                    require_starttls=tls is not None)

    server = await loop.create_server(factory, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    # Stop when the test's end of stdin closes.
    await loop.run_in_executor(None, sys.stdin.read)
    server.close()


asyncio.run(main())
