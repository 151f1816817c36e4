"""How soon a coordinator token reaches an OpenAI client of model="loom" (streamed).

Target (issue 15): the first SSE content delta within 50 ms of the coordinator's first token.
Measured in one process, so both ends read the same clock: the coordinator is
``FakeCoordinator`` (tests/fake_coordinator.py, a stand-in that stamps each word as it hands it
out), the daemon is the real HTTP stack (uvicorn, the OpenAI surface, ``assistant.ask`` with
routing, the plan executor and the progress reporter), the client the official ``openai``
package with ``stream=True``.

Baseline, same run and settings: the same model streamed directly (``model="fake"``), which
skips the assistant. Each round runs both sides, alternating which goes first. Figures: the
median lag from the first token to its delta at the client, per side, and their difference
and ratio. Exits 1 when the loom lag misses 50 ms.

    .venv/bin/python bench/loom_stream.py [--rounds 12]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TARGET_S = 0.050
PROMPT = "Tell me a story about a fox."


def first_delta_lag(client, model, name: str) -> tuple[float, float]:
    """(first token -> first content delta at the client, request -> first delta) in seconds."""
    before = len(model.word_times)
    t0 = time.perf_counter()
    arrived = None
    for chunk in client.chat.completions.create(model=name, stream=True, max_tokens=64,
                                                messages=[{"role": "user", "content": PROMPT}]):
        if arrived is None and chunk.choices and chunk.choices[0].delta.content:
            arrived = time.perf_counter()
    assert arrived is not None, f"{name}: no content"
    return arrived - model.word_times[before], arrived - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=12)
    args = parser.parse_args()

    from core.app import Loom
    from core.config import PathsConfig
    from tests import fake_coordinator as fake

    d = Path(tempfile.mkdtemp(prefix="loom-stream-bench-"))
    model = fake.FakeCoordinator(delay=0.01)
    cfg = fake.config()
    cfg.paths = PathsConfig(data_dir=str(d / "data"), cache_dir=str(d / "cache"), allowed_roots=[str(d)])
    app = Loom.create(cfg, environ={"LOOM_DISABLE_PLUGIN_AUTOLOAD": "1", "LOOM_PLUGINS": "assistant"},
                      plugins={"fake": fake.plugin(model)})
    lag: dict[str, list[float]] = {"loom": [], "fake": []}
    ttfd: dict[str, list[float]] = {"loom": [], "fake": []}
    with fake.Served(app) as server:
        client = server.openai()
        for side in ("loom", "fake"):  # warm-up: load, first routing
            first_delta_lag(client, model, side)
        for r in range(args.rounds):
            for side in (("loom", "fake") if r % 2 == 0 else ("fake", "loom")):
                a, b = first_delta_lag(client, model, side)
                lag[side].append(a)
                ttfd[side].append(b)
    loom, base = statistics.median(lag["loom"]), statistics.median(lag["fake"])
    print(f"first token -> first SSE delta, median of {args.rounds}: model=loom {loom * 1000:.1f} ms, "
          f"model directly {base * 1000:.1f} ms (baseline); difference {(loom - base) * 1000:+.1f} ms, "
          f"ratio {loom / base:.2f}")
    print(f"request -> first delta: model=loom {statistics.median(ttfd['loom']) * 1000:.1f} ms (routing and plan "
          f"included), model directly {statistics.median(ttfd['fake']) * 1000:.1f} ms")
    ok = loom <= TARGET_S
    print(f"target: first delta within {TARGET_S * 1000:.0f} ms of the first token: {'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
