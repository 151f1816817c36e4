"""The ``diffusers`` model backend: any diffusers pipeline directory, loaded by path.

Configured in loom.toml::

    [models.flux]
    backend = "diffusers"
    file = "/models/FLUX.1-dev"            # a diffusers folder with model_index.json
    files = { transformer = "/models/flux1-dev-Q4_K_S.gguf" }   # optional GGUF transformer
    role = "imagegen"
    options = { dtype = "bfloat16", offload = "auto" }

The pipeline class comes from ``model_index.json`` (Flux, SD, SDXL, Wan, LTX,
AnimateDiff...). A ``files.transformer`` GGUF replaces the folder's transformer through
diffusers' GGUF loading (``from_single_file`` + ``GGUFQuantizationConfig``), with the
folder's ``transformer/config.json`` as its config, so no hub access is needed.

On CUDA a model that does not fit the free budget whole is loaded with model CPU
offload (components move to the GPU in turn) when its largest component fits, and with
sequential offload (layer by layer) otherwise; on CPU it runs plainly. The handle keeps
one lock so a pipeline (whose scheduler is stateful) runs one generation at a time.

The backend serves the ``image`` capability (``image.generate``, ``image.edit``) for
text-to-image pipelines and ``video`` (``video.generate``) for text-to-video ones (Wan,
LTX, AnimateDiff): callers hold ``core.capabilities.ImageGen``/``VideoGen`` handles and
never see the pipeline. Each denoising step ends in diffusers' ``callback_on_step_end``,
where the backend emits a ``StepProgress`` and checks the call's cancel flag; a cancelled
call raises out of the pipeline at that step, so the remaining steps and the VAE decode
never run, the offload hooks are reset and torch's cache is freed.
"""

from __future__ import annotations

import gc
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from core.backends import MemoryEstimate, ModelBackend, ModelSpec
from core.capabilities import (
    IMAGE_EDIT,
    IMAGE_GENERATE,
    VIDEO_GENERATE,
    CapabilityError,
    EditRequest,
    ImageRequest,
    ImageResult,
    ModelInfo,
    RawImage,
    StepProgress,
    VideoRequest,
    VideoResult,
)
from core.safetensors_meta import DTYPE_NAME_BYTES, safetensors_bytes
from core.tools import ToolCancelled, ToolError

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth")
OFFLOAD_MODES = ("auto", "none", "model", "sequential")
# Activations, the VAE decode and allocator slack on top of the weights: a rule of thumb
# from SD/Flux at 1024 px; the pool corrects it with measured use after the first load.
COMPUTE_FRACTION = 0.15
# Sequential offload keeps about one layer on the GPU at a time: a twentieth of the largest
# component (Flux has 57 blocks, SDXL's UNet a few dozen), never less than this floor.
SEQUENTIAL_FLOOR = 64 * 1024 * 1024


class DiffusersConfigError(ToolError):
    """A model entry that cannot be loaded as configured; the message says what to change."""


@dataclass(eq=False)
class DiffusersHandle:
    """A loaded pipeline; it never leaves the backend (callers hold ``ImageGen``/``VideoGen``)."""

    name: str
    pipe: Any
    family: str  # "flux", "sdxl", "sd", "wan", "ltx", "animatediff", or the class name
    device: str
    offload: str  # "none", "model" or "sequential"
    dtype: str
    path: Path
    lock: threading.Lock = field(default_factory=threading.Lock)
    derived: dict[str, Any] = field(default_factory=dict)  # e.g. the img2img pipeline sharing modules

    def image_to_image(self) -> Any:
        """An image-to-image pipeline over the same modules (no second copy of the weights)."""
        if "img2img" not in self.derived:
            from diffusers import AutoPipelineForImage2Image

            try:
                pipe = AutoPipelineForImage2Image.from_pipe(self.pipe)
            except (ValueError, KeyError) as exc:
                raise ToolError(f"model {self.name!r} ({type(self.pipe).__name__}) has no image-to-image "
                                f"variant: {exc}") from None
            if self.offload != "none":
                _apply_offload(pipe, self.offload, self.device)
            self.derived["img2img"] = pipe
        return self.derived["img2img"]


VIDEO_FAMILIES = ("wan", "ltx", "animatediff")


def family_of(pipe_class: str) -> str:
    name = pipe_class.lower()
    for key in ("flux", "stablediffusionxl", "stablediffusion", "wan", "ltx", "animatediff"):
        if key in name:
            return {"stablediffusionxl": "sdxl", "stablediffusion": "sd"}.get(key, key)
    return pipe_class


