"""imagegen on real diffusers pipelines: tiny random SD and Flux built from configs at test time.

The weights are random (images are noise) but every code path is the real one: the pool
loads the pipeline by path, the scheduler runs its steps, the callback reports progress
and stops a cancelled call, the VAE decodes, the PNG carries its parameters.
"""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import msgspec
import pytest

pytest.importorskip("diffusers")

from core.capabilities import CapabilityError, ImageGen, ImageRequest, StepProgress, VideoGen
from core.config import LoomConfig, ModelConfig
from core.pool import ModelUnavailable
from core.tools import ToolCancelled, ToolError

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory):
    from plugins.imagegen import tiny  # test-side helper: builds pipelines from configs

    root = tmp_path_factory.mktemp("pipes")
    sd = tiny.build_sd(root / "sd")
    flux = tiny.build_flux(root / "flux")
    gguf = tiny.save_flux_transformer_gguf(flux, root / "flux-transformer-Q8_0.gguf")
    return {"sd": sd, "flux": flux, "gguf": gguf}


def _config(tiny_dirs, which: str = "sd", placement: str = "inline", **plugin) -> LoomConfig:
    """The tiny pipelines, inline by default: a worker process imports torch and diffusers anew
    for each app (seconds per test); one test runs in a worker, where diffusers goes by default."""
    models = {
        "sd": ModelConfig(backend="diffusers", file=str(tiny_dirs["sd"]), role="imagegen"),
        "flux": ModelConfig(backend="diffusers", file=str(tiny_dirs["flux"])),
        # the test looks at the loaded transformer's weights in this process
        "flux-gguf": ModelConfig(backend="diffusers", file=str(tiny_dirs["flux"]),
                                 files={"transformer": str(tiny_dirs["gguf"])}),
    }
    if which != "sd":
        models["sd"] = ModelConfig(backend="diffusers", file=str(tiny_dirs["sd"]))
        models[which] = msgspec.structs.replace(models[which], role="imagegen")
    models = {n: msgspec.structs.replace(c, placement=placement) for n, c in models.items()}
    return LoomConfig(models=models, plugin={"imagegen": plugin} if plugin else {})


class Progress:
    def __init__(self) -> None:
        self.events: list[tuple[float, float | None, str | None]] = []

    async def __call__(self, progress: float, total: float | None, message: str | None) -> None:
        self.events.append((progress, total, message))


def _png_meta(path: Path) -> dict:
    from PIL import Image

    with Image.open(path) as im:
        return dict(im.text), im.size, path.read_bytes()


async def test_generate_sd_png_with_metadata_and_per_step_progress(make_app, tiny_dirs, data_dir):
    app = make_app("imagegen", config=_config(tiny_dirs, placement="process"))  # the pipeline in a worker
    progress = Progress()
    async with app:
        res = await app.call("imagegen.generate", {"prompt": "a red cube", "width": 32, "height": 32, "steps": 3,
                                                   "seed": 1234}, on_progress=progress)
    image, link, text = res.content
    assert image.mime_type == "image/png" and image.data.startswith(b"\x89PNG")
    path = Path(link.uri.removeprefix("file://"))
    assert path.parent == data_dir / "outputs"
    meta, size, data = _png_meta(path)
    assert data == image.data
    assert size == (32, 32)
    assert meta["seed"] == "1234"
    params = json.loads(meta["parameters"])
    assert params["prompt"] == "a red cube" and params["steps"] == 3 and params["model"] == "sd"
    assert params["pipeline"] == "StableDiffusionPipeline"
    assert [p[:2] for p in progress.events] == [(1.0, 3.0), (2.0, 3.0), (3.0, 3.0)]
    assert res.structured["seed"] == 1234 and "1234" in text.text


