"""The transformers backend on a tiny random Qwen3-VL (and Qwen2.5-VL) built at test time:
memory estimate, PIL image processor, generation, embeddings, and the vision tools end to end."""

from __future__ import annotations

import io
import shutil
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from core.backends import ModelSpec
from core.config import LoomConfig, ModelConfig
from core.tools import ToolError

pytest.importorskip("transformers")
pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def tiny_vl(tmp_path_factory) -> Path:
    from vision_models import build_tiny_vl

    return build_tiny_vl(tmp_path_factory.mktemp("models") / "tiny-qwen3-vl", "qwen3_vl")


@pytest.fixture(scope="module")
def handle(tiny_vl: Path):
    from plugins.vision.hf_backend import TransformersVLMBackend

    backend = TransformersVLMBackend()
    h = backend.load(ModelSpec("tiny", ModelConfig(backend="transformers", file=str(tiny_vl))), "cpu")
    yield h
    backend.unload(h)
    assert h.model is None


def picture(color: str, shape: str = "circle", size=(96, 64)) -> Image.Image:
    im = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(im)
    (d.ellipse if shape == "circle" else d.rectangle)((10, 10, 50, 50), fill=color)
    return im


def test_estimate_reads_safetensors_headers(tiny_vl: Path, handle, tmp_path: Path):
    from plugins.vision.hf_backend import TransformersVLMBackend

    backend = TransformersVLMBackend()
    est = backend.estimate(ModelSpec("tiny", ModelConfig(backend="transformers", file=str(tiny_vl))), "cpu")
    state = handle.model.state_dict()
    real = sum(t.numel() * t.element_size() for t in state.values())
    assert est.breakdown["weights"] == real
    assert est.total > real and est.breakdown["kv_cache"] > 0
    # With only config.json (no weights local) the estimate comes from the architecture.
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(tiny_vl / "config.json", bare / "config.json")
    est2 = backend.estimate(ModelSpec("bare", ModelConfig(backend="transformers", file=str(bare))), "cpu")
    assert 0.5 * real < est2.breakdown["weights"] < 2 * real
    over = backend.estimate(ModelSpec("o", ModelConfig(backend="transformers", file=str(bare), memory="3GiB")), "cpu")
    assert over.total == 3 * 1024**3 and over.source == "override"
    with pytest.raises(ToolError, match="not a transformers model folder"):
        backend.estimate(ModelSpec("x", ModelConfig(backend="transformers", file=str(tmp_path))), "cpu")


def test_uses_the_pil_image_processor_without_torchvision(handle):
    assert type(handle.image_processor).__name__.endswith("Pil")
    assert "torchvision" not in sys.modules


def test_generate_is_deterministic_and_cancellable(handle):
    im = picture("red")
    a = handle.generate([im], "describe this image", max_new_tokens=6)
    b = handle.generate([im], "describe this image", max_new_tokens=6)
    assert isinstance(a, str) and a == b
    two = handle.generate([im, picture("blue", "square")], "what differs?", max_new_tokens=4)
    assert isinstance(two, str)
    stop = threading.Event()
    stop.set()
    ids = handle.tokenizer(handle.generate([im], "describe", max_new_tokens=200, cancelled=stop))["input_ids"]
    assert len(ids) <= 2  # stopped after the first token


def test_image_and_text_embeddings_with_matryoshka_truncation(handle):
    red, blue = picture("red"), picture("blue", "square")
    full = handle.embed_images([red, blue, red])
    assert full.shape == (3, handle.dim) and np.allclose(np.linalg.norm(full, axis=1), 1, atol=1e-5)
    assert np.allclose(full[0], full[2], atol=1e-5) and not np.allclose(full[0], full[1], atol=1e-3)
    cut = handle.embed_images([red, blue], dims=8)
    assert cut.shape == (2, 8) and np.allclose(np.linalg.norm(cut, axis=1), 1, atol=1e-5)
    prefix = full[:2, :8] / np.linalg.norm(full[:2, :8], axis=1, keepdims=True)
    assert np.allclose(cut, prefix, atol=1e-5)
    texts = handle.embed_texts(["a red circle", "a blue square"], dims=16)
    assert texts.shape == (2, 16) and np.allclose(np.linalg.norm(texts, axis=1), 1, atol=1e-5)
    with pytest.raises(ToolError, match="dims must be between 1 and 32"):
        handle.embed_texts(["x"], dims=33)


