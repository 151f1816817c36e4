"""The vision tools on a llama.cpp VLM: a GGUF plus its mmproj vision projector.

No real VLM GGUF can be downloaded here, so the pair is generated at test time
(``tests/mmproj_factory.py``): a tiny random LLaMA text model and a tiny random LLaVA-style
projector that llama-cpp-python's bundled libmtmd really loads. The answers are gibberish,
but the whole path runs: the backend attaches the multimodal chat handler, the image goes
through Loom's capped loader into a data: URL, libmtmd decodes and encodes it, and its
embeddings take their place in the prompt.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from core.config import LoomConfig, ModelConfig
from tests.mmproj_factory import image_tokens, write_tiny_mmproj, write_tiny_vlm

pytestmark = pytest.mark.anyio

IMAGE_SIZE, PATCH = 96, 8  # 144 image embeddings per picture
N_IMAGE = image_tokens(IMAGE_SIZE, PATCH)


@pytest.fixture(scope="module")
def vlm_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("vlm")
    return write_tiny_vlm(d, image_size=IMAGE_SIZE, patch_size=PATCH)


def photo_png() -> bytes:
    """A 320x240 landscape: sky, grass, a sun."""
    im = Image.new("RGB", (320, 240), "skyblue")
    draw = ImageDraw.Draw(im)
    draw.rectangle((40, 120, 280, 230), fill="forestgreen")
    draw.ellipse((220, 20, 290, 90), fill="gold")
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def photo(data_dir: Path) -> Path:
    path = data_dir.parent / "photo.png"  # inside the app's allowed roots
    path.write_bytes(photo_png())
    return path


def vlm_app(make_app, model: Path, mmproj: Path, **options: str):
    # inline: the tests look at the loaded Llama's chat handler in this process
    cfg = LoomConfig(models={"tiny-vl": ModelConfig(
        backend="llama_cpp", file=str(model), mmproj=str(mmproj), role="vlm", context_size=1024, placement="inline",
        options={"n_threads": 1, "seed": 0, **options})})
    return make_app("vision", "llamacpp", "models", config=cfg)


async def test_vision_tools_answer_through_a_gguf_with_its_mmproj(make_app, vlm_files, photo: Path, capfd):
    from llama_cpp.llama_chat_format import MTMDChatHandler

    from core.capabilities import Chat
    from core.pool import ModelLoaded

    model, mmproj = vlm_files
    app = vlm_app(make_app, model, mmproj)
    async with app:
        est = app.pool.estimate("tiny-vl")
        assert est.breakdown["mmproj"] >= mmproj.stat().st_size  # the projector counts in the pool's budget

        described = await app.call("vision.describe", {"image": str(photo), "detail": "brief", "max_tokens": 8})
        answered = await app.call("vision.answer", {"image": str(photo), "question": "What colour is the sun?",
                                                    "max_tokens": 8})
        for result in (described, answered):
            assert isinstance(result.structured["text"], str)
            assert result.structured["model"] == "tiny-vl" and result.structured["size"] == [320, 240]

        # libmtmd logs each prompt's text at debug level; it must not reach the daemon's stderr
        assert "colour is the sun" not in capfd.readouterr().err

        loaded = [e for e in app.bus.recent if isinstance(e, ModelLoaded) and e.model == "tiny-vl"]
        assert len(loaded) == 1 and loaded[0].estimate >= est.total  # loaded once, mmproj included

        async with app.pool.use("tiny-vl", Chat) as chat:
            assert chat.vision
            llm = app.pool._leases["tiny-vl"].handle  # inline: the Llama itself, for a look inside
            # the multimodal handler is attached and its projector was initialised by the tools' calls
            assert isinstance(llm.chat_handler, MTMDChatHandler)
            assert llm.chat_handler.mtmd_ctx is not None
            assert llm.n_tokens > N_IMAGE  # the last tool call's prompt held the image's embeddings

            image = {"type": "image", "data": photo_png(), "mime_type": "image/png"}
            text = {"type": "text", "text": "What is in this picture?"}
            seen = await chat.complete([{"role": "user", "content": [image, text]}], max_tokens=4, temperature=0.0)
            blind = await chat.complete([{"role": "user", "content": [text]}], max_tokens=4, temperature=0.0)
            two = await chat.complete([{"role": "user", "content": [image, image, text]}], max_tokens=4,
                                      temperature=0.0)
    # each image takes exactly its embeddings' positions in the prompt
    assert seen.usage.prompt_tokens == blind.usage.prompt_tokens + N_IMAGE
    assert two.usage.prompt_tokens == blind.usage.prompt_tokens + 2 * N_IMAGE
    assert seen.finish_reason in ("stop", "length") and seen.usage.completion_tokens >= 1


@pytest.mark.parametrize(("handler", "cls"), [("qwen2.5-vl", "Qwen25VLChatHandler"),
                                               ("llava-1.5", "Llava15ChatHandler")])
async def test_options_chat_handler_picks_the_library_handler(make_app, vlm_files, photo: Path, handler: str,
                                                             cls: str):
    app = vlm_app(make_app, *vlm_files, chat_handler=handler)
    async with app:
        result = await app.call("vision.answer", {"image": str(photo), "question": "Sky?", "max_tokens": 4})
        assert isinstance(result.structured["text"], str)
        async with app.pool.use("tiny-vl"):
            llm = app.pool._leases["tiny-vl"].handle  # inline: the Llama itself
            assert type(llm.chat_handler).__name__ == cls
            assert llm.n_tokens > N_IMAGE  # the handler's own prompt format, with the image's embeddings


@pytest.mark.parametrize("wrong", ["other-width", "not-a-projector"])
async def test_a_wrong_mmproj_fails_the_load_with_the_reason(make_app, vlm_files, photo: Path, tmp_path: Path,
                                                             wrong: str):
    from core.pool import ModelLoaded, ModelLoadFailed
    from core.tools import ToolError

    model, _ = vlm_files
    if wrong == "other-width":  # a projector made for a 32-wide model
        bad = write_tiny_mmproj(tmp_path / "other-mmproj.gguf", text_embd=32, image_size=32, patch_size=8)
        reason = "makes 32-wide embeddings but the model's are 64 wide"
    else:  # the text GGUF itself given as the projector
        bad = model
        reason = "It is not a vision projector"
    app = vlm_app(make_app, model, bad)
    async with app:
        for _ in range(2):  # the same clear answer each time: nothing is left half-loaded
            with pytest.raises(ToolError) as err:
                await app.call("vision.describe", {"image": str(photo), "max_tokens": 4})
            assert f"could not load the vision projector {bad}" in str(err.value) and reason in str(err.value)
        assert not any(isinstance(e, ModelLoaded) for e in app.bus.recent)
        assert any(isinstance(e, ModelLoadFailed) and e.model == "tiny-vl" for e in app.bus.recent)
        assert app.pool.model_status("tiny-vl")["state"] == "unloaded"
