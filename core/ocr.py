"""OCR with Debian's ``tesseract`` binary (``apt-get install tesseract-ocr``): the text of an
image, or its words with their boxes. Shared by ``vision.ocr`` (when no vision model is
configured), the document reader (scanned PDF pages) and PC control (finding a button by
its label on a screenshot). A subprocess on a PNG piped through stdin: no Python binding,
and a timeout that always holds.
"""

from __future__ import annotations

import io
import math
import re
import shutil
import subprocess
from dataclasses import dataclass
from typing import Any

from core.tools import ToolError

_LANG = re.compile(r"^[A-Za-z0-9_]+(\+[A-Za-z0-9_]+)*$")
MAX_OCR_PIXELS = 16_000_000


@dataclass(frozen=True)
class Word:
    """One word tesseract read, in the original image's pixels."""

    text: str
    left: int
    top: int
    width: int
    height: int
    conf: float  # 0-100
    line: tuple[int, int, int]  # (block, paragraph, line): words on one line share it

    @property
    def center(self) -> tuple[int, int]:
        return self.left + self.width // 2, self.top + self.height // 2


def available(binary: str = "tesseract") -> bool:
    return shutil.which(binary) is not None


def _run(im: Any, args: list[str], *, language: str, binary: str, timeout: float) -> tuple[bytes, float]:
    """Run tesseract on ``im`` (scaled for legibility); returns stdout and the scale applied."""
    from PIL import Image

    exe = shutil.which(binary)
    if exe is None:
        raise ToolError("OCR needs tesseract: `apt-get install tesseract-ocr` (or configure a vision model)")
    if not _LANG.match(language):
        raise ToolError(f"language must look like 'eng' or 'eng+deu', got {language!r}")
    w, h = im.size
    scale = 1.0
    if max(w, h) < 1000:  # tesseract reads small glyphs badly: give it ~2x
        scale = 2.0
    elif w * h > MAX_OCR_PIXELS:
        scale = math.sqrt(MAX_OCR_PIXELS / (w * h))
    if scale != 1.0:
        im = im.resize((max(1, int(w * scale)), max(1, int(h * scale))), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    im.convert("L").save(buf, format="PNG")
    try:
        proc = subprocess.run([exe, "stdin", "stdout", "-l", language, *args], input=buf.getvalue(),
                              capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise ToolError(f"tesseract took longer than {timeout:.0f} s on this image") from None
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip()
        if "Failed loading language" in err or "Error opening data file" in err:
            pkgs = " ".join(f"tesseract-ocr-{lang.lower()}" for lang in language.split("+"))
            raise ToolError(f"tesseract has no data for language {language!r}: apt-get install {pkgs}")
        raise ToolError(f"tesseract failed: {err[-400:] or f'exit status {proc.returncode}'}")
    return proc.stdout, scale


def ocr_text(im: Any, *, language: str = "eng", binary: str = "tesseract", timeout: float = 120.0) -> str:
    """The text tesseract reads in a PIL image."""
    out, _ = _run(im, ["--psm", "3"], language=language, binary=binary, timeout=timeout)
    return re.sub(r"\n{3,}", "\n\n", out.decode("utf-8", "replace")).strip()


def ocr_words(im: Any, *, language: str = "eng", binary: str = "tesseract", timeout: float = 60.0,
              min_conf: float = 30.0) -> list[Word]:
    """The words in a PIL image with their boxes (tesseract's TSV output), in reading order."""
    out, scale = _run(im, ["--psm", "11", "tsv"], language=language, binary=binary, timeout=timeout)
    words = []
    for row in out.decode("utf-8", "replace").splitlines()[1:]:
        cols = row.split("\t")
        if len(cols) < 12 or cols[0] != "5" or not cols[11].strip():
            continue
        conf = float(cols[10])
        if conf < min_conf:
            continue
        left, top, width, height = (round(int(c) / scale) for c in cols[6:10])
        words.append(Word(cols[11].strip(), left, top, width, height, conf,
                          (int(cols[2]), int(cols[3]), int(cols[4]))))
    return words
