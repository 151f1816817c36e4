"""Image input for every tool that takes a picture: where the bytes come from, and how they
become pixels safely (shared by vision, imagegen and any third-party plugin).

An image argument is one of
- a path inside the configured allowed roots (``[paths] allowed_roots``);
- an ``http(s)://`` URL (``file:``, loopback, private, link-local and reserved addresses are
  refused unless ``[plugin.vision] allow_private_urls = true``);
- a ``data:image/...;base64,`` URL or bare base64;
- MCP image content (``{"type": "image", "data": "<base64>", "mimeType": "image/png"}``).

Every source is size-capped in bytes *before* decoding (a download stops at the cap), the
format is sniffed from the content (the extension is not trusted), the pixel count is read
from the header and capped *before* the pixels are decoded (decompression bombs), and the
decode itself must complete (truncated files fail). All of that is a ``ToolError`` with a
message that says what was wrong. PIL is imported lazily.
"""

from __future__ import annotations

import base64
import binascii
import io
import ipaddress
import math
import re
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urljoin, urlsplit

import msgspec

from core.paths import confined_file
from core.tools import ToolError

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage


class McpImage(msgspec.Struct):
    """MCP image content, as a client sends it (unknown keys such as annotations are ignored)."""

    data: str
    type: Literal["image"] = "image"
    mimeType: str | None = None  # MCP spells it so


ImageSource = str | McpImage


class ImageLimits(msgspec.Struct, frozen=True, kw_only=True):
    max_bytes: int = 20 * 1024 * 1024
    max_decode_pixels: int = 40_000_000  # checked from the header, before decoding
    min_pixels: int = 56 * 56  # what the model sees: resized up to at least this
    max_pixels: int = 1280 * 28 * 28  # ...and down to at most this
    max_aspect: float = 150.0  # Qwen-VL refuses beyond 200:1
    allow_private_urls: bool = False
    url_timeout: float = 20.0
    max_redirects: int = 5
    section: str = "plugin.vision"  # the loom.toml section whose settings these are (named in errors)


# Magic bytes -> PIL format name. Only formats a VLM image processor takes.
_MAGIC: list[tuple[bytes, int, str]] = [
    (b"\x89PNG\r\n\x1a\n", 0, "PNG"),
    (b"\xff\xd8\xff", 0, "JPEG"),
    (b"GIF87a", 0, "GIF"),
    (b"GIF89a", 0, "GIF"),
    (b"WEBP", 8, "WEBP"),
    (b"BM", 0, "BMP"),
    (b"II*\x00", 0, "TIFF"),
    (b"MM\x00*", 0, "TIFF"),
]
SUPPORTED = "PNG, JPEG, GIF, WebP, BMP or TIFF"
_B64 = re.compile(r"^[A-Za-z0-9+/=_\-\s]+$")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):")


def sniff_format(head: bytes) -> str | None:
    for magic, offset, fmt in _MAGIC:
        if head[offset : offset + len(magic)] == magic:
            if fmt == "WEBP" and head[:4] != b"RIFF":
                continue
            return fmt
    return None


def _looks_like(head: bytes) -> str:
    """A human guess at what non-image content is, for the error message."""
    h = head.lstrip()
    if h.startswith(b"%PDF"):
        return "a PDF document"
    if h[:5].lower() in (b"<?xml", b"<svg ") or b"<svg" in h[:200].lower():
        return "SVG/XML (vector images are not supported; export a PNG)"
    if h[:5].lower() in (b"<!doc", b"<html"):
        return "an HTML page"
    if h.startswith(b"PK\x03\x04"):
        return "a ZIP archive"
    if h[4:8] == b"ftyp":
        return "a video/HEIF container (convert it to PNG or JPEG; videos go to vision.video)"
    if not h:
        return "empty"
    try:
        h[:512].decode("utf-8")
        return "text"
    except UnicodeDecodeError:
        return "unknown binary data"


# --- where the bytes come from ----------------------------------------------------------


def describe_source(source: ImageSource) -> str:
    if isinstance(source, McpImage):
        return "the image content"
    if source.startswith("data:"):
        return "the data URL"
    if len(source) > 120:
        return "the base64 image"
    return repr(source)


