"""Tiny random vision projectors (mmproj GGUFs) that llama.cpp's libmtmd really loads and runs.

``write_tiny_mmproj(path, text_embd=64)`` writes a LLaVA-style projector (``clip.projector_type
= "mlp"``): a small CLIP ViT (patch embedding, class embedding, position embedding, pre-norm,
``n_layers`` blocks) followed by the two-layer MLP ``mm.0`` / ``mm.2`` whose output width is
``text_embd``, the ``n_embd`` of the text model it pairs with (libmtmd refuses a mismatch).
An image becomes ``(image_size / patch_size) ** 2`` embeddings that take the place of as many
prompt tokens, so a test can see the image reach the model in the prompt's token count.

Key and tensor names follow llama.cpp's ``tools/mtmd/clip-impl.h`` and ``clip.cpp``
(``load_hparams`` / ``load_tensors``) as bundled with llama-cpp-python 0.3.36. Weights are
random: the model "sees" nothing meaningful, but every step a real VLM GGUF takes (mmproj
load, image decode and preprocessing, ViT graph, projection, image-embedding decode into the
text model's KV cache) runs for real.

``write_tiny_vlm(dir)`` writes a matching pair: the text model from ``gguf_factory`` with a
chat template that accepts list content (as real VLM templates do) and its mmproj.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.gguf_factory import write_tiny_gguf

# ChatML that, like Qwen-VL's template, renders a list of content parts (libmtmd's handler
# turns each image part into a text part holding its media marker).
VLM_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def image_tokens(image_size: int = 64, patch_size: int = 8) -> int:
    """How many embeddings (prompt positions) one image takes with this projector."""
    return (image_size // patch_size) ** 2


def write_tiny_mmproj(
    path: str | Path,
    *,
    text_embd: int = 64,
    n_embd: int = 32,
    n_layers: int = 2,
    n_head: int = 4,
    image_size: int = 64,
    patch_size: int = 8,
    seed: int = 0,
) -> Path:
    """Write a random LLaVA-style (``mlp``) mmproj GGUF projecting into ``text_embd``; return the path.

    The ViT runs ``n_layers - 1`` blocks (LLaVA takes the second-to-last layer's output).
    """
    import gguf

    if image_size % patch_size or n_embd % n_head:
        raise ValueError("image_size must divide by patch_size and n_embd by n_head")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n_ff = 2 * n_embd
    n_patches = (image_size // patch_size) ** 2
    rng = np.random.default_rng(seed)

    w = gguf.GGUFWriter(str(path), "clip")
    w.add_name(f"tiny-clip-mlp-{n_layers}x{n_embd}")
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_bool("clip.has_vision_encoder", True)
    w.add_bool("clip.has_text_encoder", False)
    w.add_string("clip.projector_type", "mlp")
    w.add_bool("clip.use_gelu", True)
    w.add_uint32("clip.vision.image_size", image_size)
    w.add_uint32("clip.vision.patch_size", patch_size)
    w.add_uint32("clip.vision.embedding_length", n_embd)
    w.add_uint32("clip.vision.feed_forward_length", n_ff)
    w.add_uint32("clip.vision.projection_dim", text_embd)
    w.add_uint32("clip.vision.block_count", n_layers)
    w.add_uint32("clip.vision.attention.head_count", n_head)
    w.add_float32("clip.vision.attention.layer_norm_epsilon", 1e-5)
    w.add_array("clip.vision.image_mean", [0.48145466, 0.4578275, 0.40821073])
    w.add_array("clip.vision.image_std", [0.26862954, 0.26130258, 0.27577711])

    def t(name: str, *shape: int, scale: float = 0.02) -> None:
        # numpy shapes are ggml's ne reversed: a (out, in) matrix multiplies an `in`-wide input
        w.add_tensor(name, (rng.standard_normal(shape) * scale).astype(np.float32))

    def ones(name: str, n: int) -> None:
        w.add_tensor(name, np.ones(n, dtype=np.float32))

    def zeros(name: str, n: int) -> None:
        w.add_tensor(name, np.zeros(n, dtype=np.float32))

    t("v.patch_embd.weight", n_embd, 3, patch_size, patch_size)  # conv kernel, ne = [p, p, 3, n_embd]
    t("v.class_embd", n_embd)
    t("v.position_embd.weight", n_patches + 1, n_embd)  # + the class token
    ones("v.pre_ln.weight", n_embd)
    zeros("v.pre_ln.bias", n_embd)
    for i in range(n_layers):
        p = f"v.blk.{i}"
        for proj in ("attn_q", "attn_k", "attn_v", "attn_out"):
            t(f"{p}.{proj}.weight", n_embd, n_embd)
            zeros(f"{p}.{proj}.bias", n_embd)
        ones(f"{p}.ln1.weight", n_embd)
        zeros(f"{p}.ln1.bias", n_embd)
        ones(f"{p}.ln2.weight", n_embd)
        zeros(f"{p}.ln2.bias", n_embd)
        t(f"{p}.ffn_up.weight", n_ff, n_embd)
        zeros(f"{p}.ffn_up.bias", n_ff)
        t(f"{p}.ffn_down.weight", n_embd, n_ff)
        zeros(f"{p}.ffn_down.bias", n_embd)
    t("mm.0.weight", text_embd, n_embd, scale=0.2)
    zeros("mm.0.bias", text_embd)
    t("mm.2.weight", text_embd, text_embd, scale=0.2)
    zeros("mm.2.bias", text_embd)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def write_tiny_vlm(directory: str | Path, *, n_embd: int = 64, seed: int = 0, **mmproj: int) -> tuple[Path, Path]:
    """A tiny text GGUF (list-content ChatML template) and a matching mmproj: (model, mmproj)."""
    directory = Path(directory)
    model = write_tiny_gguf(directory / "tiny.gguf", n_embd=n_embd, context=1024, seed=seed,
                            chat_template=VLM_CHAT_TEMPLATE)
    proj = write_tiny_mmproj(directory / "tiny-mmproj.gguf", text_embd=n_embd, seed=seed, **mmproj)
    return model, proj
