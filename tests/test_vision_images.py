"""Image input for the vision tools: every source, every cap, every malformed file a user may hand in."""

from __future__ import annotations

import base64
import io
import struct
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from core.images import ImageLimits, McpImage, check_url, decode, fit_pixels, load_image, read_source
from core.tools import ToolError


def png(size=(64, 48), color="red") -> bytes:
    buf = io.BytesIO()
    im = Image.new("RGB", size, color)
    ImageDraw.Draw(im).rectangle((5, 5, 20, 20), fill="blue")
    im.save(buf, format="PNG")
    return buf.getvalue()


def jpeg(size=(64, 48)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, "green").save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims huge dimensions: signature, IHDR and one tiny IDAT."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = chunk(b"IDAT", zlib.compress(b"\x00" * 64))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + idat + chunk(b"IEND", b"")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    r.mkdir()
    return r


def load(src, root: Path, **limits):
    return load_image(src, roots=[root], limits=ImageLimits(**limits))


# --- good inputs ----------------------------------------------------------------------------


def test_png_and_jpeg_paths_load_as_rgb(root: Path):
    (root / "a.png").write_bytes(png())
    (root / "b.jpg").write_bytes(jpeg())
    a = load(str(root / "a.png"), root, min_pixels=1)
    b = load("b.jpg", root, min_pixels=1)  # relative to the first root
    assert a.mode == b.mode == "RGB"
    assert a.size == (64, 48) and b.size == (64, 48)
    assert a.getpixel((10, 10)) == (0, 0, 255)


def test_content_wins_over_a_wrong_extension(root: Path):
    (root / "photo.jpg").write_bytes(png())  # really a PNG
    assert load(str(root / "photo.jpg"), root, min_pixels=1).size == (64, 48)


def test_base64_data_url_and_mcp_content(root: Path):
    raw = png()
    b64 = base64.b64encode(raw).decode()
    for src in (b64, f"data:image/png;base64,{b64}", McpImage(data=b64, mimeType="image/png")):
        assert load(src, root, min_pixels=1).size == (64, 48)
    # JPEG's base64 starts with "/9j/": still base64, not a path
    assert load(base64.b64encode(jpeg()).decode(), root, min_pixels=1).size == (64, 48)


def test_transparency_is_flattened_on_white(root: Path):
    buf = io.BytesIO()
    Image.new("RGBA", (10, 10), (0, 0, 0, 0)).save(buf, format="PNG")
    im = decode(buf.getvalue(), limits=ImageLimits())
    assert im.mode == "RGB" and im.getpixel((5, 5)) == (255, 255, 255)


def test_resized_between_min_and_max_pixels():
    big = Image.new("RGB", (4000, 1000))
    small = Image.new("RGB", (10, 5))
    out = fit_pixels(big, min_pixels=1000, max_pixels=200_000)
    assert out.size[0] * out.size[1] <= 200_000 and abs(out.size[0] / out.size[1] - 4) < 0.05
    out = fit_pixels(small, min_pixels=1000, max_pixels=200_000)
    assert out.size[0] * out.size[1] >= 1000 and abs(out.size[0] / out.size[1] - 2) < 0.1
    same = Image.new("RGB", (100, 100))
    assert fit_pixels(same, min_pixels=1000, max_pixels=200_000) is same


# --- malformed inputs -----------------------------------------------------------------------


def test_truncated_png_and_jpeg_are_clear_errors(root: Path):
    (root / "t.png").write_bytes(png((200, 200), "purple")[:-60])
    (root / "t.jpg").write_bytes(jpeg((200, 200))[:400])
    for name in ("t.png", "t.jpg"):
        with pytest.raises(ToolError, match="damaged|truncated"):
            load(name, root)


def test_not_an_image_says_what_it_is(root: Path):
    (root / "notes.png").write_text("just some text, not a picture\n")
    (root / "doc.jpg").write_bytes(b"%PDF-1.7\n...")
    (root / "noise.bmp").write_bytes(bytes(range(7, 250)) * 4)
    (root / "empty.png").write_bytes(b"")
    with pytest.raises(ToolError, match="not a supported image.*text"):
        load("notes.png", root)
    with pytest.raises(ToolError, match="PDF"):
        load("doc.jpg", root)
    with pytest.raises(ToolError, match="not a supported image.*binary"):
        load("noise.bmp", root)
    with pytest.raises(ToolError, match="empty"):
        load("empty.png", root)


def test_decompression_bomb_header_refused_before_decoding(root: Path):
    (root / "bomb.png").write_bytes(png_header_only(60_000, 60_000))  # 3.6 G pixels claimed in ~100 bytes
    with pytest.raises(ToolError, match="decompression bomb"):
        load("bomb.png", root)


