"""Weight bytes of a safetensors checkpoint from its headers alone (no tensor is read).

The pool's estimate for torch models (transformers, diffusers): parameters and
persistent buffers, optionally counted at the element size the model will be loaded in
(fp32 files loaded as fp16 take half).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
                "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}
_FLOATS = ("F32", "F16", "BF16", "F64")
DTYPE_NAME_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8}


def safetensors_bytes(folder: Path, target_bytes: int | None = None) -> int | None:
    """Parameter + persistent buffer bytes from the safetensors headers (no tensor is read).

    With ``target_bytes`` floating-point tensors are counted at that element size (the
    dtype the model will be loaded in).
    """
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        return None
    total = 0
    for f in files:
        with f.open("rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            if n > 100_000_000:
                raise ValueError(f"{f}: implausible safetensors header length {n}")
            header = json.loads(fh.read(n))
        for key, info in header.items():
            if key == "__metadata__":
                continue
            numel = 1
            for d in info["shape"]:
                numel *= int(d)
            size = _DTYPE_BYTES.get(info["dtype"], 2)
            if target_bytes and info["dtype"] in _FLOATS:
                size = target_bytes
            total += numel * size
    return total
