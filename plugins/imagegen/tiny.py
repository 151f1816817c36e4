"""Tiny random diffusers pipelines built from configs, for tests, benchmarks and `loom doctor`.

No model hub is reachable here, so everything a pipeline needs is made locally in
milliseconds: a byte-level CLIP tokenizer from a vocab/merges written on the spot, a
T5 tokenizer from a tokenizers Unigram model, and random-weight text encoders, UNets,
transformers and VAEs from small configs. Each builder saves a complete diffusers
model directory (``model_index.json`` and subfolders) that loads by path exactly like
a real Stable Diffusion, Flux or Wan checkpoint. The weights are noise, so images are
noise; the code paths (scheduling, callbacks, decoding, offload) are the real ones.

Heavy libraries are imported inside the functions.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

TEXT_DIM = 32  # hidden size of every tiny text encoder


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable character table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs], strict=True))


def _scratch(out: Path) -> Path:
    """A throwaway folder for tokenizer sources (save_pretrained writes the real copy)."""
    import tempfile

    out.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="tok-"))


def clip_tokenizer(directory: Path) -> Any:
    """A byte-level CLIPTokenizer: every byte and byte+``</w>`` is a token, no merges."""
    from transformers import CLIPTokenizer

    directory.mkdir(parents=True, exist_ok=True)
    chars = list(_bytes_to_unicode().values())
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": i + len(chars) for i, c in enumerate(chars)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (directory / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (directory / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    return CLIPTokenizer(str(directory / "vocab.json"), str(directory / "merges.txt"), model_max_length=77)


def t5_tokenizer(directory: Path) -> Any:
    """A T5TokenizerFast over a character-level Unigram model (pad=0, eos=1, unk=2, like T5)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import T5TokenizerFast

    directory.mkdir(parents=True, exist_ok=True)
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    for c in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,!?'-":
        pieces += [(c, -3.0), ("▁" + c, -2.5)]
    tok = Tokenizer(models.Unigram(pieces, unk_id=2, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>",
                                                       special_tokens=[("</s>", 1)])
    fast = T5TokenizerFast(tokenizer_object=tok, eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
                           extra_ids=0, model_max_length=512)
    fast.save_pretrained(str(directory))
    return T5TokenizerFast.from_pretrained(str(directory))


def _clip_text(tokenizer: Any, projection: bool = False) -> Any:
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(0)
    cfg = CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=TEXT_DIM, intermediate_size=37, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=77, projection_dim=TEXT_DIM,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(cfg).eval()


def _t5_encoder(tokenizer: Any, umt5: bool = False) -> Any:
    import torch
    from transformers import T5Config, T5EncoderModel, UMT5Config, UMT5EncoderModel

    torch.manual_seed(0)
    kw = dict(vocab_size=len(tokenizer), d_model=TEXT_DIM, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
              relative_attention_num_buckets=8, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    if umt5:
        return UMT5EncoderModel(UMT5Config(**kw)).eval()
    return T5EncoderModel(T5Config(**kw)).eval()


def build_sd(directory: str | Path) -> Path:
    """A tiny Stable Diffusion 1.x pipeline (UNet, VAE, CLIP text encoder, DDIM), saved by path."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel

    out = Path(directory)
    tok = clip_tokenizer(_scratch(out))
    torch.manual_seed(0)
    unet = UNet2DConditionModel(block_out_channels=(8, 16), layers_per_block=1, sample_size=16, in_channels=4,
                                out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=TEXT_DIM,
                                norm_num_groups=4, attention_head_dim=4)
    vae = AutoencoderKL(block_out_channels=(8, 16), in_channels=3, out_channels=3, latent_channels=4,
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                        norm_num_groups=4, sample_size=32)
    sched = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                          set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=_clip_text(tok), tokenizer=tok, unet=unet, scheduler=sched,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(str(out), safe_serialization=True)
    return out


def _flux_transformer() -> Any:
    import torch
    from diffusers import FluxTransformer2DModel

    torch.manual_seed(0)
    return FluxTransformer2DModel(patch_size=1, in_channels=4, num_layers=1, num_single_layers=1,
                                  attention_head_dim=16, num_attention_heads=2, joint_attention_dim=TEXT_DIM,
                                  pooled_projection_dim=TEXT_DIM, axes_dims_rope=[4, 4, 8])


def build_flux(directory: str | Path) -> Path:
    """A tiny Flux pipeline (MMDiT transformer, CLIP + T5 encoders, 1-channel VAE), saved by path."""
    import torch
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline

    out = Path(directory)
    clip_tok = clip_tokenizer(_scratch(out))
    t5_tok = t5_tokenizer(_scratch(out))
    torch.manual_seed(0)
    vae = AutoencoderKL(sample_size=32, in_channels=3, out_channels=3, block_out_channels=(4,), layers_per_block=1,
                        latent_channels=1, norm_num_groups=1, use_quant_conv=False, use_post_quant_conv=False,
                        shift_factor=0.0609, scaling_factor=1.5035)
    pipe = FluxPipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae, text_encoder=_clip_text(clip_tok),
                        tokenizer=clip_tok, text_encoder_2=_t5_encoder(t5_tok), tokenizer_2=t5_tok,
                        transformer=_flux_transformer())
    pipe.save_pretrained(str(out), safe_serialization=True)
    return out


def save_flux_transformer_gguf(pipeline_dir: str | Path, path: str | Path, qtype: str = "Q8_0") -> Path:
    """Write the tiny Flux transformer's weights as a GGUF file, 2-D weights quantised.

    Keys are in diffusers' layout (``from_single_file`` loads those as they are; real
    city96-style files in the original BFL layout go through diffusers' converter).
    Tensors whose last dimension is not a multiple of the block size stay F32.
    """
    import gguf
    import numpy as np
    from safetensors.numpy import load_file

    weights = load_file(str(Path(pipeline_dir) / "transformer" / "diffusion_pytorch_model.safetensors"))
    q = getattr(gguf.GGMLQuantizationType, qtype)
    block = gguf.GGML_QUANT_SIZES[q][0]
    writer = gguf.GGUFWriter(str(path), arch="flux")
    for name, arr in weights.items():
        arr = arr.astype(np.float32)
        if arr.ndim == 2 and arr.shape[-1] % block == 0 and arr.shape[0] > 1:
            writer.add_tensor(name, gguf.quants.quantize(arr, q), raw_dtype=q)
        else:
            writer.add_tensor(name, arr)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return Path(path)


def build_wan(directory: str | Path) -> Path:
    """A tiny Wan 2.1 text-to-video pipeline (3-D transformer, causal video VAE, UMT5), saved by path."""
    import torch
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanPipeline, WanTransformer3DModel

    out = Path(directory)
    tok = t5_tokenizer(_scratch(out))
    torch.manual_seed(0)
    vae = AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                           temperal_downsample=[False, True, True])
    transformer = WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12,
                                        in_channels=16, out_channels=16, text_dim=TEXT_DIM, freq_dim=256, ffn_dim=32,
                                        num_layers=2, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
                                        rope_max_seq_len=32)
    pipe = WanPipeline(tokenizer=tok, text_encoder=_t5_encoder(tok, umt5=True), transformer=transformer, vae=vae,
                       scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0))
    pipe.save_pretrained(str(out), safe_serialization=True)
    return out
