"""The ``transformers`` backend: Qwen2-VL / Qwen2.5-VL / Qwen3-VL conditional generation.

``file`` (or ``files.model``) is a local model folder (config.json, safetensors, tokenizer,
preprocessor_config.json); nothing is ever downloaded (``local_files_only``). Images go
through the *PIL* image processor (``backend="pil"``, or ``use_fast=False`` on older
transformers): the torchvision one cannot run beside the CPU torch here.

The backend serves two capabilities (``core.capabilities``):

- ``chat`` (``info.vision = True``): ``chat.generate`` with image parts in the messages,
  rendered through the model's own chat template, text streamed as ``ChatDelta``s and
  stopped at the next token when the call is cancelled; ``chat.count``;
- ``vision_embed``: images (mean of the last hidden state over the image tokens) and texts
  (last token's last hidden state) in one space, with Matryoshka truncation to a requested
  dimension and re-normalisation.

Images arrive as encoded bytes and are decoded here with ``core.images.decode`` (byte,
pixel and aspect caps), so a worker process never trusts what it is sent.

Options (``[models.<name>.options]``): ``dtype`` ("auto", "float32", "bfloat16",
"float16"; auto = the checkpoint's dtype on CUDA, float32 on CPU), ``attn_implementation``.
"""

from __future__ import annotations

import inspect
import json
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.backends import MemoryEstimate, ModelBackend, ModelSpec
from core.capabilities import (
    COUNT,
    EMBED_IMAGES,
    EMBED_TEXTS,
    GENERATE,
    CapabilityError,
    ChatDelta,
    ChatRequest,
    ChatResult,
    ChatUsage,
    CountRequest,
    EmbedResult,
    ImageEmbedRequest,
    ModelInfo,
    TextEmbedRequest,
    TokenCount,
    matryoshka,
)
from core.safetensors_meta import safetensors_bytes
from core.tools import ToolCancelled, ToolError

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
    capabilities = ("chat", "vision_embed")

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
                               chat_template(tokenizer, folder), context_size=spec.config.context_size)

    def describe(self, handle: TransformersVLM, spec: ModelSpec) -> ModelInfo:
        return ModelInfo(name=spec.name, backend=self.name, capabilities=self.capabilities,
                         context_size=spec.config.context_size, vision=True,
                         details={"dim": handle.dim, "architecture": getattr(handle.model.config, "model_type", None),
                                  "device": str(handle.device)})

    def run(self, handle: TransformersVLM, op: str, request: Any, emit: Callable[[Any], None],
            cancel: threading.Event) -> Any:
        if op == GENERATE:
            return handle.chat(request, emit, cancel)
        if op == COUNT:
            return handle.count(request)
        if op == EMBED_IMAGES:
            req: ImageEmbedRequest = request
            images = [decode_image(b, i) for i, b in enumerate(req.images)]
            return EmbedResult.from_rows(handle.embed_images(images, req.dims, cancel))
        if op == EMBED_TEXTS:
            treq: TextEmbedRequest = request
            return EmbedResult.from_rows(handle.embed_texts(treq.texts, treq.dims, cancel))
        raise CapabilityError(f"transformers VLMs do not serve {op!r}")

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


def decode_image(data: bytes, index: int = 0) -> Any:
    """Encoded bytes -> RGB PIL image, with the default caps (bombs, truncation, non-images)."""
    from core.images import ImageLimits, decode

    return decode(data, limits=ImageLimits(), what=f"image {index + 1}")


