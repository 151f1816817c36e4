"""Tiny random GGUF language models that llama.cpp really loads and runs.

``write_tiny_gguf(path)`` writes a LLaMA- (or Qwen2-) architecture model with random
weights in a few milliseconds: a real byte-level BPE tokenizer (GPT-2 byte alphabet plus
a handful of merges and ChatML control tokens), a ChatML chat template, and ``n_layers``
transformer blocks. The text it generates is gibberish, but every code path a real GGUF
takes (metadata, tokenizer, chat template, KV cache, sampling, unload) is exercised.

Other test areas import this module::

    from tests.gguf_factory import write_tiny_gguf
    path = write_tiny_gguf(tmp_path / "m.gguf", n_layers=2, n_embd=64)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
# Merges over the GPT-2 byte alphabet ("Ġ" is the space byte); each merged token is in the vocab.
_MERGES = ("h e", "t h", "Ġ t", "i n", "e r", "a n", "o n", "Ġ a", "r e", "Ġ th", "Ġt he", "e s", "o r", "l l")


def _bytes_to_unicode() -> list[str]:
    """GPT-2's reversible byte -> printable character table, in byte order."""
    from plugins.imagegen.tiny import _bytes_to_unicode as table

    by_byte = table()
    return [by_byte[b] for b in range(256)]


def tiny_vocab() -> tuple[list[str], list[int], list[str]]:
    """(tokens, token types, merges) of the tiny BPE tokenizer."""
    import gguf

    tokens = list(SPECIAL_TOKENS)
    types = [gguf.TokenType.CONTROL] * len(SPECIAL_TOKENS)
    tokens += _bytes_to_unicode()
    types += [gguf.TokenType.NORMAL] * 256
    merges: list[str] = []
    for m in _MERGES:
        a, b = m.split(" ")
        if a + b not in tokens:
            tokens.append(a + b)
            types.append(gguf.TokenType.NORMAL)
        merges.append(m)
    return tokens, [int(t) for t in types], merges


def write_tiny_gguf(
    path: str | Path,
    *,
    n_layers: int = 2,
    n_embd: int = 64,
    context: int = 256,
    arch: str = "llama",
    n_head: int = 4,
    n_head_kv: int = 2,
    n_ff: int | None = None,
    seed: int = 0,
    chat_template: str = CHAT_TEMPLATE,
) -> Path:
    """Write a random ``arch`` ("llama" or "qwen2") GGUF to ``path`` and return the path.

    Weights are F32, so the file is about ``4 * (2 * vocab * n_embd + n_layers *
    (2 * n_embd**2 + 2 * n_embd * n_kv + 3 * n_embd * n_ff))`` bytes: grow ``n_embd``
    or ``n_ff`` for a model whose memory is measurable. ``chat_template`` replaces the
    string-only ChatML one (a VLM's template must accept a list of content parts).
    """
    import gguf

    if arch not in ("llama", "qwen2"):
        raise ValueError(f"arch must be 'llama' or 'qwen2', not {arch!r}")
    if n_embd % n_head or n_head % n_head_kv:
        raise ValueError("n_embd must divide by n_head and n_head by n_head_kv")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n_ff = n_ff or 2 * n_embd
    head_dim = n_embd // n_head
    n_kv = head_dim * n_head_kv
    tokens, types, merges = tiny_vocab()
    n_vocab = len(tokens)
    rng = np.random.default_rng(seed)

    w = gguf.GGUFWriter(str(path), arch)
    w.add_name(f"tiny-{arch}-{n_layers}x{n_embd}")
    w.add_block_count(n_layers)
    w.add_context_length(context)
    w.add_embedding_length(n_embd)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head_kv)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    w.add_rope_dimension_count(head_dim)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_vocab_size(n_vocab)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("smollm")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(SPECIAL_TOKENS.index("<|im_start|>"))
    w.add_eos_token_id(SPECIAL_TOKENS.index("<|im_end|>"))
    w.add_pad_token_id(SPECIAL_TOKENS.index("<|endoftext|>"))
    w.add_add_bos_token(False)
    w.add_chat_template(chat_template)

    def t(name: str, *shape: int, scale: float = 0.02) -> None:
        w.add_tensor(name, (rng.standard_normal(shape) * scale).astype(np.float32))

    def ones(name: str, n: int) -> None:
        w.add_tensor(name, np.ones(n, dtype=np.float32))

    t("token_embd.weight", n_vocab, n_embd, scale=0.5)
    ones("output_norm.weight", n_embd)
    t("output.weight", n_vocab, n_embd, scale=0.5)
    for i in range(n_layers):
        p = f"blk.{i}"
        ones(f"{p}.attn_norm.weight", n_embd)
        t(f"{p}.attn_q.weight", n_embd, n_embd)
        t(f"{p}.attn_k.weight", n_kv, n_embd)
        t(f"{p}.attn_v.weight", n_kv, n_embd)
        t(f"{p}.attn_output.weight", n_embd, n_embd)
        if arch == "qwen2":
            t(f"{p}.attn_q.bias", n_embd)
            t(f"{p}.attn_k.bias", n_kv)
            t(f"{p}.attn_v.bias", n_kv)
        ones(f"{p}.ffn_norm.weight", n_embd)
        t(f"{p}.ffn_gate.weight", n_ff, n_embd)
        t(f"{p}.ffn_up.weight", n_ff, n_embd)
        t(f"{p}.ffn_down.weight", n_embd, n_ff)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path

