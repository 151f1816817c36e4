"""Tiny random Qwen-VL models for the vision tests, built from configs in about a second.

A real byte-level BPE tokenizer (tokenizers library) with Qwen's special tokens and a
ChatML template, a random Qwen3-VL (or Qwen2.5-VL) of a few hundred thousand parameters,
and the PIL image processor, saved as a normal transformers folder so the backend loads it
exactly as it would load a downloaded checkpoint. No weights are downloaded.
"""

from __future__ import annotations

from pathlib import Path

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
           "<|image_pad|>", "<|video_pad|>"]
CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{% if m['content'] is string %}{{ m['content'] }}"
    "{% else %}{% for c in m['content'] %}{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CORPUS = ["a red square on a white background", "describe this image in one sentence", "the quick brown fox",
          "what colour is the circle? blue, green, yellow", "frames sampled from a video"]


def build_tokenizer(out: Path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=SPECIAL, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS * 10, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    fast.chat_template = CHATML
    fast.save_pretrained(out)
    return fast


def build_tiny_vl(out: Path, arch: str = "qwen3_vl", seed: int = 0) -> Path:
    """Write a tiny random ``qwen3_vl`` or ``qwen2_5_vl`` model folder at ``out``."""
    import torch
    import transformers
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    out.mkdir(parents=True, exist_ok=True)
    tok = build_tokenizer(out)
    ids = {s: tok.convert_tokens_to_ids(s) for s in SPECIAL}
    tokens = dict(image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
                  vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"])
    text = dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=4096)
    if arch == "qwen3_vl":
        patch = 16
        cfg = transformers.Qwen3VLConfig(
            text_config={**text, "head_dim": 16, "rope_parameters": {
                "rope_type": "default", "rope_theta": 10000.0, "mrope_section": [4, 2, 2], "mrope_interleaved": True}},
            vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, patch_size=patch,
                               spatial_merge_size=2, temporal_patch_size=2, out_hidden_size=32,
                               num_position_embeddings=256, deepstack_visual_indexes=[0]),
            **tokens)
        cls = transformers.Qwen3VLForConditionalGeneration
    elif arch == "qwen2_5_vl":
        patch = 14
        cfg = transformers.Qwen2_5_VLConfig(
            text_config={**text, "rope_parameters": {
                "rope_type": "default", "rope_theta": 10000.0, "mrope_section": [4, 2, 2]}},
            vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, patch_size=patch,
                               spatial_merge_size=2, temporal_patch_size=2, out_hidden_size=32, window_size=56,
                               fullatt_block_indexes=[1]),
            **tokens)
        cls = transformers.Qwen2_5_VLForConditionalGeneration
    else:
        raise ValueError(arch)
    torch.manual_seed(seed)
    model = cls(cfg)
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.save_pretrained(out)
    Qwen2VLImageProcessorPil(patch_size=patch, merge_size=2, temporal_patch_size=2,
                             min_pixels=(2 * patch) ** 2, max_pixels=(8 * patch) ** 2).save_pretrained(out)
    return out
