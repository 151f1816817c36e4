"""Video frames for ``vision.video``: sampled at a given fps by ffmpeg (the binary that the
``imageio-ffmpeg`` package ships), decoded straight to RGB, scaled down per frame.

The file is checked before ffmpeg sees it: a byte cap, a container sniffed from the
content and passed to ffmpeg as the forced demuxer (so a playlist or concat file can never
make ffmpeg open other files or URLs), ``-protocol_whitelist file``, and a pixel cap on
the source frame size.
"""

from __future__ import annotations

import math
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any

import msgspec

from core.images import ImageLimits, confined_path, fetch_url
from core.tools import ToolError

_CONTAINERS: list[tuple[bytes, int, str]] = [
    (b"ftyp", 4, "mov"),  # MP4, MOV, M4V, 3GP
    (b"\x1a\x45\xdf\xa3", 0, "matroska"),  # MKV, WebM
    (b"AVI ", 8, "avi"),
    (b"GIF8", 0, "gif"),
    (b"\x00\x00\x01\xba", 0, "mpeg"),
    (b"OggS", 0, "ogg"),
]


def sniff_container(head: bytes) -> str | None:
    for magic, offset, fmt in _CONTAINERS:
        if head[offset : offset + len(magic)] == magic:
            return fmt
    if len(head) > 188 and head[0] == 0x47 and head[188] == 0x47:
        return "mpegts"
    return None


def _ffmpeg() -> str:
    try:
        import imageio_ffmpeg
    except ImportError:
        raise ToolError("reading videos needs the imageio-ffmpeg package: pip install imageio-ffmpeg") from None
    return imageio_ffmpeg.get_ffmpeg_exe()


def local_video(source: str, *, roots: list[Path], limits: ImageLimits, max_bytes: int, tmp: Path) -> Path:
    """A confined local path for ``source``: a path inside the roots, or an http(s) URL
    downloaded (public addresses only, byte cap enforced while reading) into ``tmp``."""
    s = source.strip()
    if s.lower().startswith(("http://", "https://")):
        path = tmp / "video"
        path.write_bytes(fetch_url(s, msgspec.structs.replace(limits, max_bytes=max_bytes)))
        return path
    if re.match(r"^[A-Za-z][A-Za-z0-9+.\-]+:", s):
        raise ToolError("videos are read from a path inside the allowed roots or an http(s) URL")
    return confined_path(s, roots=roots, max_bytes=max_bytes)


def sample_frames(path: Path, *, fps: float, max_frames: int, frame_pixels: int, max_source_pixels: int,
                  cancelled: Any = None) -> tuple[list[Any], list[float], dict[str, Any]]:
    """Frames (PIL RGB) sampled at ``fps`` (lowered to cover the whole video with at most
    ``max_frames``), their timestamps in seconds, and facts about the video."""
    import imageio_ffmpeg
    from PIL import Image

    _ffmpeg()
    with path.open("rb") as f:
        head = f.read(512)
    container = sniff_container(head)
    if container is None:
        raise ToolError(f"{path.name} is not a supported video (MP4/MOV, MKV/WebM, AVI, MPEG, Ogg or GIF)")
    input_params = ["-protocol_whitelist", "file", "-f", container]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            probe = imageio_ffmpeg.read_frames(str(path), input_params=input_params)
            meta = next(probe)
            probe.close()
        except (OSError, RuntimeError, StopIteration) as exc:
            raise ToolError(f"{path.name} cannot be read as a video: {str(exc).strip()[-300:]}") from None
        sw, sh = meta.get("source_size") or (0, 0)
        if sw * sh <= 0:
            raise ToolError(f"{path.name} has no video stream")
        if sw * sh > max_source_pixels:
            raise ToolError(f"{path.name} frames are {sw}x{sh}, over the {max_source_pixels:,}-pixel limit")
        duration = float(meta.get("duration") or 0.0)
        effective = fps
        if duration > 0 and duration * fps > max_frames:
            effective = max_frames / duration
        scale = min(1.0, math.sqrt(frame_pixels / (sw * sh)))
        ow, oh = max(2, int(sw * scale) // 2 * 2), max(2, int(sh * scale) // 2 * 2)
        gen = imageio_ffmpeg.read_frames(
            str(path), input_params=input_params,
            output_params=["-vf", f"fps={effective:.6f},scale={ow}:{oh}", "-frames:v", str(max_frames)])
        frames: list[Any] = []
        try:
            out_meta = next(gen)
            w, h = out_meta["size"]
            for raw in gen:
                if cancelled is not None and cancelled.is_set():
                    raise ToolError("cancelled")
                frames.append(Image.frombytes("RGB", (w, h), bytes(raw)))
                if len(frames) >= max_frames:
                    break
        except (OSError, RuntimeError) as exc:
            raise ToolError(f"{path.name}: decoding failed: {str(exc).strip()[-300:]}") from None
        finally:
            gen.close()
    if not frames:
        raise ToolError(f"{path.name}: no frames could be decoded")
    times = [round(i / effective, 2) for i in range(len(frames))]
    info = {"duration_s": duration, "source_fps": meta.get("fps"), "sampled_fps": round(effective, 4),
            "requested_fps": fps, "frames": len(frames), "frame_size": [w, h], "source_size": [sw, sh]}
    return frames, times, info


def temp_dir() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="loom-video-")
