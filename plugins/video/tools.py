"""``video.generate``: text-to-video on diffusers (Wan, LTX, AnimateDiff) -> MP4 + poster frame."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import anyio.to_thread
import msgspec

from core.capabilities import StepProgress, VideoGen, VideoRequest, VideoResult
from core.generation import check_size, check_steps, model_or_hint, new_seed, output_path, write_atomic
from core.images import png_bytes
from core.results import Image, ResourceLink, Text, ToolResult
from core.tools import ToolContext, ToolError

ROLE = "video"
SECTION = "plugin.video"

CONFIG_HINT = """\
No video model is configured. Add one to loom.toml, pointing at a diffusers text-to-video
folder (the one with model_index.json), then restart or reload:

    [models.wan]
    backend = "diffusers"
    file = "/models/Wan2.1-T2V-1.3B-Diffusers"    # or LTX-Video, or an AnimateDiff pipeline
    role = "video"
    # options = { offload = "auto", frames = 33, fps = 16, steps = 30 }

or run: loom models add wan --backend diffusers --file /models/Wan2.1-T2V-1.3B-Diffusers --role video"""


class VideoSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``[plugin.video]`` in loom.toml."""

    max_width: int = 1280
    max_height: int = 1280
    max_pixels: int = 1280 * 720
    max_frames: int = 161
    max_fps: int = 60
    max_steps: int = 100


# The pipelines' own usual settings; a model's `options` override them.
FAMILY_DEFAULTS: dict[str, dict[str, Any]] = {
    "wan": {"steps": 50, "guidance": 5.0, "frames": 81, "fps": 16, "width": 832, "height": 480},
    "ltx": {"steps": 50, "guidance": 3.0, "frames": 121, "fps": 24, "width": 704, "height": 480},
    "animatediff": {"steps": 25, "guidance": 7.5, "frames": 16, "fps": 8, "width": 512, "height": 512},
}
# Frame counts the temporal VAE accepts: frames % k == 1 (None: any count).
FRAME_STEP = {"wan": 4, "ltx": 8}


