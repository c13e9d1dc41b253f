"""Config: typed, unknown keys rejected, clear problem lines, and the layers
defaults < file < runtime settings < env < flags (values, sources, re-merging)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deskpulse import settings as runtime
from deskpulse.config import SOURCES, Config, load_config, load_layers, parse_broker_url
from deskpulse.errors import ConfigError, RequestError

from .support import ROOT


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "deskpulse.toml"
    p.write_text(text)
    return p


def problems(path: Path | None = None, env: dict[str, str] | None = None, **over: object) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path, over, env or {})
    return info.value.problems


def test_defaults_are_valid() -> None:
    c = load_config(None, {}, {})
    assert c.camera.fps == 10 and c.mqtt.broker == "auto" and c.frames.mode == "on_demand"


def test_unknown_key_named_with_file(tmp_path: Path) -> None:
    p = write(tmp_path, "[camera]\nfsp = 3\n")
    assert problems(p) == [f"{p}: camera.fsp: unknown key"]


def test_unknown_section(tmp_path: Path) -> None:
    p = write(tmp_path, "[camra]\nfps = 3\n")
    assert problems(p) == [f"{p}: camra: unknown key"]


def test_wrong_type_names_key_and_value(tmp_path: Path) -> None:
    p = write(tmp_path, '[camera]\nfps = "fast"\n')
    (line,) = problems(p)
    assert line.startswith(f"{p}: camera.fps: ") and "'fast'" in line


def test_every_problem_reported_at_once(tmp_path: Path) -> None:
    p = write(tmp_path, '[camera]\nfps = -1\nwidth = "x"\n[posture]\nview = "top"\n')
    keys = {line.split(": ")[1] for line in problems(p)}
    assert keys == {"camera.fps", "camera.width", "posture.view"}


def test_bad_source_is_a_config_error(tmp_path: Path) -> None:
    (line,) = problems(None, **{"camera.source": str(tmp_path / "missing.mp4")})
    assert "camera.source" in line and "missing.mp4" in line and line.startswith("command line")


def test_device_paths_may_be_missing_at_start() -> None:
    # A USB camera can be plugged in later; capture retries instead of refusing to start.
    assert load_config(None, {"camera.source": "/dev/video97"}, {}).camera.source == "/dev/video97"


def test_invalid_toml_is_one_line(tmp_path: Path) -> None:
    p = write(tmp_path, "[camera\n")
    (line,) = problems(p)
    assert line.startswith(f"{p}: not valid TOML")


def test_missing_file(tmp_path: Path) -> None:
    assert problems(tmp_path / "nope.toml") == [f"{tmp_path / 'nope.toml'}: config file not found"]


def test_precedence_file_env_flag(tmp_path: Path) -> None:
    p = write(tmp_path, "device_id = 'from-file'\n[camera]\nfps = 5\nidle_fps = 1\n")
    env = {"DESKPULSE_CAMERA_FPS": "7", "DESKPULSE_DEVICE_ID": "from-env"}
    c = load_config(p, {"device_id": "from-flag"}, env)
    assert (c.camera.fps, c.camera.idle_fps, c.device_id) == (7, 1, "from-flag")


def test_env_errors_name_the_variable() -> None:
    lines = problems(None, env={"DESKPULSE_CAMERA_FPS": "zero", "DESKPULSE_NOPE": "1"})
    assert any(line.startswith("environment DESKPULSE_CAMERA_FPS: camera.fps") for line in lines)
    assert "environment DESKPULSE_NOPE: not a DeskPulse setting" in lines


def test_device_id_must_be_a_topic_level() -> None:
    (line,) = problems(None, device_id="Desk 1/#")
    assert "device_id" in line and "[a-z0-9_-]+" in line


def test_secret_from_env_not_in_repr() -> None:
    c = load_config(None, {}, {"DESKPULSE_MQTT_USERNAME": "agent", "DESKPULSE_MQTT_PASSWORD": "s3cret",
                               "DESKPULSE_MQTT_BROKER": "mqtt://127.0.0.1:1884"})
    addr = c.mqtt.address()
    assert addr is not None and addr.username == "agent" and addr.password.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(c)


def test_username_without_password_refused() -> None:
    (line,) = problems(None, **{"mqtt.username": "agent"})
    assert "mqtt" in line and "password" in line


@pytest.mark.parametrize("url,host,port,user,pw", [
    ("mqtt://localhost", "localhost", 1883, None, None),
    ("mqtt://u:p%40ss@10.0.0.2:1884", "10.0.0.2", 1884, "u", "p@ss"),
])
def test_broker_url(url: str, host: str, port: int, user: str | None, pw: str | None) -> None:
    a = parse_broker_url(url)
    assert (a.host, a.port, a.username) == (host, port, user)
    assert (a.password.get_secret_value() if a.password else None) == pw


@pytest.mark.parametrize("url", ["http://x", "mqtt://", "mqtt://h:99999", "mqtt://h/path", "h:1883"])
def test_bad_broker_urls(url: str) -> None:
    with pytest.raises(ValueError):
        parse_broker_url(url)


def test_shipped_config_documents_every_key_with_its_default() -> None:
    path = ROOT / "config" / "deskpulse.toml"
    shipped = tomllib.loads(path.read_text())
    text = path.read_text()
    defaults = Config()
    for section, field in Config.model_fields.items():
        value = getattr(defaults, section)
        if hasattr(type(value), "model_fields"):
            for key in type(value).model_fields:
                assert f"{key} =" in text or f"# {key} =" in text, f"[{section}] {key} undocumented"
                if key in shipped.get(section, {}):
                    assert shipped[section][key] == getattr(value, key), f"[{section}] {key} default differs"
        else:
            assert f"{section} =" in text, f"{section} undocumented"
    assert load_config(path, {}, {}) is not None


scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                    st.text(max_size=20))
sections = st.sampled_from(["camera", "mqtt", "posture", "frames", "alerts", "history", "homeassistant", "web", "bogus"])
keys = st.sampled_from(["fps", "source", "broker", "view", "mode", "quality", "port", "prefix", "enabled", "x"])


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(sections, st.dictionaries(keys, scalars, max_size=4), max_size=4))
def test_any_input_gives_config_or_config_error(data: dict) -> None:
    data = {s: {k: v for k, v in kv.items() if v is not None} for s, kv in data.items()}
    try:
        load_config(None, {f"{s}.{k}": v for s, kv in data.items() for k, v in kv.items()}, {})
    except ConfigError as exc:
        assert exc.problems and all(isinstance(p, str) and ": " in p for p in exc.problems)


# ---------- the five layers ----------

def layered(tmp_path: Path, file: dict[str, object] | None = None, settings: dict[str, object] | None = None,
            env: dict[str, object] | None = None, flags: dict[str, object] | None = None):
    """Layers built the way the agent builds them: a TOML file, settings, DESKPULSE_* strings, flags."""
    path = None
    if file is not None:
        tables: dict[str, list[str]] = {}
        for dotted, value in file.items():
            section, _, key = dotted.rpartition(".")
            shown = f'"{value}"' if isinstance(value, str) else repr(value)
            tables.setdefault(section, []).append(f"{key} = {shown}")
        text = "\n".join(tables.pop("", []))
        text += "".join(f"\n[{section}]\n" + "\n".join(body) for section, body in tables.items())
        path = write(tmp_path, text + "\n")
    env_vars = {"DESKPULSE_" + k.replace(".", "_").upper(): str(v) for k, v in (env or {}).items()}
    return load_layers(path, flags or {}, env_vars, settings or {})


# Each row: a key, the layers that set it (and to what), the expected value and source.
LAYER_TABLE = [
    ("alerts.cooldown_minutes", {}, 5.0, "default"),
    ("alerts.cooldown_minutes", {"file": 11}, 11.0, "file"),
    ("alerts.cooldown_minutes", {"settings": 12}, 12.0, "settings"),
    ("alerts.cooldown_minutes", {"env": 13}, 13.0, "env"),
    ("alerts.cooldown_minutes", {"flags": 14}, 14.0, "flag"),
    ("alerts.cooldown_minutes", {"file": 11, "settings": 12}, 12.0, "settings"),  # config/set beats the file
    ("alerts.cooldown_minutes", {"file": 11, "env": 13}, 13.0, "env"),
    ("alerts.cooldown_minutes", {"settings": 12, "env": 13}, 13.0, "env"),  # env beats config/set
    ("alerts.cooldown_minutes", {"settings": 12, "flags": 14}, 14.0, "flag"),  # so does a flag
    ("alerts.cooldown_minutes", {"file": 11, "settings": 12, "env": 13}, 13.0, "env"),
    ("alerts.cooldown_minutes", {"file": 11, "settings": 12, "env": 13, "flags": 14}, 14.0, "flag"),
    ("alerts.cooldown_minutes", {"file": 11, "flags": 14}, 14.0, "flag"),
    ("posture.sensitivity", {"file": 2.0, "settings": 1.5}, 1.5, "settings"),
    ("posture.sensitivity", {"file": 2.0}, 2.0, "file"),
    ("camera.fps", {"file": 5, "env": 7}, 7, "env"),
    ("camera.fps", {"file": 5}, 5, "file"),
    ("device_id", {"file": "from-file", "env": "from-env", "flags": "from-flag"}, "from-flag", "flag"),
    ("device_id", {"file": "from-file", "env": "from-env"}, "from-env", "env"),
    ("log_level", {}, "info", "default"),
]


@pytest.mark.parametrize("key,layers,value,source", LAYER_TABLE)
def test_layer_table(tmp_path: Path, key: str, layers: dict[str, object], value: object, source: str) -> None:
    merged = layered(tmp_path, **{name: {key: v} for name, v in layers.items()})  # type: ignore[arg-type]
    assert (merged.value(key), merged.source_of(key)) == (value, source)
    # A key no layer sets stays the default, whatever happens to this one.
    assert (merged.value("camera.height"), merged.source_of("camera.height")) == (Config().camera.height, "default")


def test_every_layer_subset_gives_the_highest_layer(tmp_path: Path) -> None:
    """The table above, exhaustively for one key: all 16 subsets of the four layers."""
    values = {"file": 11, "settings": 12, "env": 13, "flags": 14}
    for mask in range(16):
        chosen = [name for i, name in enumerate(values) if mask >> i & 1]
        merged = layered(tmp_path, **{name: {"alerts.cooldown_minutes": values[name]} for name in chosen})  # type: ignore[arg-type]
        top = chosen[-1] if chosen else None
        assert merged.config.alerts.cooldown_minutes == (values[top] if top else 5.0), chosen
        assert merged.source_of("alerts.cooldown_minutes") == ({"flags": "flag"}.get(top, top) if top else "default")


RUNTIME = sorted(runtime.RUNTIME_KEYS)
layer_values = st.dictionaries(st.sampled_from(RUNTIME), st.integers(1, 4), max_size=len(RUNTIME))


@settings(max_examples=150, deadline=None)
@given(file=layer_values, saved=layer_values, env=layer_values, flags=layer_values)
def test_any_layering_takes_each_key_from_its_highest_layer(tmp_path_factory: pytest.TempPathFactory,
                                                             file: dict, saved: dict, env: dict, flags: dict) -> None:
    merged = layered(tmp_path_factory.mktemp("layers"), file=file, settings=saved, env=env, flags=flags)
    defaults = runtime.current(Config())
    for key in RUNTIME:
        expected, source = defaults[key], "default"
        for name, layer in (("file", file), ("settings", saved), ("env", env), ("flag", flags)):
            if key in layer:
                expected, source = layer[key], name
        assert (merged.value(key), merged.source_of(key)) == (expected, source), key
    assert runtime.describe(merged) == {k: {"value": merged.value(k), "source": merged.source_of(k)} for k in RUNTIME}


def test_sources_are_ordered_lowest_first() -> None:
    assert SOURCES == ("default", "file", "settings", "env", "flag")


def test_a_problem_names_the_layer_it_came_from(tmp_path: Path) -> None:
    p = write(tmp_path, "[alerts]\ncooldown_minutes = -1\n")
    with pytest.raises(ConfigError) as info:
        load_layers(p, {}, {})
    assert info.value.problems[0].startswith(f"{p}: alerts.cooldown_minutes: ")
    with pytest.raises(ConfigError) as info:
        load_layers(None, {}, {}, {"posture.sensitivity": 99})
    assert info.value.problems[0].startswith("runtime settings (config/set): posture.sensitivity: ")
    with pytest.raises(ConfigError) as info:
        load_layers(None, {}, {"DESKPULSE_ALERTS_COOLDOWN_MINUTES": "soon"}, {"alerts.cooldown_minutes": 3})
    assert info.value.problems[0].startswith("environment DESKPULSE_ALERTS_COOLDOWN_MINUTES: alerts.cooldown_minutes")


# ---------- config/set against the layers ----------

def test_config_set_writes_only_the_settings_layer_and_reports_sources(tmp_path: Path) -> None:
    merged = layered(tmp_path, file={"alerts.bad_posture_minutes": 20, "posture.onset_s": 4})
    store = runtime.SettingsStore(tmp_path / "desk1")
    live = runtime.RuntimeConfig(merged, store)
    running = live.set(merged.config, {"alerts.bad_posture_minutes": 15, "posture.sensitivity": 1.5})
    assert (running.alerts.bad_posture_minutes, running.posture.sensitivity, running.posture.onset_s) == (15, 1.5, 4)
    # Persisted: exactly what was set at run time, not every runtime key.
    assert store.read() == {"alerts.bad_posture_minutes": 15, "posture.sensitivity": 1.5}
    described = live.describe()
    assert described["alerts.bad_posture_minutes"] == {"value": 15, "source": "settings"}
    assert described["posture.onset_s"] == {"value": 4, "source": "file"}
    assert described["alerts.cooldown_minutes"] == {"value": 5.0, "source": "default"}
    assert set(described) == set(runtime.RUNTIME_KEYS)
    # Setting a key back to the file's value hands it back to the file.
    running = live.set(running, {"alerts.bad_posture_minutes": 20})
    assert running.alerts.bad_posture_minutes == 20
    assert live.layers.source_of("alerts.bad_posture_minutes") == "file"
    assert store.read() == {"posture.sensitivity": 1.5}


def test_config_set_of_a_key_an_env_variable_or_flag_sets_is_refused(tmp_path: Path) -> None:
    merged = layered(tmp_path, env={"alerts.cooldown_minutes": 7}, flags={"posture.exit_s": 1})
    store = runtime.SettingsStore(tmp_path)
    live = runtime.RuntimeConfig(merged, store)
    for change, words in (({"alerts.cooldown_minutes": 2}, "environment DESKPULSE_ALERTS_COOLDOWN_MINUTES"),
                          ({"posture.exit_s": 3, "posture.sensitivity": 1.5}, "command line (posture.exit_s)")):
        with pytest.raises(RequestError) as info:
            live.set(merged.config, change)
        message = str(info.value)
        assert words in message and "precedence over config/set" in message and "\n" not in message
    # Nothing applied, nothing saved: not even the good key next to the refused one.
    assert live.layers == merged and not store.path.exists()


def test_config_set_keeps_its_one_line_errors(tmp_path: Path) -> None:
    live = runtime.RuntimeConfig(layered(tmp_path), runtime.SettingsStore(tmp_path))
    for change, words in (({"alerts.recovery_s": -1}, "alerts.recovery_s"), ({"mqtt.broker": "x"}, "not a runtime"),
                          ({"posture.sensitivity": "high"}, "must be a number"), ({}, "expected a JSON object")):
        with pytest.raises(RequestError) as info:
            live.set(live.layers.config, change)
        assert words in str(info.value)
    assert not (tmp_path / "settings.json").exists()


def test_saved_settings_are_laid_on_at_start_bad_entries_dropped(tmp_path: Path, caplog) -> None:
    store = runtime.SettingsStore(tmp_path)
    # An older agent saved every runtime key; only the ones that differ from the file carry a setting.
    store.write({**runtime.current(Config()), "alerts.bad_posture_minutes": 15, "posture.onset_s": 4,
                 "posture.sensitivity": 99})
    merged = runtime.with_saved(layered(tmp_path, file={"posture.onset_s": 4}), store)
    assert merged.flat("settings") == {"alerts.bad_posture_minutes": 15}
    assert merged.source_of("posture.onset_s") == "file" and merged.source_of("alerts.recovery_s") == "default"
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "posture.sensitivity" in warnings[0]
    for junk in ("{", "[1]", '{"mqtt.broker": "x", "alerts.recovery_s": "soon"}'):
        store.path.write_text(junk)
        assert runtime.with_saved(layered(tmp_path), store).flat("settings") == {}
