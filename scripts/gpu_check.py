"""Check the pool's CUDA paths on a machine with a GPU; prints figures, asserts nothing fancy.

What it checks, through the real pool and the real diffusers backend:
1. the CUDA budget the arbiter detects vs torch.cuda.mem_get_info;
2. a Stable Diffusion-shaped pipeline (random weights, ~0.4 GB) loaded through the pool on
   cuda:0: estimate vs measured (free-memory drop and torch.cuda.memory_allocated);
3. unloading gives the memory back to the driver;
4. under a GPU budget too small for the whole pipeline the backend picks model CPU offload,
   and a generation still runs.

    python scripts/gpu_check.py   # exits 1 if CUDA is absent
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

MIB = 1024**2


def build_pipeline(out: Path) -> Path:
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel

    from plugins.imagegen.tiny import TEXT_DIM, _clip_text, _scratch, clip_tokenizer

    tok = clip_tokenizer(_scratch(out))
    torch.manual_seed(0)
    unet = UNet2DConditionModel(block_out_channels=(128, 256, 512), layers_per_block=2, sample_size=32,
                                in_channels=4, out_channels=4, cross_attention_dim=TEXT_DIM,
                                down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                                attention_head_dim=8)
    vae = AutoencoderKL(block_out_channels=(64, 128), in_channels=3, out_channels=3, latent_channels=4,
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                        sample_size=64)
    sched = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                          set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=_clip_text(tok), tokenizer=tok, unet=unet, scheduler=sched,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(str(out), safe_serialization=True)
    return out


async def run_case(folder: Path, data: Path, gpu_budget: str | None) -> None:
    import torch

    from core.app import Loom
    from core.config import LoomConfig, ModelConfig, PathsConfig, PoolConfig

    cfg = LoomConfig(
        models={"sd": ModelConfig(backend="diffusers", file=str(folder), role="imagegen", keep_alive=-1,
                                  options={"dtype": "float16"})},
        pool=PoolConfig(gpu_budget=gpu_budget),
        paths=PathsConfig(data_dir=str(data), allowed_roots=[str(data)]),
    )
    app = Loom.create(cfg, environ={"LOOM_DISABLE_PLUGIN_AUTOLOAD": "1", "LOOM_PLUGINS": "models,imagegen"})
    label = f"gpu_budget={gpu_budget or 'detected'}"
    async with app:
        free0, total = torch.cuda.mem_get_info(0)
        est = app.pool.estimate("sd")
        arb = app.pool.arbiter(est.device)
        print(f"[{label}] device={est.device} arbiter budget={arb.budget / MIB:.0f} MiB ({arb.budget_source}); "
              f"torch free={free0 / MIB:.0f} MiB of {total / MIB:.0f} MiB")
        t0 = time.perf_counter()
        result = await app.call("imagegen.generate", {"prompt": "a lighthouse", "width": 256, "height": 256,
                                                      "steps": 4, "seed": 1})
        took = time.perf_counter() - t0
        status = app.pool.model_status("sd")
        handle_mode = app.pool._leases["sd"].handle.offload
        print(f"[{label}] estimate={status['estimate'] / MIB:.1f} MiB measured(free-drop)="
              f"{(status['measured'] or 0) / MIB:.1f} MiB torch.memory_allocated="
              f"{torch.cuda.memory_allocated(0) / MIB:.1f} MiB offload={handle_mode} "
              f"generate(load+4 steps)={took:.2f}s image={len(result.content)} items")
        before = torch.cuda.mem_get_info(0)[0]
        await app.pool.unload("sd")
        after = torch.cuda.mem_get_info(0)[0]
        print(f"[{label}] unload: free {before / MIB:.0f} -> {after / MIB:.0f} MiB "
              f"(+{(after - before) / MIB:.1f} MiB back to the driver); memory_allocated now "
              f"{torch.cuda.memory_allocated(0) / MIB:.1f} MiB")


async def main() -> int:
    import torch

    if not torch.cuda.is_available():
        print("no CUDA device: nothing to check")
        return 1
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name(0)}")
    from core import memprobe

    free = memprobe.cuda_free("cuda:0") or 0
    print(f"memprobe.cuda_available()={memprobe.cuda_available()} cuda_free={free / MIB:.0f} MiB")
    with tempfile.TemporaryDirectory() as tmp:
        folder = build_pipeline(Path(tmp) / "sd")
        data = Path(tmp) / "data"
        data.mkdir()
        await run_case(folder, data, None)
        await run_case(folder, data, "330MiB")  # the UNet fits, the whole pipeline does not: offload
    return 0


if __name__ == "__main__":
    sys.exit(anyio.run(main))
