"""imagegen on a real CUDA device: offload chosen from the pool's GPU budget, memory freed on cancel.

Skipped where torch sees no GPU (the usual CI box); run on a GPU machine.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
if not torch.cuda.is_available():
    pytest.skip("needs a CUDA device", allow_module_level=True)

from contextlib import asynccontextmanager  # noqa: E402

from core.capabilities import ImageGen  # noqa: E402
from core.config import LoomConfig, ModelConfig, PoolConfig  # noqa: E402
from core.tools import ToolCancelled, ToolContext  # noqa: E402

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def sd_dir(tmp_path_factory):
    from plugins.imagegen import tiny

    return tiny.build_sd(tmp_path_factory.mktemp("cuda") / "sd")


def _sizes(sd_dir):
    from core.backends import ModelSpec
    from plugins.imagegen.backend import component_sizes

    return component_sizes(ModelSpec("sd", ModelConfig(backend="diffusers", file=str(sd_dir))))


def _app(make_app, sd_dir, budget: int, **options):
    # inline: the tests look at where the pipeline's modules sit, in this process
    cfg = LoomConfig(models={"sd": ModelConfig(backend="diffusers", file=str(sd_dir), role="imagegen",
                                               placement="inline", options=options)},
                     pool=PoolConfig(gpu_budget=budget))
    return make_app("imagegen", config=cfg)


@asynccontextmanager
async def _loaded(app, name="sd"):
    """The loaded pipeline handle (inline placement), held busy like a call would."""
    async with app.pool.use(name, ImageGen):
        yield app.pool._leases[name].handle


async def test_whole_model_on_gpu_when_it_fits(make_app, sd_dir):
    app = _app(make_app, sd_dir, 1 << 30)
    async with app:
        res = await app.call("imagegen.generate", {"prompt": "x", "width": 32, "height": 32, "steps": 2})
        async with _loaded(app) as handle:
            assert handle.offload == "none" and handle.device.startswith("cuda")
            assert handle.pipe.unet.device.type == "cuda" and handle.dtype == "float16"
    assert res.structured["width"] == 32


async def test_model_offload_when_only_the_largest_component_fits(make_app, sd_dir):
    sizes = _sizes(sd_dir)
    budget = int(max(sizes.values()) * 1.2)  # the UNet fits, the whole pipeline does not
    assert budget < sum(sizes.values()) * 1.15
    app = _app(make_app, sd_dir, budget)
    events = []

    async def on_progress(p, total, msg):
        events.append(p)

    async with app:
        await app.call("imagegen.generate", {"prompt": "x", "width": 32, "height": 32, "steps": 3},
                       on_progress=on_progress)
        async with _loaded(app) as handle:
            assert handle.offload == "model"
            assert handle.pipe.unet.device.type == "cpu"  # parked in RAM between calls
        status = app.pool.model_status("sd")
        assert status["reserved"] <= budget  # the arbiter holds only what stays on the GPU
    assert events == [1.0, 2.0, 3.0]


async def test_sequential_offload_configured_runs(make_app, sd_dir):
    app = _app(make_app, sd_dir, 1 << 30, offload="sequential")
    async with app:
        res = await app.call("imagegen.generate", {"prompt": "x", "width": 32, "height": 32, "steps": 2})
        async with _loaded(app) as handle:
            assert handle.offload == "sequential"
    assert res.structured["steps"] == 2


async def test_cancel_on_gpu_returns_offloaded_modules_and_memory(make_app, sd_dir):
    sizes = _sizes(sd_dir)
    app = _app(make_app, sd_dir, int(max(sizes.values()) * 1.2))
    ctx = ToolContext()

    async def on_progress(p, total, msg):
        ctx.cancelled.set()

    ctx.on_progress = on_progress
    async with app:
        await app.pool.load("sd")
        before = torch.cuda.memory_allocated()
        with pytest.raises(ToolCancelled):
            await app.call("imagegen.generate", {"prompt": "x", "width": 64, "height": 64, "steps": 20}, ctx=ctx)
        async with _loaded(app) as handle:
            assert handle.pipe.unet.device.type == "cpu"
        # Nothing of the interrupted run stays on the GPU (allowing for cuBLAS's small workspace).
        assert torch.cuda.memory_allocated() - before < 1 << 20
