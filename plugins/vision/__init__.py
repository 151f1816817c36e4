"""Vision tools: describe, answer, OCR, video and embeddings, served by the "vlm" model.

The VLM is whatever ``app.pool.model_for("vlm")`` names: a Qwen3-VL GGUF with its mmproj
(backend ``llama_cpp``) or a local transformers Qwen2.5-VL / Qwen3-VL folder (backend
``transformers``, registered here, see ``hf_backend.py``). The tools reach it through
capability handles only: describing, answering and OCR are ``Chat`` calls with image parts
(any model whose ``info.vision`` is true), image and VLM-space text embeddings are
``VisionEmbed`` calls. With no VLM configured every tool that needs one says exactly what
to add to loom.toml, while what a packaged model can serve still works: OCR through
tesseract, text embeddings through the "embed" model.

Images are loaded by ``core.images`` (confined paths, guarded URLs, base64, MCP content;
byte and pixel caps before decoding). PIL, torch and transformers are imported lazily.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

import msgspec

from core.blocking import run_blocking
from core.capabilities import Chat, Embed, VisionEmbed, matryoshka
from core.hookspecs import hookimpl
from core.images import ImageLimits, ImageSource, McpImage, png_bytes
from core.results import Text, ToolResult
from core.tools import ToolContext, ToolError, object_schema

T = TypeVar("T")

__all__ = ["McpImage", "VisionSettings"]


class VisionSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``[plugin.vision]`` in loom.toml."""

    model: str | None = None  # a model name; default: the pool's "vlm" role
    max_bytes: int = 20 * 1024 * 1024
    max_decode_pixels: int = 40_000_000
    min_pixels: int = 56 * 56
    max_pixels: int = 1280 * 28 * 28
    allow_private_urls: bool = False
    url_timeout: float = 20.0
    video_max_bytes: int = 512 * 1024 * 1024
    video_frame_pixels: int = 448 * 448
    max_frames: int = 32
    tesseract: str = "tesseract"
    max_tokens: int = 512

    def limits(self) -> ImageLimits:
        return ImageLimits(max_bytes=self.max_bytes, max_decode_pixels=self.max_decode_pixels,
                           min_pixels=self.min_pixels, max_pixels=self.max_pixels,
                           allow_private_urls=self.allow_private_urls, url_timeout=self.url_timeout)


IMAGE_DOC = ("the image: a path inside the allowed roots, an http(s) URL, a data: URL, base64, "
             "or MCP image content {type: 'image', data, mimeType}")
Image_ = Annotated[ImageSource, msgspec.Meta(description=IMAGE_DOC)]
MaxTokens = Annotated[int, msgspec.Meta(ge=1, le=8192, description="cap on generated tokens")] | None
Dims = Annotated[int, msgspec.Meta(ge=1, description="Matryoshka truncation: keep the first N dimensions, "
                                                      "re-normalised to unit length")] | None


class DescribeArgs(msgspec.Struct, forbid_unknown_fields=True):
    image: Image_
    detail: Annotated[Literal["brief", "normal", "detailed"], msgspec.Meta(description="how much to say")] = "normal"
    max_tokens: MaxTokens = None


class AnswerArgs(msgspec.Struct, forbid_unknown_fields=True):
    image: Image_
    question: Annotated[str, msgspec.Meta(min_length=1, max_length=8000, description="the question about the image")]
    max_tokens: MaxTokens = None


class OcrArgs(msgspec.Struct, forbid_unknown_fields=True):
    image: Image_
    engine: Annotated[Literal["auto", "vlm", "tesseract"], msgspec.Meta(
        description="auto: the VLM when one is configured, else tesseract")] = "auto"
    language: Annotated[str, msgspec.Meta(description="tesseract language(s), e.g. 'eng' or 'eng+deu'")] = "eng"


