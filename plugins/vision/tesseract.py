"""OCR without a VLM: Debian's ``tesseract`` binary (``apt-get install tesseract-ocr``), run
as a subprocess on a PNG piped through stdin, so no Python binding is needed."""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import Any

from core.tools import ToolError

_LANG = re.compile(r"^[A-Za-z0-9_]+(\+[A-Za-z0-9_]+)*$")
MAX_OCR_PIXELS = 16_000_000


def tesseract_path(binary: str = "tesseract") -> str | None:
    return shutil.which(binary)


def tesseract(im: Any, *, language: str = "eng", binary: str = "tesseract", psm: int = 3,
              timeout: float = 120.0) -> str:
    """The text tesseract reads in a PIL image."""
    import io
    import math

    from PIL import Image

    exe = tesseract_path(binary)
    if exe is None:
        raise ToolError("OCR without a vision model needs tesseract: `apt-get install tesseract-ocr` "
                        "(or configure a VLM with role = \"vlm\" and use engine = \"vlm\")")
    if not _LANG.match(language):
        raise ToolError(f"language must look like 'eng' or 'eng+deu', got {language!r}")
    w, h = im.size
    if max(w, h) < 1000:  # tesseract reads small glyphs badly: give it ~2x
        im = im.resize((w * 2, h * 2), Image.Resampling.LANCZOS)
    elif w * h > MAX_OCR_PIXELS:
        s = math.sqrt(MAX_OCR_PIXELS / (w * h))
        im = im.resize((int(w * s), int(h * s)), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    im.convert("L").save(buf, format="PNG")
    try:
        proc = subprocess.run([exe, "stdin", "stdout", "-l", language, "--psm", str(psm)], input=buf.getvalue(),
                              capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise ToolError(f"tesseract took longer than {timeout:.0f} s on this image") from None
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip()
        if "Failed loading language" in err or "Error opening data file" in err:
            pkgs = " ".join(f"tesseract-ocr-{lang.lower()}" for lang in language.split("+"))
            raise ToolError(f"tesseract has no data for language {language!r}: apt-get install {pkgs}")
        raise ToolError(f"tesseract failed: {err[-400:] or f'exit status {proc.returncode}'}")
    text = proc.stdout.decode("utf-8", "replace")
    return re.sub(r"\n{3,}", "\n\n", text).strip()
