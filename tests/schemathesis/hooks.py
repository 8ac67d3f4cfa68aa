"""Schemathesis hooks for Careline's API (tests/schemathesis.rs loads this file).

WHIP bodies (RFC 9725) are SDP text, application/sdp and application/trickle-ice-sdpfrag,
which Schemathesis has no serializer for: they go on the wire as UTF-8 text.
"""

import schemathesis


@schemathesis.serializer("application/sdp", "application/trickle-ice-sdpfrag")
def sdp_text(ctx, value):
    if isinstance(value, bytes):
        return value
    return str(value).encode("utf-8")
