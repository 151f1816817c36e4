"""The ``llama_cpp`` backend: GGUF models through llama-cpp-python.

- ``estimate`` reads the GGUF header (no model library needed): weights + KV cache for
  the configured context + compute buffer (+ the mmproj file for vision models);
- ``load`` returns a ``llama_cpp.Llama`` with ``n_ctx = context_size``; with ``mmproj``
  set, the library's multimodal chat handler is attached (``MTMDChatHandler`` by
  default, which uses the model's own chat template; ``options.chat_handler`` picks
  another, e.g. ``"qwen2.5-vl"``); the projector is opened at load, so a wrong mmproj fails
  the load with the reason instead of every later call;
- ``unload`` really frees: ``close()`` releases the llama.cpp context, model and mapped
  file at once instead of whenever the garbage collector gets to them.

Other ``[models.<name>.options]`` keys are passed to ``Llama(...)`` (``n_threads``,
``n_batch``, ``n_gpu_layers``, ``embedding``, ``flash_attn``, ``seed``...).
"""

from __future__ import annotations

import gc
import importlib.util
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.backends import MemoryEstimate, ModelBackend, ModelSpec
from core.capabilities import COUNT, EMBED, GENERATE, PARALLEL_SAMPLES, SAMPLE, CapabilityError, ModelInfo
from core.tools import ToolError

CHAT_HANDLERS = {
    "mtmd": "MTMDChatHandler",
    "qwen2.5-vl": "Qwen25VLChatHandler",
    "llava-1.5": "Llava15ChatHandler",
    "llava-1.6": "Llava16ChatHandler",
    "moondream": "MoondreamChatHandler",
    "nanollava": "NanoLlavaChatHandler",
    "minicpm-v-2.6": "MiniCPMv26ChatHandler",
    "llama-3-vision-alpha": "Llama3VisionAlphaChatHandler",
    "gemma4": "Gemma4ChatHandler",
}


def resolve_file(value: str, *, suffix: str = ".gguf", exclude: tuple[str, ...] = ("mmproj",)) -> Path:
    """A path, or ``pkg:<package>``: the ``suffix`` file shipped inside that installed package."""
    if value.startswith("pkg:"):
        package = value[4:].strip()
        spec = importlib.util.find_spec(package) if package else None
        if spec is None or not spec.submodule_search_locations:
            raise ToolError(f"model package {package!r} is not installed (pip install {package.replace('_', '-')})")
        root = Path(next(iter(spec.submodule_search_locations)))
        found = sorted(p for p in root.rglob(f"*{suffix}") if not any(x in p.name.lower() for x in exclude))
        if not found:
            raise ToolError(f"package {package!r} contains no {suffix} file")
        return found[0]
    path = Path(value).expanduser()
    if not path.is_file():
        raise ToolError(f"model file {path} does not exist; fix `file` in the model's [models.*] section")
    return path


def _quiet_mtmd_log() -> None:
    """Route libmtmd's log through llama-cpp-python's own callback, which honours ``verbose``.

    libmtmd's default logger prints everything to stderr, debug lines included, and the
    library only silences it while opening the projector: every vision call would write the
    user's prompt text ("add_text: ...") into the daemon's log.
    """
    import llama_cpp._logger as llama_logger
    import llama_cpp.mtmd_cpp as mtmd_cpp

    mtmd_cpp.mtmd_helper_log_set(llama_logger.llama_log_callback, None)  # sets libmtmd's log too