async def test_same_seed_same_image_and_default_seed_is_reported(make_app, tiny_dirs):
    import io

    from PIL import Image

    app = make_app("imagegen", config=_config(tiny_dirs))
    args = {"prompt": "a cat", "width": 32, "height": 32, "steps": 2, "seed": 5}
    async with app:
        a = await app.call("imagegen.generate", args)
        b = await app.call("imagegen.generate", args)
        c = await app.call("imagegen.generate", {**args, "seed": None})
    pix = [Image.open(io.BytesIO(r.content[0].data)).tobytes() for r in (a, b)]
    assert pix[0] == pix[1]
    assert isinstance(c.structured["seed"], int)


async def test_flux_and_gguf_flux_transformer(make_app, tiny_dirs):
    for which in ("flux", "flux-gguf"):
        app = make_app("imagegen", config=_config(tiny_dirs, which))
        progress = Progress()
        async with app:
            res = await app.call("imagegen.generate", {"prompt": "a lighthouse", "width": 32, "height": 32,
                                                       "steps": 2, "guidance": 3.5}, on_progress=progress)
            async with app.pool.use(which, ImageGen) as gen:
                details = gen.info.details
                if which == "flux-gguf":  # an inline model: the pipeline is this process's own
                    handle = app.pool._leases[which].handle
                    weight = handle.pipe.transformer.transformer_blocks[0].attn.to_q.weight
        assert res.structured["pipeline"] == "FluxPipeline"
        assert details["family"] == "flux" and details["size_step"] == 2  # tiny VAE factor 1, doubled (2x2 packing)
        assert len(progress.events) == 2
        if which == "flux-gguf":  # really quantised: GGUF Q8_0 blocks, dequantised per matmul
            assert type(weight).__name__ == "GGUFParameter" and weight.quant_type.name == "Q8_0"