class VideoArgs(msgspec.Struct, forbid_unknown_fields=True):
    video: Annotated[str, msgspec.Meta(description="a video file inside the allowed roots, or an http(s) URL")]
    fps: Annotated[float, msgspec.Meta(gt=0, le=30, description="frames sampled per second (lowered so that "
                                                                "max_frames cover the whole video)")] = 1.0
    max_frames: Annotated[int, msgspec.Meta(ge=1, le=128)] = 16
    prompt: Annotated[str, msgspec.Meta(max_length=8000, description="what to ask about the video")] | None = None
    max_tokens: MaxTokens = None


class EmbedTextArgs(msgspec.Struct, forbid_unknown_fields=True):
    texts: Annotated[list[str], msgspec.Meta(min_length=1, max_length=256)]
    dims: Dims = None
    space: Annotated[Literal["auto", "vlm", "text"], msgspec.Meta(
        description="vlm: the VLM's hidden states (the same space as vision.embed_image); text: the 'embed' "
                    "model; auto: vlm when a transformers VLM is configured, else text")] = "auto"


class EmbedImageArgs(msgspec.Struct, forbid_unknown_fields=True):
    images: Annotated[list[ImageSource], msgspec.Meta(min_length=1, max_length=64, description=IMAGE_DOC)]
    dims: Dims = None


# --- settings, models and blocking work -----------------------------------------------------


def settings(ctx: ToolContext) -> VisionSettings:
    from core.config import ConfigError

    try:
        return ctx.app.config.plugin_settings("vision", VisionSettings)
    except ConfigError as exc:
        raise ToolError(str(exc)) from None


def no_vlm_message(tool: str, extra: str = "") -> str:
    return (
        f"{tool} needs a vision-language model and none is configured (role \"vlm\"). Add one to loom.toml, "
        "e.g. a Qwen3-VL GGUF with its vision projector:\n\n"
        "[models.qwen3-vl]\n"
        "backend = \"llama_cpp\"\n"
        "file = \"/models/Qwen3-VL-8B-Instruct-Q4_K_M.gguf\"\n"
        "mmproj = \"/models/mmproj-Qwen3-VL-8B-Instruct-F16.gguf\"\n"
        "role = \"vlm\"\n\n"
        "or run: loom models add qwen3-vl --backend llama_cpp --file /models/Qwen3-VL-8B-Instruct-Q4_K_M.gguf "
        "--mmproj /models/mmproj-Qwen3-VL-8B-Instruct-F16.gguf --role vlm\n"
        "A local transformers folder works too (needed for vision.embed_image): backend = \"transformers\", "
        "file = \"/models/Qwen3-VL-2B-Instruct\", role = \"vlm\"." + (f"\n{extra}" if extra else "")
    )


def _model_config(app: Any, name: str) -> Any:
    from core.pool import ModelUnavailable

    try:
        return app.pool.config_for(name)
    except ModelUnavailable:
        return None


def _is_vlm(cfg: Any) -> bool:
    return cfg is None or cfg.backend != "llama_cpp" or bool(cfg.mmproj)


def _seeing_coordinator(app: Any) -> str | None:
    """The coordinator, when it is itself a VLM (a GGUF with an mmproj, or a transformers VLM)."""
    from core.pool import ModelUnavailable

    try:
        name = app.pool.model_for("coordinator")
    except ModelUnavailable:
        return None
    cfg = _model_config(app, name)
    return name if cfg is not None and (cfg.mmproj or cfg.backend == "transformers") else None


def vlm_name(ctx: ToolContext, tool: str, extra: str = "") -> str:
    """The VLM's model name, or a ToolError that says how to configure one."""
    from core.pool import ModelUnavailable

    name = settings(ctx).model
    if name is None:
        try:
            name = ctx.app.pool.model_for("vlm")
        except ModelUnavailable:
            name = _seeing_coordinator(ctx.app)
            if name is None:
                raise ToolError(no_vlm_message(tool, extra)) from None
    if not _is_vlm(_model_config(ctx.app, name)):
        raise ToolError(no_vlm_message(tool, f"Model {name!r} is a llama.cpp model without an mmproj file, so it "
                                             f"cannot see images. {extra}".strip()))
    return name