def chat_messages(messages: Sequence[Any]) -> tuple[list[dict[str, Any]], list[Any]]:
    """OpenAI-shaped messages -> template messages (``{"type": "image"}`` placeholders) and the
    decoded images in order."""
    from core.images import content_image

    if not messages:
        raise CapabilityError("no messages to answer: pass at least one {'role': 'user', 'content': ...}")
    out: list[dict[str, Any]] = []
    images: list[Any] = []
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict) or msg.get("role") not in ("system", "user", "assistant", "tool"):
            raise CapabilityError(f"message {i} must be a dict with a role (system, user, assistant, tool)")
        content = msg.get("content")
        if content is None or isinstance(content, str):
            out.append({"role": msg["role"], "content": content or ""})
            continue
        if not isinstance(content, list):
            raise CapabilityError(f"message {i}: content must be a string or a list of parts")
        parts: list[dict[str, Any]] = []
        for part in content:
            if isinstance(part, str):
                parts.append({"type": "text", "text": part})
                continue
            found = content_image(part)
            if found is not None:
                images.append(decode_image(found[0], len(images)))
                parts.append({"type": "image"})
            elif isinstance(part, dict) and part.get("type") == "text":
                parts.append({"type": "text", "text": str(part.get("text", ""))})
            else:
                raise CapabilityError(f"message {i}: unsupported content part {part!r:.80}")
        out.append({"role": msg["role"], "content": parts})
    return out, images


class _Streamer:
    """A transformers streamer that emits text deltas as tokens are generated, and asks to
    stop at a stop string. Decodes the whole completion each time (completions are short)
    and holds back an incomplete UTF-8 character."""

    def __init__(self, tokenizer: Any, emit: Callable[[Any], None], stop: list[str]) -> None:
        self.tokenizer = tokenizer
        self.emit = emit
        self.stop = stop
        self.ids: list[int] = []
        self.sent = 0
        self.text = ""
        self.stopped = False
        self.first_at: float | None = None
        self._prompt_seen = False

    def put(self, value: Any) -> None:
        if not self._prompt_seen:  # generate() hands the prompt over first
            self._prompt_seen = True
            return
        self.ids.extend(int(t) for t in value.reshape(-1).tolist())
        self._send(final=False)

    def end(self) -> None:
        self._send(final=True)  # what was held back (a trailing invalid byte stays as U+FFFD)

    def _send(self, final: bool) -> None:
        if self.stopped:
            return
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        if text.endswith("\ufffd") and not final:
            return
        for s in self.stop:
            cut = text.find(s)
            if cut >= 0:
                text, self.stopped = text[:cut], True
        self.text = text
        if len(text) > self.sent:
            if self.first_at is None:
                self.first_at = time.perf_counter()
            self.emit(ChatDelta(text[self.sent:], len(self.ids)))
            self.sent = len(text)


