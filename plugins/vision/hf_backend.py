"""The ``transformers`` backend: Qwen2-VL / Qwen2.5-VL / Qwen3-VL conditional generation.

``file`` (or ``files.model``) is a local model folder (config.json, safetensors, tokenizer,
preprocessor_config.json); nothing is ever downloaded (``local_files_only``). Images go
through the *PIL* image processor (``backend="pil"``, or ``use_fast=False`` on older
transformers): the torchvision one cannot run beside the CPU torch here.

The handle does three things: generate text for images + a prompt, embed images (mean of
the last hidden state over the image tokens) and embed texts (last token's last hidden
state), both with Matryoshka truncation to a requested dimension and re-normalisation.

Options (``[models.<name>.options]``): ``dtype`` ("auto", "float32", "bfloat16",
"float16"; auto = the checkpoint's dtype on CUDA, float32 on CPU), ``attn_implementation``.
"""

from __future__ import annotations

import inspect
import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.backends import MemoryEstimate, ModelBackend, ModelSpec
from core.safetensors_meta import safetensors_bytes
from core.tools import ToolError

if TYPE_CHECKING:
    import numpy as np

_NAME_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8}

_CLASSES = {
    "qwen3_vl": "Qwen3VLForConditionalGeneration",
    "qwen3_vl_moe": "Qwen3VLMoeForConditionalGeneration",
    "qwen2_5_vl": "Qwen2_5_VLForConditionalGeneration",
    "qwen2_vl": "Qwen2VLForConditionalGeneration",
}

# Used only when neither the tokenizer nor the folder carries a chat template.
QWEN_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def model_dir(spec: ModelSpec) -> Path:
    file = spec.config.file or spec.config.files.get("model")
    if not file:
        raise ToolError(f"model {spec.name!r}: set file = \"/path/to/model-folder\" (a local transformers checkout)")
    if file.startswith("pkg:"):
        import importlib.util

        found = importlib.util.find_spec(file[4:])
        if found is None or not found.submodule_search_locations:
            raise ToolError(f"model {spec.name!r}: package {file[4:]!r} is not installed")
        return Path(next(iter(found.submodule_search_locations)))
    path = Path(file).expanduser()
    path = path.parent if path.is_file() else path
    if not (path / "config.json").is_file():
        raise ToolError(f"model {spec.name!r}: {path} is not a transformers model folder (no config.json)")
    return path


