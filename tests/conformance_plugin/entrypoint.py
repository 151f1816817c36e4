"""Make a plugin module loadable by ``loom`` in a subprocess, without installing anything.

Loom finds third-party plugins through the ``loom`` entry-point group. This writes a
minimal ``*.dist-info`` (METADATA + entry_points.txt) into ``directory``; putting that
directory on ``PYTHONPATH`` makes the entry point visible to that process only.
"""

from __future__ import annotations

import sys
from pathlib import Path


def write_dist_info(directory: Path, plugins: dict[str, str], dist: str = "loom_test_plugins") -> Path:
    """``plugins`` maps plugin name → module, e.g. ``{"conformance": "tests.conformance_plugin"}``."""
    info = Path(directory) / f"{dist}-0.0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.0\n", encoding="utf-8")
    lines = "".join(f"{name} = {module}\n" for name, module in plugins.items())
    (info / "entry_points.txt").write_text(f"[loom]\n{lines}", encoding="utf-8")
    return info


if __name__ == "__main__":  # python -m tests.conformance_plugin.entrypoint DIR name=module ...
    write_dist_info(Path(sys.argv[1]), dict(a.split("=", 1) for a in sys.argv[2:]))
