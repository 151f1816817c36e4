"""What the router learns from: the shipped corpus plus the example requests that tools
register, turned into clause-level training units, and the trained model (cached).

A unit is one clause, the context it was said in (attachment kinds, spoken, a follow-up
after some tool) and the tool it asks for. The corpus (``data/routing_corpus.jsonl``)
gives each request's clauses with their tools (``parts``); a tool's ``examples`` are
single-clause units whose context comes from the tool's schema (a tool that needs an
``image`` learns its examples as said with an image attached).

Training takes seconds, so a trained model is kept per process and on disk under the
cache dir, keyed by a hash of everything that went into it (corpus, every tool's examples,
settings, the featurising code): the same inputs never train twice, a restart loads the
model in milliseconds, and a tool whose examples change gets a model that knows them.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.logging import get_logger

from . import align, features, rules
from .align import Aligned
from .features import sparse
from .intent_model import IntentModel
from .noise import noisy, rng_for

CORPUS = Path(__file__).with_name("data") / "routing_corpus.jsonl"
#: requests written by hand (data/written_requests.txt, built by build_corpus.py --written): the
#: phrasings templates never produce, weighted ``written_weight`` each
WRITTEN = Path(__file__).with_name("data") / "routing_written.jsonl"
#: requests other people wrote in the dev-set format (one file per writer), aligned to clauses by
#: align.py and weighted ``human_weight`` each
HUMAN = Path(__file__).with_name("data") / "human"
MEDIA_FIELDS = ("image", "video", "audio")
#: hyper-parameters picked by 5-fold cross-validation on the corpus, the weights and noise by leaving
#: one writer out (bench/routing_cv.py --lowo); the temperature minimises the log-loss of the
#: leave-one-writer-out predictions (--lowo --temperatures): the confidence a writer the model has
#: not met should get, where tests/routing_calibration.jsonl (--calibrate) is now too easy
SETTINGS = {"l2": 1e-5, "steps": 60, "lr": 0.2, "temperature": 0.66, "features": 3, "augment": 1,
            "augment_weight": 0.5, "written_weight": 1.0, "human_weight": 2.0, "human_noise": 1,
            "min_label": 10}
EXAMPLE_MASS = 120.0  # a tool's examples together weigh at least this many corpus requests

Embed = Callable[[list[str]], np.ndarray]
log = get_logger("loom.assistant")


@dataclass(frozen=True)
class Unit:
    text: str
    context: tuple[str, ...]
    tool: str
    weight: float = 1.0
    noise: bool = True  # whether training also sees a noisy copy (people's own requests may not need one)


def context_for(kinds: Iterable[str], *, spoken: bool = False, after: str | None = None) -> tuple[str, ...]:
    """The context tokens of a clause: ``none``, the attachment kinds, ``spoken``, or a
    follow-up after a tool (and after that tool's group: ``after:browser``)."""
    if after is not None:
        return ("follow", f"after:{after}", f"after:{after.split('.')[0]}")
    if spoken:
        return ("spoken",)
    kinds = tuple(sorted(set(kinds)))
    return kinds or ("none",)


def corpus_rows(path: Path | None = None, *, human: Iterable[Path] | None = None) -> list[dict[str, Any]]:
    """The corpus: the generated requests, the hand-written ones and the human files' aligned
    rows (``weight`` set on both), or one file. ``human``: those files instead of ``data/human``'s."""
    if path is not None:
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    written = corpus_rows(WRITTEN) if WRITTEN.exists() else []
    rows = corpus_rows(CORPUS) + [{**row, "weight": SETTINGS["written_weight"]} for row in written]
    return rows + human_rows(rows, human).rows


def human_files() -> list[Path]:
    return sorted(HUMAN.glob("*.jsonl")) if HUMAN.is_dir() else []


_ALIGNED: dict[tuple[Any, ...], Aligned] = {}  # every app in a process builds a router: align once


def human_rows(base: list[dict[str, Any]], files: Iterable[Path] | None = None) -> Aligned:
    """The human files' requests as training rows, their steps aligned to the clauses with
    the intents ``base`` (the corpus) gives each tool; rows that cannot be aligned are logged."""
    paths = list(human_files() if files is None else files)
    key = (tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in paths), SETTINGS["human_weight"],
           SETTINGS["human_noise"], SETTINGS["min_label"], rules.WIDE,
           hashlib.sha256(json.dumps(sorted(intents_from(base).items())).encode()).hexdigest())
    if key in _ALIGNED:
        return _ALIGNED[key]
    aligned = align.load(paths, intents_from(base), SETTINGS["human_weight"])
    if not SETTINGS["human_noise"]:
        aligned.rows = [{**row, "noise": False} for row in aligned.rows]
    if SETTINGS["min_label"] > 1:
        # A clause asking for a pair of steps no other request pairs ("look it up, remember it and
        # say it"): the model could hardly learn the pair, and every label costs a column of weights
        # in training; it learns the clause's first step.
        counts = Counter(label for row in [*base, *aligned.rows] for _, label in row["parts"])
        rare = {label for label, n in counts.items() if "+" in label and n < SETTINGS["min_label"]}
        aligned.rows = [{**row, "parts": [[c, label.split("+")[0] if label in rare else label]
                                          for c, label in row["parts"]]} for row in aligned.rows]
    _ALIGNED[key] = aligned
    if aligned.failed:
        log.warning("human-written requests not learned: their steps cannot be aligned to their clauses",
                    count=len(aligned.failed), examples="; ".join(f"{i}: {why}" for i, why in aligned.failed[:3]))
    return aligned