def test_qwen2_5_vl_generates_and_embeds(tmp_path: Path):
    from vision_models import build_tiny_vl

    from plugins.vision.hf_backend import TransformersVLMBackend

    folder = build_tiny_vl(tmp_path / "tiny-qwen2.5-vl", "qwen2_5_vl")
    backend = TransformersVLMBackend()
    h = backend.load(ModelSpec("q25", ModelConfig(backend="transformers", file=str(folder))), "cpu")
    try:
        assert type(h.model).__name__ == "Qwen2_5_VLForConditionalGeneration"
        assert isinstance(h.generate([picture("green")], "describe", max_new_tokens=4), str)
        assert h.embed_images([picture("green")], dims=4).shape == (1, 4)
    finally:
        backend.unload(h)


# --- the tools end to end, through the pool --------------------------------------------------


def make_video(path: Path, seconds: float = 3.0, fps: int = 10) -> None:
    import imageio_ffmpeg

    w = imageio_ffmpeg.write_frames(str(path), (64, 48), fps=fps, macro_block_size=16)
    w.send(None)
    for i in range(int(seconds * fps)):
        frame = np.zeros((48, 64, 3), np.uint8)
        frame[:, : (i * 2) % 64, 0] = 255
        w.send(frame)
    w.close()


@pytest.fixture
def vl_app(make_app, tiny_vl: Path, data_dir: Path):
    work = data_dir.parent / "work"
    work.mkdir()
    buf = io.BytesIO()
    picture("red").save(buf, format="PNG")
    (work / "red.png").write_bytes(buf.getvalue())
    picture("blue", "square").save(work / "blue.jpg", format="JPEG")
    make_video(work / "clip.mp4")
    (work / "list.m3u8").write_text("#EXTM3U\nhttp://127.0.0.1/secret.ts\n")
    # inline: the cancellation test looks at this process's generation threads
    cfg = LoomConfig(models={"tiny-vl": ModelConfig(backend="transformers", file=str(tiny_vl), role="vlm",
                                                    device="cpu", memory="64MiB", placement="inline")},
                     plugin={"vision": {"max_tokens": 8}})
    return make_app("vision", "embed", config=cfg), work


async def test_vision_tools_answer_with_a_transformers_vlm(vl_app, monkeypatch):
    from tests.wire import over_the_wire

    calls = over_the_wire(monkeypatch)  # images go as PNG bytes, vectors come back as float32 bytes
    app, work = vl_app
    async with app:
        desc = await app.call("vision.describe", {"image": str(work / "red.png"), "detail": "brief"})
        ans = await app.call("vision.answer", {"image": str(work / "blue.jpg"), "question": "what shape?",
                                               "max_tokens": 3})
        ocr = await app.call("vision.ocr", {"image": str(work / "red.png")})
        img = (await app.call("vision.embed_image", {"images": [str(work / "red.png"), str(work / "blue.jpg")],
                                                     "dims": 16})).structured
        txt = (await app.call("vision.embed_text", {"texts": ["a red circle"], "dims": 16})).structured
        minilm = (await app.call("vision.embed_text", {"texts": ["a red circle"], "space": "text"})).structured
        with pytest.raises(ToolError, match="damaged or truncated"):
            await app.call("vision.describe", {"image": "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAAB"})
        status = app.pool.status()
    assert desc.structured["model"] == "tiny-vl" and isinstance(desc.text(), str)
    assert ans.structured["model"] == "tiny-vl"
    assert ocr.structured["engine"] == "vlm"
    assert img["model"] == "tiny-vl" and img["dims"] == 16 and len(img["embeddings"]) == 2
    assert np.allclose(np.linalg.norm(np.array(img["embeddings"]), axis=1), 1, atol=1e-4)
    assert txt["space"] == "vlm" and txt["dims"] == 16  # the same space as the image embeddings
    assert minilm["model"] == "minilm" and minilm["dims"] == 384
    assert "tiny-vl" in str(status)
    assert calls == ["chat.generate"] * 3 + ["vision_embed.images", "vision_embed.texts", "embed.texts"]


async def test_video_frames_sampled_at_the_requested_fps(vl_app):
    app, work = vl_app
    async with app:
        two = (await app.call("vision.video", {"video": str(work / "clip.mp4"), "fps": 2})).structured
        capped = (await app.call("vision.video", {"video": str(work / "clip.mp4"), "fps": 10,
                                                  "max_frames": 4, "prompt": "what moves?"})).structured
        with pytest.raises(ToolError, match="not a supported video"):
            await app.call("vision.video", {"video": str(work / "list.m3u8")})
        with pytest.raises(ToolError, match="not a supported video"):
            await app.call("vision.video", {"video": str(work / "red.png")})
        with pytest.raises(ToolError, match="outside the allowed roots"):
            await app.call("vision.video", {"video": "/etc/hostname"})
        with pytest.raises(ToolError, match="refusing to fetch"):
            await app.call("vision.video", {"video": "http://127.0.0.1:9/clip.mp4"})
    assert two["video"]["frames"] == 6 and two["timestamps"] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]
    assert two["video"]["duration_s"] == pytest.approx(3.0, abs=0.2)
    assert capped["video"]["frames"] == 4  # fps lowered so 4 frames cover the whole 3 s
    assert capped["video"]["sampled_fps"] == pytest.approx(4 / 3, abs=0.1)
    assert capped["timestamps"][-1] > 2.0


