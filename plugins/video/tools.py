"""``video.generate``: text-to-video on diffusers (Wan, LTX, AnimateDiff) -> MP4 + poster frame."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import anyio.to_thread
import msgspec

from core.results import Image, ResourceLink, Text, ToolResult
from core.tools import ToolContext, ToolError
from plugins.imagegen import runner
from plugins.imagegen.tools import check_size, check_steps

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


def size_step(handle: Any) -> int:
    pipe = handle.pipe
    spatial = int(getattr(pipe, "vae_scale_factor_spatial", 0) or getattr(pipe, "vae_scale_factor", 8) or 8)
    transformer = getattr(pipe, "transformer", None)
    patch = getattr(getattr(transformer, "config", None), "patch_size", 1) or 1
    if isinstance(patch, list | tuple):
        patch = patch[-1]
    return spatial * int(patch)


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


def _plan(args: GenerateArgs, handle: Any, options: dict[str, Any], limits: VideoSettings) -> dict[str, Any]:
    d = {**FAMILY_DEFAULTS.get(handle.family, FAMILY_DEFAULTS["animatediff"]), **options}
    plan: dict[str, Any] = {k: int(d[k]) if getattr(args, k) is None else getattr(args, k)
                            for k in ("width", "height", "frames", "fps", "steps")}
    plan["guidance"] = float(d["guidance"]) if args.guidance is None else args.guidance
    plan["seed"] = runner.new_seed(args.seed)
    check_size(plan["width"], plan["height"], size_step(handle), limits, "video", SECTION)
    check_steps(plan["steps"], limits, SECTION)
    check_frames(plan["frames"], handle.family, limits)
    if not 1 <= plan["fps"] <= limits.max_fps:
        raise ToolError(f"fps must be between 1 and {limits.max_fps}, got {plan['fps']}")
    return plan


def _frames_uint8(frames: Any) -> Any:
    """The first video of a pipeline output as (frames, H, W, 3) uint8."""
    import numpy as np

    video = frames[0] if isinstance(frames, list | tuple) or getattr(frames, "ndim", 0) == 5 else frames
    if isinstance(video, list):  # PIL images
        video = np.stack([np.asarray(im.convert("RGB")) for im in video])
    video = np.asarray(video)
    if video.dtype != np.uint8:
        video = (np.clip(video, 0.0, 1.0) * 255).round().astype(np.uint8)
    return video


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


def _save(app: Any, video: Any, params: dict[str, Any]) -> tuple[Path, Path, bytes]:
    from PIL import Image as PILImage

    mp4 = runner.output_path(app, "video", params["seed"], ".mp4")
    write_mp4(video, mp4, params["fps"], params)
    poster = mp4.with_suffix(".png")
    data = runner.save_png(PILImage.fromarray(video[len(video) // 2]), poster, {**params, "poster_of": mp4.name})
    return mp4, poster, data


async def generate(args: GenerateArgs, ctx: ToolContext) -> ToolResult:
    """Make a short video from a text prompt with the configured diffusers model (Wan, LTX, AnimateDiff).

    Reports progress every denoising step; cancelling stops at the next step. Returns the
    middle frame as a poster image, and a link to the MP4 (H.264) saved under the data
    dir's outputs/ with the parameters and seed in its metadata."""
    app = ctx.app
    limits = settings(app)
    name = runner.model_or_hint(app, ROLE, args.model, CONFIG_HINT)
    async with app.pool.use(name) as handle:
        plan = _plan(args, handle, dict(app.pool.config_for(name).options), limits)
        kwargs: dict[str, Any] = {"prompt": args.prompt, "width": plan["width"], "height": plan["height"],
                                  "num_frames": plan["frames"], "num_inference_steps": plan["steps"],
                                  "guidance_scale": plan["guidance"], "generator": runner.generator(plan["seed"]),
                                  "output_type": "np"}
        if args.negative_prompt:
            kwargs["negative_prompt"] = args.negative_prompt
        if handle.family == "ltx":
            kwargs["frame_rate"] = plan["fps"]
        reporter = runner.StepReporter(ctx, plan["steps"], "video.generate")
        started = time.perf_counter()
        out = await reporter.run(lambda: runner.call_pipeline(handle, handle.pipe, kwargs, reporter))
        seconds = time.perf_counter() - started
        pipeline = type(handle.pipe).__name__
    params = {"prompt": args.prompt, "negative_prompt": args.negative_prompt, "model": name, "pipeline": pipeline,
              **plan}
    video = _frames_uint8(out.frames)
    mp4, poster, data = await anyio.to_thread.run_sync(_save, app, video, params)
    summary = (f"video: {len(video)} frames {plan['width']}x{plan['height']} at {plan['fps']} fps, "
               f"{plan['steps']} steps, seed {plan['seed']}, {seconds:.1f}s with {name} -> {mp4}")
    return ToolResult(
        content=[Image(data, "image/png"), ResourceLink.for_file(mp4, "video/mp4", description="the video"),
                 ResourceLink.for_file(poster, "image/png", description="poster frame"), Text(summary)],
        structured={**params, "path": str(mp4), "poster": str(poster), "seconds": round(seconds, 3),
                    "frames_written": len(video)})
