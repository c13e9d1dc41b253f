"""The typed DeskPulse configuration: one module per section, loaded in layers.

Precedence, lowest to highest: defaults < the TOML file < runtime settings (`config/set`,
persisted in the device's settings.json) < DESKPULSE_* environment variables < command-line
flags. `load_layers` keeps each layer apart (`Layered`), so a caller can say where a value
came from, re-merge after one layer changes, and compare one layer's old and new contents.
Every problem is reported as one line naming the key and where the value came from (the
file, the runtime settings, the variable or the flag). This package never touches the
camera, the broker or the network, and never reads settings.json itself (settings.py does).
"""

from __future__ import annotations

import os
import re
import socket
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping

from pydantic import Field, ValidationError, field_validator

from ..errors import ConfigError
from .alerts import AlertsConfig
from .base import Section
from .camera import CameraConfig
from .frames import FramesConfig
from .history import HistoryConfig
from .homeassistant import HomeAssistantConfig
from .mqtt import BrokerAddress, MqttConfig, parse_broker_url
from .posture import PostureConfig
from .web import WebConfig

__all__ = [
    "AlertsConfig", "BrokerAddress", "CameraConfig", "Config", "FramesConfig", "HistoryConfig",
    "HomeAssistantConfig", "Layered", "MqttConfig", "PostureConfig", "SOURCES", "Source", "WebConfig",
    "default_device_id", "flatten", "load_config", "load_layers", "parse_broker_url", "read_file_layer",
]

DEVICE_ID_RE = re.compile(r"^[a-z0-9_-]+$")
ENV_PREFIX = "DESKPULSE_"
# Environment variables that are not config keys.
ENV_NOT_KEYS = {"DESKPULSE_CONFIG"}

Source = Literal["default", "file", "settings", "env", "flag"]
# Lowest to highest: a layer overrides every layer before it.
SOURCES: tuple[Source, ...] = ("default", "file", "settings", "env", "flag")
SETTINGS_LABEL = "runtime settings (config/set)"


def default_device_id() -> str:
    """The hostname, lowered and reduced to the topic-safe [a-z0-9_-]."""
    name = re.sub(r"[^a-z0-9_-]+", "-", socket.gethostname().split(".")[0].lower()).strip("-")
    return name or "deskpulse"


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "deskpulse"


class Config(Section):
    # Names this desk in topics: deskpulse/<device_id>/... ; [a-z0-9_-]+, default the hostname.
    device_id: str = Field(default_factory=default_device_id)
    # Each device keeps its state (pause, calibration, settings, history) in <data_dir>/<device_id>/.
    data_dir: Path = Field(default_factory=default_data_dir)
    log_level: str = "info"
    camera: CameraConfig = CameraConfig()
    mqtt: MqttConfig = MqttConfig()
    posture: PostureConfig = PostureConfig()
    frames: FramesConfig = FramesConfig()
    alerts: AlertsConfig = AlertsConfig()
    history: HistoryConfig = HistoryConfig()
    homeassistant: HomeAssistantConfig = HomeAssistantConfig()
    web: WebConfig = WebConfig()

    @field_validator("device_id")
    @classmethod
    def _device_id_valid(cls, value: str) -> str:
        if not DEVICE_ID_RE.match(value):
            raise ValueError(f"must match [a-z0-9_-]+ (it becomes a topic level), got {value!r}")
        return value

    @field_validator("log_level")
    @classmethod
    def _log_level_valid(cls, value: str) -> str:
        if value.lower() not in {"debug", "info", "warning", "error"}:
            raise ValueError("must be one of debug, info, warning, error")
        return value.lower()

    @field_validator("data_dir")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser()

    @property
    def topic_base(self) -> str:
        return f"{self.mqtt.prefix}/{self.device_id}"


def _section_fields() -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for name, field_info in Config.model_fields.items():
        ann = field_info.annotation
        if isinstance(ann, type) and issubclass(ann, Section):
            out[name] = set(ann.model_fields)
    return out


