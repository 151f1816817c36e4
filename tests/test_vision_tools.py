"""The vision tools with no VLM configured: clear instructions, and what packaged models can
still serve (OCR through tesseract, text embeddings through the packaged MiniLM)."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from core.config import LoomConfig, ModelConfig
from core.tools import ToolArgumentError, ToolError

pytestmark = pytest.mark.anyio

needs_tesseract = pytest.mark.skipif(shutil.which("tesseract") is None, reason="apt-get install tesseract-ocr")


def text_image(text: str, fmt: str = "PNG") -> bytes:
    im = Image.new("RGB", (720, 160), "white")
    ImageDraw.Draw(im).text((30, 45), text, fill="black", font=ImageFont.load_default(size=56))
    buf = io.BytesIO()
    im.save(buf, format=fmt)
    return buf.getvalue()


@pytest.fixture
def files(data_dir: Path) -> Path:
    d = data_dir.parent / "work"
    d.mkdir()
    (d / "sign.png").write_bytes(text_image("HELLO LOOM 42"))
    (d / "sign.jpg").write_bytes(text_image("OPEN DAILY", "JPEG"))
    (d / "broken.png").write_bytes(text_image("x")[:300])
    (d / "clip.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 100)
    return d


async def test_each_vlm_tool_says_which_model_to_configure(make_app, files: Path):
    app = make_app("vision", "embed", "llamacpp")  # the packaged SmolLM2 coordinator cannot see: not a VLM
    calls = {
        "vision.describe": {"image": str(files / "sign.png")},
        "vision.answer": {"image": str(files / "sign.png"), "question": "what does it say?"},
        "vision.video": {"video": str(files / "clip.mp4")},
        "vision.embed_image": {"images": [str(files / "sign.png")]},
        "vision.ocr": {"image": str(files / "sign.png"), "engine": "vlm"},
        "vision.embed_text": {"texts": ["hi"], "space": "vlm"},
    }
    async with app:
        for tool, args in calls.items():
            with pytest.raises(ToolError) as err:
                await app.call(tool, args)
            msg = str(err.value)
            assert msg.startswith(tool), msg
            assert "[models.qwen3-vl]" in msg and 'backend = "llama_cpp"' in msg and "mmproj = " in msg
            assert 'role = "vlm"' in msg and "loom models add qwen3-vl --backend llama_cpp" in msg
    assert "tesseract" in str(
        await _error(make_app("vision"), "vision.describe", {"image": str(files / "sign.png")}))


async def _error(app, tool, args) -> ToolError:
    async with app:
        with pytest.raises(ToolError) as err:
            await app.call(tool, args)
    return err.value


async def test_a_text_only_gguf_is_not_taken_for_a_vlm(make_app, files: Path):
    cfg = LoomConfig(models={"small": ModelConfig(backend="llama_cpp", file=str(files / "x.gguf"), role="vlm")})
    err = await _error(make_app("vision", config=cfg), "vision.describe", {"image": str(files / "sign.png")})
    assert "'small' is a llama.cpp model without an mmproj file" in str(err)


@needs_tesseract
async def test_ocr_reads_drawn_text_with_tesseract(make_app, files: Path):
    app = make_app("vision", "embed")
    async with app:
        png = await app.call("vision.ocr", {"image": str(files / "sign.png")})
        jpg = await app.call("vision.ocr", {"image": str(files / "sign.jpg"), "engine": "tesseract"})
        with pytest.raises(ToolError, match="damaged or truncated"):
            await app.call("vision.ocr", {"image": str(files / "broken.png")})
        with pytest.raises(ToolError, match="apt-get install tesseract-ocr-xyz"):
            await app.call("vision.ocr", {"image": str(files / "sign.png"), "language": "xyz"})
        with pytest.raises(ToolError, match="language must look like"):
            await app.call("vision.ocr", {"image": str(files / "sign.png"), "language": "eng; rm -rf /"})
        # the bad inputs did not break anything: the same app still reads
        again = await app.call("vision.ocr", {"image": str(files / "sign.png")})
    assert "HELLO LOOM 42" in png.text()
    assert png.structured["engine"] == "tesseract"
    assert "OPEN DAILY" in jpg.text()
    assert again.text() == png.text()


async def test_text_embeddings_use_the_packaged_minilm_with_matryoshka_dims(make_app):
    texts = ["a cat sits on the mat", "a kitten is lying on a rug", "the quarterly tax filing deadline"]
    app = make_app("vision", "embed")
    async with app:
        full = (await app.call("vision.embed_text", {"texts": texts})).structured
        cut = (await app.call("vision.embed_text", {"texts": texts, "dims": 64})).structured
        with pytest.raises(ToolError, match="dims must be between 1 and 384"):
            await app.call("vision.embed_text", {"texts": texts, "dims": 1000})
        with pytest.raises(ToolArgumentError):
            await app.call("vision.embed_text", {"texts": texts, "dims": 0})
    assert full["model"] == "minilm" and full["space"] == "text" and full["dims"] == 384
    e = np.array(full["embeddings"])
    assert np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-4)
    assert e[0] @ e[1] > e[0] @ e[2] + 0.2  # the two cats are closer than the tax deadline
    c = np.array(cut["embeddings"])
    assert c.shape == (3, 64) and np.allclose(np.linalg.norm(c, axis=1), 1, atol=1e-4)
    prefix = e[:, :64] / np.linalg.norm(e[:, :64], axis=1, keepdims=True)
    assert np.allclose(c, prefix, atol=1e-4)


async def test_bad_arguments_are_validated(make_app, files: Path):
    app = make_app("vision")
    async with app:
        with pytest.raises(ToolArgumentError):
            await app.call("vision.describe", {"image": str(files / "sign.png"), "colour": "red"})
        with pytest.raises(ToolArgumentError):
            await app.call("vision.video", {"video": "x.mp4", "fps": 0})
        with pytest.raises(ToolArgumentError):
            await app.call("vision.embed_image", {"images": []})


async def test_tools_are_listed_with_annotations(make_app):
    app = make_app("vision")
    names = {t.name: t for t in app.tools.list() if t.plugin == "vision"}
    assert set(names) == {"vision.describe", "vision.answer", "vision.ocr", "vision.video", "vision.embed_text",
                          "vision.embed_image"}
    assert all(t.annotations.read_only and not t.annotations.destructive for t in names.values())
    schema = names["vision.describe"].input_schema
    assert schema["required"] == ["image"] and "allowed roots" in str(schema)
    assert "transformers" in app.backends