def test_huge_dimensions_over_the_pixel_cap(root: Path):
    # A real, valid, highly compressible PNG: 3000x3000 of one colour is a few KB.
    buf = io.BytesIO()
    Image.new("L", (3000, 3000)).save(buf, format="PNG")
    assert len(buf.getvalue()) < 100_000
    (root / "wide.png").write_bytes(buf.getvalue())
    with pytest.raises(ToolError, match=r"3000x3000 = 9,000,000 pixels, over the 1,000,000-pixel limit"):
        load("wide.png", root, max_decode_pixels=1_000_000)
    assert load("wide.png", root, max_decode_pixels=10_000_000).size[0] * 1 > 0  # under the cap it works


def test_extreme_aspect_ratio(root: Path):
    (root / "strip.png").write_bytes(png((3000, 2)))
    with pytest.raises(ToolError, match="aspect ratio"):
        load("strip.png", root)


def test_byte_caps_before_decoding(root: Path):
    (root / "a.png").write_bytes(png())
    with pytest.raises(ToolError, match="over the 100-byte limit"):
        load("a.png", root, max_bytes=100)
    with pytest.raises(ToolError, match="over the 100-byte limit"):
        load(base64.b64encode(png()).decode(), root, max_bytes=100)
    with pytest.raises(ToolError, match="not valid base64"):
        load("data:image/png;base64,@@@@" + "A" * 100, root)


def test_paths_are_confined_to_the_allowed_roots(root: Path, tmp_path: Path):
    outside = tmp_path / "secret.png"
    outside.write_bytes(png())
    (root / "link.png").symlink_to(outside)
    for src in (str(outside), "../secret.png", "link.png"):
        with pytest.raises(ToolError, match="outside the allowed roots"):
            load(src, root)
    with pytest.raises(ToolError, match="does not exist"):
        load("missing.png", root)
    with pytest.raises(ToolError, match="not a regular file"):
        load(str(root), root)


# --- URLs -----------------------------------------------------------------------------------


@pytest.mark.parametrize("url", [
    "http://127.0.0.1/x.png", "http://localhost:8080/x.png", "http://10.1.2.3/x.png", "http://192.168.0.7/",
    "http://172.16.5.5/", "http://169.254.169.254/latest/meta-data", "http://[::1]/x.png", "http://0.0.0.0/",
    "http://[::ffff:127.0.0.1]/x.png", "https://100.64.0.1/",
])
def test_private_and_loopback_urls_are_refused(url: str):
    with pytest.raises(ToolError, match="refusing to fetch"):
        read_source(url, roots=[], limits=ImageLimits())


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.com/a.png", "gopher://x/"])
def test_other_schemes_are_refused(url: str):
    with pytest.raises(ToolError, match="not allowed"):
        read_source(url, roots=[], limits=ImageLimits())


def test_public_address_passes_the_check():
    check_url("http://93.184.215.14/x.png", allow_private=False)  # a literal public IP: no DNS needed


class _Server:
    def __init__(self, routes: dict[str, tuple[int, dict[str, str], bytes]]):
        class H(BaseHTTPRequestHandler):
            def do_GET(self):
                status, headers, body = routes.get(self.path, (404, {}, b"no"))
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                if "Content-Length" not in headers:
                    self.send_header("Connection", "close")
                self.end_headers()
                try:
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *a):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_download_when_private_urls_are_allowed_with_caps():
    body = png()
    srv = _Server({
        "/a.png": (200, {"Content-Length": str(len(body))}, body),
        "/big.png": (200, {}, body + b"\0" * 50_000),  # no Content-Length: the cap stops the stream
        "/declared": (200, {"Content-Length": "999999999"}, b""),
        "/moved": (302, {"Location": "/a.png", "Content-Length": "0"}, b""),
        "/gone": (404, {"Content-Length": "2"}, b"no"),
    })
    try:
        lim = ImageLimits(allow_private_urls=True, max_bytes=20_000, min_pixels=1)
        assert load_image(f"{srv.base}/a.png", roots=[], limits=lim).size == (64, 48)
        assert load_image(f"{srv.base}/moved", roots=[], limits=lim).size == (64, 48)
        with pytest.raises(ToolError, match="download stopped"):
            read_source(f"{srv.base}/big.png", roots=[], limits=lim)
        with pytest.raises(ToolError, match="over the 20,000-byte limit"):
            read_source(f"{srv.base}/declared", roots=[], limits=lim)
        with pytest.raises(ToolError, match="HTTP 404"):
            read_source(f"{srv.base}/gone", roots=[], limits=lim)
        with pytest.raises(ToolError, match="refusing"):  # the default still refuses the same server
            read_source(f"{srv.base}/a.png", roots=[], limits=ImageLimits())
    finally:
        srv.close()