def has_vlm(ctx: ToolContext) -> bool:
    try:
        vlm_name(ctx, "")
    except ToolError:
        return False
    return True


async def blocking(ctx: ToolContext, fn: Callable[[], T]) -> T:
    """Run ``fn`` in a worker thread; a cancelled call sets ``ctx.cancelled`` and waits for it."""
    return await run_blocking(fn, ctx.cancelled)


async def load_images(ctx: ToolContext, sources: list[ImageSource], fit: bool = True) -> list[Any]:
    from core.images import load_image

    s = settings(ctx)
    roots = ctx.app.config.allowed_roots()
    limits = s.limits()
    return await blocking(ctx, lambda: [load_image(src, roots=roots, limits=limits, fit=fit) for src in sources])


async def ask_vlm(ctx: ToolContext, name: str, images: list[Any], prompt: str, max_tokens: int,
                  frame_labels: list[str] | None = None) -> str:
    """One greedy answer from the VLM for images + prompt, whichever backend serves it."""
    pngs = await blocking(ctx, lambda: [png_bytes(im, compress_level=1) for im in images])  # transport only
    parts: list[dict[str, Any]] = []
    for i, data in enumerate(pngs):
        if frame_labels:
            parts.append({"type": "text", "text": frame_labels[i]})
        parts.append({"type": "image", "data": data, "mime_type": "image/png"})
    parts.append({"type": "text", "text": prompt})
    async with ctx.app.pool.use(name, Chat, reason=ctx.tool or "vision") as chat:
        if not chat.vision:
            raise ToolError(no_vlm_message(ctx.tool or "vision", f"Model {name!r} was loaded without a vision "
                                                                 "projector (mmproj)."))
        result = await chat.complete([{"role": "user", "content": parts}], max_tokens=max_tokens, temperature=0.0,
                                     cancel=ctx.cancelled)
    return result.text.strip()


def _answer(text: str, **facts: Any) -> ToolResult:
    return ToolResult([Text(text)], structured={"text": text, **facts})


# --- tools ------------------------------------------------------------------------------------

_DETAIL = {
    "brief": "Describe this image in one sentence.",
    "normal": "Describe this image in a short paragraph: the main subject, the setting, notable details and "
              "any visible text.",
    "detailed": "Describe this image in detail: every subject and object, their positions, colours, the setting, "
                "the style, and transcribe any visible text.",
}


async def describe(args: DescribeArgs, ctx: ToolContext) -> ToolResult:
    """Describe an image with the vision-language model."""
    name = vlm_name(ctx, "vision.describe", "OCR (vision.ocr) works without one, through tesseract.")
    (im,) = await load_images(ctx, [args.image])
    text = await ask_vlm(ctx, name, [im], _DETAIL[args.detail], args.max_tokens or settings(ctx).max_tokens)
    return _answer(text, model=name, size=list(im.size))


async def answer(args: AnswerArgs, ctx: ToolContext) -> ToolResult:
    """Answer a question about an image with the vision-language model."""
    name = vlm_name(ctx, "vision.answer")
    (im,) = await load_images(ctx, [args.image])
    text = await ask_vlm(ctx, name, [im], args.question, args.max_tokens or settings(ctx).max_tokens)
    return _answer(text, model=name, size=list(im.size))


_OCR_PROMPT = ("Read all the text in this image. Reply with the text only, keeping its line breaks; "
               "reply with nothing if there is no text.")


