"""Read a GGUF file's metadata (not its tensors) and estimate what llama.cpp will hold.

A small reader of the header, without the ``gguf`` package: the pool estimates memory
before every load, so it must be cheap and dependency-free. Arrays (the vocabulary, the
merges) are skipped, keeping only their length.

The estimate follows what llama.cpp allocates on load:
- weights: the tensor data (file size minus the header), mapped or copied;
- KV cache: ``n_layer * n_ctx * n_head_kv * (key_len + value_len) * 2`` bytes (f16);
- compute buffer: the largest graph node, the logits or the attention scores for one
  micro-batch (``n_ubatch = min(512, n_ctx)``), in f32;
- a fixed overhead for the context, the sampler and the output buffer.
Checked against llama.cpp's own report for SmolLM2-135M at n_ctx 2048: weights 92.1 MiB,
KV 45 MiB, compute 99.4 MiB.
"""

from __future__ import annotations

import mmap
import struct
from math import prod
from pathlib import Path
from typing import Any, NamedTuple

_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
OVERHEAD = 16 * 1024 * 1024


class GGUFError(ValueError):
    pass


class ArrayInfo:
    """An array value: its element type and length (elements are not kept)."""

    def __init__(self, etype: int, length: int) -> None:
        self.etype, self.length = etype, length

    def __len__(self) -> int:
        return self.length

    def __repr__(self) -> str:
        return f"<array of {self.length}>"


# GGML tensor types: (elements per block, bytes per block), for the types llama.cpp writes
BLOCKS = {0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34),
          10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210), 30: (1, 2)}
TYPE_IDS = {"f32": 0, "f16": 1, "q4_0": 2, "q4_1": 3, "q5_0": 6, "q5_1": 7, "q8_0": 8,
            "q2_k": 10, "q3_k": 11, "q4_k": 12, "q5_k": 13, "q6_k": 14, "bf16": 30}


class TensorInfo(NamedTuple):
    name: str
    shape: tuple[int, ...]
    type: int  # a GGML type id (TYPE_IDS)

    @property
    def elements(self) -> int:
        return prod(self.shape)


def read_metadata(path: str | Path) -> tuple[dict[str, Any], int, int]:
    """(key/values, tensor count, offset where tensor data starts)."""
    kv, tensors, data_start = read_header(path)
    return kv, len(tensors), data_start


def read_header(path: str | Path) -> tuple[dict[str, Any], list[TensorInfo], int]:
    """(key/values, every tensor's name, shape and type, offset where tensor data starts)."""
    path = Path(path)
    try:
        f = path.open("rb")
    except OSError as exc:
        raise GGUFError(f"cannot open {path}: {exc.strerror}") from None
    with f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        if m[:4] != b"GGUF":
            raise GGUFError(f"{path} is not a GGUF file (bad magic {bytes(m[:4])!r})")
        version = struct.unpack_from("<I", m, 4)[0]
        if version < 2:
            raise GGUFError(f"{path}: GGUF version {version} is too old")
        n_tensors, n_kv = struct.unpack_from("<QQ", m, 8)
        pos = 24

        def string(p: int) -> tuple[str, int]:
            (n,) = struct.unpack_from("<Q", m, p)
            return m[p + 8 : p + 8 + n].decode("utf-8", "replace"), p + 8 + n

        def value(t: int, p: int) -> tuple[Any, int]:
            if t == _STRING:
                return string(p)
            if t == _ARRAY:
                et, n = struct.unpack_from("<IQ", m, p)
                p += 12
                if et == _STRING:
                    for _ in range(n):
                        p += 8 + struct.unpack_from("<Q", m, p)[0]
                elif et in _SCALARS:
                    p += n * struct.calcsize(_SCALARS[et])
                else:
                    raise GGUFError(f"{path}: nested arrays are not supported")
                return ArrayInfo(et, n), p
            fmt = _SCALARS.get(t)
            if fmt is None:
                raise GGUFError(f"{path}: unknown value type {t}")
            return struct.unpack_from(fmt, m, p)[0], p + struct.calcsize(fmt)

        kv: dict[str, Any] = {}
        tensors: list[TensorInfo] = []
        try:
            for _ in range(n_kv):
                key, pos = string(pos)
                (t,) = struct.unpack_from("<I", m, pos)
                kv[key], pos = value(t, pos + 4)
            for _ in range(n_tensors):
                name, pos = string(pos)
                (n_dims,) = struct.unpack_from("<I", m, pos)
                shape = struct.unpack_from(f"<{n_dims}Q", m, pos + 4)
                (ggml_type,) = struct.unpack_from("<I", m, pos + 4 + 8 * n_dims)
                tensors.append(TensorInfo(name, tuple(shape), ggml_type))
                pos += 4 + 8 * n_dims + 4 + 8
        except struct.error:
            raise GGUFError(f"{path}: truncated GGUF header") from None
        align = int(kv.get("general.alignment", 32))
        data_start = (pos + align - 1) // align * align
    return kv, tensors, data_start