def _env_overrides(env: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str], list[str]]:
    """DESKPULSE_<SECTION>_<KEY> or DESKPULSE_<TOPKEY> -> nested dict, {dotted key: variable}."""
    sections = _section_fields()
    top = {n for n in Config.model_fields if n not in sections}
    data: dict[str, Any] = {}
    names: dict[str, str] = {}
    problems: list[str] = []
    for var, value in sorted(env.items()):
        if not var.startswith(ENV_PREFIX) or var in ENV_NOT_KEYS:
            continue
        rest = var[len(ENV_PREFIX):].lower()
        if rest in top:
            data[rest] = value
            names[rest] = var
            continue
        section, _, key = rest.partition("_")
        if section in sections and key in sections[section]:
            data.setdefault(section, {})[key] = value
            names[f"{section}.{key}"] = var
        else:
            problems.append(f"environment {var}: not a DeskPulse setting")
    return data, names, problems


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        elif isinstance(value, Mapping):
            out[key] = _merge({}, value)
        else:
            out[key] = value
    return out


def _nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    """{"camera.fps": 5} -> {"camera": {"fps": 5}}."""
    out: dict[str, Any] = {}
    for dotted, value in flat.items():
        keys = dotted.split(".")
        node = out
        for k in keys[:-1]:
            child = node.get(k)
            if not isinstance(child, dict):
                child = node[k] = {}
            node = child
        node[keys[-1]] = value
    return out


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"camera": {"fps": 5}} -> {"camera.fps": 5}; an empty table contributes nothing."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _has(layer: Mapping[str, Any], parts: tuple[str, ...]) -> bool:
    node: Any = layer
    for part in parts:
        if not isinstance(node, Mapping):
            return True  # a scalar where a table belongs covers everything below it
        if part not in node:
            return False
        node = node[part]
    return True


def _describe(error: Mapping[str, Any]) -> str:
    msg = str(error["msg"])
    if error["type"] == "extra_forbidden":
        return "unknown key"
    msg = msg.removeprefix("Value error, ")
    if error["type"] not in ("value_error", "missing") and "input" in error:
        shown = repr(error["input"])
        if len(shown) > 60:
            shown = shown[:57] + "..."
        msg += f" (got {shown})"
    return msg


def read_file_layer(path: Path | str) -> dict[str, Any]:
    """The TOML file as a nested dict (not validated). Raises ConfigError with one line."""
    p = Path(path)
    try:
        return tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{p}: config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read config file ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}") from None


@dataclass(frozen=True)
class Layered:
    """The layers of one configuration and their merge. Immutable: changing a layer
    (`with_file`, `with_settings`) validates the new merge and returns a new Layered.

    Layers are nested dicts as they were given (TOML types, environment strings, JSON
    numbers); `config` is their validated merge over the defaults.
    """

    config: Config
    path: Path | None = None
    file: Mapping[str, Any] = field(default_factory=dict)
    settings: Mapping[str, Any] = field(default_factory=dict)
    env: Mapping[str, Any] = field(default_factory=dict)
    flags: Mapping[str, Any] = field(default_factory=dict)
    env_names: Mapping[str, str] = field(default_factory=dict)  # dotted key -> DESKPULSE_* variable

    def layer(self, source: Source) -> Mapping[str, Any]:
        if source == "default":
            return {}
        return {"file": self.file, "settings": self.settings, "env": self.env, "flag": self.flags}[source]

    def flat(self, source: Source) -> dict[str, Any]:
        """One layer as {dotted key: value}."""
        return flatten(self.layer(source))

    def source_of(self, key: str) -> Source:
        """The highest layer that sets `key` ("alerts.cooldown_minutes", "device_id")."""
        parts = tuple(key.split("."))
        for source in reversed(SOURCES[1:]):
            if _has(self.layer(source), parts):
                return source
        return "default"

    def origin_of(self, key: str) -> str:
        """Where `key`'s value comes from, for a message: the file, the variable, the flag."""
        return _label(self.source_of(key), key, self.path, self.env_names)

    def value(self, key: str) -> Any:
        """The merged value of a dotted key."""
        node: Any = self.config
        for part in key.split("."):
            node = getattr(node, part)
        return node

    def with_file(self, data: Mapping[str, Any]) -> "Layered":
        """The same layers with a new file layer (an edit). Raises ConfigError."""
        return _build(self.path, data, self.settings, self.env, self.flags, self.env_names)

    def with_settings(self, values: Mapping[str, Any]) -> "Layered":
        """The same layers with a new runtime-settings layer ({dotted key: value}). Raises ConfigError."""
        return _build(self.path, self.file, _nest(values), self.env, self.flags, self.env_names)


