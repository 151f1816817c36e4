"""Configuration: discovery, typed parsing, env overrides, and errors naming key and file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from core.config import ConfigError, LoomConfig, ModelConfig, env_overrides, load_config, write_model

ROOT = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "loom.toml"
    p.write_text(text)
    return p


def test_defaults_without_a_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "share"))
    monkeypatch.delenv("LOOM_CONFIG", raising=False)
    cfg = load_config(environ={})
    assert cfg.server.host == "127.0.0.1" and cfg.server.port == 8765 and cfg.server.mcp_path == "/mcp"
    assert cfg.source is None
    assert cfg.data_dir == tmp_path / "share" / "loom"


def test_file_is_parsed_into_types(tmp_path):
    p = write(tmp_path, """
[server]
port = 9100
[models.coder]
backend = "llama_cpp"
file = "/models/qwen3-coder.gguf"
keep_alive = -1
memory = "6GiB"
[plugin.browser]
chromium = "/usr/bin/chromium"
""")
    cfg = load_config(p, environ={})
    assert cfg.server.port == 9100 and cfg.source == str(p)
    assert cfg.models["coder"].keep_alive == -1 and cfg.models["coder"].memory_override() == 6 * 1024**3
    assert cfg.plugin["browser"] == {"chromium": "/usr/bin/chromium"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[server]\nprot = 1\n", "Object contains unknown field `prot` - at `$.server`"),
        ("[server]\nport = 'eighty'\n", "Expected `int`, got `str` - at `$.server.port`"),
        ("[models.x]\nfile = 'a.gguf'\n", "Object missing required field `backend` - at `$.models.x`"),
        ("[models.x]\nbackend = 'llama_cpp'\nmemory = 'lots'\n", "models.x.memory: not a size: 'lots'"),
        ("[server\n", "not valid TOML"),
        ("typo = true\n", "unknown field `typo`"),
    ],
)
def test_errors_name_the_key_and_the_file(tmp_path, text, message):
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(p, environ={})
    assert message in str(err.value)
    assert str(p) in str(err.value)


def test_env_overrides(tmp_path):
    p = write(tmp_path, "[server]\nport = 9100\n")
    env = {"LOOM_SERVER__PORT": "9200", "LOOM_SERVER__ALLOWED_HOSTS": '["loom.lan"]',
           "LOOM_LOGGING__LEVEL": "debug", "LOOM_PLUGINS": "a,b", "LOOM_CONFIG": "ignored-here"}
    cfg = load_config(p, environ=env)
    assert cfg.server.port == 9200 and cfg.server.allowed_hosts == ["loom.lan"] and cfg.logging.level == "debug"
    nested = env_overrides({"LOOM_MODELS__CODER__BACKEND": "llama_cpp"})
    assert nested == {"models": {"coder": {"backend": "llama_cpp"}}}
    with pytest.raises(ConfigError, match=r"LOOM_\* environment overrides.*`\$.server.port`"):
        load_config(p, environ={"LOOM_SERVER__PORT": "lots"})


def test_discovery_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    (tmp_path / "xdg" / "loom").mkdir(parents=True)
    (tmp_path / "xdg" / "loom" / "loom.toml").write_text("[server]\nport = 1\n")
    monkeypatch.delenv("LOOM_CONFIG", raising=False)
    assert load_config(environ={}).server.port == 1
    write(tmp_path, "[server]\nport = 2\n")
    assert load_config(environ={}).server.port == 2
    other = tmp_path / "other.toml"
    other.write_text("[server]\nport = 3\n")
    monkeypatch.setenv("LOOM_CONFIG", str(other))
    assert load_config(environ={}).server.port == 3
    monkeypatch.setenv("LOOM_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(environ={})


def test_plugin_settings_are_typed_by_the_plugin(tmp_path):
    class BrowserSettings(msgspec.Struct, forbid_unknown_fields=True):
        chromium: str = "/usr/bin/chromium"
        idle_seconds: float = 60

    cfg = load_config(write(tmp_path, "[plugin.browser]\nidle_seconds = 'soon'\n"), environ={})
    with pytest.raises(ConfigError, match=r"loom.toml: Expected `float`, got `str` - at `\$.plugin.browser.idle"):
        cfg.plugin_settings("browser", BrowserSettings)
    assert LoomConfig().plugin_settings("browser", BrowserSettings).idle_seconds == 60


def test_write_model_round_trips(tmp_path):
    p = write(tmp_path, "[server]\nport = 9100\n")
    write_model(p, "vlm", ModelConfig(backend="llama_cpp", file="/m/qwen3-vl.gguf", mmproj="/m/mmproj.gguf", pin=True))
    cfg = load_config(p, environ={})
    assert cfg.server.port == 9100
    assert cfg.models["vlm"].mmproj == "/m/mmproj.gguf" and cfg.models["vlm"].pin


def test_cli_reports_config_errors_and_exits_2(tmp_path):
    write(tmp_path, "[server]\nprot = 1\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("LOOM_CONFIG", None)
    out = subprocess.run([sys.executable, "-m", "core.cli", "tools"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "configuration error" in out.stderr and "unknown field `prot`" in out.stderr and "loom.toml" in out.stderr


def test_write_model_keeps_comments_and_replaces_an_existing_entry(tmp_path):
    p = write(tmp_path, "# my settings\n[server]\nport = 9100  # moved\n\n[models.vlm]\nbackend = 'x'\n"
                        "[models.vlm.options]\nn_gpu_layers = 10\n\n[pool]\nram_budget = '8GiB'\n")
    write_model(p, "vlm", ModelConfig(backend="llama_cpp", file='C:\\models\\"q".gguf',
                                      options={"n_gpu_layers": -1, "flash": True}))
    text = p.read_text()
    assert "# my settings" in text and "port = 9100  # moved" in text
    cfg = load_config(p, environ={})
    assert cfg.models["vlm"].backend == "llama_cpp" and cfg.models["vlm"].file == 'C:\\models\\"q".gguf'
    assert cfg.models["vlm"].options == {"n_gpu_layers": -1, "flash": True}
    assert cfg.pool.ram_budget == "8GiB"
    with pytest.raises(ConfigError, match="model name"):
        write_model(p, "bad name", ModelConfig(backend="llama_cpp"))
