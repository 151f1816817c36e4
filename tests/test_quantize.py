"""``quantize = "q8_0"``: the pool loads a converted copy of a GGUF, made once and reused."""

from __future__ import annotations

import pytest

from core.capabilities import Chat
from core.config import LoomConfig, ModelConfig, PathsConfig
from core.gguf_meta import TYPE_IDS, read_header
from core.tools import ToolError
from tests.gguf_factory import write_tiny_gguf

pytestmark = pytest.mark.anyio


def config(tmp_path, model, **kw) -> LoomConfig:
    return LoomConfig(
        models={"m": ModelConfig(backend="llama_cpp", file=str(model), context_size=256, placement="inline",
                                 options={"n_threads": 1}, **kw)},
        paths=PathsConfig(data_dir=str(tmp_path / "data"), model_cache=str(tmp_path / "converted")))


@pytest.fixture
def tiny(tmp_path):
    return write_tiny_gguf(tmp_path / "tiny-f32.gguf", n_embd=128, context=256)


async def test_a_model_is_converted_once_and_the_estimate_predicted_its_size(tmp_path, tiny, make_app):
    app = make_app("llamacpp", config=config(tmp_path, tiny, quantize="q8_0"))
    async with app:
        predicted = app.pool.estimate("m").breakdown["weights"]
        async with app.pool.use("m", Chat) as chat:
            answer = await chat.complete("hello", max_tokens=4, temperature=0)
        assert answer.usage.completion_tokens > 0
    made = list((tmp_path / "converted").glob("*.gguf"))
    assert len(made) == 1 and "q8_0" in made[0].name
    _kv, tensors, start = read_header(made[0])
    assert all(t.type == TYPE_IDS["q8_0"] for t in tensors if len(t.shape) >= 2)
    actual = made[0].stat().st_size - start
    assert abs(predicted - actual) < 0.02 * actual  # the pool budgeted what actually loaded
    assert actual < 0.35 * (tiny.stat().st_size)  # F32 -> Q8_0: about a quarter plus the scales

    stamp = made[0].stat().st_mtime_ns
    again = make_app("llamacpp", config=config(tmp_path, tiny, quantize="q8_0"))
    async with again, again.pool.use("m", Chat) as chat:  # a restart reuses the converted copy
        await chat.complete("hello", max_tokens=2, temperature=0)
    assert [p.stat().st_mtime_ns for p in (tmp_path / "converted").glob("*.gguf")] == [stamp]


async def test_a_file_already_of_the_type_is_loaded_as_it_is(tmp_path, tiny, make_app):
    from plugins.llamacpp.convert import convert

    q8 = convert("m", tiny, "q8_0", tmp_path / "first")
    app = make_app("llamacpp", config=config(tmp_path, q8, quantize="Q8_0"))
    async with app, app.pool.use("m", Chat) as chat:
        await chat.complete("hi", max_tokens=2, temperature=0)
    assert not (tmp_path / "converted").exists() or not list((tmp_path / "converted").iterdir())


async def test_an_unknown_type_is_a_clear_error(tmp_path, tiny, make_app):
    app = make_app("llamacpp", config=config(tmp_path, tiny, quantize="q3_weird"))
    async with app:
        with pytest.raises(ToolError, match=r"quantize must be one of \['f16', 'q8_0'\]"):
            app.pool.estimate("m")
