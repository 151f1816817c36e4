"""tools.search quality: top-1/top-3 accuracy of the embedding+words ranking against words alone.

Runs the real tools.search (MiniLM through the pool) over the tools of every built-in
plugin on two sets: the development set the one weight was chosen on, and the held-out
set (tests/toolsearch_heldout.jsonl), never used for choosing anything. Also a
leave-one-out cross-validation over the development set: for each task the weight is
chosen (from WEIGHTS, best top-1 on the other tasks) without it, then scored on it.
Prints each figure, the ratio against the word-overlap baseline measured in the same
run, and exits non-zero when held-out top-3 accuracy is under TARGET_TOP3 or not above
the baseline.

    .venv/bin/python bench/toolsearch.py
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import anyio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TARGET_TOP3 = 0.8
WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.5, 1.0)
PLUGINS = "admin,models,embed,toolsearch,voice,imagegen,video,vision,coder,browser,memory,system"
DEV = [
    ("say this sentence out loud", "voice.speak"),
    ("draw a picture of a red bicycle", "imagegen.generate"),
    ("read the text in a screenshot", "vision.ocr"),
    ("turn this audio recording into text", "voice.transcribe"),
    ("write a python function that parses dates", "coder.generate"),
    ("find information about a topic on the web", "browser.research"),
    ("remember that my sister lives in Lyon", "memory.remember"),
    ("make a short video of waves", "video.generate"),
    ("click the OK button on my screen", "system.click"),
    ("take a picture of my screen", "system.screenshot"),
    ("describe this image for a blind user", "vision.describe"),
    ("explain this error message", "coder.explain"),
    ("unload the big model to free memory", "models.unload"),
    ("forget what I said about my address", "memory.forget"),
    ("type hello into the focused window", "system.type"),
    ("open the wikipedia page about otters", "browser.open"),
]


def load_heldout() -> list[tuple[str, str]]:
    rows = [json.loads(line) for line in (ROOT / "tests" / "toolsearch_heldout.jsonl").read_text().splitlines()]
    return [(r["task"], r["tool"]) for r in rows]


async def score(app, rows: list[tuple[str, str]]) -> tuple[float, float, float, float]:
    from core.profiles import searchable_tools
    from plugins.toolsearch import rank_lexical

    tools = searchable_tools(app, None)
    top1 = top3 = lex1 = lex3 = 0
    for task, want in rows:
        res = await app.call("tools.search", {"task": task, "limit": 3})
        assert res.structured["method"] == "embedding", res.structured.get("note")
        names = [t["name"] for t in res.structured["tools"]]
        lexical = [t.name for _, t in rank_lexical(task, tools)[:3]]
        top1 += names[0] == want
        top3 += want in names
        lex1 += lexical[0] == want
        lex3 += want in lexical
    n = len(rows)
    return top1 / n, top3 / n, lex1 / n, lex3 / n


async def cross_validated(app, rows: list[tuple[str, str]]) -> tuple[float, float, list[float]]:
    """Leave-one-out over ``rows``: the weight is picked without the task it is scored on."""
    from core.profiles import searchable_tools

    tools = searchable_tools(app, None)
    index = app.services["toolsearch"]
    model = app.pool.model_for("embed")
    signals = [await index.signals(model, task, tools) for task, _ in rows]

    def ranked(i: int, w: float) -> list[str]:
        cosine, lexical = signals[i]
        order = sorted(range(len(tools)), key=lambda j: -(cosine[j] + w * lexical[j]))
        return [tools[j].name for j in order[:3]]

    top1 = top3 = 0
    chosen = []
    for i, (_, want) in enumerate(rows):
        others = [k for k in range(len(rows)) if k != i]
        best = max(WEIGHTS, key=lambda w: (sum(ranked(k, w)[0] == rows[k][1] for k in others), -w))
        chosen.append(best)
        names = ranked(i, best)
        top1 += names[0] == want
        top3 += want in names
    return top1 / len(rows), top3 / len(rows), chosen


async def main() -> int:
    from core.app import Loom
    from core.config import LoomConfig, PathsConfig

    cfg = LoomConfig(paths=PathsConfig(data_dir=tempfile.mkdtemp(prefix="loom-bench-")))
    app = Loom.create(cfg, environ={"LOOM_DISABLE_PLUGIN_AUTOLOAD": "1", "LOOM_PLUGINS": PLUGINS},
                      configure_logs=False)
    ok = True
    async with app:
        cv1, cv3, chosen = await cross_validated(app, DEV)
        print(f"tools.search dev leave-one-out ({len(DEV)} folds): top-1 {cv1:.2f}, top-3 {cv3:.2f} "
              f"(weights chosen: {sorted(set(chosen))})")
        for label, rows in (("dev", DEV), ("held-out", load_heldout())):
            t1, t3, l1, l3 = await score(app, rows)
            print(f"tools.search {label:8s} ({len(rows)} tasks): top-1 {t1:.2f} (words alone {l1:.2f}, "
                  f"x{t1 / max(l1, 1e-9):.2f}), top-3 {t3:.2f} (words alone {l3:.2f}, x{t3 / max(l3, 1e-9):.2f})")
            if label == "held-out" and (t3 < TARGET_TOP3 or t3 <= l3):
                print(f"MISSED: held-out top-3 {t3:.2f} (target {TARGET_TOP3}, and above words alone {l3:.2f})")
                ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(anyio.run(main))
