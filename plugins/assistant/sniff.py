"""Input type from a file's CONTENT (magic bytes), never from its name: the router sends
a WAV called "photo.png" to the speech model anyway. The format table lives in
``core.sniff`` (the document plugin reads files by content too)."""

from __future__ import annotations

import os
from pathlib import Path

from core.sniff import KIND, MIME, sniff_bytes, sniff_file

from .turn import Attachment

__all__ = ["detect", "sniff_bytes"]


def detect(path: str | os.PathLike[str]) -> Attachment:
    """An ``Attachment`` for ``path`` with its kind and MIME type taken from the bytes."""
    p = Path(path)
    try:
        fmt, size = sniff_file(p)
    except FileNotFoundError:
        raise FileNotFoundError(f"attachment not found: {p}") from None
    except IsADirectoryError:
        raise IsADirectoryError(f"attachment is a directory, not a file: {p}") from None
    return Attachment(path=str(p), kind=KIND.get(fmt, "file"), mime_type=MIME.get(fmt, "application/octet-stream"),
                      size=size)
