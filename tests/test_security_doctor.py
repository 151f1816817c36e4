"""`loom doctor --security` (issue 20): checks the data dir's modes, the bind address and
authentication, the Host/Origin allowlists, the policy, and warns about each weak setting."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.openai_helpers import ROOT

WEAK = """
[server]
host = "0.0.0.0"
allowed_hosts = ["*"]
allowed_origins = ["*"]
[plugin.policy]
allow = ["system.*"]
destructive_default = "allow"
audit = false
[plugin.vision]
allow_private_urls = true
"""


def _doctor(tmp_path, toml: str, *extra: str) -> subprocess.CompletedProcess:
    data = tmp_path / "data"
    data.mkdir(exist_ok=True, mode=0o700)
    (tmp_path / "loom.toml").write_text(toml)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LOOM_CONFIG": str(tmp_path / "loom.toml"),
           "LOOM_PATHS__DATA_DIR": str(data), "LOOM_PLUGINS": "admin,policy,system,vision",
           "LOOM_DISABLE_PLUGIN_AUTOLOAD": "1"}
    return subprocess.run([sys.executable, "-m", "core.cli", "doctor", "--security", *extra], env=env,
                          cwd=str(ROOT), capture_output=True, text=True, timeout=120)


def test_weak_settings_are_each_named_with_a_fix(tmp_path):
    (tmp_path / "data").mkdir()
    os.chmod(tmp_path / "data", 0o755)
    (tmp_path / "data" / "token").write_text("t" * 40)
    os.chmod(tmp_path / "data" / "token", 0o644)
    proc = _doctor(tmp_path, WEAK, "--json")
    rows = {r["check"] + ":" + r["name"]: r for r in json.loads(proc.stdout)}
    weak = {key.split(":", 1)[0] for key, r in rows.items() if not r["ok"]}
    assert {"data dir mode", "private file mode", "bind address", "allowed hosts", "allowed origins",
            "policy defaults", "policy allow rules", "audit log", "URL fetching",
            "tools exposed beyond loopback"} <= weak
    assert all(r["fix"] for r in rows.values() if not r["ok"])
    strict = _doctor(tmp_path, WEAK, "--strict")
    assert strict.returncode == 1 and "WARN bind address: 0.0.0.0" in strict.stdout
    assert "weak setting(s)" in strict.stdout


def test_the_defaults_pass(tmp_path):
    (tmp_path / "data").mkdir(mode=0o700)  # as `loom serve` leaves it
    proc = _doctor(tmp_path, "", "--strict")
    assert proc.returncode == 0, proc.stdout
    assert "no weak settings found" in proc.stdout and "WARN" not in proc.stdout
