"""File arguments stay inside the allowed roots, whatever the caller writes."""

from __future__ import annotations

import pytest

from core.paths import confine, confined_file
from core.tools import ToolError


def test_paths_inside_outside_and_through_links(tmp_path):
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "a.txt").write_text("hello")
    (tmp_path / "secret.txt").write_text("no")
    (root / "escape").symlink_to(tmp_path / "secret.txt")
    assert confine("sub/a.txt", [root]) == root / "sub" / "a.txt"  # relative to the first root
    for bad in ("../secret.txt", str(tmp_path / "secret.txt"), "escape", "sub/../../secret.txt"):
        with pytest.raises(ToolError, match="outside the allowed roots"):
            confine(bad, [root])
    with pytest.raises(ToolError, match="does not exist"):
        confine("missing.txt", [root], strict=True)
    with pytest.raises(ToolError, match="no allowed roots"):
        confine("a", [])
    with pytest.raises(ToolError, match="give a file path"):
        confine("a\x00b", [root])


def test_confined_file_checks_kind_and_size(tmp_path):
    (tmp_path / "big.bin").write_bytes(b"x" * 2000)
    assert confined_file("big.bin", [tmp_path], max_bytes=2000).name == "big.bin"
    with pytest.raises(ToolError, match=r"over the 1,000-byte limit \(max_bytes in \[plugin.x\]\)"):
        confined_file("big.bin", [tmp_path], max_bytes=1000, limit_setting="max_bytes in [plugin.x]")
    with pytest.raises(ToolError, match="not a regular file"):
        confined_file(".", [tmp_path], max_bytes=1000)
