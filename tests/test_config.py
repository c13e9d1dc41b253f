"""Config: typed, unknown keys rejected, precedence file < env < flags, clear problem lines."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deskpulse.config import Config, load_config, parse_broker_url
from deskpulse.errors import ConfigError

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