def _mmproj_hint(model: Path, mmproj: Path) -> str:
    """Why libmtmd refused a projector, when the GGUF headers tell (its log goes to stderr)."""
    from core.gguf_meta import read_metadata

    try:
        text, _, _ = read_metadata(model)
        proj, _, _ = read_metadata(mmproj)
    except (OSError, ValueError):
        return " Check that it is a vision projector (mmproj) GGUF."
    if proj.get("general.architecture") != "clip":
        return " It is not a vision projector: an mmproj GGUF has general.architecture = \"clip\"."
    width = text.get(f"{text.get('general.architecture')}.embedding_length")
    out = proj.get("clip.vision.projection_dim")
    if isinstance(width, int) and isinstance(out, int) and width != out:
        return (f" The projector makes {out}-wide embeddings but the model's are {width} wide: this mmproj "
                "belongs to another model; use the mmproj file published with this GGUF.")
    return " Check that the mmproj file was published with this GGUF (same model family and size)."


class LlamaCppBackend(ModelBackend):
    name = "llama_cpp"
    devices = ("cpu", "cuda")
    capabilities = ("chat", "embed")

    def _paths(self, spec: ModelSpec) -> tuple[Path, Path | None]:
        if not spec.file:
            raise ToolError(f"model {spec.name!r} has no `file`; set it to a .gguf path or pkg:<package>")
        model = resolve_file(spec.file)
        mmproj = resolve_file(spec.config.mmproj, exclude=()) if spec.config.mmproj else None
        return model, mmproj

    @staticmethod
    def _model_cache(spec: ModelSpec) -> Path:
        if spec.cache_dir:
            return Path(spec.cache_dir)
        from core.config import LoomConfig

        return LoomConfig().model_cache_dir

    def estimate(self, spec: ModelSpec, device: str) -> MemoryEstimate:
        from core.gguf_meta import estimate_llama

        from .convert import check_target, converted_path

        model, mmproj = self._paths(spec)
        n_batch = int(spec.config.options.get("n_batch", 512))
        extra = [mmproj] if mmproj else []
        if spec.config.draft_model and spec.config.speculative not in (False, "off"):
            extra.append(resolve_file(spec.config.draft_model))  # its KV cache is small beside the weights
        convert_to = None
        if spec.config.quantize:  # the weights that will load: the converted copy, made or predicted
            kind = check_target(spec.name, spec.config.quantize)
            done = converted_path(model, kind, self._model_cache(spec))
            model, convert_to = (done, None) if done.is_file() else (model, kind)
        parts = estimate_llama(model, spec.config.context_size, n_batch=n_batch, extra_files=tuple(extra),
                               convert_to=convert_to)
        return MemoryEstimate(total=sum(parts.values()), device=device, breakdown=parts)

    def load(self, spec: ModelSpec, device: str) -> Any:
        import llama_cpp
        import llama_cpp.llama_chat_format as chat_format

        model, mmproj = self._paths(spec)
        options = dict(spec.config.options)
        if spec.config.quantize:
            from .convert import check_target, convert

            kind = check_target(spec.name, spec.config.quantize)
            model = convert(spec.name, model, kind, self._model_cache(spec), threads=options.get("n_threads"))
        handler_name = options.pop("chat_handler", "mtmd")
        kwargs: dict[str, Any] = {"n_ctx": spec.config.context_size, "verbose": False}
        if device.startswith("cuda"):
            kwargs["n_gpu_layers"] = -1
            if ":" in device:
                kwargs["main_gpu"] = int(device.split(":", 1)[1])
        if mmproj is not None:
            _quiet_mtmd_log()
            cls_name = CHAT_HANDLERS.get(handler_name)
            if cls_name is None or not hasattr(chat_format, cls_name):
                raise ToolError(f"unknown chat_handler {handler_name!r}; choose one of {sorted(CHAT_HANDLERS)}")
            kwargs["chat_handler"] = getattr(chat_format, cls_name)(clip_model_path=str(mmproj), verbose=False)
        kwargs.update(options)
        if "n_threads" in options:
            # llama-cpp-python gives batches (prompts, speculative drafts) every core by default;
            # a model given N threads gets N for its batches too. On a busy machine spinning
            # batch threads beyond that stall each other (a 5-token batch took 17 s, not 0.7 s).
            kwargs.setdefault("n_threads_batch", options["n_threads"])
        try:
            llm = llama_cpp.Llama(str(model), **kwargs)
        except ValueError as exc:
            raise ToolError(f"llama.cpp could not load {model}: {exc}") from None
        try:
            llm._loom_speculative = self._speculation(spec, kwargs, llm)
        except BaseException:
            llm.close()
            raise
        init = getattr(kwargs.get("chat_handler"), "_init_mtmd_context", None)
        if mmproj is not None and init is not None:
            # The library opens the projector lazily, on the first chat: a wrong mmproj would
            # then fail every call with a vague "could not answer". Open it now, so the pool
            # reports the load as failed (with the reason) and measures the projector's memory.
            try:
                init(llm)
            except ValueError as exc:
                llm.close()
                raise ToolError(f"llama.cpp could not load the vision projector {mmproj} for {model}: {exc}."
                                f"{_mmproj_hint(model, mmproj)}") from None
        return llm

    def _speculation(self, spec: ModelSpec, kwargs: dict[str, Any], llm: Any) -> dict[str, Any]:
        """Speculative decoding settings for a loaded model (see ``speculative.py``).

        ``speculative = "auto"`` (the default) drafts by prompt lookup for text models; its
        adaptive draft length keeps the cost near zero where the answer does not copy the
        prompt. A ``draft_model`` (a small GGUF with the same tokenizer) drafts instead.
        """
        import llama_cpp

        mode = spec.config.speculative
        if isinstance(mode, str) and mode not in ("auto", "on", "off"):
            raise ToolError(f"model {spec.name!r}: speculative must be true, false or \"auto\", got {mode!r}")
        enabled = mode in (True, "on") or (mode == "auto" and "chat_handler" not in kwargs)
        draft = None
        if spec.config.draft_model and enabled:
            path = resolve_file(spec.config.draft_model)
            draft = llama_cpp.Llama(str(path), n_ctx=kwargs["n_ctx"], verbose=False,
                                    n_threads=kwargs.get("n_threads"), n_gpu_layers=kwargs.get("n_gpu_layers", 0))
            if draft.n_vocab() != llm.n_vocab():
                draft.close()
                raise ToolError(f"model {spec.name!r}: the draft model {path.name} has a vocabulary of "
                                f"{draft.n_vocab()} tokens, the model {llm.n_vocab()}; a draft must share the "
                                "model's tokenizer (use a smaller model of the same family)")
        return {"enabled": enabled, "draft": draft}

    def describe(self, handle: Any, spec: ModelSpec) -> ModelInfo:
        from .chat import embeds, has_vision

        caps = ("chat", "embed") if embeds(handle) else ("chat",)
        meta = getattr(handle, "metadata", None) or {}
        return ModelInfo(name=spec.name, backend=self.name, capabilities=caps, context_size=handle.n_ctx(),
                         vision=has_vision(handle),
                         details={"architecture": meta.get("general.architecture"),
                                  "chat_template": bool(meta.get("tokenizer.chat_template")),
                                  PARALLEL_SAMPLES: True})  # chat.sample: one prompt evaluation, n sequences

    def run(self, handle: Any, op: str, request: Any, emit: Callable[[Any], None],
            cancel: threading.Event) -> Any:
        from . import chat

        if op == GENERATE:
            return chat.generate(handle, request, emit, cancel)
        if op == COUNT:
            return chat.count(handle, request)
        if op == SAMPLE:
            from .parallel import sample

            return sample(handle, request, cancel)
        if op == EMBED:
            return chat.embed(handle, request)
        raise CapabilityError(f"llama.cpp models do not serve {op!r}")

    def unload(self, handle: Any) -> None:
        draft = (getattr(handle, "_loom_speculative", None) or {}).get("draft")
        if draft is not None:
            draft.close()
        close = getattr(handle, "close", None)
        if close is not None:
            close()
        del handle
        gc.collect()
