"""``imagegen.generate`` and ``imagegen.edit``: text-to-image and image-to-image on diffusers."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import anyio.to_thread
import msgspec

from core.blocking import run_blocking
from core.capabilities import EditRequest, ImageGen, ImageRequest, ImageResult, RawImage, StepProgress
from core.generation import check_size, check_steps, model_or_hint, new_seed, output_path, write_atomic
from core.images import ImageLimits, McpImage, load_image, png_bytes, to_rgb
from core.results import Image, ResourceLink, Text, ToolResult
from core.tools import ToolContext, ToolError

ROLE = "imagegen"

CONFIG_HINT = """\
No image model is configured. Add one to loom.toml, pointing at a diffusers model folder
(the one with model_index.json), then restart or reload:

    [models.flux]
    backend = "diffusers"
    file = "/models/FLUX.1-schnell"        # or a Stable Diffusion / SDXL folder
    role = "imagegen"
    # files = { transformer = "/models/flux1-schnell-Q4_K_S.gguf" }   # optional GGUF transformer
    # options = { offload = "auto", steps = 4, guidance = 0.0 }

or run: loom models add flux --backend diffusers --file /models/FLUX.1-schnell --role imagegen"""


class ImagegenSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``[plugin.imagegen]`` in loom.toml."""

    max_width: int = 2048
    max_height: int = 2048
    max_pixels: int = 2048 * 2048
    max_steps: int = 100
    max_image_bytes: int = 20 * 1024 * 1024  # input image for imagegen.edit, before decoding
    max_decode_pixels: int = 40_000_000  # input image pixels, read from its header


def settings(app: Any) -> ImagegenSettings:
    return app.config.plugin_settings("imagegen", ImagegenSettings)


_Prompt = Annotated[str, msgspec.Meta(min_length=1, max_length=10_000, description="What to draw.")]
_Neg = Annotated[str | None, msgspec.Meta(description="What to avoid (pipelines with classifier-free guidance).")]
_Size = Annotated[int | None, msgspec.Meta(description="Pixels; a multiple of the model's size step. "
                                                       "Default: the model's native size.")]
_Steps = Annotated[int | None, msgspec.Meta(description="Denoising steps. Default: the model's usual count.")]
_Guidance = Annotated[float | None, msgspec.Meta(description="Guidance scale. Default: the model's usual value.")]
_Seed = Annotated[int | None, msgspec.Meta(description="Seed for reproducible output; random when omitted "
                                                       "(the one used is returned and stored in the PNG).")]
_Model = Annotated[str | None, msgspec.Meta(description="A configured model name; default: the imagegen model.")]


