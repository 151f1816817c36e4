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
executable = "/usr/bin/chromium"
""")
    cfg = load_config(p, environ={})
    assert cfg.server.port == 9100 and cfg.source == str(p)
    assert cfg.models["coder"].keep_alive == -1 and cfg.models["coder"].memory_override() == 6 * 1024**3
    assert cfg.plugin["browser"] == {"executable": "/usr/bin/chromium"}


@pytest.mark.parametrize(("written", "seconds"), [("5m", 300), ("1h", 3600), ("1h30m", 5400), ("90s", 90),
                                                  ("-1", -1), (-1, -1), (0, 0), (42.5, 42.5), ("never", -1)])
def test_durations_are_written_as_ollama_users_write_them(tmp_path, written, seconds):
    value = f'"{written}"' if isinstance(written, str) else written
    p = write(tmp_path, f'[pool]\nqueue_timeout = {value}\n[models.m]\nbackend = "llama_cpp"\nkeep_alive = {value}\n')
    cfg = load_config(p, environ={})
    assert cfg.models["m"].keep_alive == seconds and cfg.pool.queue_timeout == seconds


def test_sizes_and_unknown_roles(tmp_path):
    cfg = load_config(write(tmp_path, '[pool]\nram_budget = "6 GiB"\n[server]\nmax_body_bytes = "1MiB"\n'
                                      '[models.m]\nbackend = "x"\nrole = "my-plugins-role"\n'), environ={})
    assert cfg.server.max_body_bytes == 1 << 20 and cfg.pool.ram_budget == "6 GiB"
    assert cfg.models["m"].role == "my-plugins-role", "a role far from every built-in one may be a plugin's own"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[server]\nprot = 1\n", "[server] has no key 'prot'; did you mean 'port'?"),
        ("[server]\nport = 'eighty'\n", "[server] port: expected `int`, got `str`"),
        ("[models.x]\nfile = 'a.gguf'\n", "[models.x] needs a backend"),
        ("[models.x]\nbackend = 'llama_cpp'\nmemory = 'lots'\n", "[models.x] memory = 'lots': not a size"),
        ("[server\n", "not valid TOML"),
        ("typo = true\n", "unknown section [typo]"),
        ("[pool]\nram_budget = 'lots'\n", "[pool] ram_budget = 'lots': not a size: 'lots' (write e.g. 6GiB"),
        ("[pool]\nram_budgett = '4GiB'\n", "[pool] has no key 'ram_budgett'; did you mean 'ram_budget'"),
        ("[models.x]\nbackend = 'llama_cpp'\nrole = 'coderr'\n",
         "role = 'coderr' is not a role; did you mean 'coder'?"),
        ("[models.x]\nbackend = 'llama_cpp'\nkeep_alive = 'soon'\n",
         "[models.x] keep_alive = 'soon': not a duration"),
        ("[models.x]\nbackend = 'llama_cpp'\ncontext_size = 'big'\n", "[models.x] context_size: expected `int`"),
        ("[logging]\nlevel = 'loud'\n", "[logging] level: invalid enum value 'loud'"),
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
    with pytest.raises(ConfigError, match=r"LOOM_\* environment overrides.*\[server\] port: expected `int`"):
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
    with pytest.raises(ConfigError, match=r"loom.toml: \[plugin.browser\] idle_seconds: expected `float`, got `str`"):
        cfg.plugin_settings("browser", BrowserSettings)
    cfg = load_config(write(tmp_path, "[plugin.browser]\nchromiun = '/usr/bin/chromium'\n"), environ={})
    with pytest.raises(ConfigError, match=r"\[plugin.browser\] has no key 'chromiun'; did you mean 'chromium'\?"):
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
    assert "configuration error" in out.stderr and "no key 'prot'" in out.stderr and "loom.toml" in out.stderr


def test_config_check_and_show_name_sources(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LOOM_DISABLE_PLUGIN_AUTOLOAD": "1", "LOOM_PLUGINS": "admin,browser",
           "LOOM_SERVER__PORT": "9300", "XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    env.pop("LOOM_CONFIG", None)

    def loom(*args):
        return subprocess.run([sys.executable, "-m", "core.cli", *args], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=60)

    p = write(tmp_path, '[pool]\nram_budget = "4GiB"\n[models.m]\nbackend = "llama_cpp"\nkeep_alive = "5m"\n')
    ok = loom("config", "check")
    assert ok.returncode == 0 and str(p) in ok.stdout and "LOOM_SERVER__PORT" in ok.stdout
    shown = loom("config", "show")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert any(line.startswith('ram_budget = "4GiB"') and line.endswith(f"# {p}") for line in lines)
    assert any(line.startswith("port = 9300") and line.endswith("# env LOOM_SERVER__PORT") for line in lines)
    assert any(line.startswith('host = "127.0.0.1"') and line.endswith("# default") for line in lines)
    assert any(line.startswith("keep_alive = 300.0") for line in lines), "durations shown in seconds"
    as_json = __import__("json").loads(loom("config", "show", "--json").stdout)
    assert as_json["pool.ram_budget"] == {"value": "4GiB", "source": str(p)}
    # a plugin's own table is checked too (browser reads [plugin.browser] as it registers)
    write(tmp_path, "[plugin.browser]\nchromium = '/usr/bin/chromium'\n")
    bad = loom("config", "check")
    assert bad.returncode == 2 and "[plugin.browser] has no key 'chromium'" in bad.stderr


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