def read_source(source: ImageSource, *, roots: list[Path], limits: ImageLimits) -> bytes:
    """The raw bytes of an image argument, size-capped before anything decodes them."""
    if isinstance(source, McpImage):
        return _b64(source.data, limits, "the image content")
    s = source.strip()
    if not s:
        raise ToolError("the image argument is empty: give a path, an http(s) URL, a data URL or base64")
    if s.startswith("data:"):
        return _data_url(s, limits)
    m = _SCHEME.match(s)
    if m and len(m.group(1)) > 1:  # a one-letter "scheme" would be a Windows drive
        scheme = m.group(1).lower()
        if scheme in ("http", "https"):
            return fetch_url(s, limits)
        raise ToolError(f"URL scheme {scheme!r} is not allowed for images: use http(s), a data URL, base64, "
                        "or a path inside the allowed roots")
    if _is_base64(s) and not (s[0] in "/~" and Path(s).expanduser().exists()):
        return _b64(s, limits, "the base64 image")
    return read_path(s, roots=roots, limits=limits)


def _is_base64(s: str) -> bool:
    if len(s) < 64 or not _B64.match(s):
        return False
    if "." not in s:  # a path nearly always has an extension; base64 never has a dot
        return True
    return False


def _b64(text: str, limits: ImageLimits, what: str) -> bytes:
    text = re.sub(r"\s+", "", text)
    if len(text) * 3 // 4 > limits.max_bytes:
        raise ToolError(f"{what} is about {len(text) * 3 // 4:,} bytes, over the {limits.max_bytes:,}-byte limit")
    try:
        if "-" in text or "_" in text:
            return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ToolError(f"{what} is not valid base64: {exc}") from None


def _data_url(url: str, limits: ImageLimits) -> bytes:
    header, sep, payload = url.partition(",")
    if not sep:
        raise ToolError("malformed data URL: expected data:image/<type>;base64,<data>")
    if not header.endswith(";base64"):
        raise ToolError("only base64 data URLs are supported (data:image/png;base64,...)")
    return _b64(payload, limits, "the data URL")


def confined_path(text: str, *, roots: list[Path], max_bytes: int, section: str = "plugin.vision") -> Path:
    """The real path of ``text`` if it is a regular file inside the roots and within the byte cap."""
    return confined_file(text, roots, max_bytes=max_bytes, limit_setting=f"[{section}] settings")


def read_path(text: str, *, roots: list[Path], limits: ImageLimits) -> bytes:
    real = confined_path(text, roots=roots, max_bytes=limits.max_bytes, section=limits.section)
    with real.open("rb") as f:
        data = f.read(limits.max_bytes + 1)  # the file may grow between stat and read
    if len(data) > limits.max_bytes:
        raise ToolError(f"{text!r} is over the {limits.max_bytes:,}-byte image limit")
    return data


# --- URLs ----------------------------------------------------------------------------------


def check_url(url: str, *, allow_private: bool, section: str = "plugin.vision") -> str | None:
    """Refuse anything but http(s) to public addresses (every address the name resolves to).

    Returns the checked address to connect to (None with ``allow_private``): the fetch
    must use it rather than resolve the name again, or a DNS-rebinding name could answer
    a public address to this check and 127.0.0.1 to the connection.
    """
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        raise ToolError(f"URL scheme {parts.scheme!r} is not allowed: only http and https")
    host = parts.hostname
    if not host:
        raise ToolError(f"the URL {url!r} has no host")
    if allow_private:
        return None
    try:
        port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    except ValueError:
        raise ToolError(f"the URL {url!r} has an invalid port") from None
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise ToolError(f"cannot resolve {host!r}: {exc.strerror or exc}") from None
    checked: list[str] = []
    for info in infos:
        addr = ipaddress.ip_address(info[4][0].split("%", 1)[0])
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        if not addr.is_global or addr.is_multicast:
            raise ToolError(
                f"refusing to fetch {url!r}: {host} resolves to {addr}, a loopback/private/reserved address. "
                f"Images from the local network need [{section}] allow_private_urls = true"
            )
        checked.append(str(addr))
    if not checked:
        raise ToolError(f"cannot resolve {host!r}: no address")
    return checked[0]


