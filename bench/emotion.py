"""Emotion benchmark: the shipped classifier on the frozen held-out set.

Prints the nine-class macro-F1 (Plutchik's eight + neutral), F1 per class, accuracy per
style (casual, sarcastic, work stress, neutral task requests...) and per language, how
often a neutral task request reads as emotional, how often the reply's tone changes and
whether it changes to the right emotion, and the time per message. The baseline, run on
the same messages in the same process, is the keyword lexicon the stage used before
(an emotion per lexicon hit, the most hits win, none = neutral); the ratio is the
model's macro-F1 over the lexicon's. The cross-validated figures from training (5 folds
on the training set) are printed beside the held-out ones; ``--cv`` recomputes them.

Both models are measured: the text-only one (the stage's default) and, when it has been
built, the one that also reads the message's MiniLM sentence embedding (``[plugin.cognition.
emotion] use_embeddings = true``); its time per message includes the embedding through the pool.

Targets, for each model: macro-F1 >= 0.60; neutral task requests read as emotional <= 5%;
for the stage's default model, median time per message (embedding included, when it uses
one) <= 5 ms. Exit status 1 when one is missed.

    .venv/bin/python bench/emotion.py [--cv] [-v]
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

import anyio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from plugins.cognition import emotion, lexicon, textclf, train  # noqa: E402

HELDOUT = ROOT / "plugins/cognition/data/emotion_heldout.jsonl"
HELDOUT_SHA256 = "4c0fb44944955ab7a9543a6bba0722fbb49d2d129cf80f93a844fe0567c77c82"  # docs/cognition.md
TARGET_F1, TARGET_TASK, TARGET_MS = 0.60, 0.05, 5.0


def lexicon_label(text: str) -> str:
    votes: Counter[str] = Counter()
    for w in textclf.words(text):
        emo = lexicon.lookup(w)
        if emo:
            votes[emo] += 1
    for ch in text:
        if ch in lexicon.EMOJI:
            votes[lexicon.EMOJI[ch]] += 1
    return votes.most_common(1)[0][0] if votes else "neutral"


async def embed_each(texts: list[str]) -> tuple[list[list[float]], list[float]]:
    """Each message's MiniLM embedding through the pool's Embed handle, one call per message
    (as the stage does), and the milliseconds each took."""
    import tempfile

    from core.app import Loom
    from core.capabilities import Embed
    from core.config import LoomConfig, PathsConfig

    cfg = LoomConfig(paths=PathsConfig(data_dir=tempfile.mkdtemp(prefix="loom-bench-")))
    app = Loom.create(cfg, environ={"LOOM_DISABLE_PLUGIN_AUTOLOAD": "1", "LOOM_PLUGINS": "embed"},
                      configure_logs=False)
    vectors, ms = [], []
    async with app, app.pool.use(app.pool.model_for("embed"), Embed) as emb:
        await emb.embed(["warm-up"])
        for t in texts:
            t0 = time.perf_counter()
            vectors.append((await emb.embed([t]))[0])
            ms.append((time.perf_counter() - t0) * 1e3)
    return vectors, ms


def evaluate(rows: list[dict], clf: textclf.LinearModel, vectors: list | None) -> dict:
    classes = list(emotion.CLASSES)
    gold = [r["label"] for r in rows]
    results, ms = [], []
    for i, r in enumerate(rows):
        t0 = time.perf_counter()
        results.append(emotion.detect(r["text"], clf, vector=vectors[i] if vectors else None))
        ms.append((time.perf_counter() - t0) * 1e3)
    pred = [x["dominant"] for x in results]
    f1, per = textclf.macro_f1(gold, pred, classes)
    tasks = [i for i, r in enumerate(rows) if r["label"] == "neutral" and r["style"] in train.NEUTRAL_TASK_STYLES]
    toned = [i for i in range(len(rows)) if emotion.tone_instruction(results[i])]
    emotional = [i for i, g in enumerate(gold) if g != "neutral"]
    return {"pred": pred, "f1": f1, "per": per, "ms": ms,
            "task_rate": sum(pred[i] != "neutral" for i in tasks) / len(tasks),
            "tone_right": sum(pred[i] == gold[i] for i in toned) / max(len(toned), 1),
            "tone_recall": sum(1 for i in toned if gold[i] != "neutral" and pred[i] == gold[i]) / len(emotional),
            "tone_tasks": sum(1 for i in toned if i in set(tasks)) / len(tasks), "cv": clf.meta.get("cv", {}),
            "tone_threshold": clf.meta.get("tone_threshold"), "threshold": clf.meta.get("threshold")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cv", action="store_true", help="recompute the cross-validated figures (minutes)")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every held-out miss")
    args = ap.parse_args()
    digest = hashlib.sha256(HELDOUT.read_bytes()).hexdigest()
    if digest != HELDOUT_SHA256:
        print(f"held-out set changed: sha256 {digest}, frozen {HELDOUT_SHA256}", file=sys.stderr)
        return 2
    rows = train.load_jsonl(HELDOUT)
    classes = list(emotion.CLASSES)
    gold = [r["label"] for r in rows]
    semantic = emotion.SEMANTIC_MODEL_PATH.is_file()
    vectors, embed_ms = anyio.run(embed_each, [r["text"] for r in rows]) if semantic else (None, [])

    # Rounds alternate the order of the sides (models and the lexicon baseline).
    sides = ["text", "lexicon", *(["minilm"] if semantic else [])]
    out: dict[str, dict] = {}
    for rnd in range(3):
        for side in (sides if rnd % 2 == 0 else sides[::-1]):
            if side == "lexicon":
                t0 = time.perf_counter()
                pred = [lexicon_label(r["text"]) for r in rows]
                out["lexicon"] = {"pred": pred, "s": time.perf_counter() - t0}
            else:
                out[side] = evaluate(rows, emotion.model(semantic=side == "minilm"), vectors if side == "minilm"
                                     else None)
    base = out["lexicon"]["pred"]
    f1_base, per_base = textclf.macro_f1(gold, base, classes)
    tasks = [i for i, r in enumerate(rows) if r["label"] == "neutral" and r["style"] in train.NEUTRAL_TASK_STYLES]
    task_base = sum(base[i] != "neutral" for i in tasks) / len(tasks)
    from plugins.cognition.settings import EmotionSettings

    main_side = "minilm" if semantic and EmotionSettings().use_embeddings else "text"
    if args.cv:
        out[main_side]["cv"] = train.train_emotion(log=print, semantic=semantic).meta["cv"]
    cols = [s for s in ("minilm", "text") if s in out]
    head = "".join(f"{s:>9}{'(cv)':>7}" for s in cols)
    also = ", + MiniLM sentence embedding ('minilm', opt-in)" if semantic else ""
    print(f"emotion: {len(rows)} held-out messages (sha256 {digest[:12]}...); models: n-grams + lexicon "
          f"('text'){also}")
    print(f"{'':28}{head}{'lexicon':>9}")

    def line(label: str, key: str, fmt: str, base_value: float | None, cv_key: str | None = None) -> None:
        cells = ""
        for s in cols:
            v = out[s][key]
            cv = out[s]["cv"].get(cv_key) if cv_key else None
            cvs = format(cv, fmt) if isinstance(cv, float) else ""
            cells += f"{format(v, fmt):>9}{cvs:>7}"
        b = format(base_value, fmt) if base_value is not None else ""
        print(f"{label:28}{cells}{b:>9}")

    line("macro-F1 (9 classes)", "f1", ".3f", f1_base, "macro_f1")
    for c in classes:
        cells = "".join(f"{out[s]['per'][c]:9.3f}{out[s]['cv'].get('per_class_f1', {}).get(c, float('nan')):7.3f}"
                        for s in cols)
        print(f"  F1 {c:24}{cells}{per_base[c]:9.3f}")
    line("neutral tasks -> emotional", "task_rate", ".1%", task_base, "task_emotional")
    line("tone changed, right emotion", "tone_right", ".1%", None, "tone_precision")
    line("tone changed / emotional", "tone_recall", ".1%", None, "tone_recall")
    line("tone changed on a task", "tone_tasks", ".1%", None)
    for s in cols:
        print(f"  {s}: emotion threshold {out[s]['threshold']}, tone threshold {out[s]['tone_threshold']}")
    print("accuracy by style / language:" + "".join(f"{s:>9}" for s in cols) + f"{'lexicon':>9}")
    for key in ("style", "lang"):
        for value in sorted({r[key] for r in rows}):
            idx = [i for i, r in enumerate(rows) if r[key] == value]
            accs = "".join(f"{sum(out[s]['pred'][i] == gold[i] for i in idx) / len(idx):9.1%}" for s in cols)
            acc_b = sum(base[i] == gold[i] for i in idx) / len(idx)
            print(f"  {value:26}{accs}{acc_b:9.1%}   (n={len(idx)})")
    total_ms = [a + b for a, b in zip(out[main_side]["ms"], embed_ms, strict=True)] if main_side == "minilm" \
        else out["text"]["ms"]
    median_ms = statistics.median(total_ms)
    for s in cols:
        ms = out[s]["ms"]
        print(f"time per message, {s} classifier: median {statistics.median(ms):.3f} ms, "
              f"p95 {sorted(ms)[int(0.95 * len(ms))]:.3f} ms")
    if semantic:
        both = statistics.median([a + b for a, b in zip(out["minilm"]["ms"], embed_ms, strict=True)])
        print(f"time per message, MiniLM embedding through the pool: median {statistics.median(embed_ms):.2f} ms; "
              f"embedding + classifier: median {both:.2f} ms")
    print(f"the stage's default model: {main_side} (median {median_ms:.2f} ms per message)")
    print(f"ratio: {main_side} macro-F1 / lexicon macro-F1 = {out[main_side]['f1'] / max(f1_base, 1e-9):.2f}")
    if args.verbose:
        for i, r in enumerate(rows):
            if out[main_side]["pred"][i] != gold[i]:
                print(f"  miss [{r['style']}/{r['lang']}] {gold[i]} -> {out[main_side]['pred'][i]}: {r['text']}")
    missed = []
    for s in cols:
        if out[s]["f1"] < TARGET_F1:
            missed.append(f"{s} macro-F1 {out[s]['f1']:.3f} < {TARGET_F1}")
        if out[s]["task_rate"] > TARGET_TASK:
            missed.append(f"{s}: neutral tasks read as emotional {out[s]['task_rate']:.1%} > {TARGET_TASK:.0%}")
    if median_ms > TARGET_MS:
        missed.append(f"median {median_ms:.2f} ms > {TARGET_MS} ms")
    print("MISSED: " + "; ".join(missed) if missed else "all targets met")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