class GenerateArgs(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    prompt: _Prompt
    negative_prompt: _Neg = None
    width: _Size = None
    height: _Size = None
    steps: _Steps = None
    guidance: _Guidance = None
    seed: _Seed = None
    model: _Model = None


class EditArgs(GenerateArgs, kw_only=True):
    """Everything generate takes, plus the starting image and how much to change it."""

    image: Annotated[Any, msgspec.Meta(description="The starting image: a path inside the allowed roots, a "
                                                   "data: URL, base64, or MCP image content.")]
    strength: Annotated[float, msgspec.Meta(ge=0.0, le=1.0, description="How much to change: 0 keeps the "
                                                                        "image, 1 ignores it.")] = 0.6


# Usual settings per family; a model's `options` (steps, guidance, width, height) override them.
FAMILY_DEFAULTS: dict[str, dict[str, Any]] = {
    "flux": {"steps": 28, "guidance": 3.5},
    "sdxl": {"steps": 30, "guidance": 5.0},
    "sd": {"steps": 30, "guidance": 7.5},
}


def _options(app: Any, model: str) -> dict[str, Any]:
    return dict(app.pool.config_for(model).options)


def _plan(args: GenerateArgs | EditArgs, gen: ImageGen, options: dict[str, Any],
          limits: ImagegenSettings) -> dict[str, Any]:
    defaults = {**FAMILY_DEFAULTS.get(gen.family, {"steps": 30, "guidance": 7.5}), **options}
    nw, nh = gen.native_size
    width = int(defaults.get("width", nw)) if args.width is None else args.width
    height = int(defaults.get("height", nh)) if args.height is None else args.height
    steps = args.steps if args.steps is not None else int(defaults["steps"])
    guidance = args.guidance if args.guidance is not None else float(defaults["guidance"])
    check_size(width, height, gen.size_step, limits)
    check_steps(steps, limits)
    return {"width": width, "height": height, "steps": steps, "guidance": guidance, "seed": new_seed(args.seed)}


def _request(args: GenerateArgs | EditArgs, plan: dict[str, Any]) -> dict[str, Any]:
    return {"prompt": args.prompt, "negative_prompt": args.negative_prompt, "width": plan["width"],
            "height": plan["height"], "steps": plan["steps"], "guidance": plan["guidance"], "seed": plan["seed"]}


def _progress(ctx: ToolContext, label: str) -> Any:
    async def on_step(ev: StepProgress) -> None:
        await ctx.progress(float(ev.step), float(ev.total), f"{label}: step {ev.step}/{ev.total}")

    return on_step


def _save_png(result: ImageResult, path: Path, params: dict[str, Any]) -> bytes:
    """Encode the PNG with the parameters (JSON) and the seed as text chunks, write it, return its bytes.

    zlib level 3 instead of PIL's 6: about twice as fast to encode (it is on every call's
    critical path) for files a few percent larger."""
    text = {"parameters": json.dumps(params, sort_keys=True), "seed": str(params.get("seed")), "Software": "Loom"}
    data = png_bytes(result.image.to_pil(), text=text, compress_level=3)
    write_atomic(path, data)
    return data


async def _result(ctx: ToolContext, result: ImageResult, params: dict[str, Any], seconds: float,
                  prefix: str) -> ToolResult:
    path = output_path(ctx.app, prefix, params["seed"], ".png")
    data = await anyio.to_thread.run_sync(_save_png, result, path, params)
    link = ResourceLink.for_file(path, "image/png", description=f"{prefix} seed {params['seed']}")
    summary = (f"{prefix}: {params['width']}x{params['height']}, {params['steps']} steps, seed {params['seed']}, "
               f"{seconds:.1f}s with {params['model']} -> {path}")
    structured = {**params, "path": str(path), "uri": link.uri, "seconds": round(seconds, 3)}
    return ToolResult(content=[Image(data, "image/png"), link, Text(summary)], structured=structured)


async def generate(args: GenerateArgs, ctx: ToolContext) -> ToolResult:
    """Draw an image from a text prompt with the configured diffusers model (Flux, SD, SDXL).

    Reports progress every denoising step; cancelling stops at the next step. The PNG is
    saved under the data dir's outputs/ with the parameters and seed in its metadata, and
    returned as image content plus a link to the file."""
    app = ctx.app
    limits = settings(app)
    name = model_or_hint(app, ROLE, args.model, CONFIG_HINT)
    async with app.pool.use(name, ImageGen, reason="imagegen.generate") as gen:
        plan = _plan(args, gen, _options(app, name), limits)
        started = time.perf_counter()
        out = await gen.generate(ImageRequest(**_request(args, plan)), on_progress=_progress(ctx, "imagegen.generate"),
                                 cancel=ctx.cancelled)
        seconds = time.perf_counter() - started
    params = {"prompt": args.prompt, "negative_prompt": args.negative_prompt, "model": name,
              "pipeline": out.pipeline, **plan}
    return await _result(ctx, out, params, seconds, "imagegen")


def _load_input(args: EditArgs, ctx: ToolContext, limits: ImagegenSettings) -> Any:
    img_limits = ImageLimits(max_bytes=limits.max_image_bytes, max_decode_pixels=limits.max_decode_pixels,
                             section="plugin.imagegen")
    source = args.image
    if isinstance(source, dict):
        try:
            source = msgspec.convert(source, McpImage)
        except msgspec.ValidationError as exc:
            raise ToolError(f"image: expected a path, a data: URL, base64 or MCP image content ({exc})") from None
    elif not isinstance(source, str):
        raise ToolError("image: expected a path, a data: URL, base64 or MCP image content")
    return to_rgb(load_image(source, roots=ctx.app.config.allowed_roots(), limits=img_limits, fit=False))


async def edit(args: EditArgs, ctx: ToolContext) -> ToolResult:
    """Change an image guided by a prompt (image-to-image): ``strength`` 0 keeps it, 1 redraws it.

    Same model, progress, cancellation and outputs as imagegen.generate; the size defaults
    to the input image's, rounded down to the model's size step."""
    app = ctx.app
    limits = settings(app)
    if args.strength <= 0:
        raise ToolError("strength must be above 0 (0 would return the input unchanged)")
    name = model_or_hint(app, ROLE, args.model, CONFIG_HINT)
    source = await run_blocking(lambda: _load_input(args, ctx, limits), ctx.cancelled)
    async with app.pool.use(name, ImageGen, reason="imagegen.edit") as gen:
        step = gen.size_step
        w, h = source.size
        if args.width is None:
            args = msgspec.structs.replace(args, width=max(step, w // step * step))
        if args.height is None:
            args = msgspec.structs.replace(args, height=max(step, h // step * step))
        plan = _plan(args, gen, _options(app, name), limits)
        if source.size != (plan["width"], plan["height"]):
            from PIL import Image as PILImage

            source = source.resize((plan["width"], plan["height"]), PILImage.Resampling.LANCZOS)
        request = EditRequest(**_request(args, plan), image=RawImage.from_pil(source), strength=args.strength)
        started = time.perf_counter()
        out = await gen.edit(request, on_progress=_progress(ctx, "imagegen.edit"), cancel=ctx.cancelled)
        seconds = time.perf_counter() - started
    params = {"prompt": args.prompt, "negative_prompt": args.negative_prompt, "model": name,
              "pipeline": out.pipeline, "strength": args.strength, **plan}
    return await _result(ctx, out, params, seconds, "imagegen-edit")