def _pinned(url: str, addr: str | None) -> tuple[str, dict[str, str], dict[str, str]]:
    """(URL with the host replaced by the checked address, headers, httpx extensions):
    the connection goes to ``addr`` while Host and TLS (SNI, certificate) use the name."""
    headers = {"Accept": "image/*"}
    if addr is None:
        return url, headers, {}
    parts = urlsplit(url)
    host = parts.hostname or ""
    ip = f"[{addr}]" if ":" in addr else addr
    netloc = ip if parts.port is None else f"{ip}:{parts.port}"
    headers["Host"] = parts.netloc.rsplit("@", 1)[-1]
    extensions = {"sni_hostname": host} if parts.scheme.lower() == "https" else {}
    return parts._replace(netloc=netloc).geturl(), headers, extensions


def fetch_url(url: str, limits: ImageLimits) -> bytes:
    """Download with redirects re-checked hop by hop and the byte cap enforced while reading."""
    import httpx

    for _ in range(limits.max_redirects + 1):
        target, headers, extensions = _pinned(
            url, check_url(url, allow_private=limits.allow_private_urls, section=limits.section))
        try:
            with httpx.Client(timeout=limits.url_timeout, follow_redirects=False) as client, \
                    client.stream("GET", target, headers=headers, extensions=extensions) as resp:
                if resp.is_redirect and "location" in resp.headers:
                    url = urljoin(url, resp.headers["location"])
                    continue
                if resp.status_code != 200:
                    raise ToolError(f"fetching {url!r} failed: HTTP {resp.status_code}")
                declared = resp.headers.get("content-length")
                if declared and declared.isdigit() and int(declared) > limits.max_bytes:
                    raise ToolError(f"{url!r} is {int(declared):,} bytes, over the {limits.max_bytes:,}-byte limit")
                buf = bytearray()
                for chunk in resp.iter_bytes():
                    buf += chunk
                    if len(buf) > limits.max_bytes:
                        raise ToolError(f"{url!r} is over the {limits.max_bytes:,}-byte image limit; "
                                        "download stopped")
                return bytes(buf)
        except httpx.HTTPError as exc:
            raise ToolError(f"fetching {url!r} failed: {type(exc).__name__}: {exc}") from None
    raise ToolError(f"too many redirects fetching {url!r}")


# --- decoding ------------------------------------------------------------------------------