def corpus_units(rows: list[dict[str, Any]]) -> list[Unit]:
    out = []
    for row in rows:
        spoken = row["text"].startswith("[spoken]")
        prev = None
        for i, (text, tool) in enumerate(row["parts"]):
            ctx = context_for(row["attachments"], spoken=spoken) if i == 0 else context_for((), after=prev)
            out.append(Unit(text, ctx, tool, float(row.get("weight", 1.0)), row.get("noise", True)))
            if tool != "none":
                prev = tool
    return out


def media_kinds(schema: dict[str, Any]) -> list[str]:
    """The attachment kinds a tool needs: its required fields named image, video or audio."""
    return [f for f in schema.get("required", []) if f in MEDIA_FIELDS]


def example_units(tools: Iterable[Any]) -> list[Unit]:
    out = []
    for tool in tools:
        examples = getattr(tool, "examples", ())
        if not examples:
            continue
        weight = max(1.0, EXAMPLE_MASS / len(examples))
        ctx = context_for(media_kinds(tool.input_schema))
        out += [Unit(e, ctx, tool.name, weight) for e in examples]
    return out


def intents_from(rows: list[dict[str, Any]]) -> dict[str, str]:
    """Tool -> intent, as the corpus labels them (a request's intent is its first step's)."""
    out: dict[str, str] = {}
    for row in rows:
        out.setdefault(row["parts"][0][1], row["intent"])
    return out


def producers_from(rows: list[dict[str, Any]], needs: dict[str, list[str]]) -> dict[str, set[str]]:
    """Media kind -> tools whose output a later step reads as that kind, from the corpus's
    plans and ``needs`` (tool -> the media kinds its schema requires)."""
    out: dict[str, set[str]] = {k: set() for k in MEDIA_FIELDS}
    for row in rows:
        parts = [t for _, t in row["parts"] if t != "none"]
        for a, b in itertools.pairwise(parts):
            for kind in needs.get(b, []):
                out[kind].add(a)
    return out


# The code that turns units into a model: a change to it must not load a model trained by the old code.
_CODE = [Path(__file__).with_name(n) for n in ("features.py", "intent_model.py", "training.py", "noise.py")]
KEEP = 8  # trained models kept in the cache dir (one per corpus + examples + code), newest first