def converted_weights(tensors: list[TensorInfo], target: str) -> int:
    """Bytes of tensor data once every matrix is converted to ``target`` (what llama.cpp's
    quantize does: matrices change type, vectors such as norms stay f32)."""
    per_block, block_bytes = BLOCKS[TYPE_IDS[target]]
    total = 0
    for t in tensors:
        if len(t.shape) >= 2 and t.shape[0] % per_block == 0:
            total += t.elements // per_block * block_bytes
        else:
            n, b = BLOCKS.get(t.type, (1, 4))
            total += -(-t.elements // n) * b
    return total


def _int(kv: dict[str, Any], key: str, default: int | None = None) -> int:
    v = kv.get(key, default)
    if v is None:
        raise GGUFError(f"missing metadata key {key}")
    if isinstance(v, ArrayInfo):  # per-layer values (e.g. head counts): use the default/max
        if default is None:
            raise GGUFError(f"metadata key {key} is a per-layer array")
        return default
    return int(v)


def estimate_llama(
    path: str | Path, n_ctx: int, *, n_batch: int = 512, extra_files: tuple[Path, ...] = (),
    convert_to: str | None = None,
) -> dict[str, int]:
    """Byte breakdown llama.cpp will allocate for ``path`` at context ``n_ctx`` (its
    matrices converted to ``convert_to`` first, when given: see ``converted_weights``)."""
    path = Path(path)
    kv, tensors, data_start = read_header(path)
    arch = kv.get("general.architecture", "llama")
    weights = converted_weights(tensors, convert_to) if convert_to else path.stat().st_size - data_start
    try:
        n_layer = _int(kv, f"{arch}.block_count")
        n_embd = _int(kv, f"{arch}.embedding_length")
        n_head = _int(kv, f"{arch}.attention.head_count", max(1, n_embd // 64))
    except GGUFError:  # an architecture without the usual keys: weights plus a margin
        return {"weights": weights, "kv_cache": 0, "compute": weights // 10 + OVERHEAD}
    n_head_kv = _int(kv, f"{arch}.attention.head_count_kv", n_head)
    k_len = _int(kv, f"{arch}.attention.key_length", n_embd // n_head)
    v_len = _int(kv, f"{arch}.attention.value_length", n_embd // n_head)
    n_ff = _int(kv, f"{arch}.feed_forward_length", 4 * n_embd)
    tokens = kv.get("tokenizer.ggml.tokens")
    n_vocab = len(tokens) if isinstance(tokens, ArrayInfo) else _int(kv, f"{arch}.vocab_size", 32000)
    n_ctx = n_ctx if n_ctx > 0 else _int(kv, f"{arch}.context_length", 4096)
    n_ubatch = min(n_batch, n_ctx)
    kv_cache = n_layer * n_ctx * n_head_kv * (k_len + v_len) * 2
    logits = 4 * n_ubatch * (n_vocab + 3 * n_embd)
    attention = 4 * n_ubatch * (n_ctx * n_head + 4 * n_embd + n_ff)
    out = {"weights": weights, "kv_cache": kv_cache, "compute": max(logits, attention) + OVERHEAD}
    for extra in extra_files:  # a vision projector (mmproj) loads beside the model
        out["mmproj"] = out.get("mmproj", 0) + extra.stat().st_size + 32 * 1024 * 1024
    return out
