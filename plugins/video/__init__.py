"""Video generation on diffusers text-to-video pipelines: Wan, LTX-Video, AnimateDiff.

``video.generate`` writes an MP4 (imageio-ffmpeg's bundled ffmpeg) and returns a poster
frame. Models are configured by path with ``role = "video"``; they load through the pool
with the ``diffusers`` backend, which the imagegen plugin registers and which serves the
``video`` capability (``core.capabilities.VideoGen``): keep the imagegen plugin enabled
(its tools can still be denied by policy). See docs/media.md.
"""

from __future__ import annotations

from core.hookspecs import hookimpl
from core.tools import object_schema

from . import tools

# What `loom doctor` checks for this plugin, and how to fix what is missing.
DOCTOR = [
    {"check": "module", "name": "diffusers", "why": "Wan / LTX / AnimateDiff pipelines",
     "fix": "pip install 'loomd[video]'"},
    {"check": "module", "name": "imageio_ffmpeg", "why": "writes MP4 files", "fix": "pip install 'loomd[video]'"},
]


@hookimpl
def loom_configure(config, app):
    config.plugin_settings("video", tools.VideoSettings)


@hookimpl
def loom_register_tools(register):
    register(tools.generate, title="Generate a video", open_world=False,
             output_schema=object_schema(prompt=str, model=str, seed=int, path=str, poster=str, seconds=float,
                                         frames_written=int))


def clip(subject: str, seconds: str = "2") -> str:
    """Ask for a short video clip of a subject."""
    return (f"Make a short video (about {seconds} seconds) of {subject} with video.generate, describing motion, "
            "camera and lighting in the prompt, and show me the poster frame.")


@hookimpl
def loom_register_prompts(register):
    register(clip)