def choose_offload(total: int, largest: int, budget: int | None, headroom: float = COMPUTE_FRACTION) -> str:
    """``none`` when the whole model (plus compute headroom) fits ``budget``; ``model`` when its
    largest component does (one component on the GPU at a time); ``sequential`` otherwise
    (layer by layer)."""
    if budget is None or total * (1 + headroom) <= budget:
        return "none"
    if largest * (1 + headroom) <= budget:
        return "model"
    return "sequential"


def _weight_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES))


def _component_bytes(folder: Path, elem_bytes: int | None) -> int:
    if elem_bytes and any(folder.glob("*.safetensors")):
        other = sum(p.stat().st_size for p in folder.rglob("*")
                    if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES) and p.suffix != ".safetensors")
        return (safetensors_bytes(folder, elem_bytes) or 0) + other
    return _weight_bytes(folder)


def _model_dir(spec: ModelSpec) -> Path:
    raw = spec.file
    if not raw:
        raise DiffusersConfigError(
            f"model {spec.name!r}: set `file` to a diffusers model folder (the one holding model_index.json)")
    path = Path(raw).expanduser()
    if not (path / "model_index.json").is_file():
        raise DiffusersConfigError(
            f"model {spec.name!r}: {path} is not a diffusers model folder (no model_index.json). Point `file` at "
            "the folder a `save_pretrained` or a Hugging Face snapshot produced; a single GGUF transformer goes in "
            "`files.transformer` beside it")
    return path


def _gguf(spec: ModelSpec) -> Path | None:
    raw = spec.config.files.get("transformer")
    if not raw:
        return None
    path = Path(raw).expanduser()
    if not path.is_file():
        raise DiffusersConfigError(f"model {spec.name!r}: files.transformer {path} does not exist")
    return path


def component_sizes(spec: ModelSpec, elem_bytes: int | None = None) -> dict[str, int]:
    """Bytes of weights per pipeline component (the GGUF file replaces the transformer's).

    With ``elem_bytes`` a safetensors component counts its floating-point tensors at that
    size: fp32 files loaded in fp16 take half of what is on disk.
    """
    root = _model_dir(spec)
    sizes = {p.name: _component_bytes(p, elem_bytes) for p in root.iterdir() if p.is_dir()}
    gguf = _gguf(spec)
    if gguf is not None:
        sizes["transformer"] = gguf.stat().st_size
    return {k: v for k, v in sizes.items() if v}


def _resolve_device(device: str) -> str:
    if device in ("auto", "", None):
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def _dtype_name(spec: ModelSpec, device: str, family: str) -> str:
    name = spec.config.options.get("dtype")
    if name is None:
        if device.startswith("cuda"):
            name = "bfloat16" if family in ("flux", "wan", "ltx") else "float16"
        else:
            name = "float32"  # half precision on CPU is slow or unsupported for many ops
    return str(name)


def _family(spec: ModelSpec) -> str:
    index = json.loads((_model_dir(spec) / "model_index.json").read_text(encoding="utf-8"))
    return family_of(str(index.get("_class_name", "DiffusionPipeline")))


def _sizes_at_load_dtype(spec: ModelSpec, device: str) -> dict[str, int]:
    """Component sizes counted at the dtype the pipeline will load in, not as stored."""
    return component_sizes(spec, DTYPE_NAME_BYTES.get(_dtype_name(spec, device, _family(spec))))


def _dtype(spec: ModelSpec, device: str, family: str) -> Any:
    import torch

    name = _dtype_name(spec, device, family)
    dtype = getattr(torch, str(name), None)
    if not isinstance(dtype, torch.dtype):
        raise DiffusersConfigError(f"model {spec.name!r}: options.dtype {name!r} is not a torch dtype "
                                   "(use float32, float16 or bfloat16)")
    return dtype


def dtype_kw(dtype: Any) -> dict[str, Any]:
    """diffusers renamed ``torch_dtype`` to ``dtype`` (the old name warns); use what it takes."""
    from diffusers.utils import deprecation_utils

    return {"dtype": dtype} if hasattr(deprecation_utils, "_resolve_dtype") else {"torch_dtype": dtype}


def _apply_offload(pipe: Any, mode: str, device: str) -> None:
    if mode == "model":
        pipe.enable_model_cpu_offload(device=device)
    elif mode == "sequential":
        pipe.enable_sequential_cpu_offload(device=device)
    else:
        pipe.to(device)


