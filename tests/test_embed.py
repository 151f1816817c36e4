"""The numpy MiniLM against torch references, and the embed.text tool through the pool."""

from __future__ import annotations

import numpy as np
import pytest

SENTENCES = [
    "Open Spotify.",
    "Genera una imagen de un castillo en las nubes.",
    "Fix the off-by-one bug in src/pager.py; the last page is never shown.",
    "A much longer sentence, with punctuation; numbers like 3.14159 and UPPER case words, to exercise padding.",
]


@pytest.fixture(scope="module")
def minilm():
    from plugins.embed.minilm import MiniLM

    return MiniLM()


def _torch_reference(model_dir, texts):
    """An independent forward pass written with torch ops (exact-erf GELU, torch layer norm)."""
    import torch
    import torch.nn.functional as F
    from safetensors.torch import load_file
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tok.no_padding()  # the packaged tokenizer.json pads to a fixed length
    w = load_file(str(model_dir / "model.safetensors"))
    out = []
    for text in texts:
        ids = torch.tensor([tok.encode(text).ids])
        x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][: ids.shape[1]]
        x = x + w["embeddings.token_type_embeddings.weight"][0]
        x = F.layer_norm(x, (384,), w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], 1e-12)
        for i in range(6):
            p = f"encoder.layer.{i}."

            def lin(name, v, p=p):
                return F.linear(v, w[p + name + ".weight"], w[p + name + ".bias"])

            q, k, v = (lin(f"attention.self.{n}", x).view(1, -1, 12, 32).transpose(1, 2)
                       for n in ("query", "key", "value"))
            a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(1, -1, 384)
            x = F.layer_norm(lin("attention.output.dense", a) + x, (384,), w[p + "attention.output.LayerNorm.weight"],
                             w[p + "attention.output.LayerNorm.bias"], 1e-12)
            h = F.gelu(lin("intermediate.dense", x))
            x = F.layer_norm(lin("output.dense", h) + x, (384,), w[p + "output.LayerNorm.weight"],
                             w[p + "output.LayerNorm.bias"], 1e-12)
        out.append(F.normalize(x.mean(1), dim=-1)[0].numpy())
    return np.stack(out)


def test_numpy_forward_matches_torch(minilm):
    got = minilm.embed(SENTENCES)  # one padded batch: padding must not change the result
    ref = _torch_reference(minilm.dir, SENTENCES)
    assert got.shape == (4, 384)
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert np.abs(got - ref).max() < 1e-4


def test_numpy_forward_matches_transformers(minilm):
    pytest.importorskip("transformers")
    import torch
    from transformers import AutoTokenizer, BertModel

    tok = AutoTokenizer.from_pretrained(str(minilm.dir))
    model = BertModel.from_pretrained(str(minilm.dir)).eval()
    with torch.no_grad():
        batch = tok(SENTENCES, padding=True, truncation=True, return_tensors="pt")
        hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        ref = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=1).numpy()
    assert np.abs(minilm.embed(SENTENCES) - ref).max() < 1e-4


def test_similar_meanings_are_closer(minilm):
    a, b, c = minilm.embed(["Draw a picture of a cat", "Generate an image of a kitten", "What is the GDP of Peru?"])
    assert a @ b > a @ c + 0.2


def test_empty_input_and_long_text(minilm):
    assert minilm.embed([]).shape == (0, 384)
    long = minilm.embed(["word " * 2000])  # truncated at 256 tokens, not an error
    assert long.shape == (1, 384)


@pytest.mark.anyio
async def test_embed_tool_through_pool(make_app, minilm):
    from core.capabilities import Chat, Embed
    from core.tools import ToolError

    app = make_app("embed")
    async with app:
        assert app.pool.model_for("embed") == "minilm"
        result = await app.call("embed.text", {"texts": ["hello world", "hola mundo"]})
        data = result.structured
        assert data["model"] == "minilm" and data["dim"] == 384
        vecs = np.array(data["embeddings"])
        assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-4)
        async with app.pool.use("minilm", Embed) as embedder:  # what the router and memory use
            assert embedder.dim == 384
            got = await embedder.embed_array(SENTENCES)
        assert np.array_equal(got, minilm.embed(SENTENCES))  # the same numbers, through a float32 buffer
        with pytest.raises(ToolError, match="cannot serve 'chat'"):
            async with app.pool.use("minilm", Chat):
                pass
        with pytest.raises(ToolError, match="at least one text"):
            await app.call("embed.text", {"texts": []})
        with pytest.raises(ToolError, match="Invalid arguments"):
            await app.call("embed.text", {"texts": "not a list"})
