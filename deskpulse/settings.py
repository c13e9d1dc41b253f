"""Runtime settings: the few config keys `config/set` may change without a restart.

They form the "settings" layer of the config (defaults < file < settings < env < flags),
persisted as settings.json in the device's directory (storage.device_dir), so a change made
from the dashboard or Home Assistant survives a restart. The layer holds only what was set
at run time and differs from the file: setting a key back to the file's value hands it back
to the file. An environment variable or a flag outranks config/set, so a key they set is
refused with a line naming them. `RuntimeConfig` owns the running layers; `config/set` and
file edits (configwatch) are the only ways they change. Nothing else is writable at run time.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any, Mapping

from pydantic import ValidationError

from .config import Config, Layered, Source
from .errors import ConfigError, RequestError
from .files import write_json_atomic
from .requests import shown

log = logging.getLogger(__name__)

SETTINGS_NAME = "settings.json"

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
_OUTRANKING: tuple[Source, ...] = ("env", "flag")


def current(config: Config) -> dict[str, Any]:
    out = {}
    for key in RUNTIME_KEYS:
        section, name = key.split(".")
        out[key] = getattr(getattr(config, section), name)
    return out


def describe(layers: Layered) -> dict[str, dict[str, Any]]:
    """{key: {"value": ..., "source": "default"|"file"|"settings"|"env"|"flag"}} for config/get."""
    return {key: {"value": layers.value(key), "source": layers.source_of(key)} for key in RUNTIME_KEYS}


def _check_changes(changes: Any) -> None:
    if not isinstance(changes, dict) or not changes:
        raise RequestError("expected a JSON object of settings, e.g. {\"alerts.bad_posture_minutes\": 15}")
    unknown = sorted(set(changes) - set(RUNTIME_KEYS))
    if unknown:
        raise RequestError(f"not a runtime setting: {', '.join(map(shown, unknown))}; "
                           f"settable: {', '.join(RUNTIME_KEYS)}")
    for key, value in changes.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RequestError(f"{key} must be a number, got {type(value).__name__}")


def apply(config: Config, changes: dict[str, Any]) -> Config:
    """A new Config with the changes, or RequestError naming the offending key."""
    _check_changes(changes)
    data = config.model_dump()
    for key, value in changes.items():
        section, name = key.split(".")
        data[section][name] = value
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(x) for x in first["loc"])
        raise RequestError(f"{key}: {first['msg']}") from None


def _below(layers: Layered, key: str) -> Any:
    """The value `key` has without runtime settings, env and flags: the file's, else the default."""
    file = layers.flat("file")
    if key in file:
        return file[key]
    section, name = key.split(".")
    return getattr(Config.model_fields[section].default, name)


def _pruned(layers: Layered, values: Mapping[str, Any]) -> dict[str, Any]:
    """The settings that differ from the file (or default): an equal one carries nothing."""
    return {k: v for k, v in sorted(values.items()) if v != _below(layers, k)}


class SettingsStore:
    """settings.json in the device's directory: {dotted key: number}, written atomically."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / SETTINGS_NAME

    def read(self) -> dict[str, Any]:
        """The saved runtime settings; an unreadable file or entry is ignored with a warning."""
        try:
            saved = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable settings file %s (%s)", self.path, exc)
            return {}
        if not isinstance(saved, dict):
            log.warning("ignoring settings file %s (not a JSON object)", self.path)
            return {}
        out = {}
        for key, value in saved.items():
            if key not in RUNTIME_KEYS or isinstance(value, bool) or not isinstance(value, (int, float)):
                log.warning("ignoring %s=%s in settings file %s (not a runtime setting with a number)",
                            shown(str(key)), shown(json.dumps(value)), self.path)
                continue
            out[key] = value
        return out

    def write(self, values: Mapping[str, Any]) -> None:
        """Replace the file with exactly these settings. Raises OSError."""
        write_json_atomic(self.path, dict(sorted(values.items())))

    # --- the old precedence (settings over env and flags); kept until the agent uses RuntimeConfig
    def load(self, config: Config) -> Config:
        """Deprecated: lays the saved settings over everything, flags included."""
        saved = self.read()
        if not saved:
            return config
        try:
            return apply(config, saved)
        except RequestError as exc:
            log.warning("ignoring invalid settings file %s (%s)", self.path, exc)
            return config

    def save(self, config: Config) -> None:
        """Deprecated: writes every runtime key, not only the ones set at run time."""
        write_json_atomic(self.path, current(config))


def with_saved(layers: Layered, store: SettingsStore) -> Layered:
    """`layers` with the saved runtime settings as the settings layer. A saved value that is
    invalid is dropped with one warning naming it; one equal to the file's (or the default)
    is dropped silently, so the file speaks for that key again. Never raises ConfigError."""
    saved = _pruned(layers, store.read())
    try:
        return layers.with_settings(saved)
    except ConfigError:
        pass
    kept: dict[str, Any] = {}
    for key, value in saved.items():
        try:
            layers.with_settings({**kept, key: value})
        except ConfigError as exc:
            log.warning("ignoring %s = %s from %s: %s", key, json.dumps(value), store.path, exc.problems[0])
            continue
        kept[key] = value
    return layers.with_settings(kept)


def _onto(running: Config, merged: Config, keys: list[str]) -> Config:
    """`running` with these runtime keys taken from `merged` (other keys keep their running values)."""
    if not keys:
        return running
    values = current(merged)
    return apply(running, {k: values[k] for k in keys})


class RuntimeConfig:
    """The running configuration's layers, and the one place they change at run time:
    `set` (config/set) replaces the settings layer, `replace_file` (a file edit, see
    configwatch) the file layer. Calls are serialised by a lock; the agent's single writer
    (the pipeline thread) is meant to be the only caller.
    """

    def __init__(self, layers: Layered, store: SettingsStore | None = None) -> None:
        self._layers = layers
        self.store = store
        self._lock = threading.Lock()

    @property
    def layers(self) -> Layered:
        return self._layers

    def describe(self) -> dict[str, dict[str, Any]]:
        return describe(self._layers)

    def set(self, running: Config, changes: Any) -> Config:
        """Apply config/set: validate, refuse keys an env variable or a flag sets, persist the
        new settings layer, and return `running` with the changed keys. Nothing is applied or
        saved unless everything is valid and saved. Raises RequestError (one line)."""
        apply(running, changes)  # shape, types and ranges, with the usual messages
        with self._lock:
            layers = self._layers
            outranked = [(k, layers.origin_of(k)) for k in changes if layers.source_of(k) in _OUTRANKING]
            if outranked:
                raise RequestError("; ".join(
                    f"{k} is set by the {origin}, which takes precedence over config/set: change it there"
                    for k, origin in outranked))
            values = _pruned(layers, {**layers.flat("settings"), **changes})
            try:
                new = layers.with_settings(values)
            except ConfigError as exc:
                raise RequestError(exc.problems[0]) from None
            if self.store is not None:
                try:
                    self.store.write(values)
                except OSError as exc:
                    raise RequestError(f"could not save the settings in {self.store.path}: {exc}") from None
            self._layers = new
        return _onto(running, new.config, sorted(changes))

    def replace_file(self, data: Mapping[str, Any]) -> tuple[Layered, Layered]:
        """Swap in a new file layer; returns (old, new) layers. Raises ConfigError if the new
        merge is invalid (then nothing changes)."""
        with self._lock:
            old = self._layers
            self._layers = old.with_file(data)
            return old, self._layers

    def onto(self, running: Config, keys: list[str]) -> Config:
        """`running` with these runtime keys taken from the current merge."""
        return _onto(running, self._layers.config, keys)