def decode(data: bytes, *, limits: ImageLimits, what: str = "the image") -> PILImage:
    """Bytes -> an RGB PIL image, refusing oversize, bombs, truncation and non-images."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    if len(data) > limits.max_bytes:
        raise ToolError(f"{what} is {len(data):,} bytes, over the {limits.max_bytes:,}-byte limit")
    fmt = sniff_format(data[:16])
    if fmt is None:
        raise ToolError(f"{what} is not a supported image ({SUPPORTED}); its content is {_looks_like(data[:1024])}")
    errors = (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)
    try:
        im = Image.open(io.BytesIO(data), formats=[fmt])  # reads the header only
    except Image.DecompressionBombError as exc:
        raise ToolError(f"{what} was refused as a decompression bomb: {exc}") from None
    except errors as exc:
        raise ToolError(f"{what} looks like {fmt} but its header cannot be read ({exc}): the file is damaged "
                        "or truncated") from None
    width, height = im.size
    if width <= 0 or height <= 0:
        raise ToolError(f"{what} has no pixels ({width}x{height})")
    if width * height > limits.max_decode_pixels:
        raise ToolError(
            f"{what} is {width}x{height} = {width * height:,} pixels, over the {limits.max_decode_pixels:,}-pixel "
            "limit (a decompression bomb, or simply too large); downscale it first or raise "
            f"[{limits.section}] max_decode_pixels"
        )
    if max(width, height) / min(width, height) > limits.max_aspect:
        raise ToolError(f"{what} is {width}x{height}: an aspect ratio over {limits.max_aspect:.0f}:1 "
                        "cannot be given to the model; crop it first")
    try:
        im.verify()  # checksums and structure (PNG CRCs), without decoding pixels
        im = Image.open(io.BytesIO(data), formats=[fmt])
        im.load()  # raises on a truncated stream (LOAD_TRUNCATED_IMAGES stays off)
    except errors as exc:
        raise ToolError(f"{what} is a damaged or truncated {fmt} file: {exc}") from None
    try:
        im = ImageOps.exif_transpose(im) or im
    except errors:
        pass  # bad EXIF orientation data: keep the pixels as stored
    return to_rgb(im)


def to_rgb(im: Any) -> PILImage:
    from PIL import Image

    if im.mode == "RGB":
        return im
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        bg = Image.new("RGB", rgba.size, (255, 255, 255))
        bg.paste(rgba, mask=rgba.getchannel("A"))
        return bg
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        im = im.point(lambda v: v / 256).convert("L")
    return im.convert("RGB")


def fit_pixels(im: PILImage, *, min_pixels: int, max_pixels: int) -> PILImage:
    """Resize keeping the aspect ratio so that min_pixels <= width*height <= max_pixels."""
    from PIL import Image

    w, h = im.size
    area = w * h
    if min_pixels <= area <= max_pixels:
        return im
    scale = math.sqrt((max_pixels if area > max_pixels else min_pixels) / area)
    nw, nh = max(1, int(w * scale)), max(1, int(h * scale))
    if area < min_pixels:  # round up so the floor never lands under the minimum
        nw, nh = max(1, math.ceil(w * scale)), max(1, math.ceil(h * scale))
    return im.resize((nw, nh), Image.Resampling.BICUBIC)


def load_image(source: ImageSource, *, roots: list[Path], limits: ImageLimits, fit: bool = True) -> PILImage:
    """Read, decode and (by default) fit one image argument for the model."""
    what = describe_source(source)
    im = decode(read_source(source, roots=roots, limits=limits), limits=limits, what=what)
    if fit:
        im = fit_pixels(im, min_pixels=limits.min_pixels, max_pixels=limits.max_pixels)
    return im


def png_bytes(im: PILImage, *, text: dict[str, str] | None = None, compress_level: int = 6) -> bytes:
    """``im`` as PNG bytes, with ``text`` as tEXt chunks (parameters, seed...)."""
    pnginfo = None
    if text:
        from PIL.PngImagePlugin import PngInfo

        pnginfo = PngInfo()
        for key, value in text.items():
            pnginfo.add_text(key, value)
    buf = io.BytesIO()
    im.save(buf, format="PNG", pnginfo=pnginfo, compress_level=compress_level)
    return buf.getvalue()


def content_image(part: Any) -> tuple[bytes, str] | None:
    """The image bytes and MIME type of a chat content part, or None when it is not an image.

    Accepts ``{"type": "image", "data": bytes | base64, "mime_type"}``, an OpenAI
    ``image_url`` part with a data: URL, and ``core.results.Image``. Remote URLs are refused:
    fetch them with ``read_source`` (capped, public addresses only) and pass the bytes.
    """
    from .results import Image

    if isinstance(part, Image):
        return part.data, part.mime_type
    if not isinstance(part, dict):
        return None
    kind = part.get("type")
    if kind == "image" and isinstance(part.get("data"), bytes | str):
        data = part["data"]
        raw = base64.b64decode(data) if isinstance(data, str) else data
        return raw, str(part.get("mime_type") or part.get("mimeType") or "image/png")
    if kind == "image_url":
        url = part.get("image_url")
        url = url.get("url") if isinstance(url, dict) else url
        if not isinstance(url, str) or not url.startswith("data:"):
            raise ToolError("image URLs in chat messages must be inline data: URLs; fetch remote images with "
                            "core.images.read_source (it caps size and refuses private addresses) and pass the bytes")
        head, _, payload = url.partition(",")
        mime = head[5:].split(";")[0] or "image/png"
        try:
            raw = base64.b64decode(payload, validate=False) if ";base64" in head else payload.encode()
        except (binascii.Error, ValueError):
            raise ToolError("an image_url data: URL holds invalid base64") from None
        return raw, mime
    return None


def data_url(im: PILImage) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(im)).decode()
