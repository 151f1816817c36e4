"""``imagegen.generate`` and ``imagegen.edit``: text-to-image and image-to-image on diffusers."""

from __future__ import annotations

import time
from typing import Annotated, Any

import msgspec

from core.results import Image, ResourceLink, Text, ToolResult
from core.tools import ToolContext, ToolError

from . import runner

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
    """``[plugin.imagegen]`` in loom.toml (also read by the video plugin for its sizes)."""

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


def size_step(handle: Any) -> int:
    """Width and height must be multiples of this: the VAE's factor, doubled where latents are
    packed in 2x2 patches (Flux)."""
    factor = int(getattr(handle.pipe, "vae_scale_factor", 8) or 8)
    return factor * 2 if handle.family == "flux" else factor


def native_size(handle: Any) -> tuple[int, int]:
    pipe = handle.pipe
    unet = getattr(pipe, "unet", None)
    factor = int(getattr(pipe, "vae_scale_factor", 8) or 8)
    if unet is not None:
        side = int(unet.config.sample_size) * factor
    else:
        side = int(getattr(pipe, "default_sample_size", 128)) * factor
    return side, side


def check_size(width: int, height: int, step: int, limits: Any, what: str = "image",
               section: str = "plugin.imagegen") -> None:
    """Refuse sizes the model cannot take or the operator's limits forbid, saying how to fix it."""
    if width < step or height < step:
        raise ToolError(f"{what} size {width}x{height} is too small: at least {step}x{step}")
    if width % step or height % step:
        raise ToolError(f"{what} width and height must be multiples of {step} for this model, got {width}x{height} "
                        f"(e.g. {width // step * step or step}x{height // step * step or step})")
    if width > limits.max_width or height > limits.max_height:
        raise ToolError(f"{what} size {width}x{height} is over the limit of {limits.max_width}x{limits.max_height}; "
                        f"raise max_width/max_height under [{section}] in loom.toml to allow it")
    if width * height > limits.max_pixels:
        raise ToolError(f"{what} size {width}x{height} is {width * height:,} pixels, over the limit of "
                        f"{limits.max_pixels:,}; raise max_pixels under [{section}] in loom.toml")


def check_steps(steps: int, limits: Any, section: str = "plugin.imagegen") -> None:
    if steps < 1:
        raise ToolError(f"steps must be at least 1, got {steps}")
    if steps > limits.max_steps:
        raise ToolError(f"{steps} steps is over the limit of {limits.max_steps}; raise max_steps under "
                        f"[{section}] in loom.toml to allow more")


def _options(app: Any, model: str) -> dict[str, Any]:
    return dict(app.pool.config_for(model).options)


def _plan(args: GenerateArgs | EditArgs, handle: Any, options: dict[str, Any],
          limits: ImagegenSettings) -> dict[str, Any]:
    defaults = {**FAMILY_DEFAULTS.get(handle.family, {"steps": 30, "guidance": 7.5}), **options}
    nw, nh = native_size(handle)
    width = int(defaults.get("width", nw)) if args.width is None else args.width
    height = int(defaults.get("height", nh)) if args.height is None else args.height
    steps = args.steps if args.steps is not None else int(defaults["steps"])
    guidance = args.guidance if args.guidance is not None else float(defaults["guidance"])
    check_size(width, height, size_step(handle), limits)
    check_steps(steps, limits)
    return {"width": width, "height": height, "steps": steps, "guidance": guidance,
            "seed": runner.new_seed(args.seed)}


def _kwargs(args: GenerateArgs | EditArgs, handle: Any, plan: dict[str, Any]) -> dict[str, Any]:
    kw: dict[str, Any] = {"prompt": args.prompt, "width": plan["width"], "height": plan["height"],
                          "num_inference_steps": plan["steps"], "guidance_scale": plan["guidance"],
                          "generator": runner.generator(plan["seed"])}
    if args.negative_prompt:
        kw["negative_prompt"] = args.negative_prompt
        if handle.family == "flux":
            kw["true_cfg_scale"] = max(1.5, plan["guidance"])  # Flux only honours a negative prompt with true CFG
    return kw


async def _result(ctx: ToolContext, image: Any, params: dict[str, Any], seconds: float, prefix: str) -> ToolResult:
    import anyio.to_thread

    path = runner.output_path(ctx.app, prefix, params["seed"], ".png")
    data = await anyio.to_thread.run_sync(runner.save_png, image, path, params)
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
    name = runner.model_or_hint(app, ROLE, args.model, CONFIG_HINT)
    async with app.pool.use(name) as handle:
        plan = _plan(args, handle, _options(app, name), limits)
        kwargs = _kwargs(args, handle, plan)
        reporter = runner.StepReporter(ctx, plan["steps"], "imagegen.generate")
        started = time.perf_counter()
        out = await reporter.run(lambda: runner.call_pipeline(handle, handle.pipe, kwargs, reporter))
        seconds = time.perf_counter() - started
        pipeline = type(handle.pipe).__name__
    params = {"prompt": args.prompt, "negative_prompt": args.negative_prompt, "model": name, "pipeline": pipeline,
              **plan}
    return await _result(ctx, out.images[0], params, seconds, "imagegen")


def _load_input(args: EditArgs, ctx: ToolContext, limits: ImagegenSettings) -> Any:
    from plugins.vision.images import ImageLimits, load_image, to_rgb

    img_limits = ImageLimits(max_bytes=limits.max_image_bytes, max_decode_pixels=limits.max_decode_pixels)
    source = args.image
    if isinstance(source, dict):
        from plugins.vision.images import McpImage

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
    name = runner.model_or_hint(app, ROLE, args.model, CONFIG_HINT)
    source = await runner.run_blocking(lambda: _load_input(args, ctx, limits), ctx)
    async with app.pool.use(name) as handle:
        step = size_step(handle)
        w, h = source.size
        if args.width is None:
            args = msgspec.structs.replace(args, width=max(step, w // step * step))
        if args.height is None:
            args = msgspec.structs.replace(args, height=max(step, h // step * step))
        plan = _plan(args, handle, _options(app, name), limits)
        if source.size != (plan["width"], plan["height"]):
            from PIL import Image as PILImage

            source = source.resize((plan["width"], plan["height"]), PILImage.Resampling.LANCZOS)
        pipe = handle.image_to_image()
        kwargs = {**_kwargs(args, handle, plan), "image": source, "strength": args.strength}
        expected = max(1, min(plan["steps"], int(plan["steps"] * args.strength)))
        reporter = runner.StepReporter(ctx, expected, "imagegen.edit")
        started = time.perf_counter()
        out = await reporter.run(lambda: runner.call_pipeline(handle, pipe, kwargs, reporter))
        seconds = time.perf_counter() - started
        pipeline = type(pipe).__name__
    params = {"prompt": args.prompt, "negative_prompt": args.negative_prompt, "model": name, "pipeline": pipeline,
              "strength": args.strength, **plan}
    return await _result(ctx, out.images[0], params, seconds, "imagegen-edit")
