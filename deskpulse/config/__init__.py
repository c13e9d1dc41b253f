"""The typed DeskPulse configuration: one module per section, loaded from TOML.

Precedence, lowest to highest: defaults < the TOML file < DESKPULSE_* environment
variables < command-line flags. Every problem is reported as one line naming the key and
where the value came from (the file, the variable or the flag). This package never
touches the camera, the broker or the network.
"""

from __future__ import annotations

import os
import re
import socket
import tomllib
from pathlib import Path
from typing import Any, Mapping

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
    "HomeAssistantConfig", "MqttConfig", "PostureConfig", "WebConfig", "default_device_id",
    "load_config", "parse_broker_url",
]

DEVICE_ID_RE = re.compile(r"^[a-z0-9_-]+$")
ENV_PREFIX = "DESKPULSE_"
# Environment variables that are not config keys.
ENV_NOT_KEYS = {"DESKPULSE_CONFIG"}


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
    # Calibration, history and pause state live here.
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
    for name, field in Config.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, Section):
            out[name] = set(ann.model_fields)
    return out


def _env_overrides(env: Mapping[str, str]) -> tuple[dict[str, Any], dict[tuple[str, ...], str], list[str]]:
    """DESKPULSE_<SECTION>_<KEY> or DESKPULSE_<TOPKEY> -> nested dict, with origins."""
    sections = _section_fields()
    top = {n for n in Config.model_fields if n not in sections}
    data: dict[str, Any] = {}
    origins: dict[tuple[str, ...], str] = {}
    problems: list[str] = []
    for var, value in sorted(env.items()):
        if not var.startswith(ENV_PREFIX) or var in ENV_NOT_KEYS:
            continue
        rest = var[len(ENV_PREFIX):].lower()
        if rest in top:
            data[rest] = value
            origins[(rest,)] = f"environment {var}"
            continue
        section, _, key = rest.partition("_")
        if section in sections and key in sections[section]:
            data.setdefault(section, {})[key] = value
            origins[(section, key)] = f"environment {var}"
        else:
            problems.append(f"environment {var}: not a DeskPulse setting")
    return data, origins, problems


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _origin_of(loc: tuple[str, ...], origins: Mapping[tuple[str, ...], str], file_label: str) -> str:
    for n in range(len(loc), 0, -1):
        if loc[:n] in origins:
            return origins[loc[:n]]
    return file_label


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


def load_config(
    path: Path | str | None = None,
    overrides: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> Config:
    """Load and validate the config. Raises ConfigError with one line per problem.

    `overrides` uses dotted keys from command-line flags, e.g. {"camera.source": "demo"}.
    """
    env = os.environ if env is None else env
    file_label = str(path) if path else "defaults"
    problems: list[str] = []
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{p}: config file not found") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{p}: cannot read config file ({exc})") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{p}: not valid TOML: {exc}") from None
    env_data, origins, env_problems = _env_overrides(env)
    problems += env_problems
    data = _merge(data, env_data)
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        keys = tuple(dotted.split("."))
        node = data
        for k in keys[:-1]:
            node = node.setdefault(k, {})
        node[keys[-1]] = value
        origins[keys] = f"command line ({dotted})"
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            loc = tuple(str(x) for x in err["loc"])
            key = ".".join(loc) or "(top level)"
            problems.append(f"{_origin_of(loc, origins, file_label)}: {key}: {_describe(err)}")
        raise ConfigError(problems) from None
    if problems:
        raise ConfigError(problems)
    return config
