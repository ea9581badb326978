"""Secrets never leave edgevid: the one function every printed or written URI goes through.

    redact("rtsp://admin:PW@cam/stream?token=abc")  ->  "rtsp://admin:***@cam/stream?token=***"

It takes a URI or any line that contains URIs (an error message, a GStreamer pipeline with
``rtspsrc location=rtsp://...`` or ``user-pw=...``): the password of every ``user:password@``
and the value of every password-like ``key=value`` become ``***``. Errors shown by the CLI,
the ``source`` of every JSON record (so every MQTT payload), the summary and the status lines
all pass through it; the real URI is used only to open the stream.
"""

from __future__ import annotations

import re

MASK = "***"
# key=value pairs whose value is a secret (URI query strings, GStreamer properties)
SECRET_KEYS = (
    "password", "passwd", "pwd", "pass", "user-pw", "secret", "token", "access_token",
    "auth", "authorization", "api_key", "apikey", "key", "sig", "signature", "credential",
    "credentials",
)  # fmt: skip
_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^/\s:@?#\"']*):[^\s/]*@")
_KEY_VALUE = re.compile(
    r"(?P<head>(?<![A-Za-z0-9_\-])(?:" + "|".join(map(re.escape, SECRET_KEYS)) + r")=)"
    r"[^&\s;!\"',)]+",
    re.IGNORECASE,
)


def redact(text: str) -> str:
    """``text`` (a URI, or a line holding URIs) with every password and token as ``***``."""
    text = _USERINFO.sub(lambda m: f"{m['head']}:{MASK}@", str(text))
    return _KEY_VALUE.sub(lambda m: f"{m['head']}{MASK}", text)