async def test_mcp_image_content_and_cancellation_mid_generation(vl_app):
    import base64

    import anyio

    from core.tools import ToolContext

    app, work = vl_app
    content = {"type": "image", "data": base64.b64encode((work / "red.png").read_bytes()).decode(),
               "mimeType": "image/png"}
    async with app:
        res = await app.call("vision.describe", {"image": content, "max_tokens": 4})
        assert res.structured["size"] == [96, 64]
        ctx = ToolContext()
        with anyio.move_on_after(0.5):
            await app.call("vision.answer", {"image": content, "question": "tell me everything",
                                             "max_tokens": 4000}, ctx=ctx)
        assert ctx.cancelled.is_set()  # the call was cancelled while generating
        # ...and the pin was held until the generation thread stopped: nothing still runs on the model
        assert app.pool.model_status("tiny-vl")["busy"] == 0
        assert not [t for t in threading.enumerate() if t.name == "loom-chat.generate"]
        assert not app.pool._leases["tiny-vl"].handle.lock.locked()


async def test_transformers_vlm_serves_chat_with_image_parts(vl_app, handle):
    """Any plugin can ask the VLM about a picture: Chat with image parts, streamed, counted, cancellable."""
    import base64

    from core.capabilities import Chat, VisionEmbed

    app, work = vl_app
    png = (work / "red.png").read_bytes()
    question = {"type": "text", "text": "describe this image"}
    as_bytes = [{"role": "user", "content": [{"type": "image", "data": png, "mime_type": "image/png"}, question]}]
    as_url = [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(png).decode()}},
        question]}]
    async with app:
        async with app.pool.use("tiny-vl", Chat) as chat:
            assert chat.vision and chat.info.capabilities == ("chat", "vision_embed")
            deltas = []
            async with chat.stream(as_bytes, max_tokens=6, temperature=0.0) as s:
                async for delta in s:
                    deltas.append(delta)
            from_url = await chat.complete(as_url, max_tokens=6, temperature=0.0)
            with_image = await chat.count_tokens(as_bytes)
            text_only = await chat.count_tokens([{"role": "user", "content": [question]}])
            stop = threading.Event()
            stop.set()
            stopped = await chat.complete(as_bytes, max_tokens=50, cancel=stop)
            with pytest.raises(ToolError, match="does not do tool calling"):
                await chat.complete(as_bytes, tools=[{"type": "function", "function": {"name": "f"}}])
            with pytest.raises(ToolError, match="not a supported image"):
                await chat.complete([{"role": "user", "content": [{"type": "image", "data": b"GIF? no"}]}])
        async with app.pool.use("tiny-vl", VisionEmbed) as emb:
            vec = (await emb.embed_images([png], dims=8)).array()
    result = s.result
    assert "".join(deltas) == result.text and result.usage.completion_tokens >= 1
    # the same pixels reach the model as through the backend's own one-shot call
    assert result.text.strip() == handle.generate([Image.open(work / "red.png").convert("RGB")],
                                                  "describe this image", max_new_tokens=6)
    assert from_url.text == result.text
    assert result.usage.prompt_tokens == with_image and with_image > text_only + 4  # the image's tokens
    assert stopped.finish_reason == "cancelled" and stopped.text == ""
    assert vec.shape == (1, 8) and np.allclose(vec, handle.embed_images([picture("red")], dims=8), atol=1e-5)


async def test_a_coordinator_that_sees_serves_the_vision_tools(make_app, tiny_vl: Path, data_dir: Path):
    img = data_dir / "red.png"
    picture("red").save(img)
    cfg = LoomConfig(models={"coord": ModelConfig(backend="transformers", file=str(tiny_vl), role="coordinator",
                                                  device="cpu", memory="64MiB")})
    app = make_app("vision", "llamacpp", config=cfg)
    async with app:
        res = await app.call("vision.describe", {"image": str(img), "max_tokens": 2})
    assert res.structured["model"] == "coord"
