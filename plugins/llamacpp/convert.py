"""``quantize = "q8_0"``: convert a GGUF's weights once, for CPUs that lack fast kernels for its own.

Why: llama.cpp's batched matrix kernels on x86 (llamafile's sgemm) cover F16, Q8_0 and Q4_0
but not Q4_1, Q5_x or the K-quants. Without them a batch of n tokens (a prompt, a
speculative verify) costs almost n single-token decodes. The price: single-token decode
reads every weight once per token, and Q8_0 weights are 1.5x the bytes of Q4_1, so decoding
gets slower where memory bandwidth bounds it. ``bench/quantize.py`` measures both on the
packaged SmolLM2 (docs/throughput.md has the figures): worth it for prompt-heavy work (long
documents, retrieval, large edits with a short answer), not for long answers. Converting
4- or 5-bit weights to Q8_0 or F16 keeps what they hold up to rounding far below the 4-bit
step (greedy text can still differ at near-ties); the cost is memory (Q8_0: 1.5x the Q4_1
weights) and a one-time conversion (1-2 s for 135M parameters, about a minute for 7B).

The converted file is kept under the model cache (``[paths] model_cache``, default
``<cache_dir>/models``), named after the source file and a key of its path, size, mtime
and the target type, so a changed source is converted again and several daemons or
replicas share one copy (written to a temporary name, then renamed into place).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import threading
import time
from pathlib import Path

from core.gguf_meta import TYPE_IDS, read_header
from core.logging import get_logger
from core.tools import ToolError

log = get_logger("loom.llamacpp")

# The target types offered: those with batched CPU kernels, to which 4/5/8-bit weights
# convert without losing what they hold.
TARGETS = {"q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0", "f16": "LLAMA_FTYPE_MOSTLY_F16"}


def check_target(model: str, target: str) -> str:
    kind = str(target).lower()
    if kind not in TARGETS:
        raise ToolError(f"model {model!r}: quantize must be one of {sorted(TARGETS)} (or unset), got {target!r}")
    return kind


def converted_path(source: Path, kind: str, cache_dir: Path) -> Path:
    st = source.stat()
    key = hashlib.sha256(f"{source.resolve()}|{st.st_size}|{st.st_mtime_ns}|{kind}".encode()).hexdigest()[:16]
    return cache_dir / f"{source.stem}.{kind}.{key}.gguf"


def already(source: Path, kind: str) -> bool:
    """Whether every matrix of ``source`` already has the target type (nothing to convert)."""
    _kv, tensors, _start = read_header(source)
    return all(t.type == TYPE_IDS[kind] for t in tensors if len(t.shape) >= 2)


def convert(model: str, source: Path, kind: str, cache_dir: Path, *, threads: int | None = None) -> Path:
    """The path of ``source`` converted to ``kind`` (converting it now if no copy exists)."""
    out = converted_path(source, kind, cache_dir)
    if out.is_file():
        return out
    if already(source, kind):
        return source
    import llama_cpp

    from core.gguf_meta import converted_weights

    cache_dir.mkdir(parents=True, exist_ok=True)
    need = converted_weights(read_header(source)[1], kind)
    free = shutil.disk_usage(cache_dir).free
    if free < need * 1.05:
        raise ToolError(f"model {model!r}: converting {source.name} to {kind} needs {need / 2**20:.0f} MiB in "
                        f"{cache_dir}, which has {free / 2**20:.0f} MiB free; free some space, point "
                        "[paths] model_cache elsewhere, or remove `quantize` from the model's config")
    tmp = out.with_name(f"{out.name}.{os.getpid()}.{threading.get_ident()}.part")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, TARGETS[kind])
    params.allow_requantize = True
    params.nthread = threads or 0
    log.info("converting model weights", model=model, source=str(source), to=kind, mib=round(need / 2**20))
    t0 = time.perf_counter()
    try:
        rc = llama_cpp.llama_model_quantize(str(source).encode(), str(tmp).encode(), ctypes.byref(params))
        if rc != 0 or not tmp.is_file():
            raise ToolError(f"model {model!r}: llama.cpp could not convert {source} to {kind} (code {rc}); "
                            "remove `quantize` from the model's config to load the file as it is")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    log.info("model weights converted", model=model, path=str(out), seconds=round(time.perf_counter() - t0, 2))
    return out