async def ocr(args: OcrArgs, ctx: ToolContext) -> ToolResult:
    """Read the text in an image: the VLM when one is configured, otherwise tesseract."""
    from core import ocr as tesseract

    s = settings(ctx)
    engine = args.engine
    if engine == "auto":
        engine = "vlm" if has_vlm(ctx) else "tesseract"
    if engine == "vlm":
        name = vlm_name(ctx, "vision.ocr with engine='vlm'", "engine='tesseract' works without one.")
        (im,) = await load_images(ctx, [args.image])
        text = await ask_vlm(ctx, name, [im], _OCR_PROMPT, s.max_tokens)
        return _answer(text, engine="vlm", model=name)
    if not tesseract.available(s.tesseract):
        raise ToolError("vision.ocr has no engine: install tesseract (`apt-get install tesseract-ocr`) or "
                        + no_vlm_message("a VLM-based OCR").split(" needs ", 1)[1])
    (im,) = await load_images(ctx, [args.image], fit=False)
    text = await blocking(ctx, lambda: tesseract.ocr_text(im, language=args.language, binary=s.tesseract))
    return _answer(text, engine="tesseract", language=args.language)


async def video(args: VideoArgs, ctx: ToolContext) -> ToolResult:
    """Describe a video (or answer about it): frames sampled at `fps`, then given to the VLM together."""
    from core.images import fit_pixels

    from .frames import local_video, sample_frames, temp_dir

    name = vlm_name(ctx, "vision.video")
    s = settings(ctx)
    max_frames = min(args.max_frames, s.max_frames)
    with temp_dir() as tmp:
        from pathlib import Path

        path = await blocking(ctx, lambda: local_video(args.video, roots=ctx.app.config.allowed_roots(),
                                                       limits=s.limits(), max_bytes=s.video_max_bytes, tmp=Path(tmp)))
        await ctx.progress(0, 2, "sampling frames")
        frames, times, info = await blocking(ctx, lambda: sample_frames(
            path, fps=args.fps, max_frames=max_frames, frame_pixels=s.video_frame_pixels,
            max_source_pixels=s.max_decode_pixels, cancelled=ctx.cancelled))
    frames = [fit_pixels(f, min_pixels=s.min_pixels, max_pixels=s.video_frame_pixels) for f in frames]
    await ctx.progress(1, 2, f"{len(frames)} frames sampled; asking {name}")
    labels = [f"Frame at {t:.1f} s:" for t in times]
    question = args.prompt or "Describe what happens in this video, in order."
    prompt = (f"These are {len(frames)} frames sampled from a video at {info['sampled_fps']:g} frames per second "
              f"(timestamps {', '.join(f'{t:.1f}s' for t in times)}). {question}")
    text = await ask_vlm(ctx, name, frames, prompt, args.max_tokens or s.max_tokens, frame_labels=labels)
    return _answer(text, model=name, video=info, timestamps=times)


def _vlm_embedder(ctx: ToolContext) -> tuple[str | None, bool]:
    """The VLM's name (None without one) and whether its backend can embed images (``vision_embed``)."""
    try:
        name = vlm_name(ctx, "")
    except ToolError:
        return None, False
    cfg = _model_config(ctx.app, name)
    if cfg is None:
        return name, False
    try:
        serves = VisionEmbed.kind in ctx.app.pool.backend(cfg.backend).capabilities
    except ToolError:
        serves = False
    return name, serves


async def embed_text(args: EmbedTextArgs, ctx: ToolContext) -> dict:
    """Embed texts as unit vectors, optionally truncated (Matryoshka) to `dims` and re-normalised."""
    name, embeds = _vlm_embedder(ctx)
    space = args.space
    if space == "auto":
        space = "vlm" if embeds else "text"
    if space == "vlm":
        if name is None:
            raise ToolError(no_vlm_message("vision.embed_text with space='vlm'", "space='text' uses the packaged "
                                                                                "MiniLM embedder."))
        if not embeds:
            raise ToolError(f"the VLM {name!r} runs on a backend whose hidden states this tool cannot pool; "
                            "use space='text', or configure a transformers VLM (backend = \"transformers\")")
        async with ctx.app.pool.use(name, VisionEmbed, reason="vision.embed_text") as emb:
            vecs = (await emb.embed_texts(args.texts, dims=args.dims, cancel=ctx.cancelled)).array()
    else:
        from core.pool import ModelUnavailable

        try:
            name = ctx.app.pool.model_for("embed")
        except ModelUnavailable as exc:
            raise ToolError(f"vision.embed_text needs an embedding model: {exc}") from None
        async with ctx.app.pool.use(name, Embed, reason="vision.embed_text") as embedder:
            raw = await embedder.embed_array(list(args.texts))
        vecs = matryoshka(raw, args.dims)
    return {"model": name, "space": space, "dims": int(vecs.shape[1]), "embeddings": vecs.round(6).tolist()}


