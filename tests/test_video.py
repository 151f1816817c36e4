"""video.generate on a real (tiny, random) Wan 2.1 pipeline built from configs at test time."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

pytest.importorskip("diffusers")
pytest.importorskip("imageio_ffmpeg")

from core.capabilities import CapabilityError, ImageGen
from core.config import LoomConfig, ModelConfig
from core.pool import ModelUnavailable
from core.tools import ToolCancelled, ToolContext, ToolError

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def wan_dir(tmp_path_factory):
    from plugins.imagegen import tiny

    return tiny.build_wan(tmp_path_factory.mktemp("wan") / "wan")


def _config(wan_dir, placement: str = "inline", **plugin) -> LoomConfig:
    # inline by default: a worker imports torch and diffusers anew for each app (seconds per test)
    return LoomConfig(models={"wan": ModelConfig(backend="diffusers", file=str(wan_dir), role="video",
                                                 placement=placement)},
                      plugin={"video": plugin} if plugin else {})


def _probe(path: Path) -> dict:
    """Read the MP4 back with ffmpeg itself: frame count, size, comment tag."""
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path))
    meta = reader.__next__()
    frames = sum(1 for _ in reader)
    out = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-i", str(path), "-f", "ffmetadata", "-"],
                         capture_output=True, text=True, check=True).stdout
    comment = next(line.split("=", 1)[1] for line in out.splitlines() if line.startswith("comment="))
    return {"size": tuple(meta["size"]), "fps": meta["fps"], "frames": frames, "comment": comment}


async def test_wan_mp4_poster_and_progress(make_app, wan_dir, data_dir, monkeypatch):
    from tests.wire import over_the_wire

    calls = over_the_wire(monkeypatch)  # the frames come back as bytes, as from a worker process
    app = make_app("imagegen", "video", config=_config(wan_dir))
    events = []

    async def on_progress(p, total, msg):
        events.append((p, total))

    async with app:
        res = await app.call("video.generate", {"prompt": "a boat on a lake", "frames": 5, "fps": 8, "width": 32,
                                                "height": 16, "steps": 2, "seed": 9}, on_progress=on_progress)
    poster, mp4_link, _poster_link, text = res.content
    assert poster.mime_type == "image/png" and mp4_link.mime_type == "video/mp4"
    mp4 = Path(mp4_link.uri.removeprefix("file://"))
    assert mp4.parent == data_dir / "outputs" and mp4.suffix == ".mp4"
    info = _probe(mp4)
    assert info["size"] == (32, 16) and info["frames"] == 5 and info["fps"] == 8
    assert json.loads(info["comment"].replace("\\", ""))["seed"] == 9
    assert events == [(1.0, 2.0), (2.0, 2.0)]
    assert res.structured["pipeline"] == "WanPipeline" and "5 frames" in text.text
    assert calls == ["video.generate"]


async def test_video_cancel_and_limits(make_app, wan_dir, data_dir):
    # in a worker process, where diffusers models go by default: cancelled there at a step boundary
    app = make_app("imagegen", "video", config=_config(wan_dir, placement="process", max_frames=9, max_steps=10))
    ctx = ToolContext()

    async def on_progress(p, total, msg):
        ctx.cancelled.set()

    ctx.on_progress = on_progress
    async with app:
        with pytest.raises(ToolCancelled, match=r"step \d/10"):
            await app.call("video.generate", {"prompt": "x", "frames": 5, "width": 16, "height": 16, "steps": 10},
                           ctx=ctx)
        assert not list((data_dir / "outputs").glob("*.mp4"))
        with pytest.raises(ToolError, match=r"13 frames is over the limit of 9.*max_frames"):
            await app.call("video.generate", {"prompt": "x", "frames": 13, "width": 16, "height": 16, "steps": 1})
        with pytest.raises(ToolError, match=r"4k\+1 frames \(e.g. 5 or 9\)"):
            await app.call("video.generate", {"prompt": "x", "frames": 7, "width": 16, "height": 16, "steps": 1})
        with pytest.raises(ToolError, match="multiples of 16"):
            await app.call("video.generate", {"prompt": "x", "frames": 5, "width": 24, "height": 16, "steps": 1})
        with pytest.raises(ToolError, match="fps must be between 1 and 60"):
            await app.call("video.generate", {"prompt": "x", "frames": 5, "fps": 0, "width": 16, "height": 16,
                                              "steps": 1})
        # a text-to-video pipeline is a VideoGen, never an ImageGen
        with pytest.raises(CapabilityError, match="cannot serve 'image'.*serves video"):
            async with app.pool.use("wan", ImageGen):
                pass


async def test_video_without_the_diffusers_backend_says_which_plugin(make_app, wan_dir):
    app = make_app("video", config=_config(wan_dir))  # imagegen (which registers `diffusers`) disabled
    async with app:
        with pytest.raises(ToolError, match="`diffusers` backend, which the imagegen plugin provides"):
            await app.call("video.generate", {"prompt": "x", "frames": 5, "width": 16, "height": 16, "steps": 1})


async def test_no_video_model_says_what_to_configure(make_app):
    app = make_app("video")
    async with app:
        with pytest.raises(ModelUnavailable, match=r'(?s)\[models.wan\].*backend = "diffusers".*role = "video"'):
            await app.call("video.generate", {"prompt": "x"})
