"""Runtime settings: the few config keys `config/set` may change without a restart.

They are validated by the same typed config as the file, persisted as settings.json
under the data dir, and laid over the file's values at start, so a change made from the
dashboard or Home Assistant survives a restart. Nothing else is writable at run time.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .config import Config
from .errors import RequestError
from .files import write_json_atomic
from .requests import shown

log = logging.getLogger(__name__)

# key -> short description (shown by config/get)
RUNTIME_KEYS = {
    "alerts.bad_posture_minutes": "minutes of sustained bad posture before an alert",
    "alerts.cooldown_minutes": "minutes before another alert may follow",
    "alerts.escalate_minutes": "re-alert every N minutes while the slouch goes on (0: off)",
    "alerts.recovery_s": "seconds of good posture that cancel a pending alert",
    "alerts.break_minutes": "break reminder after N minutes of presence (0: off)",
    "posture.sensitivity": "1.5 stricter, 0.5 more lenient",
    "posture.onset_s": "seconds a new posture must hold before the state changes",
    "posture.exit_s": "seconds of good posture needed to leave bad",
}


def current(config: Config) -> dict[str, Any]:
    out = {}
    for key in RUNTIME_KEYS:
        section, name = key.split(".")
        out[key] = getattr(getattr(config, section), name)
    return out


def apply(config: Config, changes: dict[str, Any]) -> Config:
    """A new Config with the changes, or RequestError naming the offending key."""
    if not isinstance(changes, dict) or not changes:
        raise RequestError("expected a JSON object of settings, e.g. {\"alerts.bad_posture_minutes\": 15}")
    unknown = sorted(set(changes) - set(RUNTIME_KEYS))
    if unknown:
        raise RequestError(f"not a runtime setting: {', '.join(map(shown, unknown))}; "
                           f"settable: {', '.join(RUNTIME_KEYS)}")
    data = config.model_dump()
    for key, value in changes.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RequestError(f"{key} must be a number, got {type(value).__name__}")
        section, name = key.split(".")
        data[section][name] = value
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(x) for x in first["loc"])
        raise RequestError(f"{key}: {first['msg']}") from None


class SettingsStore:
    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "settings.json"

    def load(self, config: Config) -> Config:
        """The config with persisted runtime settings laid over it (bad files are ignored)."""
        try:
            saved = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return config
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable settings file %s (%s)", self.path, exc)
            return config
        try:
            return apply(config, {k: v for k, v in saved.items() if k in RUNTIME_KEYS})
        except (RequestError, AttributeError) as exc:
            log.warning("ignoring invalid settings file %s (%s)", self.path, exc)
            return config

    def save(self, config: Config) -> None:
        write_json_atomic(self.path, current(config))