class TransformersVLM:
    """A loaded Qwen-VL model: ``chat``, ``count``, ``embed_images``, ``embed_texts`` (and ``generate`` for
    one prompt). Thread-safe (one call at a time). Only the backend holds it."""

    def __init__(self, model: Any, tokenizer: Any, image_processor: Any, device: str, name: str,
                 template: str, context_size: int = 4096) -> None:
        self.context_size = context_size
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

    def render(self, messages: list[dict[str, Any]]) -> str:
        """Template messages (with ``{"type": "image"}`` parts) -> the prompt text."""
        from jinja2 import Template  # transformers' own dependency

        try:
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True,
                                                      chat_template=self.template)
        except Exception:  # an odd template: fall back to Qwen's own format
            return Template(QWEN_TEMPLATE).render(messages=messages, add_generation_prompt=True)

    def prompt(self, images: int, text: str, system: str | None = None) -> str:
        content = [{"type": "image"} for _ in range(images)] + [{"type": "text", "text": text}]
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": content}]
        return self.render(messages)

    # -- generation --------------------------------------------------------------------------

    def _generate(self, inputs: dict[str, Any], *, max_new_tokens: int, sampling: dict[str, Any],
                  stop: Callable[[], bool], streamer: Any = None, seed: int | None = None) -> Any:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        class _Stop(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                return torch.full((input_ids.shape[0],), stop(), dtype=torch.bool, device=input_ids.device)

        eos = [self.tokenizer.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>")]
        eos = [e for e in eos if isinstance(e, int) and e >= 0] or None
        with self.lock, torch.inference_mode():
            if seed is not None and sampling.get("do_sample"):
                torch.manual_seed(seed)
            return self.model.generate(**inputs, max_new_tokens=max_new_tokens, eos_token_id=eos,
                                       pad_token_id=self.tokenizer.pad_token_id, streamer=streamer,
                                       stopping_criteria=StoppingCriteriaList([_Stop()]), **sampling)

    def generate(self, images: Sequence[Any], prompt: str, *, max_new_tokens: int = 256, system: str | None = None,
                 temperature: float = 0.0, cancelled: threading.Event | None = None) -> str:
        """Text for images + one prompt, greedy unless ``temperature`` > 0 (blocking)."""
        inputs = self._inputs(self.prompt(len(images), prompt, system), images)
        sampling: dict[str, Any] = {"do_sample": True, "temperature": temperature} if temperature > 0 else \
            {"do_sample": False}
        out = self._generate(inputs, max_new_tokens=max_new_tokens, sampling=sampling,
                             stop=lambda: cancelled is not None and cancelled.is_set())
        new = out[0, inputs["input_ids"].shape[1]:]
        return self.tokenizer.decode(new, skip_special_tokens=True).strip()

    def chat(self, req: ChatRequest, emit: Callable[[Any], None], cancel: threading.Event) -> ChatResult:
        """``chat.generate``: messages with image parts, text streamed through ``emit``."""
        t0 = time.perf_counter()
        if req.tools and req.tool_choice != "none":
            raise CapabilityError(f"model {self.name!r} (transformers) does not do tool calling; use a llama.cpp "
                                  "model for tool calls")
        if req.logprobs:
            raise CapabilityError(f"model {self.name!r} (transformers) does not return logprobs; use a llama.cpp model")
        if req.response_format is not None or req.grammar is not None:
            raise CapabilityError(f"model {self.name!r} (transformers) cannot constrain its output (response_format, "
                                  "grammar); use a llama.cpp model")
        messages, images = chat_messages(req.messages)
        inputs = self._inputs(self.render(messages), images)
        prompt_tokens = int(inputs["input_ids"].shape[1])
        sampling: dict[str, Any] = {"do_sample": False}
        if req.temperature > 0:
            sampling = {"do_sample": True, "temperature": req.temperature, "top_p": req.top_p, "top_k": req.top_k}
            if req.min_p is not None:
                sampling["min_p"] = req.min_p
        if req.repeat_penalty != 1.0:
            sampling["repetition_penalty"] = req.repeat_penalty
        max_new = req.max_tokens or max(1, self.context_size - prompt_tokens)
        streamer = _Streamer(self.tokenizer, emit, list(req.stop))
        if cancel.is_set():
            return ChatResult("", "cancelled", usage=ChatUsage(prompt_tokens=prompt_tokens,
                                                               total_s=time.perf_counter() - t0))
        out = self._generate(inputs, max_new_tokens=max_new, sampling=sampling, streamer=streamer, seed=req.seed,
                             stop=lambda: cancel.is_set() or streamer.stopped)
        end = time.perf_counter()
        new = out[0, prompt_tokens:]
        completion = int(new.shape[0])
        ended_on_eos = completion > 0 and int(new[-1]) in {self.tokenizer.convert_tokens_to_ids(t)
                                                           for t in ("<|im_end|>", "<|endoftext|>")}
        if cancel.is_set():
            finish = "cancelled"
        elif streamer.stopped or ended_on_eos:
            finish = "stop"
        else:
            finish = "length" if completion >= max_new else "stop"
        first = streamer.first_at
        usage = ChatUsage(prompt_tokens=prompt_tokens, completion_tokens=completion,
                          ttft_s=None if first is None else first - t0, total_s=end - t0,
                          tokens_per_s=(completion - 1) / (end - first)
                          if first is not None and completion > 1 and end > first else None)
        return ChatResult(streamer.text, finish, usage=usage)

    def count(self, req: CountRequest) -> TokenCount:
        """``chat.count``: tokens of a prompt (images count as the positions they take)."""
        if req.messages is not None:
            messages, images = chat_messages(req.messages)
            return TokenCount(int(self._inputs(self.render(messages), images)["input_ids"].shape[1]))
        return TokenCount(len(self.tokenizer(req.text or "", add_special_tokens=False)["input_ids"]))

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
                raise ToolCancelled("the embedding was cancelled")
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
                raise ToolCancelled("the embedding was cancelled")
            inputs = self._inputs(t or " ", [])
            rows.append(self._last_hidden(inputs)[-1].cpu().numpy())
        return matryoshka(np.stack(rows), dims)