class GenerateArgs(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    prompt: Annotated[str, msgspec.Meta(min_length=1, max_length=10_000, description="What happens in the clip.")]
    negative_prompt: Annotated[str | None, msgspec.Meta(description="What to avoid.")] = None
    frames: Annotated[int | None, msgspec.Meta(description="Number of frames (Wan: 4k+1, LTX: 8k+1). "
                                                           "Default: the model's usual length.")] = None
    fps: Annotated[int | None, msgspec.Meta(description="Frames per second of the MP4.")] = None
    width: Annotated[int | None, msgspec.Meta(description="Pixels; default the model's native size.")] = None
    height: Annotated[int | None, msgspec.Meta(description="Pixels; default the model's native size.")] = None
    steps: Annotated[int | None, msgspec.Meta(description="Denoising steps.")] = None
    guidance: Annotated[float | None, msgspec.Meta(description="Guidance scale.")] = None
    seed: Annotated[int | None, msgspec.Meta(description="Seed; random when omitted, returned either way.")] = None
    model: Annotated[str | None, msgspec.Meta(description="A configured model; default: the video model.")] = None


def settings(app: Any) -> VideoSettings:
    return app.config.plugin_settings("video", VideoSettings)


def check_frames(frames: int, family: str, limits: VideoSettings) -> None:
    if frames < 1:
        raise ToolError(f"frames must be at least 1, got {frames}")
    if frames > limits.max_frames:
        raise ToolError(f"{frames} frames is over the limit of {limits.max_frames}; raise max_frames under "
                        f"[{SECTION}] in loom.toml")
    k = FRAME_STEP.get(family)
    if k and frames % k != 1:
        lower = max(1, (frames - 1) // k * k + 1)
        raise ToolError(f"this {family} model takes {k}k+1 frames (e.g. {lower} or {lower + k}), got {frames}")


def _plan(args: GenerateArgs, gen: VideoGen, options: dict[str, Any], limits: VideoSettings) -> dict[str, Any]:
    d = {**FAMILY_DEFAULTS.get(gen.family, FAMILY_DEFAULTS["animatediff"]), **options}
    plan: dict[str, Any] = {k: int(d[k]) if getattr(args, k) is None else getattr(args, k)
                            for k in ("width", "height", "frames", "fps", "steps")}
    plan["guidance"] = float(d["guidance"]) if args.guidance is None else args.guidance
    plan["seed"] = new_seed(args.seed)
    check_size(plan["width"], plan["height"], gen.size_step, limits, "video", SECTION)
    check_steps(plan["steps"], limits, SECTION)
    check_frames(plan["frames"], gen.family, limits)
    if not 1 <= plan["fps"] <= limits.max_fps:
        raise ToolError(f"fps must be between 1 and {limits.max_fps}, got {plan['fps']}")
    return plan


def write_mp4(video: Any, path: Path, fps: int, metadata: dict[str, Any]) -> None:
    """H.264 MP4 through imageio-ffmpeg's bundled ffmpeg, parameters in the comment tag."""
    import imageio_ffmpeg
    import numpy as np

    _, h, w, _ = video.shape
    if w % 2 or h % 2:  # yuv420p needs even sides: pad by one pixel, never resample
        video = np.pad(video, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        _, h, w, _ = video.shape
    tmp = path.with_name(path.stem + ".part" + path.suffix)
    writer = imageio_ffmpeg.write_frames(str(tmp), (w, h), fps=fps, codec="libx264", macro_block_size=1,
                                         quality=7, output_params=["-metadata", f"comment={json.dumps(metadata)}",
                                                                   "-movflags", "+faststart"])
    writer.send(None)
    try:
        for frame in video:
            writer.send(np.ascontiguousarray(frame))
    finally:
        writer.close()
    tmp.replace(path)


def _save(app: Any, result: VideoResult, params: dict[str, Any]) -> tuple[Path, Path, bytes]:
    from PIL import Image as PILImage

    video = result.array()
    mp4 = output_path(app, "video", params["seed"], ".mp4")
    write_mp4(video, mp4, params["fps"], params)
    poster = mp4.with_suffix(".png")
    meta = {**params, "poster_of": mp4.name}
    text = {"parameters": json.dumps(meta, sort_keys=True), "seed": str(params["seed"]), "Software": "Loom"}
    data = png_bytes(PILImage.fromarray(video[len(video) // 2]), text=text, compress_level=3)
    write_atomic(poster, data)
    return mp4, poster, data


async def generate(args: GenerateArgs, ctx: ToolContext) -> ToolResult:
    """Make a short video from a text prompt with the configured diffusers model (Wan, LTX, AnimateDiff).

    Reports progress every denoising step; cancelling stops at the next step. Returns the
    middle frame as a poster image, and a link to the MP4 (H.264) saved under the data
    dir's outputs/ with the parameters and seed in its metadata."""
    app = ctx.app
    limits = settings(app)
    name = model_or_hint(app, ROLE, args.model, CONFIG_HINT)
    if app.pool.config_for(name).backend == "diffusers" and "diffusers" not in app.backends:
        raise ToolError(f"model {name!r} needs the `diffusers` backend, which the imagegen plugin provides: enable "
                        "the imagegen plugin (deny its tools by policy if you do not want them)")

    async def on_step(ev: StepProgress) -> None:
        await ctx.progress(float(ev.step), float(ev.total), f"video.generate: step {ev.step}/{ev.total}")

    async with app.pool.use(name, VideoGen, reason="video.generate") as gen:
        plan = _plan(args, gen, dict(app.pool.config_for(name).options), limits)
        request = VideoRequest(prompt=args.prompt, negative_prompt=args.negative_prompt, width=plan["width"],
                               height=plan["height"], frames=plan["frames"], fps=plan["fps"], steps=plan["steps"],
                               guidance=plan["guidance"], seed=plan["seed"])
        started = time.perf_counter()
        out = await gen.generate(request, on_progress=on_step, cancel=ctx.cancelled)
        seconds = time.perf_counter() - started
    params = {"prompt": args.prompt, "negative_prompt": args.negative_prompt, "model": name,
              "pipeline": out.pipeline, **plan}
    mp4, poster, data = await anyio.to_thread.run_sync(_save, app, out, params)
    summary = (f"video: {out.count} frames {out.width}x{out.height} at {plan['fps']} fps, "
               f"{plan['steps']} steps, seed {plan['seed']}, {seconds:.1f}s with {name} -> {mp4}")
    return ToolResult(
        content=[Image(data, "image/png"), ResourceLink.for_file(mp4, "video/mp4", description="the video"),
                 ResourceLink.for_file(poster, "image/png", description="poster frame"), Text(summary)],
        structured={**params, "path": str(mp4), "poster": str(poster), "seconds": round(seconds, 3),
                    "frames_written": out.count})