async def test_edit_image_to_image(make_app, tiny_dirs, data_dir, monkeypatch):
    from PIL import Image

    from tests.wire import over_the_wire

    calls = over_the_wire(monkeypatch)  # the input and output pixels cross as bytes, as to a worker
    src = data_dir / "start.png"
    Image.new("RGB", (40, 36), (200, 30, 30)).save(src)
    app = make_app("imagegen", config=_config(tiny_dirs))
    progress = Progress()
    async with app:
        res = await app.call("imagegen.edit", {"image": str(src), "prompt": "make it blue", "strength": 0.5,
                                               "steps": 4, "seed": 3}, on_progress=progress)
        with pytest.raises(ToolError, match="outside the allowed roots"):
            await app.call("imagegen.edit", {"image": "/etc/hostname", "prompt": "x", "steps": 2})
        with pytest.raises(ToolError, match="not|image"):
            (data_dir / "junk.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
            await app.call("imagegen.edit", {"image": str(data_dir / "junk.png"), "prompt": "x", "steps": 2})
    assert res.structured["pipeline"] == "StableDiffusionImg2ImgPipeline"
    assert (res.structured["width"], res.structured["height"]) == (40, 36)  # multiples of the VAE factor (2)
    assert len(progress.events) == 2  # strength 0.5 of 4 steps
    assert calls == ["image.edit"]


async def test_cancel_mid_generation_stops_at_next_step(make_app, tiny_dirs, data_dir):
    app = make_app("imagegen", config=_config(tiny_dirs))
    from core.tools import ToolContext

    ctx = ToolContext()
    seen: list[float] = []

    async def on_progress(p, total, msg):
        seen.append(p)
        if p == 2:
            ctx.cancelled.set()  # what the MCP surface does on notifications/cancelled

    ctx.on_progress = on_progress
    async with app:
        with pytest.raises(ToolCancelled, match=r"cancelled at step \d+/20") as err:
            await app.call("imagegen.generate", {"prompt": "x", "width": 32, "height": 32, "steps": 20}, ctx=ctx)
        # Progress reaches the caller without holding up the pipeline, so the flag is seen
        # at the step boundary after it is set: a step or two later, never at the end.
        stopped = int(str(err.value).split("step ")[1].split("/")[0])
        assert 2 <= stopped < 20 and seen[:2] == [1.0, 2.0] and len(seen) <= stopped
        assert not list((data_dir / "outputs").glob("*.png"))
        # The model is idle again and the next call runs all its steps.
        assert app.pool.model_status("sd")["busy"] == 0
        res = await app.call("imagegen.generate", {"prompt": "y", "width": 32, "height": 32, "steps": 2})
        assert res.structured["steps"] == 2


async def test_cancelling_the_task_stops_the_pipeline(make_app, tiny_dirs):
    app = make_app("imagegen", config=_config(tiny_dirs))
    seen: list[float] = []
    async with app:
        with anyio.CancelScope() as scope:
            async def on_progress(p, total, msg):
                seen.append(p)
                if p == 1:
                    scope.cancel()

            await app.call("imagegen.generate", {"prompt": "x", "width": 32, "height": 32, "steps": 30},
                           on_progress=on_progress)
        assert scope.cancelled_caught
        assert len(seen) < 30  # stopped at a step boundary soon after, not after 30
        assert app.pool.model_status("sd")["busy"] == 0


async def test_imagegen_capability_streams_steps_and_returns_pixels(make_app, tiny_dirs):
    """What a third-party plugin sees: typed requests, StepProgress events, raw RGB back; no pipeline."""
    app = make_app("imagegen", config=_config(tiny_dirs))
    request = ImageRequest(prompt="a red cube", width=32, height=24, steps=3, guidance=7.5, seed=7)
    async with app:
        async with app.pool.use("sd", ImageGen) as gen:
            assert gen.family == "sd" and gen.size_step == 2 and gen.native_size == (32, 32)
            events = []
            async with gen.stream(request) as s:
                async for ev in s:
                    events.append(ev)
            again = await gen.generate(request)
            cancel = __import__("threading").Event()
            cancel.set()
            with pytest.raises(ToolCancelled, match="cancelled at step 0/3"):
                await gen.generate(request, cancel=cancel)
        with pytest.raises(CapabilityError, match="cannot serve 'video'.*serves image"):
            async with app.pool.use("sd", VideoGen):
                pass
    assert events == [StepProgress(1, 3), StepProgress(2, 3), StepProgress(3, 3)]
    img = s.result.image
    assert (img.width, img.height, len(img.data)) == (32, 24, 32 * 24 * 3)
    assert img.to_pil().size == (32, 24) and again.image == img  # same seed, same pixels
    assert s.result.pipeline == "StableDiffusionPipeline" and s.result.steps == 3 and s.result.seed == 7
    assert wire(request, "image.generate", "request") == request  # plain structs: a worker process can serve it
    assert wire(s.result, "image.generate", "result") == s.result and wire(events[0], "image.generate") == events[0]


def wire(value, op: str, part: str = "event"):
    """``value`` through msgpack and back as the operation declares it (what a worker pipe does)."""
    from core.capabilities import OPS

    return msgspec.msgpack.decode(msgspec.msgpack.encode(value), type=getattr(OPS[op], part))


async def test_size_and_step_limits(make_app, tiny_dirs, data_dir):
    from PIL import Image

    big = data_dir / "big.png"
    Image.new("RGB", (40, 36), (0, 90, 200)).save(big)
    app = make_app("imagegen", config=_config(tiny_dirs, max_width=64, max_height=64, max_steps=8,
                                              max_decode_pixels=1000))
    async with app:
        with pytest.raises(ToolError, match=r"1,440 pixels, over the 1,000-pixel limit.*\[plugin.imagegen\] max_dec"):
            await app.call("imagegen.edit", {"image": str(big), "prompt": "x", "steps": 2})
        with pytest.raises(ToolError, match=r"over the limit of 64x64.*max_width"):
            await app.call("imagegen.generate", {"prompt": "x", "width": 128, "height": 32, "steps": 2})
        with pytest.raises(ToolError, match=r"9 steps is over the limit of 8.*max_steps"):
            await app.call("imagegen.generate", {"prompt": "x", "width": 32, "height": 32, "steps": 9})
        with pytest.raises(ToolError, match="multiples of 2"):
            await app.call("imagegen.generate", {"prompt": "x", "width": 33, "height": 32, "steps": 2})
        with pytest.raises(ToolError, match="Invalid arguments"):
            await app.call("imagegen.generate", {"prompt": "", "steps": 2})
        with pytest.raises(ToolError, match="seed must be between"):
            await app.call("imagegen.generate", {"prompt": "x", "width": 32, "height": 32, "steps": 2, "seed": -1})


async def test_no_model_configured_says_what_to_configure(make_app):
    app = make_app("imagegen")
    async with app:
        with pytest.raises(ModelUnavailable) as err:
            await app.call("imagegen.generate", {"prompt": "x"})
    msg = str(err.value)
    assert '[models.flux]' in msg and 'backend = "diffusers"' in msg and 'role = "imagegen"' in msg


async def test_bad_model_folder_is_a_clear_error(make_app, tmp_path):
    cfg = LoomConfig(models={"img": ModelConfig(backend="diffusers", file=str(tmp_path), role="imagegen")})
    app = make_app("imagegen", config=cfg)
    async with app:
        with pytest.raises(ToolError, match="not a diffusers model folder"):
            await app.call("imagegen.generate", {"prompt": "x", "width": 32, "height": 32, "steps": 1})


def test_offload_choice_from_budget():
    from plugins.imagegen.backend import choose_offload

    gib = 1024**3
    assert choose_offload(10 * gib, 6 * gib, 24 * gib) == "none"  # fits whole
    assert choose_offload(30 * gib, 12 * gib, 16 * gib) == "model"  # one component at a time fits
    assert choose_offload(30 * gib, 22 * gib, 16 * gib) == "sequential"  # even the transformer does not
    assert choose_offload(30 * gib, 22 * gib, None) == "none"  # CPU: no budget to fit


def test_cpu_runs_plainly_without_offload(tiny_dirs):
    from core.backends import ModelSpec
    from plugins.imagegen.backend import DiffusersBackend

    backend = DiffusersBackend(budget=lambda device: 1)  # a 1-byte budget would force offload on CUDA
    spec = ModelSpec("sd", ModelConfig(backend="diffusers", file=str(tiny_dirs["sd"]), options={"offload": "auto"}))
    est = backend.estimate(spec, "cpu")
    assert est.breakdown["unet"] > 0 and est.total > est.breakdown["weights"]
    handle = backend.load(spec, "cpu")
    try:
        assert handle.offload == "none" and handle.device == "cpu"
        assert not getattr(handle.pipe.unet, "_hf_hook", None)
    finally:
        backend.unload(handle)


def test_estimate_counts_weights_at_the_load_dtype(tiny_dirs):
    from core.backends import ModelSpec
    from plugins.imagegen.backend import DiffusersBackend, component_sizes

    stored = ModelSpec("sd", ModelConfig(backend="diffusers", file=str(tiny_dirs["sd"])))
    half = ModelSpec("sd", ModelConfig(backend="diffusers", file=str(tiny_dirs["sd"]), options={"dtype": "float16"}))
    on_disk = sum(component_sizes(stored).values())  # the tiny pipeline is saved in fp32
    backend = DiffusersBackend(budget=lambda device: None)
    fp32 = backend.estimate(stored, "cpu").breakdown["weights"]
    assert 0.85 * on_disk < fp32 <= on_disk  # tensors only: the files also hold their JSON headers
    fp16 = backend.estimate(half, "cpu").breakdown["weights"]
    assert fp16 == pytest.approx(fp32 / 2, rel=0.01), "fp32 files loaded in fp16 take half"