def _param_count(cfg: dict[str, Any]) -> int:
    """A parameter count from config.json alone (text decoder + vision tower), when no weights are local."""
    t = cfg.get("text_config") or cfg
    h, layers, vocab = t.get("hidden_size", 0), t.get("num_hidden_layers", 0), t.get("vocab_size", 0)
    heads = t.get("num_attention_heads", 1)
    kv = t.get("num_key_value_heads", heads)
    hd = t.get("head_dim") or (h // max(heads, 1))
    inter = t.get("intermediate_size", 4 * h)
    text = layers * (h * heads * hd * 2 + 2 * h * kv * hd + 3 * h * inter) + vocab * h * 2
    v = cfg.get("vision_config") or {}
    vh, depth = v.get("hidden_size", v.get("embed_dim", 0)), v.get("depth", 0)
    vi = v.get("intermediate_size", 4 * vh)
    merge = v.get("spatial_merge_size", 2) ** 2
    merger = (vh * merge) ** 2 + vh * merge * v.get("out_hidden_size", h)
    mergers = 1 + len(v.get("deepstack_visual_indexes") or [])  # Qwen3-VL feeds extra layers through their own
    patch = v.get("in_channels", 3) * v.get("temporal_patch_size", 2) * v.get("patch_size", 14) ** 2 * vh
    vision = depth * (4 * vh * vh + 2 * vh * vi) + mergers * merger + patch + v.get("num_position_embeddings", 0) * vh
    return int(text + vision)


def _kv_cache_bytes(cfg: dict[str, Any], context: int, elem: int) -> int:
    t = cfg.get("text_config") or cfg
    heads = t.get("num_attention_heads", 1)
    hd = t.get("head_dim") or (t.get("hidden_size", 0) // max(heads, 1))
    return 2 * t.get("num_hidden_layers", 0) * context * t.get("num_key_value_heads", heads) * hd * elem


def _dtype_name(spec: ModelSpec, device: str, cfg: dict[str, Any]) -> str:
    want = str(spec.config.options.get("dtype", "auto"))
    if want != "auto":
        if want not in _NAME_BYTES:
            raise ToolError(f"model {spec.name!r}: options.dtype must be one of auto, {', '.join(_NAME_BYTES)}")
        return want
    if device.startswith("cuda"):
        stored = cfg.get("torch_dtype") or cfg.get("dtype") or (cfg.get("text_config") or {}).get("dtype")
        return stored if stored in _NAME_BYTES else "bfloat16"
    return "float32"


class TransformersVLMBackend(ModelBackend):
    """Backend ``transformers``: a Qwen-VL family model from a local folder."""

    name = "transformers"
    devices = ("cpu", "cuda")

    def estimate(self, spec: ModelSpec, device: str) -> MemoryEstimate:
        if spec.config.memory is not None:
            return MemoryEstimate(total=spec.config.memory_override() or 0, device=device, source="override")
        folder = model_dir(spec)
        cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        elem = _NAME_BYTES[_dtype_name(spec, device, cfg)]
        weights = safetensors_bytes(folder, elem)
        if weights is None:
            weights = _param_count(cfg) * elem
        kv = _kv_cache_bytes(cfg, spec.config.context_size, elem)
        # Vision-tower activations for one max-size image plus the allocator's slack.
        compute = int(weights * 0.08) + 64 * 1024 * 1024
        return MemoryEstimate(total=weights + kv + compute, device=device,
                              breakdown={"weights": weights, "kv_cache": kv, "compute": compute})

    def load(self, spec: ModelSpec, device: str) -> TransformersVLM:
        import torch
        import transformers
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        folder = model_dir(spec)
        cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        dtype = getattr(torch, _dtype_name(spec, device, cfg))
        cls_name = _CLASSES.get(cfg.get("model_type", ""), "AutoModelForImageTextToText")
        cls = getattr(transformers, cls_name)
        kwargs: dict[str, Any] = {"dtype": dtype, "local_files_only": True}
        if spec.config.options.get("attn_implementation"):
            kwargs["attn_implementation"] = spec.config.options["attn_implementation"]
        model = cls.from_pretrained(str(folder), **kwargs).to(device).eval()
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        return TransformersVLM(model, tokenizer, pil_image_processor(folder), device, spec.name,
                               chat_template(tokenizer, folder))

    def unload(self, handle: TransformersVLM) -> None:
        import gc

        device = handle.device
        handle.model = None
        gc.collect()
        if str(device).startswith("cuda"):
            import torch

            torch.cuda.empty_cache()


def pil_image_processor(folder: Path) -> Any:
    """The slow, PIL-based image processor: torchvision does not work beside this torch."""
    import transformers

    major = int(transformers.__version__.split(".")[0])
    kwargs: dict[str, Any] = {"backend": "pil"} if major >= 5 else {"use_fast": False}
    proc = transformers.AutoImageProcessor.from_pretrained(str(folder), local_files_only=True, **kwargs)
    names = [c.__name__ for c in type(proc).__mro__]
    if any(n.endswith("Fast") or n == "TorchvisionBackend" for n in names):
        raise ToolError(f"{folder}: transformers picked a torchvision image processor ({type(proc).__name__}); "
                        "the PIL one is required here")
    return proc


def chat_template(tokenizer: Any, folder: Path) -> str:
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.chat_template
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    js = folder / "chat_template.json"
    if js.is_file():
        return json.loads(js.read_text(encoding="utf-8")).get("chat_template") or QWEN_TEMPLATE
    return QWEN_TEMPLATE


def matryoshka(vectors: np.ndarray, dims: int | None) -> np.ndarray:
    """Keep the first ``dims`` components and re-normalise each row to unit length."""
    import numpy as np

    vectors = np.asarray(vectors, dtype=np.float32)
    if dims is not None:
        if dims < 1 or dims > vectors.shape[1]:
            raise ToolError(f"dims must be between 1 and {vectors.shape[1]} for this model, got {dims}")
        vectors = vectors[:, :dims]
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


class TransformersVLM:
    """A loaded Qwen-VL model: ``generate``, ``embed_images``, ``embed_texts``. Thread-safe (one call at a time)."""

    kind = "transformers"

    def __init__(self, model: Any, tokenizer: Any, image_processor: Any, device: str, name: str,
                 template: str) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.device = device
        self.name = name
        self.template = template
        self.lock = threading.Lock()
        cfg = model.config
        self.image_token_id = int(getattr(cfg, "image_token_id", None)
                                  or tokenizer.convert_tokens_to_ids("<|image_pad|>"))
        self.merge = int(getattr(image_processor, "merge_size", 2))
        self._wants_mm_types = "mm_token_type_ids" in inspect.signature(model.forward).parameters

    @property
    def dim(self) -> int:
        cfg = self.model.config
        return int(getattr(cfg, "text_config", cfg).hidden_size)

    # -- inputs ------------------------------------------------------------------------------

    def _inputs(self, text: str, images: Sequence[Any]) -> dict[str, Any]:
        import torch

        feats: dict[str, Any] = {}
        if images:
            feats = dict(self.image_processor(images=list(images), return_tensors="pt"))
            grids = feats["image_grid_thw"]
            parts = text.split("<|image_pad|>")
            if len(parts) - 1 != len(images):
                raise ToolError(f"the prompt has {len(parts) - 1} image slots for {len(images)} images")
            counts = [int(g.prod()) // (self.merge**2) for g in grids]
            text = parts[0] + "".join("<|image_pad|>" * n + p for n, p in zip(counts, parts[1:], strict=True))
        enc = self.tokenizer(text, return_tensors="pt", add_special_tokens=False)
        out = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
        if images:
            out["pixel_values"] = feats["pixel_values"].to(self.model.dtype)
            out["image_grid_thw"] = feats["image_grid_thw"]
        if self._wants_mm_types:
            out["mm_token_type_ids"] = (enc["input_ids"] == self.image_token_id).to(torch.int32)
        return {k: v.to(self.device) for k, v in out.items()}

    def prompt(self, images: int, text: str, system: str | None = None) -> str:
        from jinja2 import Template  # transformers' own dependency

        content = [{"type": "image"} for _ in range(images)] + [{"type": "text", "text": text}]
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": content}]
        try:
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True,
                                                      chat_template=self.template)
        except Exception:  # an odd template: fall back to Qwen's own format
            return Template(QWEN_TEMPLATE).render(messages=messages, add_generation_prompt=True)

    # -- generation --------------------------------------------------------------------------

    def generate(self, images: Sequence[Any], prompt: str, *, max_new_tokens: int = 256, system: str | None = None,
                 temperature: float = 0.0, cancelled: threading.Event | None = None) -> str:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        class _Cancel(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                stop = cancelled is not None and cancelled.is_set()
                return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)

        inputs = self._inputs(self.prompt(len(images), prompt, system), images)
        sampling: dict[str, Any] = {"do_sample": False}
        if temperature > 0:
            sampling = {"do_sample": True, "temperature": temperature}
        eos = [self.tokenizer.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>")]
        eos = [e for e in eos if isinstance(e, int) and e >= 0] or None
        with self.lock, torch.inference_mode():
            out = self.model.generate(**inputs, max_new_tokens=max_new_tokens, eos_token_id=eos,
                                      pad_token_id=self.tokenizer.pad_token_id,
                                      stopping_criteria=StoppingCriteriaList([_Cancel()]), **sampling)
        new = out[0, inputs["input_ids"].shape[1]:]
        return self.tokenizer.decode(new, skip_special_tokens=True).strip()

    # -- embeddings --------------------------------------------------------------------------

    def _last_hidden(self, inputs: dict[str, Any]) -> Any:
        import torch

        with self.lock, torch.inference_mode():
            out = self.model(**inputs, output_hidden_states=True, use_cache=False)
        return out.hidden_states[-1][0].float()

    def embed_images(self, images: Sequence[Any], dims: int | None = None,
                     cancelled: threading.Event | None = None) -> np.ndarray:
        """One unit vector per image: the mean of the last hidden state over its image tokens."""
        import numpy as np

        rows = []
        for im in images:
            if cancelled is not None and cancelled.is_set():
                raise ToolError("cancelled")
            inputs = self._inputs("<|vision_start|><|image_pad|><|vision_end|>", [im])
            hidden = self._last_hidden(inputs)
            mask = inputs["input_ids"][0] == self.image_token_id
            rows.append(hidden[mask].mean(dim=0).cpu().numpy())
        return matryoshka(np.stack(rows), dims)

    def embed_texts(self, texts: Sequence[str], dims: int | None = None,
                    cancelled: threading.Event | None = None) -> np.ndarray:
        """One unit vector per text: the last token's last hidden state."""
        import numpy as np

        rows = []
        for t in texts:
            if cancelled is not None and cancelled.is_set():
                raise ToolError("cancelled")
            inputs = self._inputs(t or " ", [])
            rows.append(self._last_hidden(inputs)[-1].cpu().numpy())
        return matryoshka(np.stack(rows), dims)
