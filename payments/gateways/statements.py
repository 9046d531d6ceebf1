"""Streaming statement downloads, shared by the adapters.

A statement can be millions of lines, so nothing here holds one in memory: the answer is
written to a temporary file in chunks while observers (a digest, a byte count) see each chunk,
and the readers parse it again from disk line by line. The numbers on the lines are read with
small hand-written parsers because ``Decimal`` and ``strptime`` cost more than the rest of a
line's work together.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import os
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path

import requests

from payments.gateways.base import GatewayUnavailable
from payments.gateways.signing import CHINA_TZ

CHUNK_BYTES = 256 * 1024


def statement_dir() -> str | None:
    """Where statements are downloaded (``STATEMENT_TMP_DIR``; the system's temp dir if unset)."""
    from django.conf import settings

    # The adapters also run outside a configured Django (the SDK tests).
    return (getattr(settings, "STATEMENT_TMP_DIR", "") if settings.configured else "") or None


def save_stream(
    response: requests.Response, *, label: str, observers: list[Callable[[bytes], None]]
) -> tuple[Path, int]:
    """Write a ``stream=True`` response to a temporary file chunk by chunk; each chunk is shown
    to every observer first. Checks ``Content-Length`` when the server sent one. The caller
    owns (and deletes) the file."""
    fd, name = tempfile.mkstemp(prefix=f"oncepay-{label}-", suffix=".part", dir=statement_dir())
    path = Path(name)
    size = 0
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in response.iter_content(chunk_size=CHUNK_BYTES):
                for observe in observers:
                    observe(chunk)
                out.write(chunk)
                size += len(chunk)
        expected = response.headers.get("Content-Length")
        if expected is not None and expected.isdigit() and int(expected) != size:
            raise GatewayUnavailable(f"{label} download: {size} of {expected} bytes")
    except requests.RequestException as exc:
        path.unlink(missing_ok=True)
        response.close()
        raise GatewayUnavailable(f"{label} download: {type(exc).__name__}") from exc
    except BaseException:
        path.unlink(missing_ok=True)
        response.close()  # read to the end, it went back to the pool by itself
        raise
    return path, size


class PlainSha1:
    """SHA1 of the uncompressed bytes of a download that may be gzipped (decided by the first
    two bytes), and SHA1 of the bytes as sent: WeChat's ``hash_value`` is documented over the
    original bill, and some integrations see it over the download."""

    def __init__(self) -> None:
        self.plain = hashlib.sha1()  # noqa: S324 - the protocol's checksum
        self.sent = hashlib.sha1()  # noqa: S324
        self._gunzip: zlib._Decompress | None = None
        self._started = False

    def __call__(self, chunk: bytes) -> None:
        self.sent.update(chunk)
        if not self._started:
            self._started = True
            if chunk[:2] == b"\x1f\x8b":
                self._gunzip = zlib.decompressobj(16 + zlib.MAX_WBITS)
        if self._gunzip is None:
            self.plain.update(chunk)
            return
        try:
            self.plain.update(self._gunzip.decompress(chunk))
        except zlib.error as exc:
            raise GatewayUnavailable(f"wechat bill download: not gzip ({exc})") from exc

    def matches(self, expected: str) -> bool:
        if self._gunzip is not None:
            self.plain.update(self._gunzip.flush())
            self._gunzip = None
        wanted = expected.strip().lower()
        return wanted in (self.plain.hexdigest(), self.sent.hexdigest())


def yuan_to_fen(text: str) -> int:
    """``-12.30`` → -1230, fast. Raises ValueError on anything that is not yuan with at most
    two decimals."""
    text = text.strip()
    # The usual shape, two decimals, first.
    if len(text) > 3 and text[-3] == "." and text[-2:].isdigit():
        whole = text[:-3]
        sign = -1 if whole.startswith("-") else 1
        digits = whole[1:] if sign < 0 else whole
        if digits.isdigit():
            return sign * (int(digits) * 100 + int(text[-2:]))
    negative = text.startswith("-")
    if negative:
        text = text[1:]
    whole, dot, frac = text.partition(".")
    if not whole.isdigit() or (dot and not (frac.isdigit() and len(frac) <= 2)):
        raise ValueError(f"not an amount: {text!r}")
    fen = int(whole) * 100 + (int(frac.ljust(2, "0")) if frac else 0)
    return -fen if negative else fen


@functools.lru_cache(maxsize=4096)  # a busy day repeats each second on several lines
def china_time(text: str) -> dt.datetime | None:
    """``yyyy-MM-dd HH:mm:ss`` (China time) as an aware datetime; None if empty or malformed."""
    text = text.strip()
    if len(text) != 19 or text[4] != "-" or text[10] != " ":
        return None
    try:
        return dt.datetime(
            int(text[0:4]), int(text[5:7]), int(text[8:10]),
            int(text[11:13]), int(text[14:16]), int(text[17:19]), tzinfo=CHINA_TZ,
        )  # fmt: skip
    except ValueError:
        return None