def _label(source: Source, key: str, path: Path | None, env_names: Mapping[str, str]) -> str:
    if source == "flag":
        return f"command line ({key})"
    if source == "env":
        return f"environment {env_names.get(key, ENV_PREFIX + key.replace('.', '_').upper())}"
    if source == "settings":
        return SETTINGS_LABEL
    return str(path) if path else "defaults"


def _error_origin(loc: tuple[str, ...], layers: Mapping[Source, Mapping[str, Any]], path: Path | None,
                  env_names: Mapping[str, str]) -> str:
    """The deepest key named by a validation error that a layer above the file sets exactly."""
    flat = {source: flatten(layer) for source, layer in layers.items()}
    above_file: tuple[Source, ...] = ("flag", "env", "settings")
    for n in range(len(loc), 0, -1):
        key = ".".join(loc[:n])
        for source in above_file:
            if key in flat[source]:
                return _label(source, key, path, env_names)
    return _label("file", "", path, env_names)


def _build(path: Path | None, file: Mapping[str, Any], settings: Mapping[str, Any], env: Mapping[str, Any],
           flags: Mapping[str, Any], env_names: Mapping[str, str], problems: list[str] | None = None) -> Layered:
    merged: dict[str, Any] = {}
    for layer in (file, settings, env, flags):
        merged = _merge(merged, layer)
    problems = list(problems or [])
    try:
        config = Config.model_validate(merged)
    except ValidationError as exc:
        layers: dict[Source, Mapping[str, Any]] = {"settings": settings, "env": env, "flag": flags}
        for err in exc.errors():
            loc = tuple(str(x) for x in err["loc"])
            key = ".".join(loc) or "(top level)"
            problems.append(f"{_error_origin(loc, layers, path, env_names)}: {key}: {_describe(err)}")
        raise ConfigError(problems) from None
    if problems:
        raise ConfigError(problems)
    return Layered(config, path, dict(file), dict(settings), dict(env), dict(flags), dict(env_names))


def load_layers(
    path: Path | str | None = None,
    overrides: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    settings: Mapping[str, Any] | None = None,
) -> Layered:
    """Load and validate every layer. Raises ConfigError with one line per problem.

    `overrides` are the command-line flags as dotted keys, e.g. {"camera.source": "demo"}
    (None values are ignored). `settings` is the runtime-settings layer as dotted keys (from
    settings.json; see settings.with_saved for the forgiving way to lay it on at start).
    """
    env = os.environ if env is None else env
    file_data = read_file_layer(path) if path is not None else {}
    env_data, env_names, problems = _env_overrides(env)
    flags = _nest({dotted: value for dotted, value in (overrides or {}).items() if value is not None})
    return _build(Path(path) if path is not None else None, file_data, _nest(settings or {}), env_data, flags,
                  env_names, problems)


def load_config(
    path: Path | str | None = None,
    overrides: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> Config:
    """The merged config of the file, the environment and the flags (no runtime settings).
    Raises ConfigError with one line per problem."""
    return load_layers(path, overrides, env).config