async def embed_image(args: EmbedImageArgs, ctx: ToolContext) -> dict:
    """Embed images as unit vectors (mean of the VLM's image-token hidden states), optional Matryoshka `dims`."""
    name, embeds = _vlm_embedder(ctx)
    extra = ("Image embeddings are pooled from a transformers VLM's hidden states: backend = \"transformers\", "
             "file = \"/models/Qwen3-VL-2B-Instruct\", role = \"vlm\".")
    if name is None:
        raise ToolError(no_vlm_message("vision.embed_image", extra))
    if not embeds:
        backend = getattr(_model_config(ctx.app, name), "backend", "?")
        raise ToolError(f"vision.embed_image needs a transformers VLM; {name!r} runs on {backend}. {extra}")
    images = await load_images(ctx, list(args.images))
    pngs = await blocking(ctx, lambda: [png_bytes(im, compress_level=1) for im in images])  # transport only
    async with ctx.app.pool.use(name, VisionEmbed, reason="vision.embed_image") as emb:
        vecs = (await emb.embed_images(pngs, dims=args.dims, cancel=ctx.cancelled)).array()
    return {"model": name, "space": "vlm", "dims": int(vecs.shape[1]), "embeddings": vecs.round(6).tolist()}


# --- registration -----------------------------------------------------------------------------


def _backend_factory() -> Any:
    from .hf_backend import TransformersVLMBackend

    return TransformersVLMBackend()


# What `loom doctor` checks for this plugin, and how to fix what is missing.
DOCTOR = [
    {"check": "module", "name": "PIL", "why": "decodes and checks images", "fix": "pip install 'loomd[vision]'"},
    {"check": "module", "name": "transformers", "why": "Qwen2.5-VL / Qwen3-VL through transformers",
     "fix": "pip install 'loomd[vision]'"},
    {"check": "module", "name": "imageio_ffmpeg", "why": "ffmpeg for vision.video frames",
     "fix": "pip install 'loomd[vision]'"},
    {"check": "binary", "name": "tesseract", "why": "OCR when no vision model is configured",
     "fix": "apt-get install -y tesseract-ocr"},
]


@hookimpl
def loom_register_backends(register: Any) -> None:
    register("transformers", _backend_factory)


@hookimpl
def loom_register_tools(register: Any) -> None:
    opts = {"read_only": True, "idempotent": True, "open_world": True}
    seen = object_schema(text=str, model=str, size=list[int])
    register(describe, **opts, output_schema=seen)
    register(answer, **opts, output_schema=seen)
    register(ocr, **opts, output_schema=object_schema(text=str, engine=str, optional={"model": str, "language": str}))
    register(video, **opts, output_schema=object_schema(text=str, model=str, video=dict, timestamps=list[float]))
    register(embed_text, read_only=True, idempotent=True)
    register(embed_image, **opts)


def look(image: str, question: str = "") -> str:
    """Ask about a picture: describe it, or answer a question about it."""
    ask = f"Answer this about it: {question}" if question else "Describe what is in it."
    return (f"Look at the image at {image}. {ask} Use vision.answer for a question, vision.describe otherwise, "
            "and vision.ocr when the text in it matters.")


@hookimpl
def loom_register_prompts(register):
    register(look)
