"""File formats from CONTENT (magic bytes), never from the name.

A user (or a model) can call a WAV "photo.png" or a PDF "notes.docx"; the assistant's
router and the document reader both decide from the bytes. Only the first 64 bytes
(plus, for ZIP and Ogg containers, a bounded peek further in) are read.
"""

from __future__ import annotations

import os
from pathlib import Path

HEAD = 64
PEEK = 4096  # ZIP member names and Ogg codec headers sit near the start

MIME = {
    "png": "image/png", "jpeg": "image/jpeg", "gif": "image/gif", "webp": "image/webp", "bmp": "image/bmp",
    "tiff": "image/tiff", "heic": "image/heic", "mp4": "video/mp4", "mov": "video/quicktime",
    "webm": "video/webm", "avi": "video/x-msvideo", "flv": "video/x-flv", "mpegts": "video/mp2t",
    "mpeg": "video/mpeg", "ogv": "video/ogg", "3gp": "video/3gpp", "wav": "audio/wav", "mp3": "audio/mpeg",
    "flac": "audio/flac", "ogg": "audio/ogg", "opus": "audio/opus", "aiff": "audio/aiff", "amr": "audio/amr",
    "m4a": "audio/mp4", "pdf": "application/pdf",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "odf": "application/vnd.oasis.opendocument", "epub": "application/epub+zip", "zip": "application/zip",
    "ole": "application/x-ole-storage", "rtf": "application/rtf", "text": "text/plain",
}
KIND = {
    **dict.fromkeys(("png", "jpeg", "gif", "webp", "bmp", "tiff", "heic"), "image"),
    **dict.fromkeys(("mp4", "mov", "webm", "avi", "flv", "mpegts", "mpeg", "ogv", "3gp"), "video"),
    **dict.fromkeys(("wav", "mp3", "flac", "ogg", "opus", "aiff", "amr", "m4a"), "audio"),
    **dict.fromkeys(("pdf", "docx", "xlsx", "pptx", "odf", "epub", "ole", "rtf"), "document"),
    "text": "text", "zip": "file",
}
_AUDIO_BRANDS = (b"M4A ", b"M4B ", b"M4P ", b"F4A ")
_HEIC_BRANDS = (b"heic", b"heix", b"mif1", b"msf1", b"avif", b"heim", b"heis")


def sniff_bytes(head: bytes) -> str:
    """A format name (a key of ``MIME``) for the first bytes of a file, or ``unknown``."""
    h = head
    if h.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if h.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if h[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if h[:4] == b"RIFF" and len(h) >= 12:
        return {b"WEBP": "webp", b"WAVE": "wav", b"AVI ": "avi"}.get(h[8:12], "unknown")
    if h.startswith(b"BM") and len(h) >= 14 and h[6:10] == b"\0\0\0\0":
        return "bmp"
    if h[:4] in (b"II*\0", b"MM\0*"):
        return "tiff"
    if h[4:8] == b"ftyp":
        brand = h[8:12]
        if brand in _AUDIO_BRANDS:
            return "m4a"
        if brand in _HEIC_BRANDS:
            return "heic"
        if brand == b"qt  ":
            return "mov"
        if brand.startswith(b"3g"):
            return "3gp"
        return "mp4"
    if h.startswith(b"\x1a\x45\xdf\xa3"):
        return "webm"  # Matroska/WebM
    if h.startswith(b"FLV"):
        return "flv"
    if h.startswith(b"\x00\x00\x01\xba") or h.startswith(b"\x00\x00\x01\xb3"):
        return "mpeg"
    if len(h) > 188 and h[0] == 0x47 and h[188] == 0x47:
        return "mpegts"
    if h.startswith(b"ID3") or (len(h) > 1 and h[0] == 0xFF and (h[1] & 0xE0) == 0xE0 and (h[1] & 0x06)):
        return "mp3"
    if h.startswith(b"fLaC"):
        return "flac"
    if h.startswith(b"OggS"):
        if b"theora" in h or b"\x80theora" in h:
            return "ogv"
        return "opus" if b"OpusHead" in h else "ogg"
    if h[:4] == b"FORM" and h[8:12] in (b"AIFF", b"AIFC"):
        return "aiff"
    if h.startswith(b"#!AMR"):
        return "amr"
    if h.startswith(b"%PDF-"):
        return "pdf"
    if h.startswith(b"{\\rtf"):
        return "rtf"
    if h.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"):
        return "ole"  # legacy .doc/.xls/.ppt
    if h.startswith(b"PK\x03\x04"):
        if b"word/" in h:
            return "docx"
        if b"xl/" in h:
            return "xlsx"
        if b"ppt/" in h:
            return "pptx"
        if b"mimetypeapplication/epub" in h:
            return "epub"
        if b"mimetypeapplication/vnd.oasis" in h:
            return "odf"
        return "zip"
    if _looks_text(h):
        return "text"
    return "unknown"


def _looks_text(h: bytes) -> bool:
    if not h or b"\0" in h:
        return False
    try:
        h.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(h) - 3:  # a multibyte character cut at the end is fine
            return False
    return True


def sniff_file(path: str | os.PathLike[str]) -> tuple[str, int]:
    """(format name, size in bytes) of the file at ``path``, from its first bytes."""
    p = Path(path)
    try:
        size = p.stat().st_size
        with p.open("rb") as f:
            head = f.read(PEEK)
    except FileNotFoundError:
        raise FileNotFoundError(f"file not found: {p}") from None
    except IsADirectoryError:
        raise IsADirectoryError(f"{p} is a directory, not a file") from None
    return sniff_bytes(head), size
