"""Image generation on diffusers: Flux (GGUF transformers too), Stable Diffusion, SDXL.

Registers the ``diffusers`` model backend and the tools ``imagegen.generate`` and
``imagegen.edit``. The backend serves the ``image`` capability for text-to-image pipelines
and ``video`` for text-to-video ones, so the video plugin's tools run on it through
``VideoGen`` handles (without importing anything from here). Models are configured by path
in loom.toml with ``role = "imagegen"``; nothing is downloaded. See docs/media.md.

Only light modules are imported here: torch and diffusers load on the first generation.
"""

from __future__ import annotations

from core.hookspecs import hookimpl
from core.tools import object_schema

from . import tools
from .backend import DiffusersBackend

# What `loom doctor` checks for this plugin, and how to fix what is missing.
DOCTOR = [
    {"check": "module", "name": "diffusers", "why": "Flux / Stable Diffusion pipelines",
     "fix": "pip install 'loomd[imagegen]'"},
    {"check": "module", "name": "torch", "why": "runs the pipelines (install torch==2.13.0 first: the CPU build)",
     "fix": "pip install 'loomd[imagegen]'"},
]


@hookimpl
def loom_configure(config, app):
    # Fail at startup, with the file and key named, rather than on the first call.
    config.plugin_settings("imagegen", tools.ImagegenSettings)


@hookimpl
def loom_startup(app):
    # The backend decides CPU offload from the pool's budget for the device (see backend.py).
    if "diffusers" in app.backends:
        wire_budget(app)


def wire_budget(app) -> None:
    backend = app.pool.backend("diffusers")
    if isinstance(backend, DiffusersBackend) and backend.budget is None:
        backend.budget = lambda device: app.pool.arbiter(device).budget


@hookimpl
def loom_register_backends(register):
    register("diffusers", DiffusersBackend)


@hookimpl
def loom_register_tools(register):
    image = object_schema(prompt=str, model=str, seed=int, width=int, height=int, steps=int, path=str, uri=str,
                          seconds=float)
    register(tools.generate, title="Generate an image", open_world=False, output_schema=image)
    register(tools.edit, title="Edit an image (image-to-image)", open_world=False, output_schema=image)


@hookimpl
def loom_register_prompts(register):
    register(draw, name="imagegen.draw")


def draw(subject: str, style: str = "photograph") -> str:
    """Ask for a picture of a subject in a style."""
    return (f"Create an image of {subject} in the style of a {style}. Use imagegen.generate with a detailed "
            "prompt (subject, setting, lighting, composition) and show me the result.")