def gpu_budget(device: str) -> int | None:
    """Free bytes on a CUDA device right now (what the pool's arbiter also starts from)."""
    import torch

    if not device.startswith("cuda") or not torch.cuda.is_available():
        return None
    index = int(device.split(":", 1)[1]) if ":" in device else torch.cuda.current_device()
    return int(torch.cuda.mem_get_info(index)[0])


class DiffusersBackend(ModelBackend):
    name: ClassVar[str] = "diffusers"
    devices: ClassVar[tuple[str, ...]] = ("cpu", "cuda")
    capabilities: ClassVar[tuple[str, ...]] = ("image", "video")

    def __init__(self, budget: Callable[[str], int | None] | None = None) -> None:
        # ``budget(device) -> bytes``: the pool's budget for the device. The plugin wires it
        # at startup (``loom_startup``); without it, free CUDA memory is the budget.
        self.budget = budget
        self._modes: dict[str, str] = {}  # model name -> offload mode chosen by estimate()

    def _budget(self, device: str) -> int | None:
        if self.budget is not None:
            value = self.budget(device)
            if value is not None:
                return int(value)
        return gpu_budget(device)

    def plan_offload(self, spec: ModelSpec, device: str, sizes: dict[str, int]) -> str:
        """The offload mode for ``spec`` on ``device``: configured, or chosen from the budget."""
        mode = str(spec.config.options.get("offload", "auto"))
        if mode not in OFFLOAD_MODES:
            raise DiffusersConfigError(f"model {spec.name!r}: options.offload must be one of "
                                       f"{', '.join(OFFLOAD_MODES)}, got {mode!r}")
        if not device.startswith("cuda"):
            return "none"  # offload moves modules to an accelerator; on CPU it would only add hooks
        if mode == "auto":
            mode = choose_offload(sum(sizes.values()), max(sizes.values(), default=0), self._budget(device))
        return mode

    def estimate(self, spec: ModelSpec, device: str) -> MemoryEstimate:
        """Weights from file sizes plus compute; on CUDA, what stays on the GPU under the offload
        mode the budget calls for (the rest waits in system RAM)."""
        sizes = _sizes_at_load_dtype(spec, device)
        weights = sum(sizes.values())
        largest = max(sizes.values(), default=0)
        mode = self.plan_offload(spec, device, sizes)
        self._modes[spec.name] = mode
        on_device = {"none": weights, "model": largest, "sequential": max(largest // 20, SEQUENTIAL_FLOOR)}[mode]
        compute = int(on_device * COMPUTE_FRACTION)
        return MemoryEstimate(total=on_device + compute, device=device,
                              breakdown={"weights": on_device, "compute": compute, **sizes}, source="estimate")

    def load(self, spec: ModelSpec, device: str) -> DiffusersHandle:
        from diffusers import DiffusionPipeline

        root = _model_dir(spec)
        device = _resolve_device(device)
        index = json.loads((root / "model_index.json").read_text(encoding="utf-8"))
        pipe_class = str(index.get("_class_name", "DiffusionPipeline"))
        family = family_of(pipe_class)
        dtype = _dtype(spec, device, family)
        kwargs: dict[str, Any] = {**dtype_kw(dtype), "local_files_only": True}
        gguf = _gguf(spec)
        if gguf is not None:
            kwargs["transformer"] = self._gguf_transformer(spec, root, gguf, index, dtype)
        mode = self._modes.get(spec.name) or self.plan_offload(spec, device, _sizes_at_load_dtype(spec, device))
        try:
            pipe = DiffusionPipeline.from_pretrained(str(root), **kwargs)
        except (OSError, ValueError, KeyError) as exc:
            raise DiffusersConfigError(f"model {spec.name!r}: cannot load the pipeline in {root}: {exc}") from None
        pipe.set_progress_bar_config(disable=True)
        _apply_offload(pipe, mode, device)
        return DiffusersHandle(name=spec.name, pipe=pipe, family=family, device=device, offload=mode,
                               dtype=str(dtype).removeprefix("torch."), path=root)

    def _gguf_transformer(self, spec: ModelSpec, root: Path, gguf: Path, index: dict[str, Any], dtype: Any) -> Any:
        import diffusers
        from diffusers import GGUFQuantizationConfig

        entry = index.get("transformer")
        cls_name = entry[1] if isinstance(entry, list) and len(entry) == 2 else None
        cls = getattr(diffusers, cls_name, None) if cls_name else None
        if cls is None or not hasattr(cls, "from_single_file"):
            raise DiffusersConfigError(
                f"model {spec.name!r}: files.transformer is a GGUF, but {root} has no transformer that diffusers can "
                "load from a single file (Flux, SD3, Wan, LTX have one)")
        try:
            return cls.from_single_file(str(gguf), quantization_config=GGUFQuantizationConfig(compute_dtype=dtype),
                                        config=str(root), subfolder="transformer", **dtype_kw(dtype),
                                        local_files_only=True)
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise DiffusersConfigError(f"model {spec.name!r}: cannot load GGUF transformer {gguf}: {exc}") from None

    def describe(self, handle: DiffusersHandle, spec: ModelSpec) -> ModelInfo:
        """``video`` for text-to-video pipelines, ``image`` otherwise, with the sizes they take."""
        video = handle.family in VIDEO_FAMILIES
        details: dict[str, Any] = {"family": handle.family, "pipeline": type(handle.pipe).__name__,
                                   "device": handle.device, "offload": handle.offload, "dtype": handle.dtype}
        if video:
            details["size_step"] = video_size_step(handle.pipe)
        else:
            details["size_step"] = image_size_step(handle.pipe, handle.family)
            details["native_size"] = list(native_size(handle.pipe))
        return ModelInfo(name=spec.name, backend=self.name, capabilities=("video",) if video else ("image",),
                         details=details)

    def run(self, handle: DiffusersHandle, op: str, request: Any, emit: Callable[[Any], None],
            cancel: threading.Event) -> Any:
        if op in (IMAGE_GENERATE, IMAGE_EDIT):
            return generate_image(handle, request, emit, cancel)
        if op == VIDEO_GENERATE:
            return generate_video(handle, request, emit, cancel)
        raise CapabilityError(f"diffusers models do not serve {op!r}")

    def offload(self, handle: DiffusersHandle, mode: str) -> bool:
        if not handle.device.startswith("cuda") or mode not in ("model", "sequential"):
            return False
        if handle.offload == mode:
            return True
        if hasattr(handle.pipe, "remove_all_hooks"):
            handle.pipe.remove_all_hooks()
        _apply_offload(handle.pipe, mode, handle.device)
        handle.offload = mode
        handle.derived.clear()
        return True

    def unload(self, handle: DiffusersHandle) -> None:
        pipe = handle.pipe
        if hasattr(pipe, "remove_all_hooks"):
            pipe.remove_all_hooks()
        handle.derived.clear()
        handle.pipe = None
        del pipe
        free_memory()


def free_memory() -> None:
    """Give back what torch cached (after an unload or an interrupted generation)."""
    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# --- serving operations ---------------------------------------------------------------------------


def image_size_step(pipe: Any, family: str) -> int:
    """Width and height must be multiples of this: the VAE's factor, doubled where latents are
    packed in 2x2 patches (Flux)."""
    factor = int(getattr(pipe, "vae_scale_factor", 8) or 8)
    return factor * 2 if family == "flux" else factor


def native_size(pipe: Any) -> tuple[int, int]:
    unet = getattr(pipe, "unet", None)
    factor = int(getattr(pipe, "vae_scale_factor", 8) or 8)
    if unet is not None:
        side = int(unet.config.sample_size) * factor
    else:
        side = int(getattr(pipe, "default_sample_size", 128)) * factor
    return side, side


def video_size_step(pipe: Any) -> int:
    spatial = int(getattr(pipe, "vae_scale_factor_spatial", 0) or getattr(pipe, "vae_scale_factor", 8) or 8)
    transformer = getattr(pipe, "transformer", None)
    patch = getattr(getattr(transformer, "config", None), "patch_size", 1) or 1
    if isinstance(patch, list | tuple):
        patch = patch[-1]
    return spatial * int(patch)


def generator(seed: int) -> Any:
    """A CPU generator: the same seed gives the same image on CPU and CUDA."""
    import torch

    return torch.Generator("cpu").manual_seed(seed)


class _Interrupted(Exception):
    """Raised inside the pipeline at a step boundary when the call was cancelled."""


class StepCallback:
    """The ``callback_on_step_end`` for one call: a ``StepProgress`` each step, stop when cancelled.

    ``emit`` only queues the event for the caller, so a slow client never slows the model.
    """

    def __init__(self, total: int, emit: Callable[[Any], None], cancel: threading.Event) -> None:
        self.total = total
        self.emit = emit
        self.cancel = cancel
        self.steps = 0

    def __call__(self, pipe: Any, step: int, timestep: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        self.steps = step + 1
        if self.cancel.is_set():
            pipe._interrupt = True  # pipelines that swallow exceptions still skip the rest
            raise _Interrupted
        total = getattr(pipe, "_num_timesteps", None) or self.total
        self.emit(StepProgress(self.steps, int(total)))
        return kwargs


def call_pipeline(handle: DiffusersHandle, pipe: Any, kwargs: dict[str, Any], total: int,
                  emit: Callable[[Any], None], cancel: threading.Event) -> tuple[Any, int]:
    """Run one generation under the handle's lock; the output and the steps that ran."""
    taken = {"callback_on_step_end", "callback", "callback_steps"} & set(kwargs)
    if taken:
        raise CapabilityError(f"options may not set {', '.join(sorted(taken))}: progress and cancellation use the "
                              "step callback")
    callback = StepCallback(total, emit, cancel)

    def cancelled() -> ToolCancelled:
        return ToolCancelled(f"the generation was cancelled at step {callback.steps}/{total}; nothing was saved")

    while not handle.lock.acquire(timeout=0.1):
        if cancel.is_set():  # waiting behind another generation: still cancellable
            raise cancelled()
    try:
        if cancel.is_set():
            raise cancelled()
        try:
            out = pipe(**kwargs, callback_on_step_end=callback)
        except _Interrupted:
            if hasattr(pipe, "maybe_free_model_hooks"):
                pipe.maybe_free_model_hooks()  # offloaded modules go back to the CPU
            free_memory()
            raise cancelled() from None
        finally:
            pipe._interrupt = False
        if cancel.is_set() and callback.steps < total:  # a pipeline that swallowed the interrupt
            raise cancelled()
        return out, callback.steps
    finally:
        handle.lock.release()


def generate_image(handle: DiffusersHandle, req: ImageRequest, emit: Callable[[Any], None],
                   cancel: threading.Event) -> ImageResult:
    kw: dict[str, Any] = {"prompt": req.prompt, "width": req.width, "height": req.height,
                          "num_inference_steps": req.steps, "guidance_scale": req.guidance,
                          "generator": generator(req.seed)}
    if req.negative_prompt:
        kw["negative_prompt"] = req.negative_prompt
        if handle.family == "flux":
            kw["true_cfg_scale"] = max(1.5, req.guidance)  # Flux only honours a negative prompt with true CFG
    total = req.steps
    pipe = handle.pipe
    if isinstance(req, EditRequest):
        if (req.image.width, req.image.height) != (req.width, req.height):
            raise CapabilityError(f"the input image is {req.image.width}x{req.image.height} but the request asks "
                                  f"for {req.width}x{req.height}; resize it first")
        pipe = handle.image_to_image()
        kw["image"] = req.image.to_pil()
        kw["strength"] = req.strength
        total = max(1, min(req.steps, int(req.steps * req.strength)))
    kw.update(req.options)
    started = time.perf_counter()
    out, steps = call_pipeline(handle, pipe, kw, total, emit, cancel)
    seconds = time.perf_counter() - started
    return ImageResult(image=RawImage.from_pil(out.images[0]), seed=req.seed, steps=steps,
                       pipeline=type(pipe).__name__, seconds=seconds)


def _frames_uint8(frames: Any) -> Any:
    """The first video of a pipeline output as (frames, H, W, 3) uint8."""
    import numpy as np

    video = frames[0] if isinstance(frames, list | tuple) or getattr(frames, "ndim", 0) == 5 else frames
    if isinstance(video, list):  # PIL images
        video = np.stack([np.asarray(im.convert("RGB")) for im in video])
    video = np.asarray(video)
    if video.dtype != np.uint8:
        video = (np.clip(video, 0.0, 1.0) * 255).round().astype(np.uint8)
    return np.ascontiguousarray(video)


def generate_video(handle: DiffusersHandle, req: VideoRequest, emit: Callable[[Any], None],
                   cancel: threading.Event) -> VideoResult:
    kw: dict[str, Any] = {"prompt": req.prompt, "width": req.width, "height": req.height, "num_frames": req.frames,
                          "num_inference_steps": req.steps, "guidance_scale": req.guidance,
                          "generator": generator(req.seed), "output_type": "np"}
    if req.negative_prompt:
        kw["negative_prompt"] = req.negative_prompt
    if handle.family == "ltx":
        kw["frame_rate"] = req.fps
    kw.update(req.options)
    started = time.perf_counter()
    out, steps = call_pipeline(handle, handle.pipe, kw, req.steps, emit, cancel)
    seconds = time.perf_counter() - started
    video = _frames_uint8(out.frames)
    count, height, width, _ = video.shape
    return VideoResult(frames=video.tobytes(), count=int(count), width=int(width), height=int(height), fps=req.fps,
                       seed=req.seed, steps=steps, pipeline=type(handle.pipe).__name__, seconds=seconds)