def fingerprint(units: list[Unit], embed_name: str | None) -> str:
    """A hash of everything a trained model depends on: the units (corpus clauses, every tool's
    examples, their contexts and weights), the settings and the featurising/training code."""
    h = hashlib.sha256(json.dumps(SETTINGS, sort_keys=True).encode())
    h.update(str(embed_name).encode())
    h.update(f"{features.NGRAMS}{features.CUES}".encode())  # model selection varies them at run time
    for path in _CODE:
        h.update(path.read_bytes())
    for u in units:
        h.update(f"{u.text}\x1f{'|'.join(u.context)}\x1f{u.tool}\x1f{u.weight}\x1e".encode())
    return h.hexdigest()[:24]


_MEMO: dict[str, IntentModel] = {}
_LOCK = threading.Lock()  # one training at a time: a second router asking for the same model waits for it


def train(units: list[Unit], *, embed: Embed | None = None, embed_name: str | None = None,
          cache_dir: Path | None = None) -> IntentModel:
    """The model for ``units``: from this process's memo, the disk cache, or trained now.
    ``model.source`` says which, and how long it took."""
    key = fingerprint(units, embed_name if embed is not None else None)
    path = cache_dir / f"router-{key}.npz" if cache_dir is not None else None
    with _LOCK:
        if key in _MEMO:
            if path is not None and not path.exists():
                save(_MEMO[key], path)  # another app in this process trained it: share it with the next process
            return _MEMO[key]
        t0 = time.perf_counter()
        model = load(path) if path is not None and path.exists() else None
        if model is not None:
            model.source = f"loaded from the cache ({path.name}) in {time.perf_counter() - t0:.3f}s"
        else:
            model = fit(units, embed=embed)
            model.source = f"trained on {len(units)} clauses in {time.perf_counter() - t0:.1f}s"
            if path is not None:
                save(model, path)
                _prune(path.parent)
        model.key = key
        _MEMO[key] = model
        return model


def _prune(cache_dir: Path) -> None:
    """Keep the newest ``KEEP`` models: each corpus/examples/code change leaves one behind."""
    models = [p for p in cache_dir.glob("router-*.npz") if ".tmp." not in p.name]
    for p in sorted(models, key=lambda p: p.stat().st_mtime, reverse=True)[KEEP:]:
        p.unlink(missing_ok=True)


def augment(units: list[Unit], copies: int, weight: float) -> list[Unit]:
    """``units`` plus ``copies`` noisy versions of each (typos, no accents, no punctuation,
    fillers, a word left out: noise.py) at ``weight`` times the original's weight."""
    out = list(units)
    for c in range(copies):
        for u in units:
            if not u.noise:
                continue
            text = noisy(u.text, rng_for(u.text, c))
            if text and text != u.text:
                out.append(Unit(text, u.context, u.tool, u.weight * weight))
    return out


def fit(units: list[Unit], *, embed: Embed | None = None, settings: dict[str, Any] | None = None) -> IntentModel:
    cfg = {**SETTINGS, **(settings or {})}
    units = augment(units, cfg["augment"], cfg["augment_weight"])
    labels = sorted({u.tool for u in units})
    index = {t: i for i, t in enumerate(labels)}
    rows = [sparse(u.text, u.context) for u in units]
    dense = embed([u.text for u in units]) if embed is not None else None
    y = np.array([index[u.tool] for u in units])
    w = np.array([u.weight for u in units], np.float32)
    model = IntentModel(labels, l2=cfg["l2"], steps=cfg["steps"], lr=cfg["lr"]).fit(rows, dense, y, w)
    model.temperature = cfg["temperature"]
    return model


def save(model: IntentModel, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")  # two processes may save the same model
    extra = {"wd": model.wd} if model.wd is not None else {}
    np.savez(tmp, labels=np.array(model.labels), columns=model.columns, ws=model.ws, b=model.b,
             temperature=np.array(model.temperature), **extra)
    tmp.replace(path)


def load(path: Path) -> IntentModel | None:
    try:
        with np.load(path) as z:
            model = IntentModel([str(x) for x in z["labels"]])
            model.columns, model.ws, model.b = z["columns"], z["ws"], z["b"]
            model.temperature = float(z["temperature"])
            model.wd = z["wd"] if "wd" in z else None
        return model
    except (OSError, KeyError, ValueError):
        return None  # a damaged cache file is retrained, not fatal
