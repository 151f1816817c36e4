"""Time-conscious plans: each step's expected seconds include loading its model when it
is not resident, and a resident model of equal standing is preferred to loading another.

"Equal standing" means the same role and at least the same priority in loom.toml: the
pool's choice for a role is the default, but when it is cold and another model that
serves the role is warm, the plan takes the warm one (only for tools that accept a
``model`` argument, so the choice is real) and the reason says so.
"""

from __future__ import annotations

from typing import Any

from .plan import Plan

TOOL_ROLE: list[tuple[str, str]] = [
    ("assistant.chat", "coordinator"), ("vision.", "vlm"), ("coder.", "coder"), ("imagegen.", "imagegen"),
    ("video.generate", "video"), ("voice.speak", "tts"), ("voice.transcribe", "stt"), ("embed.", "embed"),
]
#: rough seconds a step takes once its model is loaded (CPU-sized defaults)
RUN_S: list[tuple[str, float]] = [
    ("assistant.chat", 3.0), ("vision.video", 12.0), ("vision.", 4.0), ("coder.", 10.0), ("imagegen.", 20.0),
    ("video.", 90.0), ("voice.speak", 1.5), ("voice.transcribe", 3.0), ("browser.", 6.0), ("system.", 0.3),
    ("memory.", 0.05), ("embed.", 0.01),
]
LOAD_BYTES_PER_S = 1.5e9  # disk -> memory, when the pool has not measured a load yet


def role_of(tool: str, app: Any = None) -> str | None:
    """The pool role a tool loads a model for, judged by its name. With ``app``, that is
    trusted for the built-in plugins' tools, and for another plugin's (an entry point, a
    plugin object) only when it takes a ``model`` argument, i.e. picks among the pool's
    models: a third-party ``vision.describe`` without one may run no model at all, so its
    step is neither skipped for want of a VLM nor costed as loading one (a tool that does
    need a model says so itself when called)."""
    if app is not None and not (_builtin(app, tool) or takes_model(app, tool)):
        return None
    return next((role for prefix, role in TOOL_ROLE if tool.startswith(prefix)), None)


def _builtin(app: Any, tool: str) -> bool:
    try:
        plugin = app.tools.get(tool).plugin
        return app.host.plugins[plugin].source == "builtin"
    except Exception:  # not registered, or no plugin host: judge by the name
        return True


def run_seconds(tool: str) -> float:
    return next((s for prefix, s in RUN_S if tool.startswith(prefix)), 1.0)


def _resident(m: dict[str, Any]) -> bool:
    return m.get("state") in ("ready", "loading")


def load_seconds(m: dict[str, Any]) -> float:
    if _resident(m):
        return 0.0
    if m.get("last_load_seconds"):
        return float(m["last_load_seconds"])
    return (m.get("estimate") or 0) / LOAD_BYTES_PER_S + 0.5


def takes_model(app: Any, tool: str) -> bool:
    try:
        return "model" in app.tools.get(tool).input_schema.get("properties", {})
    except Exception:
        return False


def annotate(plan: Plan, app: Any) -> list[str]:
    """Fill each step's role, model and cost; return notes for the plan's reason."""
    try:
        pool = app.pool
        models = {m["name"]: m for m in pool.status()["models"]}
    except Exception as exc:  # no pool in this build: costs are run times only
        for step in plan.steps:
            step.role, step.cost_s = role_of(step.tool, app), run_seconds(step.tool)
        return [f"model residency unknown ({type(exc).__name__})"]
    notes: list[str] = []
    for step in plan.steps:
        step.role = role = role_of(step.tool, app)
        run = run_seconds(step.tool)
        step.cost_s = run
        if role is None:
            continue
        try:
            default = pool.model_for(role)
        except Exception:
            step.note = f"no model serves role {role!r}"
            continue
        chosen = models.get(default)
        if chosen is None:
            continue
        if not _resident(chosen) and takes_model(app, step.tool):
            warm = [m for m in models.values() if role in m.get("roles", []) and _resident(m)
                    and m.get("priority", 0) >= chosen.get("priority", 0)]
            if warm:
                saved = load_seconds(chosen)
                chosen = warm[0]
                step.model = chosen["name"]
                notes.append(f"{step.tool}: preferred resident model {chosen['name']!r} over loading "
                             f"{default!r} (saves ~{saved:.1f}s)")
        load = load_seconds(chosen)
        step.cost_s = round(run + load, 2)
        if load > 0:
            step.note = f"loads {chosen['name']!r} (~{load:.1f}s)"
            notes.append(f"{step.tool} needs {chosen['name']!r} loaded (~{load:.1f}s)")
        else:
            step.note = f"{chosen['name']!r} is resident"
    return notes
